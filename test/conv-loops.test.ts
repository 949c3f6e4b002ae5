/**
 * The JavaScript convolution loops (src/backend/kernels/conv-loops.ts), which the wasm kernels run
 * without the addon where XNNPACK cannot take a geometry (a negative pad, say): each of the six
 * against the float64 reference on random geometries. Called directly, because through the kernels
 * XNNPACK takes almost every geometry and these loops would go untested.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import {
  conv2DBackpropFilterLoop, conv2DBackpropInputLoop, conv2DForwardLoop,
  depthwiseBackpropFilterLoop, depthwiseBackpropInputLoop, depthwiseForwardLoop,
} from "../src/backend/kernels/conv-loops.js";
import { Rng } from "../src/data/random.js";
import { maxRelErr, reference, type Geometry } from "./conv-reference.js";

const rng = new Rng(5);
const pick = <T>(xs: readonly T[]): T => xs[rng.int(xs.length)]!;

/** A random geometry whose output is not empty (a "valid" filter no larger than the input). */
function randomGeometry(): Geometry {
  for (;;) {
    const dilation = pick([1, 1, 2]);
    const g: Geometry = {
      n: 1 + rng.int(3), h: 5 + rng.int(8), w: 5 + rng.int(8), cin: 1 + rng.int(4), k: pick([1, 3, 5]),
      cout: 1 + rng.int(3), stride: dilation > 1 ? 1 : pick([1, 2]), dilation, pad: pick(["same", "valid"] as const),
    };
    const span = (g.k - 1) * g.dilation + 1;
    if (g.pad === "same" || (span <= g.h && span <= g.w)) return g;
  }
}

const values = (n: number) => Float32Array.from({ length: n }, () => rng.normal());

for (const depthwise of [false, true]) {
  test(`${depthwise ? "depthwise" : "conv2d"} loops (forward, input and filter gradients) match the float64 reference on 40 random geometries`, () => {
    for (let i = 0; i < 40; i++) {
      const g = randomGeometry();
      const x = values(g.n * g.h * g.w * g.cin);
      const W = values(g.k * g.k * g.cin * g.cout);
      // The output size comes from the reference's own computeConv2DInfo.
      const r = values(reference(g, depthwise, x, W, new Float32Array(0)).y.length);
      const ref = reference(g, depthwise, x, W, r);
      const y = new Float32Array(ref.y.length);
      const dx = new Float32Array(x.length);
      const dW = new Float32Array(W.length);
      if (depthwise) {
        depthwiseForwardLoop(ref.info, x, W, y);
        depthwiseBackpropInputLoop(ref.info, r, W, dx);
        depthwiseBackpropFilterLoop(ref.info, x, r, dW);
      } else {
        conv2DForwardLoop(ref.info, x, W, y);
        conv2DBackpropInputLoop(ref.info, r, W, dx);
        conv2DBackpropFilterLoop(ref.info, x, r, dW);
      }
      const label = JSON.stringify(g);
      assert.ok(maxRelErr(y, ref.y) < 1e-5, `${label}: forward off by ${maxRelErr(y, ref.y)}`);
      assert.ok(maxRelErr(dx, ref.dx) < 1e-5, `${label}: dx off by ${maxRelErr(dx, ref.dx)}`);
      assert.ok(maxRelErr(dW, ref.dW) < 1e-5, `${label}: dW off by ${maxRelErr(dW, ref.dW)}`);
    }
  });
}
