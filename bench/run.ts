/**
 * `npm run bench`: the six workloads of bench/workloads.ts, the library's way and as a raw
 * TensorFlow.js loop on the same backend, stock tfjs-wasm matmul kernels for W1/W2, and PyTorch on the
 * CPU side by side (bench/torch_bench.py). Writes build/bench.json and build/bench.md.
 *
 *   node --import tsx bench/run.ts [--only W1,W3] [--quick] [--no-torch]
 *
 * Each workload runs in its own child process (`--child W1`) so that its peak RSS and tensor counts
 * are its own, and the processes run one after another so they do not compete for the CPU. Within a
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
import { initBackend } from "../src/backend/init.js";
import { registerFastWasmMatMul } from "../src/backend/wasm-matmul.js";
import { WORKLOADS, WORKLOAD_IDS, type Form, type Runner, type WorkloadId } from "./workloads.js";

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
  tensorsAfter: number;
  tensorCounts: number[];
  tensorGrowth: number;
  leakedAfterDispose: number;
  peakRssMB: number;
}

const sum = (xs: number[]): number => xs.reduce((a, b) => a + b, 0);

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
  const info = await initBackend({ backend: "wasm", report: false });
  const def = WORKLOADS[id];
  const start = tf.memory().numTensors;
  const runners = def.forms.map((f) => [f, def.make(f)] as const);
  const plan = runners.map(([form, r]) => {
    const { est, firstLoss } = warm(r, id === "W2" ? 2 : 3);
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

  // Stock tfjs-wasm matmul kernels (jointly's overrides removed), the library's way, for W1 and W2.
  let stockWasm: FormResult | undefined;
  const lib = plan.find((p) => p.form === "jointly");
  if ((id === "W1" || id === "W2") && lib && info.fastPaths.includes("wasm-matmul")) {
    registerFastWasmMatMul().restore();
    try {
      const { est } = warm(lib.r, id === "W2" ? 1 : 3);
      const steps = Math.max(1, Math.min(50, Math.round(REP_BUDGET_MS / Math.max(est, 0.01))));
      const samples: number[] = [];
      let loss = NaN;
      for (let rep = 0; rep < (QUICK ? 2 : 3); rep++) {
        const b = block(lib.r, steps);
        samples.push(b.ms);
        loss = b.loss;
      }
      stockWasm = { ms: round(median(samples), 3), samples: samples.map((s) => round(s, 3)), stepsPerRep: steps, firstLoss: NaN, lastLoss: loss };
    } finally {
      registerFastWasmMatMul();
    }
    counts.push(tf.memory().numTensors);
  }

  const tensorsAfter = tf.memory().numTensors;
  for (const [, r] of runners) r.dispose();
  const result: ChildResult = {
    id,
    title: def.title,
    backend: info.name,
    fastPaths: info.fastPaths,
    forms,
    stockWasm,
    tensorsAfter,
    tensorCounts: counts,
    tensorGrowth: Math.max(...counts) - (counts[0] as number),
    leakedAfterDispose: tf.memory().numTensors - start,
    peakRssMB: round(process.resourceUsage().maxRSS / 1024, 1),
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

function findPython(): string | undefined {
  const candidates = [process.env.JOINTLY_PYTHON, "/usr/bin/python3", "python3"].filter((p): p is string => !!p);
  for (const py of candidates) {
    const r = spawnSync(py, ["-c", "import torch"], { stdio: "ignore", timeout: 60_000 });
    if (r.status === 0) return py;
  }
  return undefined;
}

function runTorch(only: WorkloadId[]): { out?: TorchOutput; python?: string; message?: string } {
  const python = findPython();
  if (!python) return { message: "PyTorch not found (tried $JOINTLY_PYTHON, /usr/bin/python3, python3): torch columns skipped. On Debian: apt-get install python3-torch." };
  const names = only.flatMap((id) => (id === "W6" ? ["W6", "W6_ensemble"] : [id]));
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

function runChild(id: WorkloadId): ChildResult {
  const args = [...process.execArgv, fileURLToPath(import.meta.url), "--child", id, ...(QUICK ? ["--quick"] : [])];
  const r = spawnSync(process.execPath, args, { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"], timeout: 300_000, cwd: ROOT });
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
  const only = (option("--only")?.split(",") ?? WORKLOAD_IDS) as WorkloadId[];
  for (const id of only) if (!WORKLOAD_IDS.includes(id)) throw new Error(`unknown workload ${id}; use ${WORKLOAD_IDS.join(", ")}`);
  const t0 = performance.now();
  const loadStart = os.loadavg();
  const require = createRequire(import.meta.url);
  const tfjsVersion = (require("@tensorflow/tfjs/package.json") as { version: string }).version;
  const wasmVersion = (require("@tensorflow/tfjs-backend-wasm/package.json") as { version: string }).version;
  console.log(`jointly bench: ${only.join(", ")}${QUICK ? " (quick)" : ""}; load average ${loadStart.map((l) => l.toFixed(2)).join(" ")}`);

  const results: ChildResult[] = [];
  for (const id of only) {
    const c = runChild(id);
    results.push(c);
    const f = c.forms;
    console.log(
      `${id} ${c.title}: jointly ${fmt(f.jointly?.ms, 2)} | raw ${fmt(f.raw?.ms, 2)}${f.ensemble ? ` | ensemble ${fmt(f.ensemble.ms, 2)}` : ""}` +
        `${c.stockWasm ? ` | stock wasm ${fmt(c.stockWasm.ms, 2)}` : ""} ms/step; tensors ${c.tensorsAfter} (growth ${c.tensorGrowth}); peak RSS ${c.peakRssMB} MB`,
    );
  }

  const torch = flag("--no-torch") ? { message: "--no-torch given: torch columns skipped." } : runTorch(only);
  if (torch.message) console.log(torch.message);
  const t = torch.out;
  const mtKey = t ? String(Math.max(t.default_threads, t.cpu_count)) : undefined;
  const torchMs = (threads: string | undefined, name: string): number | undefined => (t && threads ? t.runs[threads]?.[name] : undefined);

  const json: Record<string, unknown> = {};
  const rows: string[] = [];
  for (const c of results) {
    const f = c.forms;
    const lib = f.jointly?.ms;
    const raw = f.raw?.ms;
    const basis = lib ?? raw;
    const t1 = torchMs("1", c.id);
    const tDefault = t ? torchMs(String(t.default_threads), c.id) : undefined;
    const tMt = torchMs(mtKey, c.id);
    const entry: Record<string, unknown> = {
      title: c.title,
      jointly: lib ?? null,
      raw: raw ?? null,
      jointly_note: lib === undefined ? "raw only: the library has no API for this workload yet" : undefined,
      jointly_over_raw: lib !== undefined && raw !== undefined ? round(lib / raw, 3) : undefined,
      stock_wasm: c.stockWasm?.ms,
      fast_kernel_speedup: c.stockWasm && lib ? round(c.stockWasm.ms / lib, 2) : undefined,
      torch_1t: t1 !== undefined ? round(t1, 3) : undefined,
      torch: tDefault !== undefined ? round(tDefault, 3) : undefined,
      torch_threads: t?.default_threads,
      [`torch_${mtKey}t`]: mtKey && mtKey !== "1" && tMt !== undefined ? round(tMt, 3) : undefined,
      ratio_vs_torch_1t: basis !== undefined && t1 ? round(basis / t1, 2) : undefined,
      ratio_basis: lib !== undefined ? "jointly" : "raw",
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
    json[c.id] = entry;
    const libCell = lib !== undefined ? fmt(lib, 2) : "raw only";
    const ratio = basis !== undefined && t1 ? `${(basis / t1).toFixed(1)}x${lib === undefined ? " (raw)" : ""}` : "–";
    rows.push(
      `| ${c.id} | ${c.title} | ${libCell} | ${fmt(raw, 2)} | ${lib !== undefined && raw !== undefined ? (lib / raw).toFixed(2) : "–"} | ` +
        `${c.stockWasm ? `${fmt(c.stockWasm.ms)} (${(c.stockWasm.ms / (lib ?? NaN)).toFixed(1)}x)` : "–"} | ${fmt(t1, 2)} | ${fmt(tMt, 2)} | ${ratio} | ` +
        `${c.tensorsAfter} (${c.tensorGrowth >= 0 ? "+" : ""}${c.tensorGrowth}) | ${fmt(c.peakRssMB, 0)} |`,
    );
    if (f.ensemble) {
      const te1 = torchMs("1", "W6_ensemble");
      const teMt = torchMs(mtKey, "W6_ensemble");
      rows.push(
        `| W6e | same fleet, vectorised ensemble (rank-3 tf.matMul, one Adam) | – | ${fmt(f.ensemble.ms, 2)} | – | – | ${fmt(te1, 2)} | ${fmt(teMt, 2)} | ${te1 ? `${(f.ensemble.ms / te1).toFixed(1)}x` : "–"} | (same process as W6) | |`,
      );
    }
  }

  const loadEnd = os.loadavg();
  const machine = {
    cpu: cpuModel(),
    cores: os.cpus().length,
    node: process.version,
    tfjs: tfjsVersion,
    tfjs_backend_wasm: wasmVersion,
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
    `Machine: ${machine.cpu}, ${machine.cores} cores; Node ${machine.node}; tfjs ${tfjsVersion} (wasm ${wasmVersion}, single-threaded, jointly's XNNPACK matmul kernels on); ` +
      `PyTorch ${machine.torch ?? "n/a"} (default ${machine.torch_default_threads ?? "?"} thread(s)). ` +
      `Load average ${machine.load_average_start.join(" ")} at start, ${machine.load_average_end.join(" ")} at end (shared machine: numbers are noisy). ${machine.date}.`,
    "",
    "ms per training step (forward, backward, optimizer update, loss read back as a number), median of repetitions after warm-up.",
    "",
    `| id | workload | jointly | raw tfjs | jointly/raw | stock wasm (gain) | torch 1 thread | torch ${mtKey ?? "N"} threads | jointly/torch 1t | tensors after (growth) | peak RSS MB |`,
    "|---|---|---|---|---|---|---|---|---|---|---|",
    ...rows,
    "",
    "- jointly: `JointTrainer` (W6: one per model). raw: `tf.variableGrads` + `optimizer.applyGradients` by hand. \"raw only\": the library has no API for this workload yet; the ratio then uses the raw loop.",
    "- stock wasm: the jointly way with tfjs-wasm's own matmul kernels (jointly's overrides removed); gain = stock / jointly.",
    "- tensors after: `tf.memory().numTensors` with the workload's models alive after the last repetition; growth: change from the end of warm-up (0 = no leak).",
    "- peak RSS: the workload's own Node process (each workload runs in a separate process).",
    ...(torch.message ? [`- ${torch.message}`] : []),
    "",
  ].join("\n");

  mkdirSync(join(ROOT, "build"), { recursive: true });
  writeFileSync(join(ROOT, "build", "bench.json"), `${JSON.stringify(json, null, 2)}\n`);
  writeFileSync(join(ROOT, "build", "bench.md"), md);
  console.log(`\n${md}`);
  console.log(`wrote build/bench.json and build/bench.md in ${machine.total_seconds} s`);
}

const childId = option("--child");
if (childId !== undefined) {
  if (!WORKLOAD_IDS.includes(childId as WorkloadId)) throw new Error(`unknown workload ${childId}`);
  await child(childId as WorkloadId);
} else {
  await parent();
}
