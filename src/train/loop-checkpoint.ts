/**
 * Checkpoints for the trainers whose loop the caller writes: {@link AlternatingTrainer} (every
 * turn's variables, optimizer slots, iterations, learning rate and schedule position, and where
 * the turn schedule stands), {@link JointObjectiveTrainer} (its variables, optimizer groups and
 * step count) and {@link VectorizedEnsemble} (kernels, biases, optimizer, step count). The caller's own loop state (epoch, its RNG's `getState()`, history, ...) travels as
 * JSON in `loop`; other variables the forward pass reads (batch-norm statistics) in `variables`.
 * Saved atomically like fit's checkpoints (see checkpoint.ts).
 */
import * as tf from "@tensorflow/tfjs";
import { assignVariables, loadCheckpoint, saveCheckpoint, toTensor, type StoredTensor } from "./checkpoint.js";
import { exportOptimizerState, importOptimizerState, type OptimizerStateJson } from "./optimizer-state.js";
import { groupsState, restoreGroups } from "./run-state.js";
import type { AlternatingTrainer, JointObjectiveTrainer } from "./alternating.js";
import type { VectorizedEnsemble } from "../parallel/ensemble.js";

function storedList(tensors: Map<string, StoredTensor>, prefix: string, n: number, dir: string): StoredTensor[] {
  return Array.from({ length: n }, (_, i) => {
    const t = tensors.get(`${prefix}/${i}`);
    if (!t) throw new Error(`resume: ${dir} lacks ${prefix}/${i}; the checkpoint is damaged.`);
    return t;
  });
}

interface AlternatingJson<L> {
  kind: "alternating";
  schedule: ReturnType<AlternatingTrainer<unknown>["exportState"]>;
  turns: { name: string; variables: number }[];
  optimizers: Awaited<ReturnType<typeof groupsState>>["json"];
  variables: number;
  loop: L | null;
}

/**
 * Save an alternating run into `dir` (replacing the previous checkpoint as one set): each turn's
 * variables and optimizer state, the turn schedule's position, `variables` (any others the
 * forward pass reads, e.g. batch-norm statistics) and the caller's `loop` JSON.
 *
 * @example
 * await saveAlternatingCheckpoint("runs/gan", trainer, { loop: { epoch, rng: rng.getState() } });
 */
export async function saveAlternatingCheckpoint<L>(dir: string, trainer: AlternatingTrainer<unknown>, options: { variables?: readonly tf.Variable[]; loop?: L } = {}): Promise<void> {
  const parts = trainer.turnParts();
  const tensors: { key: string; tensor: tf.Tensor }[] = [];
  const optimizers: AlternatingJson<L>["optimizers"] = [];
  for (const p of parts) {
    p.variables.forEach((tensor, i) => tensors.push({ key: `turn/${p.name}/${i}`, tensor }));
    const g = await groupsState(p.groups);
    optimizers.push(...g.json);
    tensors.push(...g.tensors);
  }
  const extra = options.variables ?? [];
  extra.forEach((tensor, i) => tensors.push({ key: `var/${i}`, tensor }));
  const json: AlternatingJson<L> = { kind: "alternating", schedule: trainer.exportState(), turns: parts.map((p) => ({ name: p.name, variables: p.variables.length })), optimizers, variables: extra.length, loop: options.loop ?? null };
  await saveCheckpoint(dir, json, tensors);
}

/** Load a checkpoint of {@link saveAlternatingCheckpoint} into the trainer (and `variables`); returns the saved `loop`. */
export async function loadAlternatingCheckpoint<L>(dir: string, trainer: AlternatingTrainer<unknown>, options: { variables?: readonly tf.Variable[] } = {}): Promise<L | undefined> {
  const { state, tensors } = await loadCheckpoint<AlternatingJson<L>>(dir);
  if (state?.kind !== "alternating") throw new Error(`resume: ${dir} holds a checkpoint of a ${JSON.stringify(state?.kind)} run, not of an alternating one.`);
  const parts = trainer.turnParts();
  if (JSON.stringify(state.turns.map((t) => t.name)) !== JSON.stringify(parts.map((p) => p.name))) {
    throw new Error(`resume: ${dir} holds turns ${state.turns.map((t) => `"${t.name}"`).join(", ")}, but this trainer has ${parts.map((p) => `"${p.name}"`).join(", ")}.`);
  }
  for (const [i, p] of parts.entries()) {
    assignVariables(p.variables, storedList(tensors, `turn/${p.name}`, state.turns[i]!.variables, dir), `variables of turn "${p.name}"`, dir);
    await restoreGroups(p.groups, state.optimizers.filter((o) => o.group === p.name), tensors, dir);
  }
  assignVariables(options.variables ?? [], storedList(tensors, "var", state.variables, dir), "extra variables", dir);
  trainer.importState(state.schedule);
  return state.loop ?? undefined;
}

