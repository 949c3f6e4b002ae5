/**
 * Gradients of dilated (atrous) convolutions, on every backend.
 *
 * Why: tfjs-core 4.22's gradients of `Conv2D`, `DepthwiseConv2dNative` and of `tf.fused.conv2d` stop
 * with "dilation rates greater than 1 are not yet supported in gradients", so a `tf.layers.conv1d`
 * or `conv2d` with `dilationRate > 1` cannot be trained on any TensorFlow.js backend, cpu included.
 *
 * How: a convolution with dilation d (stride 1, as tfjs requires with d > 1) is the same as a plain
 * convolution with the *dilated filter* W_d, of size (k - 1)·d + 1, that holds W at every d-th tap and
 * zeros between (its padding, "same" or "valid", is computed from that effective size in both cases).
 * So dx = Conv2DBackpropInput(dy, W_d) and dW = every d-th tap of Conv2DBackpropFilter(x, dy) taken
 * for W_d's shape. Both are stock kernels every backend has (jointly adds the wasm ones), so this runs
 * wherever the forward pass does. The backward pass does (k_d / k)² times the work of an undilated
 * one (3x3 at d = 2: 25/9); the forward pass is untouched.
 *
 * For dilation 1 the stock gradients run unchanged, so what a backend already supports is kept.
 *
 * `tf.fused.conv2d` (what `tf.layers.conv2d` calls) has its gradient inside the op, out of the
 * registry's reach. While gradients are recorded, it is run here as the `FusedConv2D` kernel on the
 * tape, with a registered gradient of the same form (lazy per input, so the images' gradient at a
 * network's first convolution is never computed); a call that kernel route does not cover, and a
 * dilated `tf.fused.depthwiseConv2d`, runs as the unfused ops (convolution, bias add, activation).
 */
import * as tf from "@tensorflow/tfjs";
import { createRequire } from "node:module";

type Pair = [number, number];

function pair(v: unknown, what: string): Pair {
  if (v == null) return [1, 1];
  if (typeof v === "number") return [v, v];
  if (Array.isArray(v) && v.length === 2 && v.every((n) => typeof n === "number")) return [v[0] as number, v[1] as number];
  throw new Error(`dilated conv gradient: ${what} must be a number or a pair, but got ${JSON.stringify(v)}`);
}

const isOne = (p: Pair): boolean => p[0] === 1 && p[1] === 1;

/** W [fh, fw, a, b] -> W_d [(fh-1)dh+1, (fw-1)dw+1, a, b], W at every d-th tap, zeros between. */
export function dilateFilter(filter: tf.Tensor4D, [dh, dw]: Pair): tf.Tensor4D {
  return tf.tidy((): tf.Tensor4D => {
    const [fh, fw, a, b] = filter.shape;
    const spread = tf.pad(filter.reshape([fh, 1, fw, 1, a * b]), [[0, 0], [0, dh - 1], [0, 0], [0, dw - 1], [0, 0]]);
    const spaced = tf.reshape(spread, [fh * dh, fw * dw, a, b]) as tf.Tensor4D;
    return tf.slice(spaced, [0, 0, 0, 0], [(fh - 1) * dh + 1, (fw - 1) * dw + 1, a, b]);
  });
}

/** The inverse of {@link dilateFilter} for a gradient: every d-th tap of dW_d. */
export function undilateFilter(grad: tf.Tensor4D, [dh, dw]: Pair): tf.Tensor4D {
  const [kh, kw, a, b] = grad.shape;
  return tf.stridedSlice(grad, [0, 0, 0, 0], [kh, kw, a, b], [dh, dw, 1, 1]) as tf.Tensor4D;
}

interface ConvAttrs {
  strides: number | Pair;
  pad: "same" | "valid" | number | tf.backend_util.ExplicitPadding;
  dataFormat?: "NHWC" | "NCHW";
  dilations?: number | Pair;
  dimRoundingMode?: "floor" | "round" | "ceil";
}

/** The two backprop kernels of a convolution and the attributes they share. */
interface Backprops {
  input: string;
  filter: string;
  attrs: Record<string, unknown>;
}

const conv2DBackprops = (a: ConvAttrs): Backprops => ({
  input: "Conv2DBackpropInput",
  filter: "Conv2DBackpropFilter",
  attrs: { strides: a.strides, pad: a.pad, dataFormat: a.dataFormat ?? "NHWC", dimRoundingMode: a.dimRoundingMode },
});

const depthwiseBackprops = (a: ConvAttrs): Backprops => ({
  input: "DepthwiseConv2dNativeBackpropInput",
  filter: "DepthwiseConv2dNativeBackpropFilter",
  // The dilation is in the dilated filter, so the backprops see none.
  attrs: { strides: a.strides, pad: a.pad, dilations: [1, 1], dimRoundingMode: a.dimRoundingMode },
});

