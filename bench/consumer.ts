/**
 * `npm run bench -- --only consumer`: one training step of W2 (two-head MLP 32-512-512, batch 1024,
 * jointly's JointTrainer with fusedAdam) in a consumer's install against the checkout, in the same
 * run. The issue's bar: the consumer's step within 10 % of the checkout's.
 *
 *   node --import tsx bench/consumer.ts [--tarball FILE] [--project DIR] [--rounds N] [--steps N]
 *
 * The consumer is a fresh project in a temporary folder (or --project DIR, reused if it already has
 * the install) with its own package.json, where `npm install <tarball>` runs the package's install
 * step, so it gets what a user gets (on Linux x64: the prebuilt addon). The tarball is `npm pack`'s
 * of the checkout unless --tarball names one. The checkout runs the same script on src/ through tsx
 * with its own addon (build/native, built with -march=native).
 *
 * Both run as long-lived child processes, warmed up, and take turns: the parent asks one for a
 * block of steps, then the other, round after round, so load from other processes on a shared
 * machine hits both alike; only one computes at a time. ms/step is the median over rounds of
 * (block time / steps). Writes build/bench-consumer.json.
 */
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const argv = process.argv.slice(2);
const option = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const ROUNDS = Number(option("--rounds") ?? 15);
const STEPS = Number(option("--steps") ?? 10);

/**
 * The step script both sides run, as plain ESM JavaScript (a consumer's own code): argv[2] is the
 * module to import jointly from. It prints "ready <backend line>", then answers each "run N" line
 * on stdin with "ms <ms per step over N steps>".
 */
const STEP_SCRIPT = `
import * as tf from "@tensorflow/tfjs";
import { createInterface } from "node:readline";
const jointly = await import(process.argv[2]);
let line = "";
const info = await jointly.initBackend({ log: (l) => { line = l; } });
const width = 512, batch = 1024;
const dense = (units, activation, name) => tf.layers.dense({ units, activation, name });
const input = tf.input({ shape: [32] });
const l1 = dense(width, "relu", "h1"), l2 = dense(width, "relu", "h2"), lc = dense(2, undefined, "cls"), lr = dense(1, undefined, "reg");
const h = l2.apply(l1.apply(input));
const model = tf.model({ inputs: input, outputs: [lc.apply(h), lr.apply(h)] });
const init = (layer, fanIn, fanOut, seed) => {
  const limit = Math.sqrt(6 / (fanIn + fanOut));
  const w = [tf.randomUniform([fanIn, fanOut], -limit, limit, "float32", seed), tf.zeros([fanOut])];
  layer.setWeights(w);
  tf.dispose(w);
};
init(l1, 32, width, 11); init(l2, width, width, 12); init(lc, width, 2, 13); init(lr, width, 1, 14);
const x = tf.randomNormal([batch, 32], 0, 1, "float32", 21);
const labels = tf.randomUniform([batch], 0, 2, "int32", 22);
const yReg = tf.randomNormal([batch, 1], 0, 1, "float32", 23);
const [outCls, outReg] = model.outputNames;
const trainer = new jointly.JointTrainer({
  model,
  tasks: [
    { name: "cls", output: outCls, loss: "softmaxCrossEntropy", weight: 0.7 },
    { name: "reg", output: outReg, loss: "mse", weight: 0.3 },
  ],
  optimizer: jointly.fusedAdam(1e-3),
});
const step = () => { const r = trainer.step(x, { cls: labels, reg: yReg }); tf.dispose(r.total); };
for (let i = 0; i < 5; i++) step();
const native = jointly.nativeKernels();
console.log("ready " + JSON.stringify({ line, native: native.kernels ? native.path + " (" + native.source + ")" : native.reason, backend: info.name }));
for await (const cmd of createInterface({ input: process.stdin })) {
  const n = Number(cmd.split(" ")[1]);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) step();
  console.log("ms " + (performance.now() - t0) / n);
}
`;

