/**
 * The multi-task LeNet of the MultiMNIST benchmark: the shared-bottom ("hard parameter sharing")
 * network of Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS 2018),
 * also used by Lin et al., "Pareto Multi-Task Learning" (NeurIPS 2019).
 *
 * Shared trunk: conv 5x5 (10 filters) -> max pool 2 -> relu -> conv 5x5 (20) -> max pool 2 -> relu
 * -> flatten (320) -> dense 50 -> relu. One head per task: dense 50 -> relu -> dense `classes` (logits).
 * For 28x28x1 inputs. Convention that differs from the authors' PyTorch code: NHWC tensors (theirs
 * are NCHW); the layer sizes, order and FLOPs are the same. Initial weights are tfjs's defaults
 * (Glorot uniform, zero bias) drawn from `seed`, where PyTorch's layers use Kaiming uniform.
 */
import * as tf from "@tensorflow/tfjs";

export interface LeNetOptions {
  /** Task (head) names, each an output of the model; one name gives a single-task network. */
  tasks: readonly string[];
  /** Classes per head (default 10). */
  classes?: number;
  /** Seed of the initial weights (default 1): the same seed gives the same network. */
  seed?: number;
  /** Input shape (default [28, 28, 1]). */
  inputShape?: [number, number, number];
  /**
   * Also output the trunk's 50-unit representation, naming the trunk's last layer so (for
   * JointTrainer's mode "representation", as MGDA-UB needs); no task reads it. Default: no such output.
   */
  representation?: string;
}

export interface LeNet {
  model: tf.LayersModel;
  /** The shared layers, bottom to top. */
  trunk: tf.layers.Layer[];
  /** The trunk's last layer (the 50-unit dense), e.g. for `shared` in JointTrainer's parameter mode. */
  trunkTop: tf.layers.Layer;
  /** The head layers of each task. */
  heads: Record<string, tf.layers.Layer[]>;
}

/** Builds the multi-task LeNet (see the module comment) with one named logits output per task. */
export function multiTaskLeNet(options: LeNetOptions): LeNet {
  const { tasks, classes = 10, seed = 1, inputShape = [28, 28, 1] } = options;
  if (tasks.length === 0) throw new Error("multiTaskLeNet: tasks must name at least one head, but got none.");
  if (new Set(tasks).size !== tasks.length) throw new Error(`multiTaskLeNet: task names must be distinct, but got ${JSON.stringify(tasks)}.`);
  if (!Number.isInteger(classes) || classes < 1) throw new Error(`multiTaskLeNet: classes must be a positive integer, but got ${classes}.`);
  let s = seed * 100;
  const init = () => tf.initializers.glorotUniform({ seed: s++ });
  const trunk: tf.layers.Layer[] = [
    tf.layers.conv2d({ filters: 10, kernelSize: 5, kernelInitializer: init(), name: "conv1" }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.reLU(),
    tf.layers.conv2d({ filters: 20, kernelSize: 5, kernelInitializer: init(), name: "conv2" }),
    tf.layers.maxPooling2d({ poolSize: 2 }),
    tf.layers.reLU(),
    tf.layers.flatten(),
    // Named after the representation when there is one: the model then outputs this layer's own tensor.
    tf.layers.dense({ units: 50, activation: "relu", kernelInitializer: init(), name: options.representation ?? "trunk_dense" }),
  ];
  const input = tf.input({ shape: inputShape });
  let h = input as tf.SymbolicTensor;
  for (const layer of trunk) h = layer.apply(h) as tf.SymbolicTensor;
  const heads: Record<string, tf.layers.Layer[]> = {};
  const outputs: tf.SymbolicTensor[] = [];
  for (const task of tasks) {
    const hidden = tf.layers.dense({ units: 50, activation: "relu", kernelInitializer: init(), name: `${task}_hidden` });
    const logits = tf.layers.dense({ units: classes, kernelInitializer: init(), name: task });
    heads[task] = [hidden, logits];
    outputs.push(logits.apply(hidden.apply(h)) as tf.SymbolicTensor);
  }
  if (options.representation !== undefined) {
    if (tasks.includes(options.representation)) throw new Error(`multiTaskLeNet: representation "${options.representation}" is also a task name.`);
    // The very tensor the heads read, as representation mode needs (not a copy of it).
    outputs.push(h);
  }
  const model = tf.model({ inputs: input, outputs });
  return { model, trunk, trunkTop: trunk[trunk.length - 1]!, heads };
}
