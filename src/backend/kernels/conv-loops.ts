/**
 * The convolution kernels' JavaScript loops, for the wasm backend without the native addon: they
 * read and write typed-array views of the wasm heap (no copies). NHWC; geometry from tfjs's
 * `computeConv2DInfo`. Output pixel (oy, ox) and filter tap (fy, fx) read input pixel
 * (oy·strideHeight − padTop + fy·dilationHeight, ox·strideWidth − padLeft + fx·dilationWidth).
 *
 * Each loop walks the output pixels and, for each tap inside the input, one row of channels, so
 * the innermost loop runs over contiguous memory. Filter gradients are sums over every output
 * pixel of the batch and accumulate in float64 (rounded once to float32); input gradients have at
 * most filterHeight·filterWidth·multiplier terms per element and accumulate in float32.
 */
import type * as tf from "@tensorflow/tfjs";

type Info = tf.backend_util.Conv2DInfo;

/** dw[fy, fx, ci, co] = Σ over (b, oy, ox) of x[b, iy, ix, ci] · dy[b, oy, ox, co]. */
export function conv2DBackpropFilterLoop(g: Info, x: Float32Array, dy: Float32Array, dw: Float32Array): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: N } = g;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = g;
  const PT = g.padInfo.top;
  const PL = g.padInfo.left;
  const acc = new Float64Array(FH * FW * C * N);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const dyo = ((b * OH + oy) * OW + ox) * N;
        for (let fy = 0; fy < FH; fy++) {
          const iy = oy * SH - PT + fy * DH;
          if (iy < 0 || iy >= H) continue;
          for (let fx = 0; fx < FW; fx++) {
            const ix = ox * SW - PL + fx * DW;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            let ao = (fy * FW + fx) * C * N;
            for (let ci = 0; ci < C; ci++, ao += N) {
              const v = x[xo + ci];
              // After a relu most inputs are 0: skipping them saves a whole row of products.
              if (v === 0) continue;
              for (let co = 0; co < N; co++) acc[ao + co] += v * dy[dyo + co];
            }
          }
        }
      }
    }
  }
  dw.set(acc);
}

/** dx[b, iy, ix, c] = Σ over the taps that read it of Σ_q dy[b, oy, ox, c·mult + q] · w[fy, fx, c, q]. */
export function depthwiseBackpropInputLoop(g: Info, dy: Float32Array, w: Float32Array, dx: Float32Array): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: CM } = g;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = g;
  const PT = g.padInfo.top;
  const PL = g.padInfo.left;
  const mult = CM / C;
  dx.fill(0);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const dyo = ((b * OH + oy) * OW + ox) * CM;
        for (let fy = 0; fy < FH; fy++) {
          const iy = oy * SH - PT + fy * DH;
          if (iy < 0 || iy >= H) continue;
          for (let fx = 0; fx < FW; fx++) {
            const ix = ox * SW - PL + fx * DW;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            const wo = (fy * FW + fx) * CM;
            if (mult === 1) {
              for (let c = 0; c < C; c++) dx[xo + c] += dy[dyo + c] * w[wo + c];
            } else {
              for (let c = 0; c < C; c++) {
                let s = 0;
                for (let q = 0, k = c * mult; q < mult; q++, k++) s += dy[dyo + k] * w[wo + k];
                dx[xo + c] += s;
              }
            }
          }
        }
      }
    }
  }
}

