/**
 * Backend selection: use the fastest TensorFlow.js backend that actually loads on this machine.
 *
 * Order tried: native GPU (`@tensorflow/tfjs-node-gpu`), native CPU (`@tensorflow/tfjs-node`),
 * `wasm`, then the pure-JavaScript `cpu`. A candidate that fails to load (module not installed,
 * CUDA missing, libtensorflow download failed at install time) is skipped with a one-line reason.
 */
import * as tf from "@tensorflow/tfjs";
import { createRequire } from "node:module";
import { nativeThreadsSetting } from "./native.js";

/** The backends jointly knows how to bring up, fastest first. */
export const BACKEND_ORDER = ["tensorflow-gpu", "tensorflow", "wasm", "cpu"] as const;
export type BackendName = (typeof BACKEND_ORDER)[number];

/** The environment variable that forces a backend, e.g. `JOINTLY_BACKEND=cpu`. */
export const BACKEND_ENV = "JOINTLY_BACKEND";

/** What {@link initBackend} chose, and why the faster candidates were passed over. */
export interface BackendInfo {
  /** jointly's name for the backend. */
  name: BackendName;
  /** The name TensorFlow.js knows it by (`tf.getBackend()`). */
  tfBackend: string;
  /** True for libtensorflow-backed backends (tfjs-node, tfjs-node-gpu). */
  native: boolean;
  /** How the choice was made. */
  reason: "auto" | "option" | "env";
  /** Versions of TensorFlow.js and of the backend package. */
  versions: { tfjs: string; backendPackage?: string; node: string };
  /** Faster candidates that were tried and did not load, with a one-line reason each. */
  skipped: { name: BackendName; reason: string }[];
  /** Kernel overrides jointly registered for this backend (e.g. `"wasm-matmul"`). */
  fastPaths: string[];
  /** On wasm with the fast paths on: whether jointly's native addon is in use, or why not. */
  nativeKernels?: string;
}

/** Loads a backend's module and registers it with TensorFlow.js; throws if it cannot. */
export type BackendLoader = () => Promise<{ packageVersion?: string } | void>;

export interface InitBackendOptions {
  /** Force one backend, or `"auto"` (default) to try them fastest first. Overrides `JOINTLY_BACKEND`. */
  backend?: BackendName | "auto";
  /** Print the one-line report (default true). */
  report?: boolean;
  /** Replace how a backend is loaded (used by tests to simulate missing or broken modules). */
  loaders?: Partial<Record<BackendName, BackendLoader>>;
  /** Where the report line goes (default `console.log`). */
  log?: (line: string) => void;
  /**
   * Register jointly's faster kernels for the chosen backend (default true; `JOINTLY_FAST_PATHS=0`
   * turns them off). On wasm: matrix products that always take the XNNPACK path, and the kernels the
   * backend lacks (`UnsortedSegmentSum`, needed to train `tf.layers.embedding` / differentiate `tf.gather`).
   */
  fastPaths?: boolean;
}

/** The environment variable that turns the kernel overrides off (`JOINTLY_FAST_PATHS=0`). */
export const FAST_PATHS_ENV = "JOINTLY_FAST_PATHS";

let restoreFastPaths: (() => void) | undefined;
/** What became of the native addon when the wasm fast paths were registered (for the report line). */
let nativeNote: string | undefined;

/** Register (or remove) the kernel overrides for the backend just chosen; returns their names. */
async function applyFastPaths(name: BackendName, enabled: boolean): Promise<string[]> {
  restoreFastPaths?.();
  restoreFastPaths = undefined;
  nativeNote = undefined;
  // Dilated convolutions cannot be trained on any stock backend; these gradients are backend-independent.
  const { registerConvGradients } = await import("./gradients/conv.js");
  registerConvGradients();
  // Sum's and Mean's gradients without a tensor of ones the size of the input (backend-independent).
  const { registerReductionGradients } = await import("./gradients/reductions.js");
  registerReductionGradients();
  if (name !== "wasm") return [];
  // jointly's wasm kernels (and the addon) write into tfjs-wasm's heap through its internals: with a
  // version they were not checked against, the stock kernels are the safe choice.
  const { wasmInternalsProblem } = await import("./wasm-internals.js");
  const problem = wasmInternalsProblem();
  if (problem !== undefined) {
    nativeNote = `jointly's wasm kernels and native kernels off: ${problem}`;
    return [];
  }
  // One list (src/backend/kernels/register-all.ts): fixes and missing kernels always (a matter of
  // correctness: without UnsortedSegmentSum no gather or embedding can be trained on wasm), the
  // overrides of stock kernels and jointly's own fused kernels only with the fast paths; then the
  // cpu safety net for whatever wasm still lacks.
  const { registerWasmKernels } = await import("./kernels/register-all.js");
  const kernels = registerWasmKernels({ overrides: enabled });
  restoreFastPaths = () => kernels.restore();
  const has = (names: string[]): boolean => names.some((n) => kernels.registered.includes(n));
  const native = enabled ? (await import("./native.js")).nativeKernels() : undefined;
  if (native !== undefined) {
    nativeNote = native.kernels
      ? `native kernels on (${native.blas?.split(" ").slice(0, 2).join(" ")}, ${native.threads} BLAS thread${native.threads === 1 ? "" : "s"}, ${native.source?.split(";")[0]})`
      : `native kernels off: ${native.reason}`;
  }
  // Reported only when ours is the kernel in use, not when the backend already had one.
  return [
    ...(has(REPORT_GROUPS["wasm-matmul"]) ? ["wasm-matmul"] : []),
    ...(has(REPORT_GROUPS["wasm-fast-kernels"]) ? ["wasm-fast-kernels"] : []),
    ...(native?.kernels ? ["native-blas"] : []),
    ...(has(REPORT_GROUPS["wasm-segment-sum"]) ? ["wasm-segment-sum"] : []),
    ...(kernels.registered.some((n) => !GROUPED.has(n)) ? ["wasm-kernels"] : []),
  ];
}

