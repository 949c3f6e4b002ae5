/**
 * ms per training step of the W1 and W2 shapes (two-head MLP 32-64-64 batch 256, 32-512-512 batch
 * 1024) trained by JointTrainer with stock `tf.train.adam` against `fusedAdam`, on wasm; plus the
 * optimizer update alone. The two forms alternate in every repetition (the machine is shared and
 * loaded); each figure is the median over repetitions of (block time / steps in block).
 *
 * Run: `node --import tsx bench/fused-optimizers.ts [reps]`
 */
import * as tf from "@tensorflow/tfjs";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { initBackend } from "../src/backend/init.js";
import { fusedAdam } from "../src/optimizers/index.js";

const LR = 1e-3;
let uid = 0;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** A W1/W2-shaped JointTrainer (seeded, so both forms start from the same weights) with the given optimizer. */
function makeForm(width: number, batch: number, optimizer: tf.Optimizer) {
  const n = ++uid;
  const init = (seed: number) => tf.initializers.glorotUniform({ seed });
  const input = tf.input({ shape: [32] });
  const dense = (units: number, name: string, seed: number, activation?: "relu") =>
    tf.layers.dense({ units, activation, name: `fb_${name}_${n}`, kernelInitializer: init(seed) });
  const h = dense(width, "h2", 12, "relu").apply(dense(width, "h1", 11, "relu").apply(input)) as tf.SymbolicTensor;
  const model = tf.model({ inputs: input, outputs: [dense(2, "cls", 13).apply(h) as tf.SymbolicTensor, dense(1, "reg", 14).apply(h) as tf.SymbolicTensor] });
  const [oc, or] = model.outputNames as [string, string];
  const trainer = new JointTrainer({
    model,
    tasks: [
      { name: "cls", output: oc, loss: "softmaxCrossEntropy", weight: 0.7 },
      { name: "reg", output: or, loss: "mse", weight: 0.3 },
    ],
    optimizer,
  });
  const x = tf.randomNormal([batch, 32], 0, 1, "float32", 21);
  const labels = tf.randomUniform([batch], 0, 2, "int32", 22);
  const yReg = tf.randomNormal([batch, 1], 0, 1, "float32", 23);
  return {
    step: () => trainer.step(x, { cls: labels, reg: yReg }).total,
    vars: trainer.variables(),
    dispose: () => {
      optimizer.dispose();
      model.dispose();
      tf.dispose([x, labels, yReg]);
    },
  };
}

/** Time `reps` alternating blocks of `steps` calls of each function; returns medians in ms per call. */
function alternate(fns: Record<string, () => unknown>, steps: number, reps: number): Record<string, number> {
  const samples: Record<string, number[]> = Object.fromEntries(Object.keys(fns).map((k) => [k, []]));
  for (let r = 0; r < reps; r++) {
    const order = r % 2 ? Object.keys(fns).reverse() : Object.keys(fns);
    for (const k of order) {
      const t0 = performance.now();
      for (let i = 0; i < steps; i++) fns[k]!();
      samples[k]!.push((performance.now() - t0) / steps);
    }
  }
  return Object.fromEntries(Object.entries(samples).map(([k, s]) => [k, median(s)]));
}

const reps = Number(process.argv[2] ?? 15);
const info = await initBackend({ backend: "wasm", report: false });
console.log(`backend ${info.name}, fast paths: ${info.fastPaths.join(", ") || "none"}; load ${(await import("node:os")).loadavg().map((l) => l.toFixed(2)).join(" ")}`);

for (const [id, width, batch, block] of [["W1", 64, 256, 40], ["W2", 512, 1024, 2]] as const) {
  const stock = makeForm(width, batch, tf.train.adam(LR));
  const fused = makeForm(width, batch, fusedAdam(LR));
  const first = [stock.step(), fused.step()];
  for (let i = 0; i < (id === "W1" ? 30 : 2); i++) { stock.step(); fused.step(); } // warm-up
  const t = alternate({ stock: stock.step, fused: fused.step }, block, reps);
  const last = [stock.step(), fused.step()];
  console.log(`${id} full step (32-${width}-${width}, batch ${batch}): tf.train.adam ${t.stock!.toFixed(3)} ms, fusedAdam ${t.fused!.toFixed(3)} ms, ratio ${(t.stock! / t.fused!).toFixed(2)}x  [first losses ${first.join(" / ")}, last ${last.join(" / ")}]`);

  // The optimizer update alone, on the same variable shapes with fixed gradients.
  const grads = (vars: tf.Variable[]) => vars.map((v) => ({ name: v.name, tensor: tf.randomNormal(v.shape, 0, 1e-2, "float32", 5) }));
  const gs = grads(stock.vars);
  const gf = grads(fused.vars);
  const so = tf.train.adam(LR);
  const fo = fusedAdam(LR);
  const u = alternate({ stock: () => so.applyGradients(gs), fused: () => fo.applyGradients(gf) }, id === "W1" ? 100 : 10, reps);
  console.log(`${id} update only (${stock.vars.length} variables, ${stock.vars.reduce((s, v) => s + v.size, 0)} parameters): tf.train.adam ${u.stock!.toFixed(3)} ms, fusedAdam ${u.fused!.toFixed(3)} ms, ratio ${(u.stock! / u.fused!).toFixed(2)}x`);
  so.dispose();
  fo.dispose();
  tf.dispose([...gs, ...gf].map((g) => g.tensor));
  stock.dispose();
  fused.dispose();
}
