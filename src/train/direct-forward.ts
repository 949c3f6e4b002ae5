import * as tf from "@tensorflow/tfjs";
import { TableEmbedding } from "../layers/embedding.js";

/**
 * A direct forward pass for simple Layers models, bypassing tfjs-layers' graph executor (about a
 * fifth of a small MLP's training step on CPU).
 *
 * {@link directForward} compiles a functional or Sequential model made only of `InputLayer`,
 * `Dense` (rank-2 inputs), `Concatenate`, `Activation`, `Flatten` (channels last) and jointly's
 * `TableEmbedding` layers into a closure that computes the same outputs with `tf.fused.matMul` on
 * the layers' own variables (a `TableEmbedding` runs its own `call`, so lookups shared within a
 * trainer step stay shared), in the order the model's own graph gives. Anything else (dropout,
 * batch normalisation, `tf.layers.embedding`, nested models, custom or subclassed layers, layers
 * with masks or several outputs) gives `undefined`, and callers keep using `model.apply`.
 *
 * Regularizers and constraints do not change a forward pass (tfjs-layers applies them only in
 * `model.fit`), so they are allowed.
 */
export type DirectForward = (inputs: tf.Tensor | tf.Tensor[], training: boolean) => tf.Tensor[];

type Activation = "linear" | "relu" | "relu6" | "elu" | "sigmoid";
/** Activations `tf.fused.matMul` computes itself, by tfjs-layers class name. */
const FUSED: Record<string, Activation> = { linear: "linear", relu: "relu", relu6: "relu6", elu: "elu", sigmoid: "sigmoid" };

interface LayerLike {
  name: string;
  inboundNodes: NodeLike[];
  constructor: unknown;
}
interface NodeLike {
  inboundLayers: LayerLike[];
  inputTensors: tf.SymbolicTensor[];
  outputTensors: tf.SymbolicTensor[];
  inputMasks?: unknown[];
}
interface ActivationObject {
  getClassName(): string;
  apply(x: tf.Tensor): tf.Tensor;
}
interface LayerVariableLike {
  read(): tf.Tensor;
  shape: number[];
}

/** The layer's own class name, only if its class registers it itself (a subclass that does not is refused). */
function className(layer: unknown): string | undefined {
  const ctor = (layer as { constructor?: unknown }).constructor as { className?: unknown } | undefined;
  if (!ctor || !Object.prototype.hasOwnProperty.call(ctor, "className")) return undefined;
  return typeof ctor.className === "string" ? ctor.className : undefined;
}

type Step = (values: Map<number, tf.Tensor>) => void;

/** Compile `model` into a direct forward closure, or `undefined` if it cannot be reproduced exactly. */
export function directForward(model: tf.LayersModel): DirectForward | undefined {
  try {
    return compile(model);
  } catch {
    return undefined;
  }
}