/** The kernels behind each name of the report's fast paths; "wasm-kernels" stands for every other kernel of the list. */
const REPORT_GROUPS = {
  "wasm-matmul": ["BatchMatMul", "_FusedMatMul"],
  "wasm-fast-kernels": ["Identity", "Cast", "Sum", "GatherV2", "Concat", "SplitV"],
  "wasm-segment-sum": ["UnsortedSegmentSum"],
};
const GROUPED = new Set(Object.values(REPORT_GROUPS).flat());

const TF_NAME: Record<BackendName, string> = {
  "tensorflow-gpu": "tensorflow",
  tensorflow: "tensorflow",
  wasm: "wasm",
  cpu: "cpu",
};

const require = createRequire(import.meta.url);

function packageVersion(pkg: string): string | undefined {
  try {
    return (require(`${pkg}/package.json`) as { version?: string }).version;
  } catch {
    return undefined;
  }
}

async function loadNative(pkg: string): Promise<{ packageVersion?: string }> {
  // The native packages register the "tensorflow" backend with the global engine as a side effect.
  await import(pkg);
  return { packageVersion: packageVersion(pkg) };
}

const DEFAULT_LOADERS: Record<BackendName, BackendLoader> = {
  "tensorflow-gpu": () => loadNative("@tensorflow/tfjs-node-gpu"),
  tensorflow: () => loadNative("@tensorflow/tfjs-node"),
  wasm: async () => {
    await import("@tensorflow/tfjs-backend-wasm");
    return { packageVersion: packageVersion("@tensorflow/tfjs-backend-wasm") };
  },
  cpu: async () => ({ packageVersion: tf.version_core }),
};

/** Hooks run once a backend is set, e.g. to register faster kernels for it. */
const readyHooks: ((info: BackendInfo) => void | Promise<void>)[] = [];

/** Register a function to run after a backend is chosen (and immediately if one already is). */
export async function onBackendReady(hook: (info: BackendInfo) => void | Promise<void>): Promise<void> {
  readyHooks.push(hook);
  if (current) await hook(current);
}

let current: BackendInfo | undefined;
let pending: Promise<BackendInfo> | undefined;

function oneLine(err: unknown): string {
  const text = err instanceof Error ? err.message : String(err);
  const first = text.split("\n").find((l) => l.trim() !== "") ?? text;
  return first.length > 160 ? `${first.slice(0, 157)}...` : first;
}

function parseBackend(value: string, source: string): BackendName {
  if ((BACKEND_ORDER as readonly string[]).includes(value)) return value as BackendName;
  throw new Error(
    `${source} must be one of ${BACKEND_ORDER.join(", ")} or "auto", but got "${value}".`,
  );
}

/** The process events whose listeners tfjs-wasm's emscripten module adds. */
const PROCESS_EVENTS = ["uncaughtException", "unhandledRejection"] as const;

/**
 * Removes the process listeners added since `before` was taken. tfjs-wasm's emscripten module adds
 * an `uncaughtException` and an `unhandledRejection` listener that rethrow from its minified file:
 * Node then prints ~39 KB of that source before the error and exits with code 7. Without them an
 * uncaught error prints Node's usual message and stack and exits with 1. (The module tries to
 * remove them itself, but its filter keeps none.)
 */
function removeAddedListeners(before: Record<(typeof PROCESS_EVENTS)[number], Function[]>): void {
  for (const event of PROCESS_EVENTS) {
    for (const listener of process.listeners(event as "uncaughtException")) {
      if (!before[event].includes(listener)) process.removeListener(event as "uncaughtException", listener);
    }
  }
}