interface JointObjectiveJson<L> {
  kind: "joint-objective";
  steps: number;
  variables: number;
  extra: number;
  optimizers: Awaited<ReturnType<typeof groupsState>>["json"];
  loop: L | null;
}

/** Save a {@link JointObjectiveTrainer}'s variables, optimizer groups and step count (plus `variables` and `loop`, as for the alternating trainer). */
export async function saveJointObjectiveCheckpoint<L>(dir: string, trainer: JointObjectiveTrainer<unknown>, options: { variables?: readonly tf.Variable[]; loop?: L } = {}): Promise<void> {
  const vars = trainer.variables();
  const extra = options.variables ?? [];
  const g = await groupsState(trainer.groups);
  const tensors = [...vars.map((tensor, i) => ({ key: `train/${i}`, tensor })), ...extra.map((tensor, i) => ({ key: `var/${i}`, tensor })), ...g.tensors];
  const json: JointObjectiveJson<L> = { kind: "joint-objective", steps: trainer.exportState().steps, variables: vars.length, extra: extra.length, optimizers: g.json, loop: options.loop ?? null };
  await saveCheckpoint(dir, json, tensors);
}

/** Load a checkpoint of {@link saveJointObjectiveCheckpoint} into the trainer (and `variables`); returns the saved `loop`. */
export async function loadJointObjectiveCheckpoint<L>(dir: string, trainer: JointObjectiveTrainer<unknown>, options: { variables?: readonly tf.Variable[] } = {}): Promise<L | undefined> {
  const { state, tensors } = await loadCheckpoint<JointObjectiveJson<L>>(dir);
  if (state?.kind !== "joint-objective") throw new Error(`resume: ${dir} holds a checkpoint of a ${JSON.stringify(state?.kind)} run, not of a joint-objective one.`);
  assignVariables(trainer.variables(), storedList(tensors, "train", state.variables, dir), "variables", dir);
  assignVariables(options.variables ?? [], storedList(tensors, "var", state.extra, dir), "extra variables", dir);
  await restoreGroups(trainer.groups, state.optimizers, tensors, dir);
  trainer.importState({ steps: state.steps });
  return state.loop ?? undefined;
}

interface EnsembleJson<L> {
  kind: "ensemble";
  members: number;
  steps: number;
  variables: number;
  optimizer: OptimizerStateJson;
  loop: L | null;
}

/** Save a {@link VectorizedEnsemble}'s kernels, biases, optimizer state and step count, with the caller's `loop` JSON. */
export async function saveEnsembleCheckpoint<L>(dir: string, ensemble: VectorizedEnsemble, options: { loop?: L } = {}): Promise<void> {
  const vars = ensemble.variables;
  const { json: optimizer, slots } = await exportOptimizerState(ensemble.optimizer);
  const tensors = [...vars.map((tensor, i) => ({ key: `var/${i}`, tensor })), ...slots.map((tensor, i) => ({ key: `opt/${i}`, tensor }))];
  const json: EnsembleJson<L> = { kind: "ensemble", members: ensemble.members, steps: ensemble.stepCount, variables: vars.length, optimizer, loop: options.loop ?? null };
  await saveCheckpoint(dir, json, tensors);
}

/** Load a checkpoint of {@link saveEnsembleCheckpoint} into an ensemble of the same shape and optimizer; returns the saved `loop`. */
export async function loadEnsembleCheckpoint<L>(dir: string, ensemble: VectorizedEnsemble): Promise<L | undefined> {
  const { state, tensors } = await loadCheckpoint<EnsembleJson<L>>(dir);
  if (state?.kind !== "ensemble") throw new Error(`resume: ${dir} holds a checkpoint of a ${JSON.stringify(state?.kind)} run, not of an ensemble.`);
  if (state.members !== ensemble.members) throw new Error(`resume: ${dir} holds an ensemble of ${state.members} members, but this one has ${ensemble.members}.`);
  assignVariables(ensemble.variables, storedList(tensors, "var", state.variables, dir), "ensemble variables", dir);
  const slots = storedList(tensors, "opt", state.optimizer.slots.length, dir).map(toTensor);
  try {
    await importOptimizerState(ensemble.optimizer, state.optimizer, slots);
  } finally {
    tf.dispose(slots);
  }
  // The step count only numbers steps in messages; the class keeps it private, without a setter.
  (ensemble as unknown as { steps: number }).steps = state.steps;
  return state.loop ?? undefined;
}
