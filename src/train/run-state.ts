/**
 * A JointTrainer run as one checkpoint: every model variable (trained and not), each optimizer
 * group's slots, iterations, learning rate and update count (which drives its schedule), the
 * trainer's counters, task weights and weighting / aggregator state, and what the loop keeps
 * (`loop`: fit's epoch, data-order RNG, history, early-stopping state, ...). Tensors are raw bytes.
 */
import * as tf from "@tensorflow/tfjs";
import { assignVariables, loadCheckpoint, saveCheckpoint, toTensor, type StoredTensor } from "./checkpoint.js";
import { exportOptimizerState, importOptimizerState, type OptimizerStateJson } from "./optimizer-state.js";
import type { JointTrainer, TrainerState } from "./joint-trainer.js";
import type { OptimizerGroups } from "./optimizer-groups.js";

interface RunJson<L> {
  kind: string;
  trainer: TrainerState;
  optimizers: { group: string; updates: number; state: OptimizerStateJson }[];
  variables: number;
  extra: Record<string, number>;
  loop: L;
}

let warnedUnsaved = false;

/** The optimizer groups' state as JSON plus slot tensors keyed `opt/<group>/<i>`. */
export async function groupsState(groups: OptimizerGroups): Promise<{ json: RunJson<unknown>["optimizers"]; tensors: { key: string; tensor: tf.Tensor }[] }> {
  const json: RunJson<unknown>["optimizers"] = [];
  const tensors: { key: string; tensor: tf.Tensor }[] = [];
  for (const g of groups.groupStates()) {
    const { json: state, slots } = await exportOptimizerState(g.optimizer);
    json.push({ group: g.name, updates: g.updates, state });
    slots.forEach((tensor, i) => tensors.push({ key: `opt/${g.name}/${i}`, tensor }));
  }
  return { json, tensors };
}

/** Put the optimizer groups' state back (same group names and optimizer classes). */
export async function restoreGroups(groups: OptimizerGroups, json: RunJson<unknown>["optimizers"], tensors: Map<string, StoredTensor>, where: string): Promise<void> {
  const live = groups.groupStates();
  const names = live.map((g) => g.name);
  if (json.length !== live.length || json.some((g, i) => g.group !== names[i])) {
    throw new Error(`resume: ${where} holds optimizer groups ${json.map((g) => `"${g.group}"`).join(", ")}, but this run has ${names.map((n) => `"${n}"`).join(", ")}; resume with the optimizer the run was started with.`);
  }
  for (const [i, g] of live.entries()) {
    const saved = json[i]!;
    const slots = saved.state.slots.map((_, j) => {
      const t = tensors.get(`opt/${g.name}/${j}`);
      if (!t) throw new Error(`resume: ${where} lacks slot ${j} of optimizer group "${g.name}"; the checkpoint is damaged.`);
      return toTensor(t);
    });
    try {
      await importOptimizerState(g.optimizer, saved.state, slots);
    } finally {
      tf.dispose(slots);
    }
  }
  groups.setUpdates(Object.fromEntries(json.map((g) => [g.group, g.updates])));
}

/**
 * Save the trainer's whole state plus the loop's JSON `loop` and optional extra tensors (e.g. the
 * best epoch's weights) into `dir`, replacing the previous checkpoint as one set.
 */
export async function saveRun<L>(dir: string, kind: string, trainer: JointTrainer, loop: L, extra: Record<string, readonly tf.Tensor[]> = {}): Promise<void> {
  const trainerState = trainer.exportState();
  if (trainerState.unsaved.length && !warnedUnsaved) {
    warnedUnsaved = true;
    process.emitWarning(`checkpoint: not saved: ${trainerState.unsaved.join("; ")}. A resumed run starts that part afresh; give it exportState() / importState() to include it.`, { type: "JointlyWarning", code: "JOINTLY_CHECKPOINT_PARTIAL" });
  }
  const vars = trainer.stateVariables();
  const opt = await groupsState(trainer.groups);
  const tensors = [
    ...vars.map((tensor, i) => ({ key: `var/${i}`, tensor })),
    ...opt.tensors,
    ...Object.entries(extra).flatMap(([name, list]) => list.map((tensor, i) => ({ key: `${name}/${i}`, tensor }))),
  ];
  const json: RunJson<L> = { kind, trainer: trainerState, optimizers: opt.json, variables: vars.length, extra: Object.fromEntries(Object.entries(extra).map(([k, v]) => [k, v.length])), loop };
  await saveCheckpoint(dir, json, tensors);
}

/**
 * Read the checkpoint in `dir` into the trainer (variables, optimizers, counters, weighting and
 * aggregator state) and return the loop's JSON and the extra tensors (new tensors: the caller
 * disposes them).
 */
export async function loadRun<L>(dir: string, kind: string, trainer: JointTrainer): Promise<{ loop: L; extra: Record<string, tf.Tensor[]> }> {
  const { state, tensors } = await loadCheckpoint<RunJson<L>>(dir);
  if (state?.kind !== kind) throw new Error(`resume: ${dir} holds a checkpoint of a ${JSON.stringify(state?.kind)} run, not of ${JSON.stringify(kind)}.`);
  const vars = trainer.stateVariables();
  const stored = Array.from({ length: state.variables }, (_, i) => {
    const t = tensors.get(`var/${i}`);
    if (!t) throw new Error(`resume: ${dir} lacks variable ${i}; the checkpoint is damaged.`);
    return t;
  });
  assignVariables(vars, stored, "variables", dir);
  await restoreGroups(trainer.groups, state.optimizers, tensors, dir);
  trainer.importState(state.trainer);
  const extra: Record<string, tf.Tensor[]> = {};
  for (const [name, n] of Object.entries(state.extra)) {
    extra[name] = Array.from({ length: n }, (_, i) => {
      const t = tensors.get(`${name}/${i}`);
      if (!t) throw new Error(`resume: ${dir} lacks ${name}/${i}; the checkpoint is damaged.`);
      return toTensor(t);
    });
  }
  return { loop: state.loop, extra };
}
