/**
 * Fused training ops for the `wasm` backend with the native addon: a Dense layer and the per-task
 * losses as single kernels with single-kernel gradients.
 *
 * Why: on small models the cost of a training step is the number of ops, not their arithmetic. Each
 * tfjs op costs ~10-15 µs of engine bookkeeping (and the engine clones every tensor a gradient will
 * need, another op each), against ~3 µs for a PyTorch op. Softmax cross-entropy on class ids is about
 * 14 ops forward and as many backward when composed from tfjs ops (one-hot, log-softmax, ...); here
 * it is one each. A Dense layer's backward pass through tf.fused.matMul is about 9 ops (step, cast,
 * multiply for relu; two products; a sum and reshapes for the bias); here it is 4 (the activation's
 * derivative, two products, one sum), with the same kernels for the products and the sum, so the
 * same numbers.
 *
 * How: kernels registered under jointly's own names (`JointlyDense`, `JointlyDenseLinear`,
 * `JointlyActGrad`, `JointlyLoss`, `JointlyLossGrad`) for backend "wasm" only, with gradients registered for the forward kernels,
 * so they work under `tf.grads`, `tf.variableGrads` and tidy like any op. {@link fusedDense} and
 * {@link fusedLoss} use them only when the active backend is wasm and the addon is loaded, and
 * return `undefined` otherwise, so callers keep their composite ops (and their numbers) elsewhere.
 *
 * Numbers: the Dense forward pass is the `_FusedMatMul` kernel itself, its gradient the same
 * products and sum as tf.fused.matMul's (equal bits for linear and relu). The losses accumulate in
 * double and round once, so they differ from the composite float32 ops by rounding only (tested to
 * 1e-6 relative). A class id that is not an integer in [0, classes) is an error naming it (the
 * composite one-hot silently gives such a row a zero loss).
 */
import * as tf from "@tensorflow/tfjs";
import { activeNative, type NativeKernels } from "./native.js";
import { byteOffset, prod, type WasmBackend } from "./wasm-internals.js";

const BACKEND = "wasm";
const DENSE = "JointlyDense";
/** The linear case under its own name: its gradient needs no copy of the output kept. */
const DENSE_LINEAR = "JointlyDenseLinear";
const ACT_GRAD = "JointlyActGrad";
const LOSS = "JointlyLoss";
const LOSS_GRAD = "JointlyLossGrad";

/** The wasm backend's FusableActivation numbering, for the activations a Dense layer can fuse here. */
const ACTIVATION = { linear: 0, relu: 1, relu6: 2, sigmoid: 5, elu: 6 } as const;
export type FusedActivation = keyof typeof ACTIVATION;

/** Loss kinds, as the addon numbers them. */
const KIND = { softmaxCrossEntropy: 0, mse: 1, binaryCrossEntropy: 2, softmaxCrossEntropyRows: 3 } as const;
export type FusedLossName = keyof typeof KIND;

function native(): NativeKernels {
  const n = activeNative();
  if (n === undefined) throw new Error("jointly fused ops: the native addon is not loaded (these kernels run only with it)");
  return n;
}

// ----- kernels ---------------------------------------------------------------------------------

function denseKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): tf.TensorInfo {
  const fused = tf.getKernel("_FusedMatMul", BACKEND);
  if (fused === undefined) throw new Error("JointlyDense: no _FusedMatMul kernel on wasm");
  const { a, b, bias } = args.inputs;
  return fused.kernelFunc({
    inputs: { a: a!, b: b!, bias: bias! },
    attrs: { transposeA: false, transposeB: false, activation: (args.attrs as { activation: string }).activation, leakyreluAlpha: 0 },
    backend: args.backend as tf.KernelBackend,
  }) as tf.TensorInfo;
}

function actGradKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { dy, y } = args.inputs as { dy: tf.TensorInfo; y: tf.TensorInfo };
  const out = backend.makeOutput(y.shape.slice(), "float32");
  const code = ACTIVATION[(args.attrs as { activation: FusedActivation }).activation];
  native().actGrad(backend.wasm.HEAPU8.buffer, prod(y.shape), code, byteOffset(backend, dy), byteOffset(backend, y), byteOffset(backend, out));
  return out;
}

interface LossAttrs {
  kind: FusedLossName;
  mean: boolean;
}

/** Rows and values per row of a predictions tensor, as the loss kernels see it. */
function rowsOf(pred: tf.TensorInfo): { n: number; cols: number } {
  const n = pred.shape[0] ?? 1;
  return { n, cols: n === 0 ? 0 : prod(pred.shape) / n };
}

function lossKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { pred, labels } = args.inputs as { pred: tf.TensorInfo; labels: tf.TensorInfo };
  const { kind, mean } = args.attrs as unknown as LossAttrs;
  const { n, cols } = rowsOf(pred);
  const out = backend.makeOutput(mean ? [] : [n], "float32");
  const bad = native().lossForward(backend.wasm.HEAPU8.buffer, KIND[kind], n, cols, byteOffset(backend, pred), byteOffset(backend, labels), labels.dtype === "float32" ? 1 : 0, byteOffset(backend, out), mean ? 1 : 0);
  if (bad >= 0) {
    const value = backend.typedArrayFromHeap(labels)[bad];
    backend.disposeData(out.dataId);
    throw new Error(`softmaxCrossEntropy: label ${value} of row ${bad} is not a class id in [0, ${cols - 1}] (logits of shape [${pred.shape}]).`);
  }
  return out;
}

function lossGradKernel(args: { inputs: tf.NamedTensorInfoMap; attrs?: tf.NamedAttrMap; backend: unknown }): tf.TensorInfo {
  const backend = args.backend as WasmBackend;
  const { pred, labels, dy } = args.inputs as { pred: tf.TensorInfo; labels: tf.TensorInfo; dy: tf.TensorInfo };
  const { kind, mean, wrtLabels } = args.attrs as unknown as LossAttrs & { wrtLabels: boolean };
  const { n, cols } = rowsOf(pred);
  const out = backend.makeOutput(wrtLabels ? labels.shape.slice() : pred.shape.slice(), "float32");
  native().lossBackward(
    backend.wasm.HEAPU8.buffer, KIND[kind], n, cols, byteOffset(backend, pred), byteOffset(backend, labels), labels.dtype === "float32" ? 1 : 0,
    byteOffset(backend, dy), mean ? 1 : 0, byteOffset(backend, out), wrtLabels ? 1 : 0,
  );
  return out;
}

/** Gradients of x·W + b given dz, the gradient at the pre-activation: two products and a column sum. */
function denseGrads(a: tf.Tensor2D, b: tf.Tensor2D, dz: tf.Tensor2D): Record<string, () => tf.Tensor> {
  return {
    a: () => tf.matMul(dz, b, false, true),
    b: () => tf.matMul(a, dz, true, false),
    bias: () => tf.sum(dz, 0),
  };
}

// ----- registration ----------------------------------------------------------------------------

let registered = false;

/**
 * Registers the fused kernels for "wasm" and their gradients (idempotent). Called when jointly picks
 * the wasm backend with its fast paths; harmless elsewhere (nothing runs them unless
 * {@link fusedDense} / {@link fusedLoss} decide to).
 */
export function registerFusedOps(): void {
  if (registered) return;
  registered = true;
  const kernels: [string, tf.KernelFunc][] = [
    [DENSE, denseKernel as unknown as tf.KernelFunc],
    [DENSE_LINEAR, denseKernel as unknown as tf.KernelFunc],
    [ACT_GRAD, actGradKernel as unknown as tf.KernelFunc],
    [LOSS, lossKernel as unknown as tf.KernelFunc],
    [LOSS_GRAD, lossGradKernel as unknown as tf.KernelFunc],
  ];
  for (const [kernelName, kernelFunc] of kernels) {
    if (tf.getKernel(kernelName, BACKEND) === undefined) tf.registerKernel({ kernelName, backendName: BACKEND, kernelFunc });
  }
  tf.registerGradient({
    kernelName: DENSE,
    inputsToSave: ["a", "b"],
    outputsToSave: [true],
    gradFunc: (dy, saved, attrs) => {
      const [a, b, y] = saved as [tf.Tensor2D, tf.Tensor2D, tf.Tensor2D];
      const activation = (attrs as { activation: FusedActivation }).activation;
      // The activation's derivative once, shared by the three gradients.
      const dz = activation === "linear" ? (dy as tf.Tensor2D) : (tf.engine().runKernel(ACT_GRAD, { dy: dy as tf.Tensor, y }, { activation }) as tf.Tensor2D);
      return denseGrads(a, b, dz);
    },
  });
  tf.registerGradient({
    kernelName: DENSE_LINEAR,
    inputsToSave: ["a", "b"],
    gradFunc: (dy, saved) => {
      const [a, b] = saved as [tf.Tensor2D, tf.Tensor2D];
      return denseGrads(a, b, dy as tf.Tensor2D);
    },
  });
  tf.registerGradient({
    kernelName: LOSS,
    inputsToSave: ["pred", "labels"],
    gradFunc: (dy, saved, attrs) => {
      const [pred, labels] = saved as [tf.Tensor, tf.Tensor];
      const a = attrs as unknown as LossAttrs;
      const grad = (wrtLabels: boolean) => (): tf.Tensor =>
        tf.engine().runKernel(LOSS_GRAD, { pred, labels, dy: dy as tf.Tensor }, { kind: a.kind, mean: a.mean, wrtLabels }) as tf.Tensor;
      return {
        pred: grad(false),
        // Class ids have no gradient; MSE and sigmoid CE labels do (another network's output, say).
        labels: a.kind === "softmaxCrossEntropy" ? () => tf.zerosLike(labels) : grad(true),
      };
    },
  });
}

