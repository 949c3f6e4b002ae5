/**
 * Shared types and input checks of the loss weightings. A weighting maps plain numbers (per-task
 * losses, their history, per-task gradient norms) to one weight per task; no TensorFlow.js here,
 * so every method can be tested exactly. State lives in the instance and changes only in `update`.
 */
// Value checks and the seeded generator are shared with the aggregators, so errors read the same.
import { checkOption, describe } from "../aggregation/linalg.js";
export { seededRandom } from "../aggregation/linalg.js";

/** What one training step (or epoch, for epoch-based methods) reports to a weighting. */
export interface WeightingInput {
  /** Current unweighted loss of each task, length T. */
  losses?: number[];
  /** Per-task gradient norms on the shared layer; each method documents which norms it wants. */
  gradNorms?: number[];
  /** Step (or epoch) index, for methods whose weights depend on it (RLW). */
  step?: number;
}

export interface Weighting {
  /** Registry name of the method. */
  readonly name: string;
  /** Number of tasks T. */
  readonly numTasks: number;
  /** Weights for the next total Σ w_i L_i (or the method's transformed losses). Never changes state. */
  weights(input?: WeightingInput): number[];
  /** Feeds what was observed at this step (or epoch) and advances the state. */
  update(input?: WeightingInput): void;
}

export { describe };

/** What a method keeps between steps, as plain JSON values (numbers, arrays of numbers, null): for checkpoints. */
export type MethodState = Record<string, unknown>;

/**
 * A weighting (or aggregator) whose state can be saved and put back: after `importState(exportState())`
 * on a fresh instance with the same options, it gives the same weights and updates as the original.
 */
export interface Stateful {
  exportState(): MethodState;
  importState(state: MethodState): void;
}

/** Whether an object has `exportState` and `importState`. */
export const isStateful = (x: unknown): x is Stateful =>
  typeof x === "object" && x !== null && typeof (x as Stateful).exportState === "function" && typeof (x as Stateful).importState === "function";

/** `state[key]` as a vector of T finite numbers, or undefined when `optional` and absent (null). */
export function stateVector(who: string, state: MethodState, key: string, T: number, optional = false): number[] | undefined {
  const v = state?.[key];
  if (optional && (v === undefined || v === null)) return undefined;
  return checkVector(`${who} state ${key}`, v, T);
}

/** Throws `"<name> must be <range>, but got <value>."` unless `value` is a finite number passing `ok`. */
export function checkNumber(name: string, value: unknown, range: string, ok: (v: number) => boolean = () => true): number {
  return checkOption(name, value, range, ok);
}

export const checkTaskCount = (who: string, T: unknown): number =>
  checkNumber(`${who} numTasks`, T, "an integer >= 1", (v) => Number.isInteger(v) && v >= 1);

export type Sign = "any" | ">= 0" | "> 0";

/** Checks a per-task vector of finite numbers of length T, with the given sign; returns a copy. */
export function checkVector(name: string, v: unknown, T: number, sign: Sign = "any"): number[] {
  if (!Array.isArray(v) || v.length !== T) throw new Error(`${name} must be an array of ${T} numbers (one per task), but got ${describe(v)}.`);
  const range = sign === "any" ? "a finite number" : `a finite number ${sign}`;
  const ok = sign === ">= 0" ? (x: number) => x >= 0 : sign === "> 0" ? (x: number) => x > 0 : () => true;
  return v.map((x, i) => checkNumber(`${name}[${i}]`, x, range, ok));
}

/** The `losses` of an input, checked; `who` names the method in the message. */
export function requireLosses(who: string, input: WeightingInput | undefined, T: number, sign: Sign = ">= 0"): number[] {
  if (input?.losses === undefined) throw new Error(`${who} needs losses (one per task), but got ${describe(input?.losses)}.`);
  return checkVector(`${who} losses`, input.losses, T, sign);
}

export function requireGradNorms(who: string, input: WeightingInput | undefined, T: number): number[] {
  if (input?.gradNorms === undefined) throw new Error(`${who} needs gradNorms (one per task), but got ${describe(input?.gradNorms)}.`);
  return checkVector(`${who} gradNorms`, input.gradNorms, T, ">= 0");
}

/** Softmax computed after subtracting the maximum, so large logits do not overflow. */
export function softmax(x: number[]): number[] {
  const m = Math.max(...x);
  const e = x.map((v) => Math.exp(v - m));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}

export const sum = (x: number[]): number => x.reduce((a, b) => a + b, 0);