/** dx and dW of a convolution with dilation d, as closures for a gradient map (the engine calls only those it needs). */
function convGrads(b: Backprops, x: tf.Tensor4D, filter: tf.Tensor4D, dy: tf.Tensor4D, d: Pair): { x: () => tf.Tensor; filter: () => tf.Tensor } {
  const attrs = (extra: Record<string, unknown>) => ({ ...b.attrs, ...extra }) as unknown as tf.NamedAttrMap;
  return {
    x: () =>
      tf.tidy((): tf.Tensor => {
        const w = isOne(d) ? filter : dilateFilter(filter, d);
        return tf.engine().runKernel(b.input, { dy, filter: w }, attrs({ inputShape: x.shape })) as tf.Tensor;
      }),
    filter: () =>
      tf.tidy((): tf.Tensor => {
        const g = tf.engine().runKernel(b.filter, { x, dy }, attrs({ filterShape: dilatedShape(filter.shape, d) })) as tf.Tensor4D;
        return isOne(d) ? g : undilateFilter(g, d);
      }),
  };
}

/** A convolution's gradient that handles dilation > 1 itself and leaves dilation 1 to `stock`. */
function dilationAware(stock: tf.GradConfig, backprops: (a: ConvAttrs) => Backprops): tf.GradConfig {
  return {
    kernelName: stock.kernelName,
    inputsToSave: ["x", "filter"],
    gradFunc: (dyIn, saved, attrs) => {
      const a = attrs as unknown as ConvAttrs;
      const d = pair(a.dilations, "dilations");
      if (isOne(d)) return stock.gradFunc(dyIn, saved, attrs);
      const [x, filter] = saved as [tf.Tensor4D, tf.Tensor4D];
      return convGrads(backprops(a), x, filter, dyIn as tf.Tensor4D, d);
    },
  };
}

/**
 * The gradient of the `FusedConv2D` kernel (tfjs-core registers none: its fused op carries an
 * eager custom gradient instead). Registered so that jointly's route for `tf.fused.conv2d` below
 * can run the fused kernel on the tape: each input's gradient is then a closure the engine calls
 * only for inputs that lead to a trained variable, so the input gradient of a network's first
 * convolution (the images') is never computed; the custom gradient computed it every step.
 * Activations: linear and relu, the only ones tfjs fuses while recording gradients.
 */
const fusedConv2DGrad: tf.GradConfig = {
  kernelName: "FusedConv2D",
  inputsToSave: ["x", "filter"],
  outputsToSave: [true],
  gradFunc: (dyIn, saved, attrs) => {
    const a = attrs as unknown as ConvAttrs & { activation?: string };
    const d = pair(a.dilations, "dilations");
    const [x, filter, y] = saved as [tf.Tensor4D, tf.Tensor4D, tf.Tensor4D];
    const activation = a.activation ?? "linear";
    if (activation !== "linear" && activation !== "relu") throw new Error(`FusedConv2D gradient: activation "${activation}" is not supported (only linear and relu are fused while recording).`);
    const dy = activation === "relu" ? (tf.mul(dyIn as tf.Tensor, tf.step(y)) as tf.Tensor4D) : (dyIn as tf.Tensor4D);
    return {
      ...convGrads(conv2DBackprops(a), x, filter, dy, d),
      // A 1-D bias over the channels (what the route below lets through): the sum over batch and space.
      bias: () => tf.sum(dy, [0, 1, 2]),
    };
  },
};

function dilatedShape([fh, fw, a, b]: number[], [dh, dw]: Pair): [number, number, number, number] {
  return [(fh! - 1) * dh + 1, (fw! - 1) * dw + 1, a!, b!];
}

type FusedConvArgs = Parameters<typeof tf.fused.conv2d>[0];
type FusedDepthwiseArgs = Parameters<typeof tf.fused.depthwiseConv2d>[0];

function activate(y: tf.Tensor, args: FusedConvArgs | FusedDepthwiseArgs): tf.Tensor {
  switch (args.activation ?? "linear") {
    case "linear":
      return y;
    case "relu":
      return tf.relu(y);
    case "relu6":
      return tf.relu6(y);
    case "elu":
      return tf.elu(y);
    case "sigmoid":
      return tf.sigmoid(y);
    case "leakyrelu":
      return tf.leakyRelu(y, args.leakyreluAlpha ?? 0.2);
    case "prelu":
      return tf.prelu(y, args.preluActivationWeights as tf.Tensor);
    default:
      throw new Error(`fused conv: unknown activation "${String(args.activation)}"`);
  }
}

