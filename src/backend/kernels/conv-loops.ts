/**
 * The convolution kernels' JavaScript loops, for the wasm backend without the native addon: they
 * read and write typed-array views of the wasm heap (no copies). NHWC; geometry from tfjs's
 * `computeConv2DInfo`. Output pixel (oy, ox) and filter tap (fy, fx) read input pixel
 * (oy·strideHeight − padTop + fy·dilationHeight, ox·strideWidth − padLeft + fx·dilationWidth).
 *
 * Which input pixel each tap of each output pixel reads, and which taps fall inside the input, is
 * worked out once per call by {@link windows} (the same for every image of the batch); each loop
 * walks the output pixels and, for each of their taps, one row of channels, so the innermost loop
 * runs over contiguous memory. (A shared per-tap callback instead of the loops measured 8-40%
 * slower in V8, so the loops stay written out.) Filter gradients are sums over every output
 * pixel of the batch and accumulate in float64 (rounded once to float32); input gradients have at
 * most filterHeight·filterWidth·multiplier terms per element and accumulate in float32.
 */
import type * as tf from "@tensorflow/tfjs";

type Info = tf.backend_util.Conv2DInfo;

/** The sizes the loops need and, for one image, the taps of every output pixel's window that fall inside the input. */
interface Windows {
  batch: number;
  /** outHeight·outWidth: output pixel p of image b is pixel b·outPixels + p of the batch. */
  outPixels: number;
  /** inHeight·inWidth·inChannels, the elements of one input image. */
  inImage: number;
  inChannels: number;
  outChannels: number;
  /** filterHeight·filterWidth. */
  taps: number;
  /** Output pixel p's taps are entries first[p] to first[p + 1] − 1 of the two arrays below. */
  first: Int32Array;
  /** Where in its image the tap's input pixel starts: (iy·inWidth + ix)·inChannels. */
  inOffset: Int32Array;
  /** The tap's index fy·filterWidth + fx, in the (fy, fx) order the sums take. */
  tap: Int32Array;
}

/**
 * The window of every output pixel of one image under the geometry `g`: the taps that read an
 * input pixel (those in the padding are left out) and where that pixel is. Two int32 entries a
 * tap, at most outHeight·outWidth·filterHeight·filterWidth of each.
 */
function windows(g: Info): Windows {
  const { inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW } = g;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = g;
  const PT = g.padInfo.top;
  const PL = g.padInfo.left;
  const first = new Int32Array(OH * OW + 1);
  const inOffset = new Int32Array(OH * OW * FH * FW);
  const tap = new Int32Array(OH * OW * FH * FW);
  let k = 0;
  for (let oy = 0; oy < OH; oy++) {
    for (let ox = 0; ox < OW; ox++) {
      first[oy * OW + ox] = k;
      for (let fy = 0; fy < FH; fy++) {
        const iy = oy * SH - PT + fy * DH;
        if (iy < 0 || iy >= H) continue;
        for (let fx = 0; fx < FW; fx++) {
          const ix = ox * SW - PL + fx * DW;
          if (ix < 0 || ix >= W) continue;
          inOffset[k] = (iy * W + ix) * C;
          tap[k++] = fy * FW + fx;
        }
      }
    }
  }
  first[OH * OW] = k;
  return { batch: g.batchSize, outPixels: OH * OW, inImage: H * W * C, inChannels: C, outChannels: g.outChannels, taps: FH * FW, first, inOffset, tap };
}

/** dw[fy, fx, ci, co] = Σ over (b, oy, ox) of x[b, iy, ix, ci] · dy[b, oy, ox, co]. */
export function conv2DBackpropFilterLoop(g: Info, x: Float32Array, dy: Float32Array, dw: Float32Array): void {
  const { batch: B, outPixels: P, inImage, inChannels: C, outChannels: N, taps, first, inOffset, tap } = windows(g);
  const acc = new Float64Array(taps * C * N);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) {
      const dyo = (b * P + p) * N;
      for (let k = first[p], end = first[p + 1]; k < end; k++) {
        const xo = b * inImage + inOffset[k];
        let ao = tap[k] * C * N;
        for (let ci = 0; ci < C; ci++, ao += N) {
          const v = x[xo + ci];
          // After a relu most inputs are 0: skipping them saves a whole row of products.
          if (v === 0) continue;
          for (let co = 0; co < N; co++) acc[ao + co] += v * dy[dyo + co];
        }
      }
    }
  }
  dw.set(acc);
}

