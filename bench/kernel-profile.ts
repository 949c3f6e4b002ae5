/**
 * Which kernels a workload's training step runs on wasm, how often, and how long each takes: the
 * tool that found where jointly's steps spent their time (kernel count on small models, copies by
 * Identity/Cast, Sum's transpose, slow gathers).
 *
 *   node --import tsx bench/kernel-profile.ts W1 [fused|jointly|raw] [top]
 *
 * Every wasm kernel is wrapped with a timer, so the step is slower than in `npm run bench`; the
 * counts are exact, the times are for comparing kernels with each other. A fused kernel that calls
 * another one (JointlyDense runs _FusedMatMul) counts both.
 */
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { WORKLOADS, type Form, type WorkloadId } from "./workloads.js";

const [idArg = "W1", formArg = "fused", topArg = "30"] = process.argv.slice(2);
if (!(idArg in WORKLOADS)) throw new Error(`kernel-profile: unknown workload "${idArg}"; use one of ${Object.keys(WORKLOADS).join(", ")}`);
await initBackend({ backend: "wasm" });
const def = WORKLOADS[idArg as WorkloadId];
if (!def.forms.includes(formArg as Form)) throw new Error(`kernel-profile: ${idArg} has no form "${formArg}"; use one of ${def.forms.join(", ")}`);

const times = new Map<string, { n: number; ms: number }>();
for (const cfg of tf.getKernelsForBackend("wasm")) {
  const inner = cfg.kernelFunc;
  tf.unregisterKernel(cfg.kernelName, "wasm");
  tf.registerKernel({
    ...cfg,
    kernelFunc: (args) => {
      const t0 = performance.now();
      const out = inner(args);
      const ms = performance.now() - t0;
      const first = Object.values(args.inputs)[0] as tf.TensorInfo | undefined;
      const { a, b } = args.inputs as { a?: tf.TensorInfo; b?: tf.TensorInfo };
      const attrs = (args.attrs ?? {}) as { transposeA?: boolean; transposeB?: boolean };
      const key =
        a && b && cfg.kernelName.includes("MatMul")
          ? `${cfg.kernelName} [${a.shape}]x[${b.shape}]${attrs.transposeA ? " tA" : ""}${attrs.transposeB ? " tB" : ""}`
          : `${cfg.kernelName} [${first?.shape ?? ""}]`;
      const e = times.get(key) ?? { n: 0, ms: 0 };
      e.n++;
      e.ms += ms;
      times.set(key, e);
      return out;
    },
  });
}

const runner = def.make(formArg as Form);
for (let i = 0; i < 20; i++) runner.step();
times.clear();
const steps = 50;
const t0 = performance.now();
for (let i = 0; i < steps; i++) runner.step();
const perStep = (performance.now() - t0) / steps;
const calls = [...times.values()].reduce((s, e) => s + e.n, 0) / steps;
const kernelMs = [...times.values()].reduce((s, e) => s + e.ms, 0) / steps;
console.log(`${idArg} ${formArg}: ${perStep.toFixed(2)} ms/step (profiled), ${calls} kernel calls/step, ${kernelMs.toFixed(2)} ms in kernels`);
for (const [k, e] of [...times.entries()].sort((p, q) => q[1].ms - p[1].ms).slice(0, Number(topArg))) {
  console.log(`${(e.ms / steps).toFixed(3).padStart(8)} ms ${String(e.n / steps).padStart(5)}x ${k}`);
}
runner.dispose();
