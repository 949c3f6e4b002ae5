/**
 * `npm run bench`: the eight workloads of bench/workloads.ts, the library's way and as a raw
 * TensorFlow.js loop on the same backend, stock tfjs-wasm matmul kernels for W1/W2, and PyTorch on the
 * CPU side by side (bench/torch_bench.py), and with W6 the vectorised-ensemble sweep (M = 8, 64, 256
 * against the same models trained one after another; bench/ensemble.ts). Writes build/bench.json and
 * build/bench.md.
 *
 *   node --import tsx bench/run.ts [--only W1,W3] [--quick] [--no-torch] [--no-ensemble]
 *   node --import tsx bench/run.ts --only consumer   W2's step in a consumer's install against the checkout (bench/consumer.ts)
 *
 * Each workload runs in its own child process (`--child W1`) so that its peak RSS and tensor counts
 * are its own, and the processes run one after another so they do not compete for the CPU; PyTorch's
 * run of the same workload follows each one directly, so both see the same load. Within a
 * workload the forms alternate repetition by repetition, so load from other processes on a shared
 * machine hits them alike. ms/step is the median over repetitions of (block time / steps in block).
 */
import * as tf from "@tensorflow/tfjs";
import { spawnSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import os from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { createRequire } from "node:module";
import { BACKEND_ENV, BACKEND_ORDER, initBackend, type BackendName } from "../src/backend/init.js";
import { registerWasmKernels } from "../src/backend/kernels/register-all.js";
import { nativeKernels, setNativeKernelsEnabled } from "../src/backend/native.js";
import { CONV_WORKLOAD_IDS, WORKLOADS, WORKLOAD_IDS, type ConvWorkloadId, type Form, type Runner, type WorkloadId } from "./workloads.js";
import { measureFleetWorkers, type FleetWorkersResult } from "./fleet-workers.js";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "..");
const RESULT_TAG = "BENCH_RESULT ";

const argv = process.argv.slice(2);
const flag = (name: string): boolean => argv.includes(name);
const option = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : undefined;
};
const QUICK = flag("--quick");
/** Target wall time of one timed repetition, ms. */
const REP_BUDGET_MS = QUICK ? 100 : 250;
/** Minimum warm-up time per form, ms. */
const WARM_MS = QUICK ? 150 : 600;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

const round = (x: number, digits = 2): number => Number(x.toFixed(digits));
const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

/**
 * Matmul FLOPs of one training step, from the workload definitions in bench/workloads.ts: a dense
 * layer of a batch of m rows from k to n units costs 2·m·k·n forward, as much again for dW, and as
 * much again for dX, which is skipped when nothing upstream needs a gradient (a first layer; B's
 * input in W4's B turn). Passes [m, k, n, matmuls]; matmuls = 3 (fwd, dW, dX), 2 (fwd + one
 * gradient) or 1 (forward only). Element-wise ops, gathers and the optimizer are not counted.
 */
const MATMULS: Record<Exclude<WorkloadId, ConvWorkloadId>, [number, number, number, number][]> = {
  W1: [[256, 32, 64, 2], [256, 64, 64, 3], [256, 64, 2, 3], [256, 64, 1, 3]],
  W2: [[1024, 32, 512, 2], [1024, 512, 512, 3], [1024, 512, 2, 3], [1024, 512, 1, 3]],
  // Tables are trained, so the first dense layers also need dX (it flows into the lookups).
  W3: [[1024, 128, 64, 3], [1024, 64, 1, 3], [1024, 144, 64, 3], [1024, 64, 1, 3]],
  // A's turn: A's layers (first: fwd + dW), B's layers frozen (fwd + dX). B's turn: A forward only, B's first layer fwd + dW.
  W4: [[512, 32, 64, 2], [512, 64, 16, 3], [512, 16, 64, 2], [512, 64, 1, 2], [512, 32, 64, 1], [512, 64, 16, 1], [512, 16, 64, 2], [512, 64, 1, 3]],
  // Joint step, then per task ||dL_i/dW2||: layer-2 fwd + dW and the head's fwd + dX, three times.
  W5: [[512, 32, 256, 2], [512, 256, 256, 3], [512, 256, 1, 3], [512, 256, 1, 3], [512, 256, 1, 3], ...[0, 1, 2].flatMap(() => [[512, 256, 256, 2], [512, 256, 1, 2]] as [number, number, number, number][])],
  W6: Array.from({ length: 64 }, () => [[256, 32, 64, 2], [256, 64, 1, 3]] as [number, number, number, number][]).flat(),
};

const isConv = (id: WorkloadId): id is ConvWorkloadId => (CONV_WORKLOAD_IDS as readonly string[]).includes(id);
/** Forward multiply-adds of a conv layer per sample: output positions x output channels x kernel taps x input channels. */
const convMacs = (outH: number, outW: number, cout: number, k: number, cin: number): number => outH * outW * cout * k * k * cin;
/**
 * W7/W8: forward multiply-adds per sample of each conv and dense layer (pools, batch norm and
 * activations not counted), and the defined batch. A step counts 3 x the forward FLOPs (2 per
 * multiply-add): forward, input gradient and weight gradient, the usual convention for conv nets,
 * which also counts the first conv's input gradient that no framework computes (W7: 0.6 % of the
 * total, W8: 2.9 %).
 */
