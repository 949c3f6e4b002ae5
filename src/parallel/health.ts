/**
 * Telling a job that ran out of memory from one that failed for its own reasons, and whether the
 * TensorFlow.js backend it ran on still works: a worker rebuilds its thread when it does not.
 */
import * as tf from "@tensorflow/tfjs";

/** The wasm backend's heap limit (emscripten's getHeapMax in tfjs-backend-wasm 4.x: 4 GB less 64 KB). */
export const WASM_HEAP_MAX_BYTES = 4294901760;

/**
 * Messages of the failures seen when a job exhausts memory: wasm reads past its heap after a failed
 * growth ("memory access out of bounds"), emscripten's abort ("Aborted(...)", "Cannot enlarge
 * memory"), and V8's own refusals to allocate a buffer (RangeError).
 */
const OOM_MESSAGE = /memory access out of bounds|\bAborted\(|out of memory|Cannot enlarge memory|WebAssembly\.Memory|Array buffer allocation failed|Invalid typed array length|Invalid array buffer length|allocation failed/i;

/** An error a job throws when its model does not fit in memory; `bytes` is the estimate, when known. */
export class OutOfMemoryError extends Error {
  override name = "OutOfMemoryError";
  constructor(
    message: string,
    readonly bytes?: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** True when `err` says that memory ran out (or the wasm heap was corrupted by a failed growth). */
export function isOutOfMemory(err: unknown): boolean {
  if (err instanceof OutOfMemoryError || (err as Error | undefined)?.name === "OutOfMemoryError") return true;
  const message = err instanceof Error ? err.message : String(err);
  if (OOM_MESSAGE.test(message)) return true;
  // A RangeError about a buffer or memory is an allocation refused, not a wrong argument.
  return err instanceof RangeError && /memory|buffer|allocat|array length/i.test(message);
}

/** Bytes in human units: "3.6 GB", "512 MB". */
export function formatBytes(bytes: number): string {
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${unit === 0 ? value : value.toFixed(1)} ${units[unit]}`;
}

/**
 * The parameters of an MLP with `inputs` features, `hidden` layer widths and `outputs` units, and the
 * bytes training it with Adam needs at least: float32 weights, their gradients and Adam's two moments
 * (4 copies), plus one batch's activations forward and backward.
 */
export function mlpMemoryEstimate(inputs: number, hidden: readonly number[], outputs: number, batchSize: number): { parameters: number; bytes: number } {
  const widths = [inputs, ...hidden, outputs];
  let parameters = 0;
  let activations = 0;
  for (let i = 1; i < widths.length; i++) {
    parameters += (widths[i - 1] as number) * (widths[i] as number) + (widths[i] as number);
    activations += batchSize * (widths[i] as number);
  }
  return { parameters, bytes: 4 * (4 * parameters + 2 * activations) };
}

/**
 * Whether this thread's TensorFlow.js backend still computes: a wasm heap left corrupted by a failed
 * growth fails every later op ("memory access out of bounds"), so a worker checks after each failed
 * job and rebuilds itself when this is false.
 */
export function backendHealthy(): boolean {
  try {
    const value = tf.tidy(() => tf.add(tf.tensor1d([1, 2]), tf.tensor1d([3, 4])).dataSync());
    return value[0] === 4 && value[1] === 6;
  } catch {
    return false;
  }
}