/** dx[b, iy, ix, c] = Σ over the taps that read it of Σ_q dy[b, oy, ox, c·mult + q] · w[fy, fx, c, q]. */
export function depthwiseBackpropInputLoop(g: Info, dy: Float32Array, w: Float32Array, dx: Float32Array): void {
  const { batch: B, outPixels: P, inImage, inChannels: C, outChannels: CM, first, inOffset, tap } = windows(g);
  const mult = CM / C;
  dx.fill(0);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) {
      const dyo = (b * P + p) * CM;
      for (let k = first[p], end = first[p + 1]; k < end; k++) {
        const xo = b * inImage + inOffset[k];
        const wo = tap[k] * CM;
        if (mult === 1) {
          for (let c = 0; c < C; c++) dx[xo + c] += dy[dyo + c] * w[wo + c];
        } else {
          for (let c = 0; c < C; c++) {
            let s = 0;
            for (let q = 0, j = c * mult; q < mult; q++, j++) s += dy[dyo + j] * w[wo + j];
            dx[xo + c] += s;
          }
        }
      }
    }
  }
}

/** dw[fy, fx, c, q] = Σ over (b, oy, ox) of x[b, iy, ix, c] · dy[b, oy, ox, c·mult + q]. */
export function depthwiseBackpropFilterLoop(g: Info, x: Float32Array, dy: Float32Array, dw: Float32Array): void {
  const { batch: B, outPixels: P, inImage, inChannels: C, outChannels: CM, taps, first, inOffset, tap } = windows(g);
  const mult = CM / C;
  const acc = new Float64Array(taps * CM);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) {
      const dyo = (b * P + p) * CM;
      for (let k = first[p], end = first[p + 1]; k < end; k++) {
        const xo = b * inImage + inOffset[k];
        const ao = tap[k] * CM;
        if (mult === 1) {
          for (let c = 0; c < C; c++) acc[ao + c] += x[xo + c] * dy[dyo + c];
        } else {
          for (let c = 0; c < C; c++) {
            const v = x[xo + c];
            for (let q = 0, j = c * mult; q < mult; q++, j++) acc[ao + j] += v * dy[dyo + j];
          }
        }
      }
    }
  }
  dw.set(acc);
}

/**
 * dx[b, iy, ix, ci] = Σ over the taps that read it of Σ_co dy[b, oy, ox, co] · w[fy, fx, ci, co]
 * (the conv kernels' last resort without the addon: XNNPACK cannot take the geometry), summed in
 * float64 over a scratch copy of dx.
 */
export function conv2DBackpropInputLoop(g: Info, dy: Float32Array, w: Float32Array, dx: Float32Array): void {
  const { batch: B, outPixels: P, inImage, inChannels: C, outChannels: N, first, inOffset, tap } = windows(g);
  const acc = new Float64Array(dx.length);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) {
      const dyo = (b * P + p) * N;
      for (let k = first[p], end = first[p + 1]; k < end; k++) {
        const xo = b * inImage + inOffset[k];
        let wo = tap[k] * C * N;
        for (let ci = 0; ci < C; ci++, wo += N) {
          let s = 0;
          for (let co = 0; co < N; co++) s += dy[dyo + co] * w[wo + co];
          acc[xo + ci] += s;
        }
      }
    }
  }
  dx.set(acc);
}

/** y[b, oy, ox, co] = Σ over taps inside the input of Σ_ci x[b, iy, ix, ci] · w[fy, fx, ci, co], in float64 per output pixel. */
export function conv2DForwardLoop(g: Info, x: Float32Array, w: Float32Array, y: Float32Array): void {
  const { batch: B, outPixels: P, inImage, inChannels: C, outChannels: N, first, inOffset, tap } = windows(g);
  const acc = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) {
      acc.fill(0);
      for (let k = first[p], end = first[p + 1]; k < end; k++) {
        const xo = b * inImage + inOffset[k];
        let wo = tap[k] * C * N;
        for (let ci = 0; ci < C; ci++, wo += N) {
          const v = x[xo + ci];
          for (let co = 0; co < N; co++) acc[co] += v * w[wo + co];
        }
      }
      y.set(acc, (b * P + p) * N);
    }
  }
}

/** y[b, oy, ox, c·mult + q] = Σ over taps inside the input of x[b, iy, ix, c] · w[fy, fx, c, q] (float32 sums of at most fh·fw terms). */
export function depthwiseForwardLoop(g: Info, x: Float32Array, w: Float32Array, y: Float32Array): void {
  const { batch: B, outPixels: P, inImage, inChannels: C, outChannels: CM, first, inOffset, tap } = windows(g);
  const mult = CM / C;
  y.fill(0);
  for (let b = 0; b < B; b++) {
    for (let p = 0; p < P; p++) {
      const yo = (b * P + p) * CM;
      for (let k = first[p], end = first[p + 1]; k < end; k++) {
        const xo = b * inImage + inOffset[k];
        const wo = tap[k] * CM;
        for (let c = 0; c < C; c++) {
          const v = x[xo + c];
          for (let q = 0, j = c * mult; q < mult; q++, j++) y[yo + j] += v * w[wo + j];
        }
      }
    }
  }
}
