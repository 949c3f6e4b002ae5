/**
 * A tfjs optimizer's whole state, for checkpoints: its slots (Adam's moments, momentum's
 * accumulators, ...) from `getWeights()`, its iteration count and learning rate, and what
 * `getWeights()` leaves out. Stock Adam's `setWeights` recomputes the bias-correction powers as
 * `pow(beta, iterations + 1)`, which is not bit for bit the running product `accBeta · beta` the
 * updates keep; so the powers are saved and put back as they were.
 */
import * as tf from "@tensorflow/tfjs";
import { getLearningRate, setLearningRate } from "./optimizer-groups.js";

/** The JSON half of an optimizer's state (the slot tensors travel as raw bytes next to it). */
export interface OptimizerStateJson {
  className: string;
  learningRate: number;
  iterations: number;
  /** The slots' names, in `getWeights()` order (after the iterations entry). */
  slots: string[];
  /** Adam's running bias-correction powers (accBeta1, accBeta2), as float32 values. */
  accBeta?: [number, number];
}

/** Optimizer classes whose full state this module reads and restores. */
export const checkpointableOptimizers = ["SGD", "Momentum", "Adam", "RMSProp", "Adagrad", "Adadelta", "FusedAdam", "FusedSGD"] as const;

/** Throws, naming the class and the ones supported, unless this optimizer's whole state can be checkpointed. */
export function checkSupported(opt: tf.Optimizer, who: string): string {
  const name = opt.getClassName();
  if (!(checkpointableOptimizers as readonly string[]).includes(name)) {
    throw new Error(`${who}: the optimizer ${name} cannot be checkpointed (its state is not readable through getWeights); use one of ${checkpointableOptimizers.join(", ")}.`);
  }
  return name;
}

type AdamInternals = { accBeta1?: tf.Variable | number; accBeta2?: tf.Variable | number };

function readAccBeta(opt: tf.Optimizer): [number, number] | undefined {
  const o = opt as unknown as AdamInternals;
  if (o.accBeta1 === undefined || o.accBeta2 === undefined) return undefined;
  const read = (x: tf.Variable | number) => (typeof x === "number" ? x : (x.dataSync()[0] as number));
  return [read(o.accBeta1), read(o.accBeta2)];
}

/**
 * The optimizer's state: JSON and the slot tensors (the optimizer's own variables: read them, do
 * not dispose them). Slots appear when the optimizer first updates, so a fresh one has none.
 */
export async function exportOptimizerState(opt: tf.Optimizer, who = "checkpoint"): Promise<{ json: OptimizerStateJson; slots: tf.Tensor[] }> {
  const className = checkSupported(opt, who);
  const weights = await opt.getWeights();
  const [iter, ...slots] = weights;
  const iterations = iter ? (iter.tensor.dataSync()[0] as number) : 0;
  // saveIterations() makes a fresh scalar each call; the slots are the optimizer's own variables.
  iter?.tensor.dispose();
  const json: OptimizerStateJson = { className, learningRate: getLearningRate(opt), iterations, slots: slots.map((s) => s.name) };
  const acc = className === "Adam" || className === "FusedAdam" ? readAccBeta(opt) : undefined;
  if (acc) json.accBeta = acc;
  return { json, slots: slots.map((s) => s.tensor) };
}

/**
 * Put back a state from {@link exportOptimizerState} into an optimizer of the same class and
 * settings. `slots` are copied (the caller keeps and disposes them); the optimizer's old slots are freed.
 */
export async function importOptimizerState(opt: tf.Optimizer, json: OptimizerStateJson, slots: tf.Tensor[], who = "resume"): Promise<void> {
  const className = checkSupported(opt, who);
  if (json.className !== className) throw new Error(`${who}: the checkpoint holds the state of a ${json.className} optimizer, but this one is a ${className}; resume with the optimizer the run was started with.`);
  if (slots.length !== json.slots.length) throw new Error(`${who}: the ${className} state lists ${json.slots.length} slots but ${slots.length} tensors came with it.`);
  const old = await opt.getWeights();
  const iter = tf.scalar(json.iterations, "int32");
  try {
    await opt.setWeights([{ name: "iter", tensor: iter }, ...slots.map((tensor, i) => ({ name: json.slots[i] as string, tensor }))]);
  } finally {
    iter.dispose();
  }
  // setWeights copies into new variables; the replaced slots (and the fresh iterations scalar) go.
  tf.dispose(old.map((w) => w.tensor));
  setLearningRate(opt, json.learningRate);
  if (json.accBeta) {
    const o = opt as unknown as AdamInternals;
    const [a1, a2] = json.accBeta;
    if (typeof o.accBeta1 === "number") {
      o.accBeta1 = a1;
      o.accBeta2 = a2;
    } else if (o.accBeta1 && o.accBeta2) {
      tf.tidy(() => {
        (o.accBeta1 as tf.Variable).assign(tf.scalar(a1));
        (o.accBeta2 as tf.Variable).assign(tf.scalar(a2));
      });
    }
  }
}