/** dw[fy, fx, c, q] = Σ over (b, oy, ox) of x[b, iy, ix, c] · dy[b, oy, ox, c·mult + q]. */
export function depthwiseBackpropFilterLoop(g: Info, x: Float32Array, dy: Float32Array, dw: Float32Array): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: CM } = g;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = g;
  const PT = g.padInfo.top;
  const PL = g.padInfo.left;
  const mult = CM / C;
  const acc = new Float64Array(FH * FW * CM);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const dyo = ((b * OH + oy) * OW + ox) * CM;
        for (let fy = 0; fy < FH; fy++) {
          const iy = oy * SH - PT + fy * DH;
          if (iy < 0 || iy >= H) continue;
          for (let fx = 0; fx < FW; fx++) {
            const ix = ox * SW - PL + fx * DW;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            const ao = (fy * FW + fx) * CM;
            if (mult === 1) {
              for (let c = 0; c < C; c++) acc[ao + c] += x[xo + c] * dy[dyo + c];
            } else {
              for (let c = 0; c < C; c++) {
                const v = x[xo + c];
                for (let q = 0, k = c * mult; q < mult; q++, k++) acc[ao + k] += v * dy[dyo + k];
              }
            }
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
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: N } = g;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = g;
  const PT = g.padInfo.top;
  const PL = g.padInfo.left;
  const acc = new Float64Array(dx.length);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const dyo = ((b * OH + oy) * OW + ox) * N;
        for (let fy = 0; fy < FH; fy++) {
          const iy = oy * SH - PT + fy * DH;
          if (iy < 0 || iy >= H) continue;
          for (let fx = 0; fx < FW; fx++) {
            const ix = ox * SW - PL + fx * DW;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            let wo = (fy * FW + fx) * C * N;
            for (let ci = 0; ci < C; ci++, wo += N) {
              let s = 0;
              for (let co = 0; co < N; co++) s += dy[dyo + co] * w[wo + co];
              acc[xo + ci] += s;
            }
          }
        }
      }
    }
  }
  dx.set(acc);
}

/** y[b, oy, ox, co] = Σ over taps inside the input of Σ_ci x[b, iy, ix, ci] · w[fy, fx, ci, co], in float64 per output pixel. */
export function conv2DForwardLoop(g: Info, x: Float32Array, w: Float32Array, y: Float32Array): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: N } = g;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = g;
  const PT = g.padInfo.top;
  const PL = g.padInfo.left;
  const acc = new Float64Array(N);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        acc.fill(0);
        for (let fy = 0; fy < FH; fy++) {
          const iy = oy * SH - PT + fy * DH;
          if (iy < 0 || iy >= H) continue;
          for (let fx = 0; fx < FW; fx++) {
            const ix = ox * SW - PL + fx * DW;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            let wo = (fy * FW + fx) * C * N;
            for (let ci = 0; ci < C; ci++, wo += N) {
              const v = x[xo + ci];
              for (let co = 0; co < N; co++) acc[co] += v * w[wo + co];
            }
          }
        }
        y.set(acc, ((b * OH + oy) * OW + ox) * N);
      }
    }
  }
}

/** y[b, oy, ox, c·mult + q] = Σ over taps inside the input of x[b, iy, ix, c] · w[fy, fx, c, q] (float32 sums of at most fh·fw terms). */
export function depthwiseForwardLoop(g: Info, x: Float32Array, w: Float32Array, y: Float32Array): void {
  const { batchSize: B, inHeight: H, inWidth: W, inChannels: C, outHeight: OH, outWidth: OW, outChannels: CM } = g;
  const { filterHeight: FH, filterWidth: FW, strideHeight: SH, strideWidth: SW, dilationHeight: DH, dilationWidth: DW } = g;
  const PT = g.padInfo.top;
  const PL = g.padInfo.left;
  const mult = CM / C;
  y.fill(0);
  for (let b = 0; b < B; b++) {
    for (let oy = 0; oy < OH; oy++) {
      for (let ox = 0; ox < OW; ox++) {
        const yo = ((b * OH + oy) * OW + ox) * CM;
        for (let fy = 0; fy < FH; fy++) {
          const iy = oy * SH - PT + fy * DH;
          if (iy < 0 || iy >= H) continue;
          for (let fx = 0; fx < FW; fx++) {
            const ix = ox * SW - PL + fx * DW;
            if (ix < 0 || ix >= W) continue;
            const xo = ((b * H + iy) * W + ix) * C;
            const wo = (fy * FW + fx) * CM;
            for (let c = 0; c < C; c++) {
              const v = x[xo + c];
              for (let q = 0, k = c * mult; q < mult; q++, k++) y[yo + k] += v * w[wo + k];
            }
          }
        }
      }
    }
  }
}
