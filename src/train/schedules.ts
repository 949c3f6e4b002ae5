/**
 * Learning-rate schedules: functions from a 0-based update index to a learning rate, applied by an
 * optimizer group before each of its updates (see `optimizerGroups`). They compose: `linearWarmup`
 * wraps any schedule, and `stepDecay` / `cosineDecay` take a base rate.
 */

/** Learning rate for the update with 0-based index `step` (the number of updates made before it). */
export type Schedule = (step: number) => number;

function positive(value: number, what: string, schedule: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) throw new Error(`${schedule}: ${what} must be a positive finite number, but got ${value}.`);
  return value;
}

function positiveInt(value: number, what: string, schedule: string): number {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${schedule}: ${what} must be a positive integer, but got ${value}.`);
  return value;
}

function checkStep(step: number, schedule: string) {
  if (!Number.isInteger(step) || step < 0) throw new Error(`${schedule}: the step must be an integer >= 0, but got ${step}.`);
}

/** The same rate at every step. */
export function constantLR(lr: number): Schedule {
  positive(lr, "lr", "constantLR");
  return (step) => (checkStep(step, "constantLR"), lr);
}

/** `lr · factor^floor(step / every)`: multiply the rate by `factor` every `every` updates. */
export function stepDecay(options: { lr: number; every: number; factor: number }): Schedule {
  const name = "stepDecay";
  positive(options.lr, "lr", name);
  positiveInt(options.every, "every", name);
  if (!(options.factor > 0 && options.factor <= 1)) throw new Error(`${name}: factor must be in (0, 1], but got ${options.factor}.`);
  return (step) => {
    checkStep(step, name);
    return options.lr * options.factor ** Math.floor(step / options.every);
  };
}

/**
 * Cosine decay from `lr` to `min` (default 0) over `steps` updates, then constant at `min`:
 * `min + (lr − min)·(1 + cos(π·min(step, steps)/steps))/2`.
 */
export function cosineDecay(options: { lr: number; steps: number; min?: number }): Schedule {
  const name = "cosineDecay";
  positive(options.lr, "lr", name);
  positiveInt(options.steps, "steps", name);
  const min = options.min ?? 0;
  if (!(min >= 0 && min <= options.lr)) throw new Error(`${name}: min must be in [0, lr = ${options.lr}], but got ${min}.`);
  return (step) => {
    checkStep(step, name);
    const t = Math.min(step, options.steps) / options.steps;
    return min + (options.lr - min) * 0.5 * (1 + Math.cos(Math.PI * t));
  };
}

/**
 * Linear warm-up into `after` (a schedule or a constant rate): for the first `steps` updates the rate
 * rises as `after(0)·(step + 1)/(steps + 1)`, never 0; then `after(step − steps)`, so a decay starts
 * where the warm-up ends.
 */
export function linearWarmup(after: Schedule | number, steps: number): Schedule {
  const name = "linearWarmup";
  positiveInt(steps, "steps", name);
  const inner = typeof after === "number" ? constantLR(after) : after;
  if (typeof inner !== "function") throw new Error(`${name}: after must be a schedule or a number, but got ${String(after)}.`);
  return (step) => {
    checkStep(step, name);
    return step < steps ? (inner(0) * (step + 1)) / (steps + 1) : inner(step - steps);
  };
}

/** The first `steps` rates of a schedule, e.g. to chart it. */
export function scheduleValues(schedule: Schedule, steps: number): number[] {
  positiveInt(steps, "steps", "scheduleValues");
  return Array.from({ length: steps }, (_, i) => schedule(i));
}
