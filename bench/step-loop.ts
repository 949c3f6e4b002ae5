/**
 * One workload form in a plain loop: the quickest way to time a change (or to run it under
 * `node --cpu-prof`) without the whole of `npm run bench`.
 *
 *   node --import tsx bench/step-loop.ts W5 [fused|jointly|raw|ensemble] [steps]
 *
 * Environment switches apply as usual (JOINTLY_NATIVE=0, JOINTLY_NATIVE_THREADS=2, ...).
 */
import { initBackend } from "../src/backend/init.js";
import { WORKLOADS, type Form, type WorkloadId } from "./workloads.js";

const [idArg = "W1", formArg = "fused", stepsArg = "500"] = process.argv.slice(2);
if (!(idArg in WORKLOADS)) throw new Error(`step-loop: unknown workload "${idArg}"; use one of ${Object.keys(WORKLOADS).join(", ")}`);
const def = WORKLOADS[idArg as WorkloadId];
if (!def.forms.includes(formArg as Form)) throw new Error(`step-loop: ${idArg} has no form "${formArg}"; use one of ${def.forms.join(", ")}`);
const steps = Number(stepsArg);
if (!Number.isInteger(steps) || steps < 1) throw new Error(`step-loop: steps must be a positive integer, but got "${stepsArg}"`);

await initBackend({ backend: "wasm", report: false });
const runner = def.make(formArg as Form);
// Warm-up: the first steps compile kernels and size the heap.
for (let i = 0; i < Math.min(200, steps); i++) runner.step();
const t0 = performance.now();
for (let i = 0; i < steps; i++) runner.step();
console.log(`${idArg} ${formArg}: ${((performance.now() - t0) / steps).toFixed(3)} ms/step over ${steps} steps`);
runner.dispose();