/** True when the fused ops can run now: wasm is the active backend and the addon is loaded. */
export function fusedOpsActive(): boolean {
  return registered && tf.getBackend() === BACKEND && activeNative() !== undefined;
}

/**
 * The gradient through a fusable activation from its output `y`, `dy ⊙ act'(y)`, as the one kernel
 * the fused Dense gradient uses (so the same numbers), or `undefined` when the fused ops are not
 * active or the activation is not one of {@link FusedActivation}.
 */
export function fusedActivationGrad(dy: tf.Tensor, y: tf.Tensor, activation: string): tf.Tensor | undefined {
  if (!fusedOpsActive() || !(activation in ACTIVATION) || dy.dtype !== "float32" || y.dtype !== "float32") return undefined;
  return tf.engine().runKernel(ACT_GRAD, { dy, y }, { activation }) as tf.Tensor;
}

/**
 * `activation(x · kernel + bias)` as one fused op with a 4-op gradient, or `undefined` when the fused
 * ops are not active or the arguments are not the plain case (rank-2 float32 x and kernel, rank-1
 * bias of the kernel's width, an activation listed in {@link FusedActivation}).
 */
export function fusedDense(x: tf.Tensor, kernel: tf.Tensor, bias: tf.Tensor, activation: string): tf.Tensor2D | undefined {
  if (!fusedOpsActive() || !(activation in ACTIVATION)) return undefined;
  if (x.rank !== 2 || kernel.rank !== 2 || bias.rank !== 1 || x.dtype !== "float32" || kernel.dtype !== "float32" || bias.dtype !== "float32") return undefined;
  if (x.shape[1] !== kernel.shape[0] || bias.shape[0] !== kernel.shape[1]) return undefined;
  return tf.engine().runKernel(activation === "linear" ? DENSE_LINEAR : DENSE, { a: x, b: kernel, bias }, { activation }) as tf.Tensor2D;
}

/**
 * A per-task loss as one fused op: the mean over rows (`mean`) or one value per row, or `undefined`
 * when the fused ops are not active or the case is not covered (softmax CE needs rank-2 logits and one
 * class id per row, or with `softmaxCrossEntropyRows` one-hot / probability rows of the logits' shape;
 * MSE and sigmoid CE need labels with as many elements as the predictions).
 * Validation of shapes with clear errors is the caller's (src/losses/per-task.ts).
 */
export function fusedLoss(kind: FusedLossName, labels: tf.Tensor, predictions: tf.Tensor, mean: boolean): tf.Tensor | undefined {
  if (!fusedOpsActive() || predictions.dtype !== "float32" || predictions.rank === 0) return undefined;
  const n = predictions.shape[0]!;
  if (kind === "softmaxCrossEntropy") {
    if (predictions.rank !== 2 || labels.size !== n || (labels.dtype !== "int32" && labels.dtype !== "float32") || predictions.shape[1] === 0) return undefined;
  } else if (kind === "softmaxCrossEntropyRows") {
    if (predictions.rank !== 2 || labels.size !== predictions.size || labels.dtype !== "float32" || predictions.shape[1] === 0) return undefined;
  } else if (labels.size !== predictions.size || labels.dtype !== "float32") {
    return undefined;
  }
  return tf.engine().runKernel(LOSS, { pred: predictions, labels }, { kind, mean } as unknown as tf.NamedAttrMap) as tf.Tensor;
}

/**
 * A Dense layer's computation, `activation(x · kernel + bias)`, for forward functions written by hand
 * (an `AlternatingTrainer`'s `forward`, a custom model): one fused op with a 4-op gradient on wasm
 * with the native addon, `tf.fused.matMul` everywhere else (same numbers). `x` is `[rows, in]`,
 * `kernel` `[in, out]`, `bias` `[out]` or omitted.
 *
 * @example
 * const h = dense(x, w1, b1, "relu");
 * const out = dense(h, w2, b2);
 */
export function dense(x: tf.Tensor, kernel: tf.Tensor, bias?: tf.Tensor, activation: FusedActivation = "linear"): tf.Tensor2D {
  if (!(activation in ACTIVATION)) {
    throw new Error(`dense: activation must be one of ${Object.keys(ACTIVATION).join(", ")}, but got "${String(activation)}".`);
  }
  if (x.rank !== 2 || kernel.rank !== 2 || x.shape[1] !== kernel.shape[0]) {
    throw new Error(`dense: x [rows, in] and kernel [in, out] must agree, but got x of shape [${x.shape}] and kernel of shape [${kernel.shape}].`);
  }
  if (bias !== undefined && (bias.rank !== 1 || bias.shape[0] !== kernel.shape[1])) {
    throw new Error(`dense: bias must have shape [${kernel.shape[1]}], but got [${bias.shape}].`);
  }
  if (bias !== undefined) {
    const out = fusedDense(x, kernel, bias, activation);
    if (out !== undefined) return out;
  }
  return tf.fused.matMul({ a: x as tf.Tensor2D, b: kernel as tf.Tensor2D, bias, activation }) as tf.Tensor2D;
}
