/**
 * The optional native kernels (`native/`): matrix products through the system's BLAS, the Adam / SGD
 * updates, losses, convolutions, pooling and broadcasting element-wise ops, run directly on the
 * tfjs-wasm heap.
 *
 * Why: where the native TensorFlow backend cannot be installed, tfjs falls back to wasm, whose SIMD128
 * matrix products reach about 15 GFLOP/s on one core of the development machine, against 60-85 for
 * OpenBLAS's sgemm on the same core. The addon keeps every tensor where tfjs-wasm put it (no copies)
 * and only replaces the loops. Where it comes from, first found first: `JOINTLY_NATIVE_PATH`; a build
 * from source, build/native/jointly_native.node (`npm run native`, the cookbook and test commands
 * through scripts/setup.mjs, or the package's install step, scripts/install-native.mjs, where a
 * compiler and OpenBLAS exist); the prebuild shipped in the package for Linux x64
 * (prebuilds/linux-x64/, OpenBLAS linked in; the x86-64-v3 build on CPUs with AVX2/FMA, else the
 * baseline one). When none loads, everything takes the pure-wasm paths and {@link nativeKernels}
 * says why in one line. The addon works on tfjs-wasm's internals, so it is used only with a
 * supported @tensorflow/tfjs-backend-wasm version (./wasm-internals.ts).
 *
 * Switches: `JOINTLY_NATIVE=0` never loads it; `JOINTLY_NATIVE_PATH` loads another build;
 * `JOINTLY_NATIVE_THREADS` sets BLAS threads (default 1: tfjs itself runs on one thread, a second BLAS
 * thread measured no faster on the 2-core machine, and one thread keeps the comparison with
 * single-threaded PyTorch fair).
 */
import { createRequire } from "node:module";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { wasmInternalsProblem } from "./wasm-internals.js";

