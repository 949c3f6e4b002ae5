/**
 * Speed of the convolution kernels (src/backend/kernels/Conv2D*.ts, DepthwiseConv2dNative*.ts) on
 * the layers of the W7 (MultiMNIST LeNet) and W8 (CelebA-like) benchmarks, on W8's second layer
 * with stride 2 (s2), and on two depthwise layers of W8's sizes (dw2, dw3): each layer's forward
 * pass, input gradient and filter gradient, on
 *   stock   the wasm backend's own kernels (XNNPACK forward, the scalar-loop input gradient; it
 *           has no filter gradient),
 *   js      jointly's kernels without the native addon,
 *   native  jointly's kernels with the addon (im2col + OpenBLAS sgemm, one thread),
 *   cpu     the tfjs cpu backend (only when asked for: its filter gradient takes minutes a call on
 *           the W8 layers, e.g. 290 s on celeb2),
 *   torch   PyTorch on one thread (bench/conv_kernels_torch.py), when /usr/bin/python3 has torch.
 * Each figure is the fastest of a few calls after a warm-up (a time budget caps the slow paths),
 * in ms and GFLOP/s (2·outputs·kh·kw·cin multiply-adds per pass). Writes build/conv-kernels.json.
 *
 *   node --import tsx bench/conv-kernels.ts [--paths stock,js,native,torch,cpu] [--only lenet1,celeb2] [--budget-ms 1500]
 */
import { spawnSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { activeNative, nativeKernels } from "../src/backend/native.js";
import type { WasmKernel } from "../src/backend/kernels/types.js";
import { conv2DKernel } from "../src/backend/kernels/Conv2D.js";
import { conv2DBackpropInputKernel } from "../src/backend/kernels/Conv2DBackpropInput.js";
import { conv2DBackpropFilterKernel } from "../src/backend/kernels/Conv2DBackpropFilter.js";
import { depthwiseConv2dNativeKernel } from "../src/backend/kernels/DepthwiseConv2dNative.js";
import { depthwiseConv2dNativeBackpropInputKernel } from "../src/backend/kernels/DepthwiseConv2dNativeBackpropInput.js";
import { depthwiseConv2dNativeBackpropFilterKernel } from "../src/backend/kernels/DepthwiseConv2dNativeBackpropFilter.js";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "..");

interface Layer {
  name: string;
  net: "W7" | "W8" | "depthwise" | "strided";
  x: [number, number, number, number];
  f: [number, number, number, number];
  stride: number;
  pad: "same" | "valid";
  /** The input comes out of a relu (about half zeros), as in the nets; the first layer's does not. */
  relu: boolean;
}

const LAYERS: Layer[] = [
  { name: "lenet1", net: "W7", x: [256, 28, 28, 1], f: [5, 5, 1, 10], stride: 1, pad: "valid", relu: false },
  { name: "lenet2", net: "W7", x: [256, 12, 12, 10], f: [5, 5, 10, 20], stride: 1, pad: "valid", relu: true },
  { name: "celeb1", net: "W8", x: [64, 64, 64, 3], f: [3, 3, 3, 32], stride: 1, pad: "same", relu: false },
  { name: "celeb2", net: "W8", x: [64, 32, 32, 32], f: [3, 3, 32, 64], stride: 1, pad: "same", relu: true },
  { name: "celeb3", net: "W8", x: [64, 16, 16, 64], f: [3, 3, 64, 128], stride: 1, pad: "same", relu: true },
  { name: "s2", net: "strided", x: [64, 32, 32, 32], f: [3, 3, 32, 64], stride: 2, pad: "same", relu: true },
  { name: "dw2", net: "depthwise", x: [64, 32, 32, 32], f: [3, 3, 32, 1], stride: 1, pad: "same", relu: true },
  { name: "dw3", net: "depthwise", x: [64, 16, 16, 64], f: [3, 3, 64, 2], stride: 1, pad: "same", relu: true },
];