function compile(model: tf.LayersModel): DirectForward | undefined {
  // A Sequential model builds its inner model (and output names) on its first apply(); do it now,
  // since apply() is bypassed. This adds no variables: its layers are built already.
  if (model instanceof tf.Sequential && model.outputNames.length === 0) model.build();
  const modelInputs = model.inputs as tf.SymbolicTensor[] | undefined;
  const modelOutputs = model.outputs as tf.SymbolicTensor[] | undefined;
  if (!modelInputs?.length || !modelOutputs?.length) return undefined;
  // Every layer of the model must be one we reproduce.
  for (const layer of model.layers) {
    const c = className(layer);
    if (c !== "InputLayer" && c !== "Dense" && c !== "Concatenate" && c !== "Activation" && c !== "Flatten" && c !== TableEmbedding.className) return undefined;
  }
  const inputIds = new Map<number, number>(modelInputs.map((s, i) => [s.id, i]));
  const steps: Step[] = [];
  const done = new Set<number>(inputIds.keys());
  const visiting = new Set<number>();
  const layerSet = new Set<unknown>(model.layers);
  const outputSet = new Set<number>(modelOutputs.map((s) => s.id));
  // How many of this model's nodes read each symbolic tensor.
  const consumers = new Map<number, number>();
  for (const layer of model.layers as unknown as LayerLike[]) {
    for (const node of layer.inboundNodes) for (const t of node.inputTensors) consumers.set(t.id, (consumers.get(t.id) ?? 0) + 1);
  }

  // Depth-first from the outputs through each tensor's producing node: a topological order of the
  // nodes this model actually uses (a layer shared with other models may have other nodes too).
  const visit = (s: tf.SymbolicTensor): boolean => {
    if (done.has(s.id)) return true;
    if (visiting.has(s.id)) return false;
    visiting.add(s.id);
    const layer = s.sourceLayer as unknown as LayerLike;
    if (!layerSet.has(layer)) return false;
    const node = layer.inboundNodes[s.nodeIndex];
    if (!node || node.outputTensors.length !== 1 || s.tensorIndex !== 0) return false;
    if (node.inputMasks?.some((m) => m != null)) return false;
    const lookup = flattenedLookup(layer, node, layerSet, consumers, outputSet);
    const ins = lookup ? [lookup.ids] : node.inputTensors;
    for (const t of ins) if (!visit(t)) return false;
    const step = lookup ? lookupStep(lookup.emb, lookup.ids.id, s.id) : makeStep(layer, ins, s);
    if (!step) return false;
    steps.push(step);
    visiting.delete(s.id);
    done.add(s.id);
    return true;
  };
  for (const s of modelOutputs) if (!visit(s)) return undefined;

  const inputDtypes = modelInputs.map((s) => s.dtype);
  const outputIds = modelOutputs.map((s) => s.id);
  const inputSyms = modelInputs;
  return (inputs) =>
    tf.tidy(() => {
      const list = Array.isArray(inputs) ? inputs : [inputs];
      if (list.length !== inputSyms.length) {
        throw new Error(`Model "${model.name}" has ${inputSyms.length} inputs; got ${list.length} tensors.`);
      }
      const values = new Map<number, tf.Tensor>();
      inputSyms.forEach((s, i) => {
        const t = list[i] as tf.Tensor;
        const dtype = inputDtypes[i];
        // As the Layers executor does: a feed of another dtype is cast to the input's.
        values.set(s.id, dtype != null && t.dtype !== dtype ? tf.cast(t, dtype) : t);
      });
      for (const step of steps) step(values);
      return outputIds.map((id) => values.get(id) as tf.Tensor);
    });
}

/**
 * A `Flatten` of a `TableEmbedding`'s output, when nothing else reads that output: its ids input
 * (`[batch, k]`) and the layer, so the flattened output can be computed from the lookup's rows
 * directly. Flatten(reshape(rows, [batch, k, D])) is reshape(rows, [batch, k·D]), and with k = 1
 * that is the rows themselves: no reshape forward or backward.
 */
function flattenedLookup(
  layer: LayerLike, node: NodeLike, layers: Set<unknown>, consumers: Map<number, number>, outputs: Set<number>,
): { emb: TableEmbedding; ids: tf.SymbolicTensor } | undefined {
  if (className(layer) !== "Flatten" || (layer as unknown as { dataFormat?: string }).dataFormat === "channelsFirst") return undefined;
  const t = node.inputTensors[0];
  if (node.inputTensors.length !== 1 || !t || t.tensorIndex !== 0 || consumers.get(t.id) !== 1 || outputs.has(t.id)) return undefined;
  const emb = t.sourceLayer as unknown;
  if (!(emb instanceof TableEmbedding) || className(emb) !== TableEmbedding.className || !layers.has(emb) || !emb.built) return undefined;
  const embNode = (emb as unknown as LayerLike).inboundNodes[t.nodeIndex];
  const ids = embNode?.inputTensors[0];
  if (!embNode || !ids || embNode.inputTensors.length !== 1 || embNode.outputTensors.length !== 1 || embNode.inputMasks?.some((m) => m != null)) return undefined;
  return ids.shape.length === 2 ? { emb, ids } : undefined;
}