const CONV_LAYERS: Record<ConvWorkloadId, { batch: number; macs: number[] }> = {
  // conv 5x5 1->10 on 28x28 (24x24 out), conv 5x5 10->20 on 12x12 (8x8 out), dense 320-50, two heads 50-50-10.
  W7: { batch: 256, macs: [convMacs(24, 24, 10, 5, 1), convMacs(8, 8, 20, 5, 10), 320 * 50, ...[0, 1].flatMap(() => [50 * 50, 50 * 10])] },
  // conv 3x3 same 3->32 at 64x64, 32->64 at 32x32, 64->128 at 16x16, eight heads 128-1.
  W8: { batch: 64, macs: [convMacs(64, 64, 32, 3, 3), convMacs(32, 32, 64, 3, 32), convMacs(16, 16, 128, 3, 64), ...Array.from({ length: 8 }, () => 128)] },
};
const stepFlops = (id: WorkloadId): number =>
  isConv(id) ? 3 * 2 * CONV_LAYERS[id].batch * sum(CONV_LAYERS[id].macs) : MATMULS[id].reduce((acc, [m, k, n, times]) => acc + 2 * m * k * n * times, 0);
/** Effective GFLOP/s: the step's matmul FLOPs over the whole step's time. */
const gflops = (id: WorkloadId, ms: number | undefined): number | undefined => (ms === undefined || !(ms > 0) ? undefined : stepFlops(id) / (ms * 1e6));

// -----------------------------------------------------------------------------------------------
// Child: time one workload.

interface FormResult {
  ms: number;
  samples: number[];
  stepsPerRep: number;
  firstLoss: number;
  lastLoss: number;
}

interface ChildResult {
  id: WorkloadId;
  title: string;
  backend: string;
  fastPaths: string[];
  forms: Partial<Record<Form, FormResult>>;
  stockWasm?: FormResult;
  pureWasm?: FormResult;
  twoThreads?: FormResult;
  /** W6 only: the fleet split across 2 worker threads (bench/fleet-workers.ts). */
  workers?: FleetWorkersResult;
  tensorsAfter: number;
  tensorCounts: number[];
  tensorGrowth: number;
  leakedAfterDispose: number;
  peakRssMB: number;
  /** W7/W8: this backend's n x n matrix product, for the GFLOP/s comparison. */
  sgemm?: { n: number; gflops: number };
}

/** The n x n (float32) product as this backend runs it, jointly's kernels included (OpenBLAS sgemm with the addon): GFLOP/s, median of 5. */
function sgemmGflops(n: number): number {
  const a = tf.randomNormal([n, n], 0, 1, "float32", 1);
  const b = tf.randomNormal([n, n], 0, 1, "float32", 2);
  const once = (): number => {
    const t0 = performance.now();
    const c = tf.matMul(a, b);
    c.dataSync();
    const ms = performance.now() - t0;
    c.dispose();
    return ms;
  };
  once();
  const ms = median(Array.from({ length: 5 }, once));
  tf.dispose([a, b]);
  return (2 * n ** 3) / (ms * 1e6);
}

/** The backend the bench runs on: wasm, unless JOINTLY_BACKEND names another (e.g. cpu, to check the forms where wasm lacks a kernel). */
function benchBackend(): BackendName {
  const env = process.env[BACKEND_ENV];
  if (env === undefined || env === "") return "wasm";
  if (!(BACKEND_ORDER as readonly string[]).includes(env)) throw new Error(`${BACKEND_ENV}=${env} is not a backend; use one of ${BACKEND_ORDER.join(", ")}`);
  return env as BackendName;
}

function timeStep(r: Runner): { ms: number; loss: number } {
  const t0 = performance.now();
  const losses = r.step();
  return { ms: performance.now() - t0, loss: sum(losses) };
}

/**
 * Warm up for at least `steps` steps and WARM_MS of wall time (the JIT and the wasm heap settle over
 * the first few hundred ms); the median of the later warm-up steps sizes the timed blocks.
 */
function warm(r: Runner, steps: number): { est: number; firstLoss: number } {
  let firstLoss = NaN;
  const times: number[] = [];
  const t0 = performance.now();
  for (let i = 0; i < steps || (performance.now() - t0 < WARM_MS && i < 200); i++) {
    const { ms, loss } = timeStep(r);
    if (i === 0) firstLoss = loss;
    times.push(ms);
  }
  const later = times.slice(Math.floor(times.length / 2));
  return { est: median(later.length ? later : times), firstLoss };
}