/** The addon's functions; offsets are byte offsets into `heap`, counts are float32 elements. */
export interface NativeKernels {
  /** C_b = act(op(A_b)·op(B_b) + bias) for b < batch; strides in floats (0 = one operand for every b). */
  gemm(
    heap: ArrayBufferLike,
    batch: number,
    M: number,
    N: number,
    K: number,
    transA: number,
    transB: number,
    aOff: number,
    aStride: number,
    bOff: number,
    bStride: number,
    cOff: number,
    biasOff: number,
    biasSize: number,
    activation: number,
    alpha: number,
  ): void;
  /** tf.train.adam's update of one variable, bit for bit; outputs may alias inputs. */
  adam(
    heap: ArrayBufferLike,
    n: number,
    xOff: number,
    gOff: number,
    mOff: number,
    vOff: number,
    xDst: number,
    mDst: number,
    vDst: number,
    b1: number,
    c1: number,
    b2: number,
    c2: number,
    oneMinusAcc1: number,
    oneMinusAcc2: number,
    eps: number,
    negLr: number,
  ): void;
  /** tf.train.sgd's update x' = -lr·g + x. */
  sgd(heap: ArrayBufferLike, n: number, xOff: number, gOff: number, xDst: number, negLr: number): void;
  /** out[j] = Σ_i x[i, j] over a row-major [rows, cols] block, in row order (float32). */
  sumRows(heap: ArrayBufferLike, rows: number, cols: number, xOff: number, outOff: number): void;
  /** out[i,:] = table[idx[i],:] (4-byte elements); -1, or the position of the first out-of-range index (nothing copied). */
  gatherRows(heap: ArrayBufferLike, n: number, rowElems: number, tableRows: number, tableOff: number, idxOff: number, outOff: number): number;
  /** A rows x width block of 4-byte elements from one row stride to another (strides in elements). */
  copy2d(heap: ArrayBufferLike, rows: number, width: number, srcOff: number, srcStride: number, dstOff: number, dstStride: number): void;
  /** Gradient through an activation (wasm FusableActivation code) from its output y. */
  actGrad(heap: ArrayBufferLike, n: number, activation: number, dyOff: number, yOff: number, outOff: number): void;
  /** Per-row (or mean) loss; kind 0 softmax CE on class ids, 1 MSE, 2 sigmoid CE. -1 or the row of a bad class id. */
  lossForward(heap: ArrayBufferLike, kind: number, n: number, cols: number, predOff: number, labelOff: number, labelIsFloat: number, outOff: number, mean: number): number;
  /** Gradient of {@link NativeKernels.lossForward} for the predictions (or the labels, for MSE / sigmoid CE). */
  lossBackward(
    heap: ArrayBufferLike, kind: number, n: number, cols: number, predOff: number, labelOff: number, labelIsFloat: number,
    dyOff: number, dyIsScalar: number, outOff: number, wrtLabels: number,
  ): void;
  /** NHWC Conv2D: out = act(conv(x, w) + bias) as im2col + sgemm (biasOff < 0: no bias); geometry: {@link ConvGeometryArgs}. */
  conv2d(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, wOff: number, outOff: number, biasOff: number, activation: number, alpha: number]): void;
  /** dx of Conv2D for dy (sgemm dy·wᵀ, then col2im). */
  conv2dBackpropInput(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, dyOff: number, wOff: number, dxOff: number]): void;
  /** dw of Conv2D for dy (im2col(x)ᵀ·dy by sgemm, summed over blocks of rows). */
  conv2dBackpropFilter(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, dyOff: number, dwOff: number]): void;
  /** NHWC depthwise convolution, filter [fh, fw, inC, mult], outChannels = inC·mult (direct loops). */
  depthwiseConv2d(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, wOff: number, outOff: number]): void;
  /** dx of the depthwise convolution. */
  depthwiseConv2dBackpropInput(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, dyOff: number, wOff: number, dxOff: number]): void;
  /** dw of the depthwise convolution (sums in float64). */
  depthwiseConv2dBackpropFilter(heap: ArrayBufferLike, ...args: [...geometry: ConvGeometryArgs, xOff: number, dyOff: number, dwOff: number]): void;
  /** Max pooling, NHWC / NDHWC (2-D: depth 1): y = each window's maximum; geometry: {@link PoolGeometryArgs}. */
  maxPool(heap: ArrayBufferLike, ...args: [...geometry: PoolGeometryArgs, xOff: number, yOff: number]): void;
  /** dx (x's shape) of max pooling: each dy added, in output order, at its window's maximum. */
  maxPoolGrad(heap: ArrayBufferLike, ...args: [...geometry: PoolGeometryArgs, xOff: number, dyOff: number, dxOff: number]): void;
  /**
   * A float32 binary op (code from {@link BINARY_OPS}) with broadcasting, as four output axes and each
   * operand's strides over them in floats (0 where it is broadcast); the output is contiguous.
   */
  binary(
    heap: ArrayBufferLike, op: number, d0: number, d1: number, d2: number, d3: number,
    as0: number, as1: number, as2: number, as3: number, bs0: number, bs1: number, bs2: number, bs3: number,
    aOff: number, bOff: number, outOff: number,
  ): void;
  /**
   * Batch normalisation over the last axis of a [rows, channels] block: offset + (x − mean)·scale /
   * √(variance + ε), in double as the cpu backend, rounded to float32. Each parameter has 1 or
   * `channels` values; offsetOff / scaleOff < 0: none.
   */
  batchNorm(
    heap: ArrayBufferLike, rows: number, channels: number, xOff: number, meanOff: number, meanLen: number, varOff: number, varLen: number,
    offsetOff: number, offsetLen: number, scaleOff: number, scaleLen: number, epsilon: number, outOff: number,
  ): void;
  setThreads(n: number): void;
  info(): { threads: number; blasConfig: string };
}

/** The op codes of {@link NativeKernels.binary}. */
export const BINARY_OPS = { Add: 0, Sub: 1, Multiply: 2, RealDiv: 3 } as const;

/**
 * A pooling's geometry as the native pooling functions take it (NDHWC; a 2-D pooling has depth 1,
 * filter depth 1, stride and dilation 1 and no front pad): output (od, oh, ow) and tap (fd, fh, fw)
 * read input (od·strideDepth − padFront + fd·dilationDepth, ...).
 */
export type PoolGeometryArgs = [
  batch: number,
  channels: number,
  inDepth: number,
  inHeight: number,
  inWidth: number,
  outDepth: number,
  outHeight: number,
  outWidth: number,
  strideDepth: number,
  strideHeight: number,
  strideWidth: number,
  dilationDepth: number,
  dilationHeight: number,
  dilationWidth: number,
  filterDepth: number,
  filterHeight: number,
  filterWidth: number,
  padFront: number,
  padTop: number,
  padLeft: number,
];

/**
 * A convolution's geometry as the native conv functions take it (NHWC; every value from tfjs's
 * computeConv2DInfo): output pixel (oy, ox) and tap (fy, fx) read input pixel
 * (oy·strideHeight − padTop + fy·dilationHeight, ox·strideWidth − padLeft + fx·dilationWidth).
 */