function run(cmd: string, args: string[], cwd: string): string {
  const r = spawnSync(cmd, args, { cwd, encoding: "utf8", env: { ...process.env, npm_config_fund: "false", npm_config_audit: "false" } });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} (in ${cwd}) failed with exit ${r.status}:\n${`${r.stderr}${r.stdout}`.trim().split("\n").slice(-15).join("\n")}`);
  return r.stdout;
}

/** The tarball to install: --tarball, else a fresh `npm pack` of the checkout (its prepack builds dist/ and the prebuilds). */
function tarball(work: string): string {
  const given = option("--tarball");
  if (given !== undefined) return resolve(given);
  const dest = join(work, "pack");
  mkdirSync(dest, { recursive: true });
  run("npm", ["pack", "--pack-destination", dest], ROOT);
  const file = readdirSync(dest).find((f) => f.endsWith(".tgz"));
  if (file === undefined) throw new Error(`npm pack wrote no .tgz into ${dest}`);
  return join(dest, file);
}

/** A consumer project with the tarball installed (npm runs the package's install step). */
function consumerProject(work: string): string {
  const dir = option("--project") !== undefined ? resolve(option("--project") as string) : join(work, "consumer");
  if (!existsSync(join(dir, "node_modules", "jointly-tfjs", "package.json"))) {
    const tgz = tarball(work);
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "jointly-consumer-bench", private: true, type: "module" }, null, 2));
    run("npm", ["install", "--foreground-scripts", tgz, "@tensorflow/tfjs@4.22.0", "@tensorflow/tfjs-backend-wasm@4.22.0"], dir);
  }
  writeFileSync(join(dir, "step.mjs"), STEP_SCRIPT);
  return dir;
}

interface Side {
  name: string;
  child: ChildProcessWithoutNullStreams;
  next: () => Promise<string>;
  ready: { line: string; native: string; backend: string };
  ms: number[];
}

async function start(name: string, cwd: string, args: string[]): Promise<Side> {
  const child = spawn(process.execPath, args, { cwd, env: { ...process.env, JOINTLY_BACKEND: "" } });
  let stderr = "";
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async (): Promise<string> => {
    const r = await lines.next();
    if (r.done) throw new Error(`${name} exited (${child.exitCode}): ${stderr.trim().split("\n").slice(-8).join("\n")}`);
    return r.value as string;
  };
  let first = await next();
  while (!first.startsWith("ready ")) first = await next();
  return { name, child, next, ready: JSON.parse(first.slice(6)), ms: [] };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};

async function main(): Promise<void> {
  const work = mkdtempSync(join(os.tmpdir(), "jointly-consumer-bench-"));
  const t0 = performance.now();
  const project = consumerProject(work);
  console.log(`consumer project: ${project} (set up in ${((performance.now() - t0) / 1000).toFixed(0)} s)`);
  const checkoutDir = join(ROOT, "build", "bench-consumer");
  mkdirSync(checkoutDir, { recursive: true });
  writeFileSync(join(checkoutDir, "step.mjs"), STEP_SCRIPT);
  // One at a time, so each warm-up has the CPU to itself.
  const consumer = await start("consumer", project, ["step.mjs", "jointly-tfjs"]);
  const checkout = await start("checkout", checkoutDir, ["--import", "tsx", "step.mjs", join(ROOT, "src", "index.ts")]);
  const sides = [consumer, checkout];
  for (const s of sides) console.log(`${s.name}: ${s.ready.line}\n  native: ${s.ready.native}`);
  const load = os.loadavg();
  for (let r = 0; r < ROUNDS; r++) {
    // Alternate which goes first, so neither always follows the other.
    for (const s of r % 2 === 0 ? sides : [...sides].reverse()) {
      s.child.stdin.write(`run ${STEPS}\n`);
      const reply = await s.next();
      s.ms.push(Number(reply.slice(3)));
    }
  }
  for (const s of sides) s.child.stdin.end();
  const c = median(consumer.ms);
  const k = median(checkout.ms);
  const ratio = c / k;
  const result = {
    workload: "W2: two-head MLP 32-512-512, batch 1024, JointTrainer + fusedAdam",
    rounds: ROUNDS,
    stepsPerRound: STEPS,
    loadAverage: { start: load, end: os.loadavg() },
    consumer: { msPerStep: c, samples: consumer.ms, backend: consumer.ready.line, native: consumer.ready.native },
    checkout: { msPerStep: k, samples: checkout.ms, backend: checkout.ready.line, native: checkout.ready.native },
    ratio,
    withinTenPercent: ratio <= 1.1,
  };
  mkdirSync(join(ROOT, "build"), { recursive: true });
  writeFileSync(join(ROOT, "build", "bench-consumer.json"), `${JSON.stringify(result, null, 2)}\n`);
  console.log(
    `W2 step, median of ${ROUNDS} alternating rounds of ${STEPS} steps: consumer ${c.toFixed(1)} ms, checkout ${k.toFixed(1)} ms, ratio ${ratio.toFixed(3)} (${ratio <= 1.1 ? "within" : "NOT within"} 10 %); load average ${load.map((l) => l.toFixed(2)).join(" ")} -> ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`,
  );
  console.log("wrote build/bench-consumer.json");
}

await main();
