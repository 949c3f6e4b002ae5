/**
 * Gradients of `Sum` and `Mean` that broadcast the upstream gradient instead of multiplying it by a
 * tensor of ones.
 *
 * Why: tfjs-core 4.22 writes both as `dy · ones(x.shape)` (and Mean's then divided by n), and `ones`
 * fills a JavaScript array the size of x on every call, then copies it to the backend. Batch norm in
 * training takes `tf.moments` of every activation, so in the CelebA-like conv net of bench W8 those
 * arrays cost about 140 ms of a 516 ms step. Broadcasting (`tf.broadcastTo`, the Tile kernel) gives
 * the same values: dy·1 is dy exactly, and Mean's division is done before the broadcast on the
 * same float32 values. Sum's gradient is also made lazy, as the engine expects (tfjs computes it even
 * when x needs no gradient).
 */
import * as tf from "@tensorflow/tfjs";

/** The reduced axes of a Sum / Mean call on x. */
const reducedAxes = (x: tf.Tensor, attrs: unknown): number[] => tf.util.parseAxisParam((attrs as { axis?: number | number[] }).axis as number | number[], x.shape);

/** dy reshaped to x's rank with the reduced axes kept as 1 (what tfjs's own gradients do first). */
function expanded(dy: tf.Tensor, x: tf.Tensor, axes: number[]): tf.Tensor {
  const shape = x.shape.slice();
  for (const a of axes) shape[a] = 1;
  return tf.reshape(dy, shape);
}

const asFloat = (t: tf.Tensor): tf.Tensor => (t.dtype === "float32" ? t : tf.cast(t, "float32"));

const sumGrad: tf.GradConfig = {
  kernelName: "Sum",
  inputsToSave: ["x"],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [tf.Tensor];
    return { x: () => tf.tidy(() => tf.broadcastTo(asFloat(expanded(dy as tf.Tensor, x, reducedAxes(x, attrs))), x.shape)) };
  },
};

const meanGrad: tf.GradConfig = {
  kernelName: "Mean",
  inputsToSave: ["x"],
  gradFunc: (dy, saved, attrs) => {
    const [x] = saved as [tf.Tensor];
    const axes = reducedAxes(x, attrs);
    const n = axes.reduce((p, a) => p * x.shape[a]!, 1);
    return { x: () => tf.tidy(() => tf.broadcastTo(tf.div(asFloat(expanded(dy as tf.Tensor, x, axes)), n), x.shape)) };
  },
};

let installed = false;

/** Registers the Sum and Mean gradients above (idempotent; for every backend). */
export function registerReductionGradients(): void {
  if (installed) return;
  installed = true;
  tf.registerGradient(sumGrad);
  tf.registerGradient(meanGrad);
}
