/**
 * A float64 reference for convolutions, written out from the definition (shared by the tests of the
 * conv gradients and of the JavaScript conv loops): y, dx and dW of loss = Σ y·r for a conv2d or a
 * depthwise conv, NHWC, with tfjs's padding (computeConv2DInfo).
 */
import * as tf from "@tensorflow/tfjs";

export interface Geometry {
  n: number;
  h: number;
  w: number;
  cin: number;
  k: number;
  /** Output channels (conv2d) or the channel multiplier (depthwise). */
  cout: number;
  stride: number;
  dilation: number;
  pad: "same" | "valid";
}

/** y, dx and dW of loss = Σ y·r for a conv2d or depthwise conv, in float64, from the definition. */
export function reference(g: Geometry, depthwise: boolean, x: Float32Array, W: Float32Array, r: Float32Array) {
  const filterShape: [number, number, number, number] = [g.k, g.k, g.cin, g.cout];
  const info = depthwise
    ? tf.backend_util.computeConv2DInfo([g.n, g.h, g.w, g.cin], filterShape, g.stride, g.dilation, g.pad, undefined, true)
    : tf.backend_util.computeConv2DInfo([g.n, g.h, g.w, g.cin], filterShape, g.stride, g.dilation, g.pad);
  const { outHeight: oh, outWidth: ow, outChannels: oc } = info;
  const y = new Float64Array(g.n * oh * ow * oc);
  const dx = new Float64Array(x.length);
  const dW = new Float64Array(W.length);
  const xi = (n: number, i: number, j: number, c: number) => ((n * g.h + i) * g.w + j) * g.cin + c;
  for (let n = 0; n < g.n; n++)
    for (let a = 0; a < oh; a++)
      for (let b = 0; b < ow; b++)
        for (let o = 0; o < oc; o++) {
          const yo = ((n * oh + a) * ow + b) * oc + o;
          // Depthwise output channel o reads input channel o / multiplier with filter column o % multiplier.
          const cs = depthwise ? [Math.floor(o / g.cout)] : [...Array(g.cin).keys()];
          for (let p = 0; p < g.k; p++)
            for (let q = 0; q < g.k; q++) {
              const i = a * g.stride - info.padInfo.top + p * g.dilation;
              const j = b * g.stride - info.padInfo.left + q * g.dilation;
              if (i < 0 || i >= g.h || j < 0 || j >= g.w) continue;
              for (const c of cs) {
                const wi = depthwise ? ((p * g.k + q) * g.cin + c) * g.cout + (o % g.cout) : ((p * g.k + q) * g.cin + c) * g.cout + o;
                y[yo]! += x[xi(n, i, j, c)]! * W[wi]!;
                dx[xi(n, i, j, c)]! += r[yo]! * W[wi]!;
                dW[wi]! += r[yo]! * x[xi(n, i, j, c)]!;
              }
            }
        }
  return { y, dx, dW, outShape: [g.n, oh, ow, oc], info };
}

export function maxRelErr(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let scale = 1e-6;
  for (let i = 0; i < want.length; i++) scale = Math.max(scale, Math.abs(want[i]!));
  let worst = 0;
  for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
  return worst / scale;
}