async function tryBackend(name: BackendName, loaders: Record<BackendName, BackendLoader>) {
  // The emscripten module starts (and adds its listeners) at setBackend, not at import: watch both.
  const before = { uncaughtException: process.listeners("uncaughtException"), unhandledRejection: process.listeners("unhandledRejection") };
  try {
    const loaded = await loaders[name]();
    const tfName = TF_NAME[name];
    if (tf.findBackendFactory(tfName) == null) {
      throw new Error(`module loaded but registered no "${tfName}" backend`);
    }
    const ok = await tf.setBackend(tfName);
    if (!ok) throw new Error(`tf.setBackend("${tfName}") returned false`);
    await tf.ready();
    return loaded ?? {};
  } finally {
    if (name === "wasm") removeAddedListeners(before);
  }
}

/**
 * Choose and initialise the TensorFlow.js backend. Safe to call many times: the first call decides,
 * later calls return the same answer (pass a different `backend` to switch explicitly).
 *
 * @example
 * const info = await initBackend();            // fastest that loads
 * await initBackend({ backend: "cpu" });        // force one
 * // or: JOINTLY_BACKEND=wasm node train.js
 */
export async function initBackend(options: InitBackendOptions = {}): Promise<BackendInfo> {
  const envValue = process.env[BACKEND_ENV];
  const requested = options.backend ?? (envValue && envValue !== "" ? envValue : "auto");
  const reason: BackendInfo["reason"] = options.backend ? "option" : envValue ? "env" : "auto";
  const forced = requested === "auto" ? undefined : parseBackend(requested, options.backend ? "backend option" : BACKEND_ENV);
  // Checked here, before any candidate: inside the loop its error would only skip wasm for cpu.
  nativeThreadsSetting();

  if (current && (!forced || forced === current.name) && !options.loaders) return current;
  if (pending && !forced && !options.loaders) return pending;

  const run = async (): Promise<BackendInfo> => {
    const loaders = { ...DEFAULT_LOADERS, ...options.loaders };
    const candidates = forced ? [forced] : [...BACKEND_ORDER];
    const skipped: BackendInfo["skipped"] = [];
    for (const name of candidates) {
      try {
        const loaded = await tryBackend(name, loaders);
        const fastEnv = process.env[FAST_PATHS_ENV];
        const fastPaths = await applyFastPaths(name, options.fastPaths ?? !(fastEnv === "0" || fastEnv === "false"));
        const info: BackendInfo = {
          name,
          tfBackend: TF_NAME[name],
          native: name === "tensorflow" || name === "tensorflow-gpu",
          reason,
          versions: { tfjs: tf.version_core, backendPackage: loaded.packageVersion, node: process.version },
          skipped,
          fastPaths,
          ...(nativeNote !== undefined ? { nativeKernels: nativeNote } : {}),
        };
        current = info;
        for (const hook of readyHooks) await hook(info);
        if (options.report ?? true) (options.log ?? console.log)(describeBackend(info));
        return info;
      } catch (err) {
        if (forced) {
          throw new Error(
            `The backend "${name}" was requested (${reason === "env" ? BACKEND_ENV : "backend option"}) but did not load: ${oneLine(err)}`,
          );
        }
        skipped.push({ name, reason: oneLine(err) });
      }
    }
    throw new Error(
      `No TensorFlow.js backend loaded: ${skipped.map((s) => `${s.name}: ${s.reason}`).join("; ")}`,
    );
  };
  pending = run();
  try {
    return await pending;
  } finally {
    pending = undefined;
  }
}

/** The backend chosen so far, if any. */
export function backendInfo(): BackendInfo | undefined {
  return current;
}

/** Initialise the backend with defaults unless that has happened already. Library entry points call this. */
export async function ensureBackend(): Promise<BackendInfo> {
  return current ?? initBackend();
}

/** The one-line report: name, native or not, versions, and what was skipped. */
export function describeBackend(info: BackendInfo): string {
  const kind = info.native ? "native" : "not native";
  const pkg = info.versions.backendPackage ? `, backend package ${info.versions.backendPackage}` : "";
  const fast = info.fastPaths.length ? `; fast paths: ${info.fastPaths.join(", ")}` : "";
  const native = info.nativeKernels !== undefined ? `; ${info.nativeKernels}` : "";
  const skipped = info.skipped.length
    ? `; skipped ${info.skipped.map((s) => `${s.name} (${s.reason})`).join(", ")}`
    : "";
  return `jointly: TensorFlow.js backend "${info.name}" (${kind}; tfjs ${info.versions.tfjs}${pkg}; node ${info.versions.node}${fast}${native})${skipped}`;
}