function lookupStep(emb: TableEmbedding, idsId: number, outId: number): Step {
  return (v) => {
    const ids = v.get(idsId) as tf.Tensor;
    const rows = emb.lookupRows(ids);
    const width = (ids.shape[1] as number) * emb.outputDim;
    v.set(outId, rows.shape[1] === width ? rows : tf.reshape(rows, [ids.shape[0] as number, width]));
  };
}

function makeStep(layer: LayerLike, ins: tf.SymbolicTensor[], out: tf.SymbolicTensor): Step | undefined {
  const kind = className(layer);
  const inIds = ins.map((t) => t.id);
  const outId = out.id;
  if (kind === "Dense") {
    const d = layer as unknown as { kernel: LayerVariableLike | null; bias: LayerVariableLike | null; activation: ActivationObject | null };
    if (ins.length !== 1 || (ins[0] as tf.SymbolicTensor).shape.length !== 2 || !d.kernel || d.kernel.shape.length !== 2) return undefined;
    const kernel = d.kernel;
    const bias = d.bias;
    const act = d.activation;
    const fused = act ? FUSED[act.getClassName()] : "linear";
    const inId = inIds[0] as number;
    if (fused) {
      return (v) => {
        v.set(outId, tf.fused.matMul({ a: v.get(inId) as tf.Tensor2D, b: kernel.read() as tf.Tensor2D, bias: bias?.read(), activation: fused }));
      };
    }
    const activation = act as ActivationObject;
    return (v) => {
      const z = tf.fused.matMul({ a: v.get(inId) as tf.Tensor2D, b: kernel.read() as tf.Tensor2D, bias: bias?.read() });
      v.set(outId, activation.apply(z));
    };
  }
  if (kind === "Activation") {
    const a = (layer as unknown as { activation: ActivationObject | null }).activation;
    if (ins.length !== 1 || !a) return undefined;
    const inId = inIds[0] as number;
    return (v) => v.set(outId, a.apply(v.get(inId) as tf.Tensor));
  }
  if (kind === "Flatten") {
    // As tfjs-layers' Flatten (input rank >= 3) with channels last: K.batchFlatten, one reshape.
    const f = layer as unknown as { dataFormat?: string };
    if (ins.length !== 1 || f.dataFormat === "channelsFirst" || (ins[0] as tf.SymbolicTensor).shape.length < 3) return undefined;
    const inId = inIds[0] as number;
    return (v) => {
      const x = v.get(inId) as tf.Tensor;
      const rows = x.shape[0] as number;
      v.set(outId, tf.reshape(x, [rows, x.shape.slice(1).reduce((a, b) => a * b, 1)]));
    };
  }
  if (kind === TableEmbedding.className) {
    if (ins.length !== 1 || !(layer instanceof TableEmbedding) || !layer.built) return undefined;
    const emb = layer;
    const inId = inIds[0] as number;
    return (v) => v.set(outId, emb.call(v.get(inId) as tf.Tensor));
  }
  if (kind === "Concatenate") {
    const axis0 = (layer as unknown as { axis: number }).axis;
    if (ins.length < 2 || typeof axis0 !== "number") return undefined;
    const ranks = new Set(ins.map((t) => t.shape.length));
    if (ranks.size !== 1) return undefined;
    const rank = ins[0]?.shape.length as number;
    // As tfjs-layers' K.concatenate: any negative axis means the last one.
    const axis = axis0 < 0 || axis0 === rank ? -1 : axis0;
    return (v) => v.set(outId, tf.concat(inIds.map((id) => v.get(id) as tf.Tensor), axis));
  }
  return undefined;
}