export type ConvGeometryArgs = [
  batch: number,
  inHeight: number,
  inWidth: number,
  inChannels: number,
  outHeight: number,
  outWidth: number,
  outChannels: number,
  filterHeight: number,
  filterWidth: number,
  strideHeight: number,
  strideWidth: number,
  dilationHeight: number,
  dilationWidth: number,
  padTop: number,
  padLeft: number,
];

/** What loading the addon gave: the kernels, or why there are none. */
export interface NativeStatus {
  kernels?: NativeKernels;
  /** The file loaded, or the last one tried. */
  path: string;
  /**
   * Which file was taken and why, when loaded: "JOINTLY_NATIVE_PATH", "built from source" or
   * "prebuilt x86-64-v3 (linux-x64)" (followed by why a build from source was passed over).
   */
  source?: string;
  /** Why `kernels` is undefined (not built, switched off, unsupported tfjs-wasm, failed to load), in one line. */
  reason?: string;
  /** BLAS threads in use and the BLAS library's own description, when loaded. */
  threads?: number;
  blas?: string;
}

export const NATIVE_ENV = "JOINTLY_NATIVE";
export const NATIVE_PATH_ENV = "JOINTLY_NATIVE_PATH";
export const NATIVE_THREADS_ENV = "JOINTLY_NATIVE_THREADS";

/** The package root: two levels above this file, in src/backend/ (the checkout) and dist/backend/ (built) alike. */
function packageRoot(): string {
  return fileURLToPath(new URL("../../", import.meta.url));
}

/** Where `npm run native` (and the install step, where it can compile) writes the addon: build/native/ at the package root. */
export function defaultNativePath(): string {
  return join(packageRoot(), "build", "native", "jointly_native.node");
}

/** The CPU's feature flags (the "flags" line of /proc/cpuinfo); empty where there is none. */
function cpuFlags(): Set<string> {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    return new Set((line ?? "").replace(/^flags\s*:/, "").trim().split(/\s+/));
  } catch {
    return new Set();
  }
}

/**
 * The prebuilt addon for this platform and CPU, from prebuilds/<platform>-<arch>/manifest.json
 * (written by `node scripts/build-native.mjs --prebuilt`): its first addon whose CPU flags this CPU
 * has. Returns the file and a label, or why there is none.
 */
export function prebuiltNativePath(flags: Set<string> = cpuFlags()): { path: string; label: string } | { reason: string } {
  const platform = `${process.platform}-${process.arch}`;
  const dir = join(packageRoot(), "prebuilds", platform);
  let manifest: { addons: { file: string; march: string; cpuFlags: string[] }[] };
  try {
    manifest = JSON.parse(readFileSync(join(dir, "manifest.json"), "utf8")) as typeof manifest;
  } catch {
    return { reason: `no prebuild for ${platform}` };
  }
  const pick = manifest.addons.find((a) => a.cpuFlags.every((f) => flags.has(f)));
  if (pick === undefined) return { reason: `no prebuild in ${dir} runs on this CPU` };
  return { path: join(dir, pick.file), label: `prebuilt ${pick.march} (${platform})` };
}

/**
 * BLAS threads from `JOINTLY_NATIVE_THREADS` (default 1). Throws, naming the variable and the value,
 * when it is not an integer >= 1: a typo must not quietly change the speed or the backend.
 */
export function nativeThreadsSetting(env: NodeJS.ProcessEnv = process.env): number {
  const text = env[NATIVE_THREADS_ENV];
  if (text === undefined || text === "") return 1;
  const threads = /^\s*\d+\s*$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(threads) || threads < 1) {
    throw new Error(`${NATIVE_THREADS_ENV} must be an integer >= 1 (the number of BLAS threads), but got "${text}"; unset it for 1 thread.`);
  }
  return threads;
}

let status: NativeStatus | undefined;
let disabled = false;

