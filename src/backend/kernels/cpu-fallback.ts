/**
 * The safety net: every kernel the `cpu` backend has and the `wasm` backend still lacks (after
 * jointly's own kernels are registered) runs the cpu backend's implementation on wasm tensors, so no
 * model ever stops with "Kernel 'X' not registered for backend 'wasm'".
 *
 * How: the inputs are copied out of the wasm heap into the cpu backend, the cpu kernel runs there,
 * and its outputs are copied into new wasm tensors; the cpu copies are freed before returning. The
 * first call of each such kernel prints one line naming it, so a user knows which op runs slowly
 * (two copies and plain JavaScript) and can report it.
 *
 * Limits: tensors of dtype complex64 cannot exist on wasm, so the complex kernels (FFT, Complex,
 * Real, ...) fail with an error that says so instead of a missing-kernel error.
 */
import * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";

/** Where the one-line notices go (tests replace it). */
let fallbackNotice: (line: string) => void = (line) => console.warn(line);

/** Replace where the first-use notices go; returns the previous sink. */
export function setFallbackNotice(sink: (line: string) => void): (line: string) => void {
  const previous = fallbackNotice;
  fallbackNotice = sink;
  return previous;
}

const calls = new Map<string, number>();

/** How many times each kernel has run through the safety net in this process (for tests and profiling). */
export function cpuFallbackCalls(): Record<string, number> {
  return Object.fromEntries(calls);
}

interface CpuBackend extends tf.KernelBackend {
  write(values: tf.backend_util.BackendValues | null, shape: number[], dtype: tf.DataType): object;
  readSync(dataId: object): tf.backend_util.BackendValues;
  disposeData(dataId: object, force?: boolean): boolean;
}

function cpuBackend(): CpuBackend {
  // findBackend initialises the cpu backend on first use without making it the active one.
  const cpu = tf.findBackend("cpu") as CpuBackend | null;
  if (cpu === null) throw new Error("jointly cpu fallback: the TensorFlow.js cpu backend is not available");
  return cpu;
}

function checkDtype(kernelName: string, info: tf.TensorInfo, what: string): void {
  if (info.dtype === "complex64") {
    throw new Error(
      `${kernelName} (wasm, via cpu): the ${what} is complex64, which the wasm backend cannot hold; run this model on the cpu backend (initBackend({ backend: "cpu" })).`,
    );
  }
}

/** A wasm kernel that runs `cpuKernel` on copies of its inputs. */
export function viaCpu(kernelName: string, cpuKernel: tf.KernelFunc): tf.KernelFunc {
  return ({ inputs, attrs, backend }) => {
    const n = (calls.get(kernelName) ?? 0) + 1;
    calls.set(kernelName, n);
    if (n === 1) fallbackNotice(`jointly: wasm has no '${kernelName}' kernel; running the cpu backend's (inputs copied in and out)`);
    // makeOutput's optional memory offset and values, which WasmBackend's summary type leaves out.
    const wasm = backend as unknown as WasmBackend & {
      readSync(dataId: object): tf.backend_util.BackendValues;
      makeOutput(shape: number[], dtype: tf.DataType, memoryOffset?: number, values?: tf.backend_util.BackendValues): tf.TensorInfo;
    };
    const cpu = cpuBackend();
    const created: object[] = [];
    const toCpu = (t: tf.TensorInfo, name: string): tf.TensorInfo => {
      checkDtype(kernelName, t, `input ${name}`);
      const dataId = cpu.write(wasm.readSync(t.dataId), t.shape, t.dtype);
      created.push(dataId);
      return { dataId, shape: t.shape, dtype: t.dtype };
    };
    try {
      // Most kernels take named inputs; a few (Concat, AddN, Einsum) take a list.
      const cpuInputs: tf.NamedTensorInfoMap | tf.TensorInfo[] = Array.isArray(inputs)
        ? (inputs as tf.TensorInfo[]).map((t, i) => toCpu(t, String(i)))
        : Object.fromEntries(
            Object.entries(inputs).flatMap(([name, t]) => (t == null ? [] : [[name, toCpu(t, name)]])),
          );
      const result = cpuKernel({ inputs: cpuInputs as tf.NamedTensorInfoMap, attrs, backend: cpu });
      const outs = Array.isArray(result) ? result : [result];
      for (const o of outs) created.push(o.dataId);
      const wasmOuts = outs.map((o, i) => {
        checkDtype(kernelName, o, `output ${i}`);
        const values = cpu.readSync(o.dataId);
        return wasm.makeOutput(o.shape, o.dtype, undefined, values);
      });
      return Array.isArray(result) ? wasmOuts : wasmOuts[0]!;
    } finally {
      for (const dataId of created) cpu.disposeData(dataId, true);
    }
  };
}

/** Names of the kernels the cpu backend has and wasm does not (at the time of the call). */
export function kernelsMissingOnWasm(): string[] {
  const wasm = new Set(tf.getKernelsForBackend("wasm").map((k) => k.kernelName));
  return tf
    .getKernelsForBackend("cpu")
    .map((k) => k.kernelName)
    .filter((name) => !wasm.has(name))
    .sort();
}

/**
 * Registers a cpu-backed wasm kernel for every kernel wasm lacks; returns the configs registered
 * (for restoring). Idempotent in effect: a second call finds nothing missing.
 */
export function registerCpuFallbacks(): tf.KernelConfig[] {
  const added: tf.KernelConfig[] = [];
  for (const name of kernelsMissingOnWasm()) {
    const cpu = tf.getKernel(name, "cpu");
    if (cpu === undefined) continue;
    const config: tf.KernelConfig = { kernelName: name, backendName: "wasm", kernelFunc: viaCpu(name, cpu.kernelFunc) };
    tf.registerKernel(config);
    added.push(config);
  }
  return added;
}
