/**
 * The parts of @tensorflow/tfjs-backend-wasm's `BackendWasm` that jointly's kernels use, in one place.
 *
 * The package does not export a type we can rely on, and these members (`dataIdMap`, `makeOutput`,
 * the emscripten module's heap and `tfjs.registerTensor` / `tfjs.disposeData`) are stable in 4.x but
 * not public API; every kernel file of src/backend/ reaches them through this interface.
 */
import type * as tf from "@tensorflow/tfjs";
import { createRequire } from "node:module";

/**
 * The @tensorflow/tfjs-backend-wasm versions whose internals (the members below, the heap layout of
 * a tensor, the C++ side's `registerTensor`) jointly's wasm kernels and native addon were checked
 * against. With TensorFlow.js a peer dependency the user picks the version, so any other one gets
 * the stock kernels rather than writes into a heap whose layout may have changed.
 */
export const SUPPORTED_WASM_VERSIONS: readonly string[] = ["4.22.0"];

let versionOverride: { version: string | undefined } | undefined;

/**
 * The installed @tensorflow/tfjs-backend-wasm's version, from its package.json as resolved from
 * this package (the copy jointly imports), or undefined when it is not installed.
 */
export function installedWasmVersion(): string | undefined {
  if (versionOverride !== undefined) return versionOverride.version;
  try {
    return (createRequire(import.meta.url)("@tensorflow/tfjs-backend-wasm/package.json") as { version?: string }).version;
  } catch {
    return undefined;
  }
}

/**
 * For tests: pretend another tfjs-backend-wasm version is installed (`null` puts the real one back).
 * Takes effect only before the first backend set-up of the process (the answer is used once).
 */
export function setWasmVersionForTesting(version: string | undefined | null): void {
  versionOverride = version === null ? undefined : { version };
  problem = undefined;
}

// The answer, once computed: cheap enough for a check per op.
let problem: { text: string | undefined } | undefined;

/**
 * Why jointly must not touch tfjs-wasm's internals here (an unsupported or missing version), or
 * undefined when it may. Anything that reads or writes the wasm heap checks this first.
 */
export function wasmInternalsProblem(): string | undefined {
  problem ??= { text: describeProblem(installedWasmVersion()) };
  return problem.text;
}

function describeProblem(version: string | undefined): string | undefined {
  if (version !== undefined && SUPPORTED_WASM_VERSIONS.includes(version)) return undefined;
  const have = version === undefined ? "@tensorflow/tfjs-backend-wasm is not installed" : `@tensorflow/tfjs-backend-wasm ${version} is installed`;
  return `${have}, and jointly's wasm kernels work on the internals of ${SUPPORTED_WASM_VERSIONS.join(", ")} only (install @tensorflow/tfjs-backend-wasm@${SUPPORTED_WASM_VERSIONS[SUPPORTED_WASM_VERSIONS.length - 1]} for them)`;
}

/** What the wasm backend keeps per data id. */
export interface WasmTensorData {
  /** The id the C++ side knows the buffer by (also the key of XNNPACK's cached operators). */
  id: number;
  /** Byte offset in the heap; null for string tensors, which live outside it. */
  memoryOffset: number | null;
  shape: number[];
  dtype: tf.DataType;
  refCount: number;
}

/** The emscripten module behind the backend. */
export interface WasmModule {
  HEAPU8: Uint8Array;
  cwrap(name: string, returnType: null, argTypes: string[]): (...args: unknown[]) => void;
  tfjs: {
    registerTensor(id: number, size: number, memoryOffset: number): void;
    disposeData(id: number): void;
  };
}

export interface WasmBackend {
  wasm: WasmModule;
  dataIdNextNumber: number;
  dataIdMap: { get(dataId: object): WasmTensorData | undefined };
  makeOutput(shape: number[], dtype: tf.DataType): tf.TensorInfo;
  disposeData(dataId: object, force?: boolean): boolean;
  incRef(dataId: object): void;
  typedArrayFromHeap(info: tf.TensorInfo): Float32Array | Int32Array | Uint8Array;
}

/** Product of a list of dimensions (1 for an empty list). */
export function prod(dims: readonly number[]): number {
  let p = 1;
  for (const d of dims) p *= d;
  return p;
}

/** The backend's record of a tensor's data; throws if the tensor is not on this wasm backend. */
export function dataOf(backend: WasmBackend, info: tf.TensorInfo): WasmTensorData {
  const d = backend.dataIdMap.get(info.dataId);
  if (d === undefined) throw new Error("jointly wasm kernels: a tensor is not on the wasm backend");
  return d;
}

/** Byte offset of a tensor's data in the wasm heap; throws if it has none. */
export function byteOffset(backend: WasmBackend, info: tf.TensorInfo): number {
  const off = dataOf(backend, info).memoryOffset;
  if (off == null) throw new Error(`jointly wasm kernels: a ${info.dtype} tensor of shape [${info.shape}] has no wasm memory`);
  return off;
}