/** The kernel names of a layer's three ops. */
function kernelNames(l: Layer): Record<Op, string> {
  return l.net === "depthwise"
    ? { forward: "DepthwiseConv2dNative", backpropInput: "DepthwiseConv2dNativeBackpropInput", backpropFilter: "DepthwiseConv2dNativeBackpropFilter" }
    : { forward: "Conv2D", backpropInput: "Conv2DBackpropInput", backpropFilter: "Conv2DBackpropFilter" };
}

const OPS = ["forward", "backpropInput", "backpropFilter"] as const;
type Op = (typeof OPS)[number];
type Path = "stock" | "js" | "native" | "cpu" | "torch";
const KERNELS: WasmKernel[] = [
  conv2DKernel,
  conv2DBackpropInputKernel,
  conv2DBackpropFilterKernel,
  depthwiseConv2dNativeKernel,
  depthwiseConv2dNativeBackpropInputKernel,
  depthwiseConv2dNativeBackpropFilterKernel,
];

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(name);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const paths = (arg("--paths") ?? "stock,js,native,torch").split(",") as Path[];
const only = arg("--only")?.split(",");
const budgetMs = Number(arg("--budget-ms") ?? 1500);
const layers = LAYERS.filter((l) => only === undefined || only.includes(l.name));

function flops(l: Layer): number {
  const info = tf.backend_util.computeConv2DInfo(l.x, l.f, l.stride, 1, l.pad, undefined, l.net === "depthwise");
  return 2 * tf.util.sizeFromShape(info.outShape) * l.f[0] * l.f[1] * (l.net === "depthwise" ? 1 : l.f[2]);
}

/** Fastest call after a warm-up; stops early once `budgetMs` is spent. */
function bestMs(fn: () => void, reps = 5): number {
  const start = performance.now();
  fn();
  let best = performance.now() - start;
  for (let i = 0; i < reps && performance.now() - start < budgetMs; i++) {
    const t0 = performance.now();
    fn();
    best = Math.min(best, performance.now() - t0);
  }
  return best;
}

/** Registers our kernels for one path (native or not) over the stock ones; returns the restore. */
function install(path: "js" | "native"): () => void {
  const saved: { name: string; stock?: tf.KernelConfig }[] = [];
  for (const k of KERNELS) {
    const stock = tf.getKernel(k.kernelName, "wasm");
    const kernelFunc = k.make(path === "native" ? activeNative() : undefined, stock?.kernelFunc);
    if (kernelFunc === undefined) continue;
    if (stock !== undefined) tf.unregisterKernel(k.kernelName, "wasm");
    tf.registerKernel({ kernelName: k.kernelName, backendName: "wasm", kernelFunc, setupFunc: stock?.setupFunc });
    saved.push({ name: k.kernelName, stock });
  }
  return () => {
    for (const s of saved) {
      tf.unregisterKernel(s.name, "wasm");
      if (s.stock !== undefined) tf.registerKernel(s.stock);
    }
  };
}

/** One layer's three ops on the current backend; ms per op (undefined where the kernel is missing). */
function timeLayer(l: Layer): Partial<Record<Op, number>> {
  const info = tf.backend_util.computeConv2DInfo(l.x, l.f, l.stride, 1, l.pad, undefined, l.net === "depthwise");
  const names = kernelNames(l);
  const x0 = tf.randomNormal(l.x, 0, 1, "float32", 1);
  const x = l.relu ? tf.relu(x0) : x0.clone();
  const filter = tf.randomNormal(l.f, 0, 0.1, "float32", 2);
  const dy = tf.randomNormal(info.outShape, 0, 1, "float32", 3);
  const attrs = { strides: l.stride, pad: l.pad, dataFormat: "NHWC", dilations: 1, dimRoundingMode: undefined };
  const run = (name: string, inputs: tf.NamedTensorMap, a: object) => () => {
    (tf.engine().runKernel(name, inputs, a as tf.NamedAttrMap) as tf.Tensor).dispose();
  };
  const args: Record<Op, [tf.NamedTensorMap, object]> = {
    forward: [{ x, filter }, attrs],
    backpropInput: [{ dy, filter }, { ...attrs, inputShape: l.x }],
    backpropFilter: [{ x, dy }, { ...attrs, filterShape: l.f }],
  };
  const out: Partial<Record<Op, number>> = {};
  try {
    for (const op of OPS) {
      if (tf.getKernel(names[op], tf.getBackend()) === undefined) continue;
      out[op] = bestMs(run(names[op], ...args[op]));
    }
  } finally {
    tf.dispose([x0, x, filter, dy]);
  }
  return out;
}