function block(r: Runner, steps: number): { ms: number; loss: number } {
  let loss = NaN;
  const t0 = performance.now();
  for (let i = 0; i < steps; i++) loss = sum(r.step());
  return { ms: (performance.now() - t0) / steps, loss };
}

async function child(id: WorkloadId): Promise<void> {
  const info = await initBackend({ backend: benchBackend(), report: false });
  const def = WORKLOADS[id];
  // Steps of a second or more: fewer warm-up steps.
  const heavy = id === "W2" || id === "W8";
  const start = tf.memory().numTensors;
  const runners = def.forms.map((f) => [f, def.make(f)] as const);
  const plan = runners.map(([form, r]) => {
    const { est, firstLoss } = warm(r, heavy ? 2 : 3);
    const stepsPerRep = Math.max(1, Math.min(50, Math.round(REP_BUDGET_MS / Math.max(est, 0.01))));
    return { form, r, est, firstLoss, stepsPerRep, samples: [] as number[], lastLoss: NaN };
  });
  const slowest = Math.max(...plan.map((p) => p.est));
  const reps = QUICK ? 3 : slowest > 300 ? 3 : slowest > 60 ? 7 : 9;
  const counts = [tf.memory().numTensors];
  for (let rep = 0; rep < reps; rep++) {
    for (const p of plan) {
      const { ms, loss } = block(p.r, p.stepsPerRep);
      p.samples.push(ms);
      p.lastLoss = loss;
    }
    counts.push(tf.memory().numTensors);
  }
  const forms: ChildResult["forms"] = {};
  for (const p of plan) {
    forms[p.form] = { ms: round(median(p.samples), 3), samples: p.samples.map((s) => round(s, 3)), stepsPerRep: p.stepsPerRep, firstLoss: p.firstLoss, lastLoss: p.lastLoss };
  }

  /** A form measured again with some of jointly's kernels taken away (fewer repetitions). */
  const measureWithout = (r: Runner, heavy: boolean): FormResult => {
    const { est } = warm(r, heavy ? 1 : 3);
    const steps = Math.max(1, Math.min(50, Math.round(REP_BUDGET_MS / Math.max(est, 0.01))));
    const samples: number[] = [];
    let loss = NaN;
    for (let rep = 0; rep < (QUICK ? 2 : 3); rep++) {
      const b = block(r, steps);
      samples.push(b.ms);
      loss = b.loss;
    }
    counts.push(tf.memory().numTensors);
    return { ms: round(median(samples), 3), samples: samples.map((s) => round(s, 3)), stepsPerRep: steps, firstLoss: NaN, lastLoss: loss };
  };

  // The library's best form without the native addon: what a machine without a C compiler or
  // OpenBLAS gets (jointly's pure-wasm matmul path, fused JS optimizer loop, shared Identity).
  let pureWasm: FormResult | undefined;
  const best = plan.find((p) => p.form === "fused") ?? plan.find((p) => p.form === "jointly");
  if (best && nativeKernels().kernels) {
    setNativeKernelsEnabled(false);
    try {
      pureWasm = measureWithout(best.r, heavy);
    } finally {
      setNativeKernelsEnabled(true);
    }
  }

  // Big products (W2, W5) with two BLAS threads (JOINTLY_NATIVE_THREADS=2), against PyTorch with two
  // threads: the main table keeps one thread on both sides.
  let twoThreads: FormResult | undefined;
  const nk = nativeKernels().kernels;
  if ((id === "W2" || id === "W5") && best && nk) {
    nk.setThreads(2);
    try {
      twoThreads = measureWithout(best.r, heavy);
    } finally {
      nk.setThreads(nativeKernels().threads ?? 1);
    }
  }

  // Stock tfjs-wasm (every jointly kernel removed: no addon, no matmul override, no shared Identity),
  // the library's way with tf.train.adam, for W1 and W2.
  let stockWasm: FormResult | undefined;
  const lib = plan.find((p) => p.form === "jointly");
  if ((id === "W1" || id === "W2") && lib && info.fastPaths.includes("wasm-matmul")) {
    setNativeKernelsEnabled(false);
    // The live registration (initBackend's): restoring it puts every stock kernel back.
    registerWasmKernels().restore();
    try {
      stockWasm = measureWithout(lib.r, heavy);
    } finally {
      // The addon first: whether a kernel uses it is decided when it is registered.
      setNativeKernelsEnabled(true);
      registerWasmKernels();
    }
  }

  const tensorsAfter = tf.memory().numTensors;
  for (const [, r] of runners) r.dispose();
  // After this process's own forms are freed, so the workers do not share the heap with them.
  const workers = id === "W6" ? await measureFleetWorkers(QUICK) : undefined;
  // The conv workloads' GFLOP/s are read against this backend's own big matrix product (the pure-JS
  // cpu backend gets a smaller one: 1024^3 there takes seconds).
  const sgemmN = info.name === "cpu" ? 256 : 1024;
  const sgemm = isConv(id) ? { n: sgemmN, gflops: round(sgemmGflops(sgemmN), 2) } : undefined;
  const result: ChildResult = {
    id,
    title: def.title,
    backend: info.name,
    fastPaths: info.fastPaths,
    forms,
    stockWasm,
    pureWasm,
    twoThreads,
    workers,
    tensorsAfter,
    tensorCounts: counts,
    tensorGrowth: Math.max(...counts) - (counts[0] as number),
    leakedAfterDispose: tf.memory().numTensors - start,
    peakRssMB: round(process.resourceUsage().maxRSS / 1024, 1),
    sgemm,
  };
  process.stdout.write(`${RESULT_TAG}${JSON.stringify(result)}\n`);
}