let installed = false;

/**
 * Registers the dilation-aware gradients of `Conv2D` and `DepthwiseConv2dNative` and a gradient for
 * `FusedConv2D`; while gradients are recorded, runs `tf.fused.conv2d` as the FusedConv2D kernel on
 * the tape (so each input's gradient is computed only when needed) and other dilated fused calls as
 * the unfused ops. Idempotent; backend-independent (gradients belong to tfjs-core, not a backend).
 */
export function registerConvGradients(): void {
  if (installed) return;
  installed = true;
  const conv = tf.getGradient("Conv2D");
  const depthwise = tf.getGradient("DepthwiseConv2dNative");
  if (conv === undefined || depthwise === undefined) throw new Error("dilated conv gradients: tfjs-core has no Conv2D / DepthwiseConv2dNative gradient to extend");
  tf.registerGradient(dilationAware(conv, conv2DBackprops));
  tf.registerGradient(dilationAware(depthwise, depthwiseBackprops));
  if (tf.getGradient("FusedConv2D") === undefined) tf.registerGradient(fusedConv2DGrad);

  // The namespace object tfjs-layers reads `fused.conv2d` from at call time (a plain object in the
  // CommonJS build of tfjs-core that Node loads for "@tensorflow/tfjs").
  const core = createRequire(import.meta.url)("@tensorflow/tfjs-core") as { fused: Record<string, unknown>; engine(): { state: { gradientDepth: number } } };
  const fused = core.fused as { conv2d: (a: FusedConvArgs) => tf.Tensor; depthwiseConv2d: (a: FusedDepthwiseArgs) => tf.Tensor };
  const stockConv = fused.conv2d;
  const stockDepthwise = fused.depthwiseConv2d;
  const recording = (): boolean => core.engine().state.gradientDepth > 0;
  // The calls the FusedConv2D kernel and its registered gradient cover: tensors (not arrays), a 4-D
  // NHWC input and filter with matching channels, strides or dilations 1, no bias or a 1-D float32
  // one over the output channels, linear or relu. Anything else goes to the stock op, which also
  // gives the errors for bad arguments.
  const onTape = (args: FusedConvArgs): boolean => {
    const { x, filter, bias } = args;
    if (!(x instanceof tf.Tensor) || !(filter instanceof tf.Tensor) || x.rank !== 4 || filter.rank !== 4) return false;
    if (x.shape[3] !== filter.shape[2]) return false;
    if (!isOne(pair(args.strides, "strides")) && !isOne(pair(args.dilations, "dilations"))) return false;
    if (x.dtype !== "float32" || filter.dtype !== "float32") return false;
    if ((args.dataFormat ?? "NHWC") !== "NHWC" || args.preluActivationWeights != null) return false;
    if (args.activation != null && args.activation !== "linear" && args.activation !== "relu") return false;
    if (bias == null) return true;
    return bias instanceof tf.Tensor && bias.rank === 1 && bias.dtype === "float32" && bias.shape[0] === filter.shape[3];
  };
  fused.conv2d = (args) => {
    if (!recording()) return stockConv(args);
    if (onTape(args)) {
      const attrs = {
        strides: args.strides, pad: args.pad, dataFormat: "NHWC", dilations: args.dilations ?? [1, 1],
        dimRoundingMode: args.dimRoundingMode, activation: args.activation ?? "linear", leakyreluAlpha: 0,
      } as unknown as tf.NamedAttrMap;
      const inputs: tf.NamedTensorMap = { x: args.x as tf.Tensor, filter: args.filter as tf.Tensor };
      if (args.bias != null) inputs.bias = args.bias as tf.Tensor;
      return tf.engine().runKernel("FusedConv2D", inputs, attrs) as tf.Tensor;
    }
    if (isOne(pair(args.dilations, "dilations"))) return stockConv(args);
    return tf.tidy(() => {
      let y = tf.conv2d(args.x as tf.Tensor4D, args.filter as tf.Tensor4D, args.strides, args.pad, args.dataFormat, args.dilations, args.dimRoundingMode);
      if (args.bias != null) y = tf.add(y, args.bias);
      return activate(y, args);
    });
  };
  fused.depthwiseConv2d = (args) => {
    if (isOne(pair(args.dilations, "dilations")) || !recording()) return stockDepthwise(args);
    return tf.tidy(() => {
      let y = tf.depthwiseConv2d(args.x as tf.Tensor4D, args.filter as tf.Tensor4D, args.strides, args.pad, args.dataFormat, args.dilations, args.dimRoundingMode);
      if (args.bias != null) y = tf.add(y, args.bias);
      return activate(y, args);
    });
  };
}