function torchTimes(): { layers: Record<string, Partial<Record<Op, number>>>; version: string } | string {
  const py = process.env.JOINTLY_PYTHON ?? "/usr/bin/python3";
  const r = spawnSync(py, [join(ROOT, "bench", "conv_kernels_torch.py"), "--threads", "1"], {
    input: JSON.stringify(layers.map((l) => ({ ...l, groups: l.net === "depthwise" ? l.f[2] : 1 }))),
    encoding: "utf8",
    timeout: 600_000,
  });
  if (r.status !== 0) return `PyTorch not run (${py}: ${(r.stderr || r.error?.message || "").trim().split("\n").pop()})`;
  const res = JSON.parse(r.stdout.trim().split("\n").pop()!) as { torch_version: string; layers: Record<string, Partial<Record<Op, number>>> };
  return { layers: res.layers, version: res.torch_version };
}

const results: Record<string, Partial<Record<Path, Partial<Record<Op, number>>>>> = {};
for (const l of layers) results[l.name] = {};
const notes: string[] = [];

for (const path of paths) {
  if (path === "torch") {
    const t = torchTimes();
    if (typeof t === "string") notes.push(t);
    else {
      notes.push(`torch ${t.version}, 1 thread`);
      for (const l of layers) results[l.name]!.torch = t.layers[l.name];
    }
    continue;
  }
  await tf.setBackend(path === "cpu" ? "cpu" : "wasm");
  if (path === "native" && activeNative() === undefined) {
    notes.push(`native skipped: ${nativeKernels().reason}`);
    continue;
  }
  const restore = path === "js" || path === "native" ? install(path) : () => {};
  try {
    for (const l of layers) results[l.name]![path] = timeLayer(l);
  } finally {
    restore();
  }
}

const fmt = (ms: number | undefined, f: number): string => (ms === undefined ? "—".padStart(16) : `${ms.toFixed(1).padStart(7)} ms ${(f / ms / 1e6).toFixed(1).padStart(5)} GF/s`);
console.log(`conv kernels, ${layers.map((l) => l.name).join(", ")}; ${notes.join("; ")}`);
for (const l of layers) {
  const f = flops(l);
  console.log(`\n${l.name} (${l.net}) x[${l.x}] f[${l.f}] ${l.pad}: ${(f / 1e9).toFixed(3)} GFLOP per op`);
  console.log(`  ${"path".padEnd(7)}${OPS.map((o) => o.padStart(19)).join("")}${"all three".padStart(19)}`);
  for (const p of paths) {
    const r = results[l.name]![p];
    if (r === undefined) continue;
    const total = OPS.every((o) => r[o] !== undefined) ? OPS.reduce((s, o) => s + r[o]!, 0) : undefined;
    console.log(`  ${p.padEnd(7)}${OPS.map((o) => "  " + fmt(r[o], f)).join("")}  ${fmt(total, 3 * f)}`);
  }
}
mkdirSync(join(ROOT, "build"), { recursive: true });
writeFileSync(join(ROOT, "build", "conv-kernels.json"), JSON.stringify({ date: new Date().toISOString(), notes, layers: LAYERS, results }, null, 1));