// -----------------------------------------------------------------------------------------------
// Parent: run the children, PyTorch, and write the report.

interface TorchOutput {
  torch_version: string;
  default_threads: number;
  cpu_count: number;
  runs: Record<string, Record<string, number>>;
}

/** torch_bench.py's name for its 1024 x 1024 x 1024 `torch.mm`. */
const TORCH_SGEMM = "sgemm1024";
const torchSgemmGflops = (ms: number | undefined): number | undefined => (ms === undefined || !(ms > 0) ? undefined : (2 * 1024 ** 3) / (ms * 1e6));

function findPython(): string | undefined {
  const candidates = [process.env.JOINTLY_PYTHON, "/usr/bin/python3", "python3"].filter((p): p is string => !!p);
  for (const py of candidates) {
    const r = spawnSync(py, ["-c", "import torch"], { stdio: "ignore", timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

/** PyTorch's run of some workloads; `sgemm` adds its 1024^3 `torch.mm` (the conv workloads' GFLOP/s reference). */
function runTorch(only: WorkloadId[], sgemm = false): { out?: TorchOutput; python?: string; message?: string } {
  const python = findPython();
  if (!python) return { message: "PyTorch not found (tried $JOINTLY_PYTHON, /usr/bin/python3, python3): torch columns skipped. On Debian: apt-get install python3-torch." };
  const names = [...only.flatMap((id) => (id === "W6" ? ["W6", "W6_ensemble"] : [id])), ...(sgemm ? [TORCH_SGEMM] : [])];
  const threads = ["1", "default", String(os.cpus().length)].join(",");
  console.log(`PyTorch (${python}): ${names.join(", ")} with threads ${threads} ...`);
  const r = spawnSync(
    python,
    [join(HERE, "torch_bench.py"), "--threads", threads, "--only", names.join(","), "--budget-ms", String(REP_BUDGET_MS), "--reps", QUICK ? "3" : "5"],
    { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 300_000 },
  );
  const last = (r.stdout ?? "").trim().split("\n").pop() ?? "";
  if (r.status !== 0 || !last.startsWith("{")) return { python, message: `PyTorch run failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ""}): torch columns skipped.` };
  return { python, out: JSON.parse(last) as TorchOutput };
}

/** One TorchOutput from the per-workload runs (the first failure or absence wins, with its message). */
function mergeTorch(parts: { out?: TorchOutput; python?: string; message?: string }[]): { out?: TorchOutput; python?: string; message?: string } {
  const failed = parts.find((p) => p.out === undefined);
  if (failed) return failed;
  const outs = parts.map((p) => p.out as TorchOutput);
  if (outs.length === 0) return { message: "no workloads run: torch columns skipped." };
  const runs: Record<string, Record<string, number>> = {};
  for (const o of outs) for (const [threads, byName] of Object.entries(o.runs)) Object.assign((runs[threads] ??= {}), byName);
  return { python: parts[0]?.python, out: { ...(outs[0] as TorchOutput), runs } };
}

function runChild(id: WorkloadId): ChildResult {
  const args = [...process.execArgv, fileURLToPath(import.meta.url), "--child", id, ...(QUICK ? ["--quick"] : [])];
  // W8's steps take seconds on a slow conv path: give its child more time.
  const r = spawnSync(process.execPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: isConv(id) ? 900_000 : 300_000, cwd: ROOT });
  const line = (r.stdout ?? "").split("\n").find((l) => l.startsWith(RESULT_TAG));
  if (r.status !== 0 || !line) throw new Error(`bench child ${id} failed (exit ${r.status}${r.error ? `, ${r.error.message}` : ""})`);
  return JSON.parse(line.slice(RESULT_TAG.length)) as ChildResult;
}

function cpuModel(): string {
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync("/proc/cpuinfo", "utf8"));
    if (m?.[1]) return m[1].trim();
  } catch {
    // not Linux
  }
  return os.cpus()[0]?.model ?? "unknown";
}

const fmt = (x: number | undefined | null, digits = 1): string => (x === undefined || x === null || !Number.isFinite(x) ? "–" : x >= 100 ? x.toFixed(0) : x.toFixed(digits));

async function parent(): Promise<void> {
  // `--only consumer` (alone or in the list): the consumer-install step against the checkout's (bench/consumer.ts).
  const picked = option("--only")?.split(",");
  if (picked?.includes("consumer")) {
    const rest = argv.filter((a, i) => a !== "--only" && argv[i - 1] !== "--only"); // --tarball, --project, --rounds, --steps
    const r = spawnSync(process.execPath, ["--import", "tsx", join(HERE, "consumer.ts"), ...rest], { cwd: ROOT, stdio: "inherit" });
    if (r.status !== 0) throw new Error(`bench/consumer.ts failed (exit ${r.status})`);
    if (picked.length === 1) return;
  }
  const only = (picked?.filter((id) => id !== "consumer") ?? WORKLOAD_IDS) as WorkloadId[];
  for (const id of only) if (!WORKLOAD_IDS.includes(id)) throw new Error(`unknown workload ${id}; use ${WORKLOAD_IDS.join(", ")}`);
  const t0 = performance.now();
  const loadStart = os.loadavg();
  const require = createRequire(import.meta.url);
  const tfjsVersion = (require("@tensorflow/tfjs/package.json") as { version: string }).version;
  const wasmVersion = (require("@tensorflow/tfjs-backend-wasm/package.json") as { version: string }).version;
  console.log(`jointly bench: ${only.join(", ")}${QUICK ? " (quick)" : ""}; load average ${loadStart.map((l) => l.toFixed(2)).join(" ")}`);

  // PyTorch runs right after jointly on each workload, not in a phase of its own: on a shared machine
  // the load changes over a run, and the ratios should compare times taken under the same load.
  const torchParts: { out?: TorchOutput; python?: string; message?: string }[] = [];
  const results: ChildResult[] = [];
  for (const id of only) {
    const c = runChild(id);
    results.push(c);
    if (!flag("--no-torch") && !torchParts.some((p) => p.out === undefined)) torchParts.push(runTorch([id], id === only.find(isConv)));
    const f = c.forms;
    console.log(
      `${id} ${c.title}: jointly ${fmt(f.jointly?.ms, 2)} | fused ${fmt(f.fused?.ms, 2)} | raw ${fmt(f.raw?.ms, 2)}${f.ensemble ? ` | ensemble ${fmt(f.ensemble.ms, 2)}` : ""}` +
        `${c.workers ? ` | 2 workers: fleet ${fmt(c.workers.fused_2workers, 2)} (1 thread ${fmt(c.workers.fused_1thread, 2)}), ensemble ${fmt(c.workers.ensemble_2workers, 2)} (1 thread ${fmt(c.workers.ensemble_1thread, 2)}), control speed-up ${c.workers.spin_speedup}x` : ""}` +
        `${c.pureWasm ? ` | without the addon ${fmt(c.pureWasm.ms, 2)}` : ""}${c.stockWasm ? ` | stock wasm ${fmt(c.stockWasm.ms, 2)}` : ""} ms/step; tensors ${c.tensorsAfter} (growth ${c.tensorGrowth}); peak RSS ${c.peakRssMB} MB`,
    );
  }

  const torch = flag("--no-torch") ? { message: "--no-torch given: torch columns skipped." } : mergeTorch(torchParts);
  if (torch.message) console.log(torch.message);
  const t = torch.out;
  const mtKey = t ? String(Math.max(t.default_threads, t.cpu_count)) : undefined;
  const torchMs = (threads: string | undefined, name: string): number | undefined => (t && threads ? t.runs[threads]?.[name] : undefined);

  const json: Record<string, unknown> = {};
  const rows: string[] = [];
  const flopLines: string[] = [];
  const workerRows: string[] = [];
  const threadLines: string[] = [];
  for (const c of results) {
    const f = c.forms;
    const stock = f.jointly?.ms;
    const fused = f.fused?.ms;
    // "jointly" is the library's fastest configuration measured (stock or fused Adam).
    const libs = [stock, fused].filter((x): x is number => x !== undefined);
    const lib = libs.length ? Math.min(...libs) : undefined;
    const libConfig = lib === undefined ? undefined : lib === fused ? "fusedAdam" : "tf.train.adam";
    const raw = f.raw?.ms;
    const basis = lib ?? raw;
    const t1 = torchMs("1", c.id);
    const tDefault = t ? torchMs(String(t.default_threads), c.id) : undefined;
    const tMt = torchMs(mtKey, c.id);
    const entry: Record<string, unknown> = {
      title: c.title,
      jointly: lib ?? null,
      jointly_config: libConfig,
      jointly_stock_adam: stock ?? null,
      jointly_fused_adam: fused ?? null,
      raw: raw ?? null,
      jointly_note: lib === undefined ? "raw only: the library has no API for this workload yet" : undefined,
      jointly_over_raw: lib !== undefined && raw !== undefined ? round(lib / raw, 3) : undefined,
      // Library overhead, like for like: the same optimizer (stock Adam) as the raw loop.
      stock_jointly_over_raw: stock !== undefined && raw !== undefined ? round(stock / raw, 3) : undefined,
      stock_wasm: c.stockWasm?.ms,
      pure_wasm: c.pureWasm?.ms,
      jointly_2_blas_threads: c.twoThreads?.ms,
      native_speedup: c.pureWasm && lib ? round(c.pureWasm.ms / lib, 2) : undefined,
      fast_kernel_speedup: c.stockWasm && stock ? round(c.stockWasm.ms / stock, 2) : undefined,
      torch_1t: t1 !== undefined ? round(t1, 3) : undefined,
      torch: tDefault !== undefined ? round(tDefault, 3) : undefined,
      torch_threads: t?.default_threads,
      [`torch_${mtKey}t`]: mtKey && mtKey !== "1" && tMt !== undefined ? round(tMt, 3) : undefined,
      ratio_vs_torch_1t: basis !== undefined && t1 ? round(basis / t1, 2) : undefined,
      ratio_basis: lib !== undefined ? "jointly" : "raw",
      matmul_gflop_per_step: round(stepFlops(c.id) / 1e9, 4),
      flop_convention: isConv(c.id) ? "conv and dense layers: 3 x forward FLOPs (2 per multiply-add), batch as defined" : undefined,
      sgemm_gflops: c.sgemm?.gflops,
      sgemm_n: c.sgemm?.n,
      sgemm_gflops_torch_1t: isConv(c.id) ? round(torchSgemmGflops(torchMs("1", TORCH_SGEMM)) ?? NaN, 2) : undefined,
      gflops_jointly: round(gflops(c.id, lib) ?? NaN, 2),
      gflops_raw: round(gflops(c.id, raw) ?? NaN, 2),
      gflops_torch_1t: t1 !== undefined ? round(gflops(c.id, t1) ?? NaN, 2) : undefined,
      backend: c.backend,
      fast_paths: c.fastPaths,
      tensors_after: c.tensorsAfter,
      tensor_counts_per_rep: c.tensorCounts,
      tensor_growth: c.tensorGrowth,
      tensors_left_after_dispose: c.leakedAfterDispose,
      peak_rss_mb: c.peakRssMB,
      first_loss: Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v.firstLoss])),
      samples_ms: Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v.samples])),
      steps_per_rep: Object.fromEntries(Object.entries(f).map(([k, v]) => [k, v.stepsPerRep])),
    };
    if (f.ensemble) {
      const te1 = torchMs("1", "W6_ensemble");
      Object.assign(entry, {
        ensemble: f.ensemble.ms,
        torch_ensemble_1t: te1 !== undefined ? round(te1, 3) : undefined,
        ratio_ensemble_vs_torch_ensemble_1t: te1 ? round(f.ensemble.ms / te1, 2) : undefined,
      });
    }
    if (c.workers) entry.two_workers = c.workers;
    json[c.id] = entry;
    const libCell = lib !== undefined ? `${fmt(lib, 2)}${libConfig === "fusedAdam" ? " (f)" : ""}` : "raw only";
    const ratio = basis !== undefined && t1 ? `${(basis / t1).toFixed(2)}x${lib === undefined ? " (raw)" : ""}` : "–";
    rows.push(
      `| ${c.id} | ${c.title} | ${libCell} | ${fmt(stock, 2)} | ${fmt(fused, 2)} | ${fmt(raw, 2)} | ${stock !== undefined && raw !== undefined ? (stock / raw).toFixed(2) : "–"} | ${lib !== undefined && raw !== undefined ? (lib / raw).toFixed(2) : "–"} | ` +
        `${c.pureWasm && lib ? `${fmt(c.pureWasm.ms, 2)} (${(c.pureWasm.ms / lib).toFixed(1)}x)` : "–"} | ` +
        `${c.stockWasm ? `${fmt(c.stockWasm.ms)} (${(c.stockWasm.ms / (stock ?? NaN)).toFixed(1)}x)` : "–"} | ${fmt(t1, 2)} | ${fmt(tMt, 2)} | ${ratio} | ` +
        `${c.tensorsAfter} (${c.tensorGrowth >= 0 ? "+" : ""}${c.tensorGrowth}) | ${fmt(c.peakRssMB, 0)} |`,
    );
    if (c.twoThreads) {
      const t2 = tMt;
      threadLines.push(`- ${c.id}: jointly ${fmt(c.twoThreads.ms, 2)} ms/step with 2 BLAS threads (1 thread: ${fmt(lib, 2)}); torch 2 threads ${fmt(t2, 2)}, 1 thread ${fmt(t1, 2)}; jointly 2 threads / torch 1 thread ${t1 ? (c.twoThreads.ms / t1).toFixed(2) : "–"}x, / torch 2 threads ${t2 ? (c.twoThreads.ms / t2).toFixed(2) : "–"}x.`);
    }
    const g = (ms: number | undefined): string => fmt(gflops(c.id, ms), 2);
    if (isConv(c.id)) {
      const sg = c.sgemm ? `${fmt(c.sgemm.gflops, 2)} GFLOP/s for tf.matMul ${c.sgemm.n}^3 on ${c.backend}` : "–";
      flopLines.push(
        `- ${c.id}: ${(stepFlops(c.id) / 1e6).toFixed(1)} MFLOP of conv and dense layers per step (3 x forward); jointly ${g(lib)} GFLOP/s, raw tfjs ${g(raw)}, torch 1 thread ${g(t1)}, torch ${mtKey ?? "N"} threads ${g(tMt)}; ` +
          `against this machine's sgemm: ${sg}, torch.mm 1024^3 1 thread ${fmt(torchSgemmGflops(torchMs("1", TORCH_SGEMM)), 2)} GFLOP/s.`,
      );
    } else {
      flopLines.push(`- ${c.id}: ${(stepFlops(c.id) / 1e6).toFixed(1)} MFLOP of matmuls per step; jointly ${g(lib)} GFLOP/s, raw tfjs ${g(raw)}, torch 1 thread ${g(t1)}, torch ${mtKey ?? "N"} threads ${g(tMt)}.`);
    }
    if (f.ensemble) {
      const te1 = torchMs("1", "W6_ensemble");
      const teMt = torchMs(mtKey, "W6_ensemble");
      rows.push(
        `| W6e | same fleet, vectorised ensemble (rank-3 tf.matMul, one Adam) | – | – | – | ${fmt(f.ensemble.ms, 2)} | – | – | – | – | ${fmt(te1, 2)} | ${fmt(teMt, 2)} | ${te1 ? `${(f.ensemble.ms / te1).toFixed(2)}x (raw)` : "–"} | (same process as W6) | |`,
      );
      flopLines.push(`- W6e: same FLOPs; hand-written ensemble ${g(f.ensemble.ms)} GFLOP/s, torch ensemble 1 thread ${g(te1)}.`);
    }
    if (c.workers) {
      const w = c.workers;
      const te1 = torchMs("1", "W6_ensemble");
      workerRows.push(
        `| W6 fleet, 64 JointTrainers (fusedAdam) | ${fmt(w.fused_1thread, 2)} | ${fmt(w.fused_2workers, 2)} | ${(w.fused_1thread / w.fused_2workers).toFixed(2)}x | ${fmt(t1, 2)} | ${fmt(tMt, 2)} | ${t1 ? `${(w.fused_2workers / t1).toFixed(2)}x` : "–"} |`,
        `| W6 VectorizedEnsemble (src/parallel/ensemble.ts) | ${fmt(w.ensemble_1thread, 2)} | ${fmt(w.ensemble_2workers, 2)} | ${(w.ensemble_1thread / w.ensemble_2workers).toFixed(2)}x | ${fmt(te1, 2)} | ${fmt(torchMs(mtKey, "W6_ensemble"), 2)} | ${te1 ? `${(w.ensemble_2workers / te1).toFixed(2)}x` : "–"} |`,
        `| control: pure JS loop (the speed-up two threads could get at the time) | | | ${w.spin_speedup}x | | | |`,
      );
    }
  }

  const status = nativeKernels();
  const nativeLine = status.kernels ? `jointly's native kernels on: ${status.blas?.split(" ").slice(0, 2).join(" ")}, ${status.threads} BLAS thread` : `jointly's native kernels off: ${status.reason}`;
  const loadEnd = os.loadavg();
  const machine = {
    cpu: cpuModel(),
    cores: os.cpus().length,
    node: process.version,
    tfjs: tfjsVersion,
    tfjs_backend_wasm: wasmVersion,
    native_kernels: nativeLine,
    torch: t?.torch_version ?? null,
    torch_default_threads: t?.default_threads ?? null,
    python: torch.python ?? null,
    torch_message: torch.message ?? null,
    load_average_start: loadStart.map((l) => round(l)),
    load_average_end: loadEnd.map((l) => round(l)),
    date: new Date().toISOString(),
    total_seconds: round((performance.now() - t0) / 1000, 1),
    method: `each workload in its own Node process; forms alternate per repetition; ms/step = median over repetitions of a block of steps (~${REP_BUDGET_MS} ms per block) after warm-up`,
  };
  json.machine = machine;

  const md = [
    "# jointly benchmark",
    "",
    `Machine: ${machine.cpu}, ${machine.cores} cores; Node ${machine.node}; tfjs ${tfjsVersion} (wasm ${wasmVersion}, single-threaded; ${nativeLine}); ` +
      `PyTorch ${machine.torch ?? "n/a"} (default ${machine.torch_default_threads ?? "?"} thread(s)). ` +
      `Load average ${machine.load_average_start.join(" ")} at start, ${machine.load_average_end.join(" ")} at end (shared machine: numbers are noisy). ${machine.date}.`,
    "",
    "ms per training step (forward, backward, optimizer update, loss read back as a number), median of repetitions after warm-up.",
    "",
    `| id | workload | jointly (best) | jointly, tf.train.adam | jointly, fusedAdam | raw tfjs | jointly/raw, same Adam | best/raw | jointly without the addon (slower by) | stock wasm (slower by) | torch 1 thread | torch ${mtKey ?? "N"} threads | jointly/torch 1t | tensors after (growth) | peak RSS MB |`,
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    "- jointly (best): the library's fastest configuration measured, `(f)` when that is `fusedAdam`. The library form is `JointTrainer` (W4: `AlternatingTrainer`, one bench step = A's turn + B's turn; W5: `JointTrainer` with `weighting: { name: \"gradnorm\", options: { alpha: 1.5, lr: 1e-2 } }`; W6: one `JointTrainer` per model; W7/W8: `JointTrainer` on a `tf.layers` conv model, one softmax / sigmoid cross-entropy task per head, batch norm in training mode). raw: `tf.variableGrads` + `tf.train.adam`'s `applyGradients` by hand. jointly/raw, same Adam: the library's overhead over the hand loop, both with `tf.train.adam`.",
    "- jointly without the addon: the best library form with the native addon switched off (`JOINTLY_NATIVE=0`): jointly's pure-wasm kernels (XNNPACK for every matmul, JS fused optimizer loop, shared Identity), what a machine without a C compiler or OpenBLAS gets; slower by = that / jointly (best).",
    "- stock wasm: the jointly way (tf.train.adam) on stock tfjs-wasm (no addon and none of jointly's kernel overrides); slower by = that / jointly with tf.train.adam.",
    "- tensors after: `tf.memory().numTensors` with the workload's models alive after the last repetition; growth: change from the end of warm-up (0 = no leak).",
    "- peak RSS: the workload's own Node process (each workload runs in a separate process).",
    ...(torch.message ? [`- ${torch.message}`] : []),
    ...(workerRows.length
      ? [
          "",
          "W6 on two cores: the fleet split across 2 `worker_threads` (32 models each, each worker its own single-threaded tfjs-wasm backend), against the same code on one thread (also in a worker). Blocks of steps, no synchronisation within a block (the models are independent).",
          "",
          `| form | 1 thread | 2 workers | speed-up | torch 1 thread | torch ${mtKey ?? "N"} threads | 2 workers/torch 1t |`,
          "|---|---|---|---|---|---|---|",
          ...workerRows,
        ]
      : []),
    ...(threadLines.length
      ? [
          "",
          "Two BLAS threads (`JOINTLY_NATIVE_THREADS=2`; the table above uses one thread on both sides): the big products of W2 and W5 split over the 2 cores.",
          "",
          ...threadLines,
        ]
      : []),
    "",
    "GFLOP/s: matmul FLOPs of a step from the workload definitions (2·m·k·n per matmul; forward, dW, and dX where a gradient flows further up) over the measured time of the whole step, so per-op overhead and the optimizer lower it. " +
      "W7/W8 (conv nets): 3 x the forward FLOPs of the conv and dense layers (2 per multiply-add; forward, input gradient, weight gradient, the usual convention, so the first conv's input gradient that is never computed is counted too), pools, batch norm and activations not counted; next to the machine's sgemm, the ceiling a conv lowered to matrix products could reach.",
    "",
    ...flopLines,
    "",
  ].join("\n");

  const ensemble = only.includes("W6") && !flag("--no-ensemble") ? runEnsembleSweep() : undefined;
  if (ensemble) (json as Record<string, unknown>).ensemble_sweep = ensemble.json;
  const fullMd = ensemble ? `${md}\n${ensemble.md}\n` : md;
  mkdirSync(join(ROOT, "build"), { recursive: true });
  writeFileSync(join(ROOT, "build", "bench.json"), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(ROOT, "build", "bench.md"), fullMd);
  console.log(`\n${fullMd}`);
  console.log(`wrote build/bench.json and build/bench.md in ${machine.total_seconds} s`);
}

const childId = option("--child");
if (childId !== undefined) {
  if (!WORKLOAD_IDS.includes(childId as WorkloadId)) throw new Error(`unknown workload ${childId}`);
  await child(childId as WorkloadId);
} else {
  await parent();
}

/**
 * The vectorised ensemble against the same M models trained one after another in one process, for
 * M = 8, 64, 256 (bench/ensemble.ts, in its own process so its memory does not skew the others).
 */
function runEnsembleSweep(): { md: string; json: unknown } | undefined {
  const sizes = QUICK ? "8,64" : "8,64,256";
  const r = spawnSync(process.execPath, [...process.execArgv, join(HERE, "ensemble.ts")], {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
    timeout: 600_000,
    cwd: ROOT,
    env: { ...process.env, ENSEMBLE_BENCH_M: sizes },
  });
  if (r.status !== 0) {
    console.error(`the ensemble sweep (bench/ensemble.ts) failed with exit code ${r.status}; its table is left out`);
    return undefined;
  }
  const table = r.stdout.slice(r.stdout.indexOf("\nVectorised ensemble vs sequential models")).trim();
  const json = JSON.parse(readFileSync(join(ROOT, "build", "ensemble-bench.json"), "utf8")) as unknown;
  return { md: table, json };
}
