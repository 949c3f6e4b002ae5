/**
 * Where FusedAdam's / FusedSGD's JS loop stops beating the stock optimizer: one variable of n
 * elements, one update with a fixed gradient, stock and fused (threshold lifted) alternating.
 * The crossover sets FUSED_ADAM_MAX_ELEMENTS / FUSED_SGD_MAX_ELEMENTS in src/optimizers/fused-adam.ts and fused-sgd.ts.
 *
 * Run: `node --import tsx bench/fused-threshold.ts`
 */
import * as tf from "@tensorflow/tfjs";
import os from "node:os";
import { initBackend } from "../src/backend/init.js";
import { fusedAdam, fusedSgd, type FusedAdam, type FusedSGD } from "../src/optimizers/index.js";

await initBackend({ backend: "wasm", report: false });
console.log(`load ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`);
const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1] as number;

for (const kind of ["adam", "sgd"] as const) {
  for (const n of [1024, 2048, 4096, 8192, 16384, 32768, 65536, 262144]) {
    const mk = (tag: string): tf.Variable => tf.variable(tf.randomNormal([n], 0, 1, "float32", 1), true, `thr_${kind}_${tag}_${n}`);
    const a = mk("stock");
    const b = mk("fused");
    const g = tf.randomNormal([n], 0, 1e-2, "float32", 2);
    const stock = kind === "adam" ? tf.train.adam(1e-3) : tf.train.sgd(1e-3);
    const fused: FusedAdam | FusedSGD = kind === "adam" ? fusedAdam(1e-3) : fusedSgd(1e-3);
    fused.maxFusedElements = Infinity; // measure the loop itself
    const reps = Math.max(5, Math.round(2e6 / n));
    const S: number[] = [];
    const F: number[] = [];
    for (let r = 0; r < 15; r++) {
      let t0 = performance.now();
      for (let i = 0; i < reps; i++) stock.applyGradients([{ name: a.name, tensor: g }]);
      S.push((performance.now() - t0) / reps);
      t0 = performance.now();
      for (let i = 0; i < reps; i++) fused.applyGradients([{ name: b.name, tensor: g }]);
      F.push((performance.now() - t0) / reps);
    }
    const s = median(S);
    const f = median(F);
    console.log(`${kind} n=${n}: stock ${(s * 1000).toFixed(1)} µs, fused loop ${(f * 1000).toFixed(1)} µs (${((f * 1e6) / n).toFixed(1)} ns/element), fused/stock ${(f / s).toFixed(2)}`);
    stock.dispose();
    fused.dispose();
    tf.dispose([a, b, g]);
  }
}