/** The addon's functions as a plain object, or why the file is not a usable addon. */
function requireAddon(path: string): NativeKernels | string {
  let addon: NativeKernels;
  try {
    addon = createRequire(import.meta.url)(path) as NativeKernels;
  } catch (err) {
    return `failed to load ${path}: ${err instanceof Error ? err.message.split("\n")[0] : String(err)}`;
  }
  // A plain object of the same functions (the addon's own properties are read-only), so a caller can wrap one.
  const kernels: NativeKernels = {
    gemm: addon.gemm,
    adam: addon.adam,
    sgd: addon.sgd,
    sumRows: addon.sumRows,
    gatherRows: addon.gatherRows,
    copy2d: addon.copy2d,
    actGrad: addon.actGrad,
    lossForward: addon.lossForward,
    lossBackward: addon.lossBackward,
    conv2d: addon.conv2d,
    conv2dBackpropInput: addon.conv2dBackpropInput,
    conv2dBackpropFilter: addon.conv2dBackpropFilter,
    depthwiseConv2d: addon.depthwiseConv2d,
    depthwiseConv2dBackpropInput: addon.depthwiseConv2dBackpropInput,
    depthwiseConv2dBackpropFilter: addon.depthwiseConv2dBackpropFilter,
    maxPool: addon.maxPool,
    maxPoolGrad: addon.maxPoolGrad,
    binary: addon.binary,
    batchNorm: addon.batchNorm,
    setThreads: addon.setThreads,
    info: addon.info,
  };
  const missing = Object.entries(kernels).filter(([, f]) => typeof f !== "function").map(([name]) => name);
  if (missing.length > 0) return `${path} is an older build without ${missing.join(", ")} (run \`npm run native\`)`;
  return kernels;
}

function load(): NativeStatus {
  const envPath = process.env[NATIVE_PATH_ENV];
  const built = defaultNativePath();
  const env = process.env[NATIVE_ENV];
  if (env === "0" || env === "false") return { path: envPath || built, reason: `switched off (${NATIVE_ENV}=${env})` };
  const threads = nativeThreadsSetting();
  const problem = wasmInternalsProblem();
  if (problem !== undefined) return { path: envPath || built, reason: problem };
  // The candidates in order; a build from source that fails to load gives way to the prebuild.
  const candidates: { path: string; source: string }[] = [];
  const passedOver: string[] = [];
  if (envPath) {
    // Only that file: whoever set the variable wants to know when it does not load.
    if (!existsSync(envPath)) return { path: envPath, reason: `not built (${envPath} does not exist; run \`npm run native\`)` };
    candidates.push({ path: envPath, source: NATIVE_PATH_ENV });
  } else {
    if (existsSync(built)) candidates.push({ path: built, source: "built from source" });
    else passedOver.push(`no ${built}`);
    const pre = prebuiltNativePath();
    if ("path" in pre) candidates.push({ path: pre.path, source: pre.label });
    else passedOver.push(pre.reason);
  }
  let kernels: NativeKernels | undefined;
  let chosen: { path: string; source: string } | undefined;
  for (const c of candidates) {
    const k = requireAddon(c.path);
    if (typeof k === "string") {
      passedOver.push(k);
      continue;
    }
    kernels = k;
    chosen = c;
    break;
  }
  if (kernels === undefined || chosen === undefined) {
    const path = candidates[candidates.length - 1]?.path ?? built;
    if (candidates.length === 0) return { path, reason: `not built (${passedOver.join("; ")}; run \`npm run native\` with a C compiler and OpenBLAS)` };
    return { path, reason: passedOver.join("; ") };
  }
  kernels.setThreads(threads);
  const info = kernels.info();
  const source = passedOver.length > 0 && chosen.source !== "built from source" && existsSync(built) ? `${chosen.source}; ${passedOver.join("; ")}` : chosen.source;
  return { kernels, path: chosen.path, source, threads: info.threads, blas: info.blasConfig };
}

/** Loads the addon once (later calls return the same status). */
export function nativeKernels(): NativeStatus {
  status ??= load();
  if (disabled) return { path: status.path, reason: "switched off by setNativeKernelsEnabled(false)" };
  return status;
}

/**
 * Turn the native kernels off (or back on) for this process; the pure-wasm paths are used while off.
 * For comparisons and tests: each kernel call checks this, so it takes effect at the next op.
 */
export function setNativeKernelsEnabled(enabled: boolean): void {
  disabled = !enabled;
}

/**
 * The kernels if the addon loaded, whether or not they are switched off right now (kernels are
 * prepared with and without them once, at registration, and pick per call with {@link activeNative}).
 */
export function loadedNative(): NativeKernels | undefined {
  status ??= load();
  return status.kernels;
}

/** The kernels if loaded and enabled, else undefined; cheap enough to call per op. */
export function activeNative(): NativeKernels | undefined {
  if (disabled) return undefined;
  status ??= load();
  return status.kernels;
}
