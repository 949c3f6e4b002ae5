/**
 * The matrix product that ./BatchMatMul.ts and ./_FusedMatMul.ts both run (overrides of the stock
 * wasm kernels).
 *
 * Why: the stock wasm `BatchMatMul` / `_FusedMatMul` kernels hand a product to XNNPACK only when
 * neither operand is transposed and both batch dimensions are 1. Everything else — including both
 * matmuls of every Dense layer's backward pass (dW = xᵀ·dy, dx = dy·Wᵀ) and every batched product —
 * falls to a naive C++ triple loop that runs at roughly 0.4–1.3 GFLOP/s, against ~26 GFLOP/s through
 * XNNPACK on the same core. On a 32-512-512 two-head MLP at batch 1024 that is the difference between
 * ~950 ms and ~115 ms per Adam training step (bench/wasm-matmul.ts, one core).
 *
 * How, with the native addon: operands are read where they lie in the wasm heap and handed to BLAS's
 * sgemm (which takes the transposes itself); bias and activation are applied natively, PReLU by the
 * backend's own kernel afterwards.
 *
 * How, without it: every call is reduced to XNNPACK's fast case. Transposed operands are
 * materialised once with the wasm `Transpose` kernel; a batch whose right operand is shared (batch 1)
 * is folded into the rows of one big product; any other batch is run slice by slice, each slice a
 * zero-copy "view" tensor id that points into the operand's wasm memory. The fused epilogue (bias,
 * relu / relu6 / elu / sigmoid / leakyrelu / prelu) is still applied by the backend's own C++
 * `_FusedMatMul` routine, so it is the same code the stock fast path runs. Products under ~16x16x16
 * per slice go back to the stock kernel when it is exact for them, because there the per-call setup
 * outweighs the naive loop.
 *
 * Semantics: identical to the stock kernels wherever those are correct. The stock slow path also has
 * bugs that this override does not reproduce: with a bias it adds `bias[min(i*N+j, N-1)]` (wrong row
 * broadcast) once per 48-wide block of the shared dimension, and it clamps relu/relu6 on partial sums;
 * a size-1 bias on the fast path reads past the bias buffer; batch shapes broadcast on both sides
 * (e.g. [2,1] with [1,3]) fill only part of the output. Here a bias is broadcast per output
 * column (a size-1 bias to every column), matching the `cpu` backend, and batch dims broadcast numpy-
 * style. PReLU weights are tiled over the flattened output exactly as the stock kernel does.
 *
 * Caveat: besides ../wasm-internals.ts this uses the emscripten module's `cwrap` for the backend's
 * own `_FusedMatMul` and `Prelu` C routines, stable in @tensorflow/tfjs-backend-wasm 4.x but not
 * public API.
 */
import * as tf from "@tensorflow/tfjs";
import type { NativeKernels } from "../native.js";
import { byteOffset, dataOf, prod, type WasmBackend, type WasmTensorData } from "../wasm-internals.js";
import { FUSABLE_ACTIVATION } from "./fusable-activation.js";

type FusedMatMulFn = (
  aId: number,
  aShape: Uint8Array,
  aRank: number,
  bId: number,
  bShape: Uint8Array,
  bRank: number,
  transposeA: boolean,
  transposeB: boolean,
  activation: number,
  biasId: number,
  preluId: number,
  leakyreluAlpha: number,
  outId: number,
) => void;
type PreluFn = (xId: number, weightsId: number, outId: number) => void;

interface WasmFns {
  fusedMatMul: FusedMatMulFn;
  prelu: PreluFn;
}

// One set of wrapped C functions per backend instance, so a re-created wasm backend gets fresh ones.
const fnCache = new WeakMap<object, WasmFns>();

function wasmFns(backend: WasmBackend): WasmFns {
  let fns = fnCache.get(backend);
  if (fns === undefined) {
    const n = "number";
    const arr = "array";
    fns = {
      // Same C entry point and argument layout as the stock _FusedMatMul kernel.
      fusedMatMul: backend.wasm.cwrap("_FusedMatMul", null, [n, arr, n, n, arr, n, n, n, n, n, n, n, n]) as FusedMatMulFn,
      prelu: backend.wasm.cwrap("Prelu", null, [n, n, n]) as PreluFn,
    };
    fnCache.set(backend, fns);
  }
  return fns;
}

function shapeBytes(shape: number[]): Uint8Array {
  return new Uint8Array(new Int32Array(shape).buffer);
}

/** Broadcast batch shape of two batch-dimension lists (numpy rules), or throws like tfjs does. */
function broadcastBatch(a: number[], b: number[]): number[] {
  return tf.broadcast_util.assertAndGetBroadcastShape(a, b);
}

/** For each flat output-batch index, the flat batch index into an operand with dims `own` (broadcast). */
function batchIndexMap(outDims: number[], own: number[]): Int32Array {
  const total = prod(outDims);
  const map = new Int32Array(total);
  const rank = outDims.length;
  const padded = new Array<number>(rank - own.length).fill(1).concat(own);
  // Strides of the operand's own batch layout, with 0 on broadcast (size-1) dimensions.
  const strides = new Array<number>(rank).fill(0);
  let s = 1;
  for (let d = rank - 1; d >= 0; d--) {
    strides[d] = padded[d] === 1 ? 0 : s;
    s *= padded[d];
  }
  for (let i = 0; i < total; i++) {
    let rem = i;
    let idx = 0;
    for (let d = rank - 1; d >= 0; d--) {
      const coord = rem % outDims[d];
      rem = (rem - coord) / outDims[d];
      idx += coord * strides[d];
    }
    map[i] = idx;
  }
  return map;
}

/** What `_FusedMatMul` applies after the product. */
export interface Epilogue {
  /** A {@link FUSABLE_ACTIVATION} code. */
  activation: number;
  bias?: tf.TensorInfo;
  prelu?: tf.TensorInfo;
  leakyreluAlpha: number;
}

/** Per-slice M*K*N under which the stock kernel is used (measured crossover on one core: ~16^3). */
const SMALL_PRODUCT = 16 * 16 * 16;

/**
 * Computes op(a)·op(b) (+ epilogue) for any transposes and batch shapes: through the addon's BLAS
 * when `native` is given, else through XNNPACK's fast path. `stock` runs the original kernel, used
 * (without the addon) for tiny products and an empty shared dimension.
 */
export function matMul(
  native: NativeKernels | undefined,
  backend: WasmBackend,
  a: tf.TensorInfo,
  b: tf.TensorInfo,
  transposeA: boolean,
  transposeB: boolean,
  epi: Epilogue,
  stock: () => tf.TensorInfo,
  kernelName: string,
): tf.TensorInfo {
  if (a.dtype !== "float32" || b.dtype !== "float32") {
    throw new Error(`${kernelName} for non non-float32 tensors not yet supported.`);
  }
  const aRank = a.shape.length;
  const bRank = b.shape.length;
  const K = transposeA ? a.shape[aRank - 2] : a.shape[aRank - 1];
  const kB = transposeB ? b.shape[bRank - 1] : b.shape[bRank - 2];
  const M = transposeA ? a.shape[aRank - 1] : a.shape[aRank - 2];
  const N = transposeB ? b.shape[bRank - 2] : b.shape[bRank - 1];
  if (K !== kB) {
    throw new Error(
      `Error in matMul: inner shapes (${K}) and (${kB}) of Tensors with shapes ${a.shape} and ` +
        `${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
    );
  }
  const aBatchDims = a.shape.slice(0, -2);
  const bBatchDims = b.shape.slice(0, -2);
  const batchA = prod(aBatchDims);
  const batchB = prod(bBatchDims);
  const outBatchDims = broadcastBatch(aBatchDims, bBatchDims);
  const batch = prod(outBatchDims);

  if (native !== undefined) {
    return nativeMatMul(native, backend, a, b, { M, N, K, transposeA, transposeB, batchA, batchB, aBatchDims, bBatchDims, outBatchDims, batch }, epi);
  }
  // XNNPACK rejects a zero-width shared dimension; that product is trivial, so the naive loop is fine.
  if (K === 0) return stock();
  // Below ~16x16x16 per slice, the per-call setup (views, XNNPACK operator packing) costs more than the
  // naive loop saves; hand such calls back, but only where the stock slow path is exact (no bias: it
  // mis-broadcasts it; relu/relu6 only if K fits one 48-wide block: it clamps partial sums; at most one
  // batched operand or equal batches: it mishandles two-sided broadcasting).
  const stockExact =
    epi.bias === undefined &&
    (K <= 48 || (epi.activation !== FUSABLE_ACTIVATION.relu && epi.activation !== FUSABLE_ACTIVATION.relu6)) &&
    (batchA === batchB || batchA === 1 || batchB === 1);
  if (stockExact && M * K * N < SMALL_PRODUCT) return stock();

  const out = backend.makeOutput([...outBatchDims, M, N], "float32");
  if (M === 0 || N === 0 || batch === 0) return out;

  const fns = wasmFns(backend);
  const temps: tf.TensorInfo[] = [];
  const views: number[] = [];
  const view = (base: WasmTensorData, elementOffset: number, size: number): number => {
    const id = backend.dataIdNextNumber++;
    if (base.memoryOffset == null) throw new Error("matmul (wasm): an operand has no wasm memory");
    backend.wasm.tfjs.registerTensor(id, size, base.memoryOffset + elementOffset * 4);
    views.push(id);
    return id;
  };
  const transposed = (x: tf.TensorInfo, bat: number, rows: number, cols: number): tf.TensorInfo => {
    // The wasm Transpose kernel reads only dataId/shape, so the operand's memory is used as is.
    const t = transposeKernel()({
      inputs: { x: { dataId: x.dataId, shape: [bat, rows, cols], dtype: x.dtype } },
      backend: backend as unknown as object,
      attrs: { perm: [0, 2, 1] },
    }) as tf.TensorInfo;
    temps.push(t);
    return t;
  };

  try {
    // Row-major operands with layout [batchA, M, K] and [batchB, K, N].
    const aRows = transposeA ? transposed(a, batchA, K, M) : a;
    const bRows = transposeB ? transposed(b, batchB, N, K) : b;
    const aData = dataOf(backend, aRows);
    const bData = dataOf(backend, bRows);
    const outData = dataOf(backend, out);

    let biasId = 0;
    if (epi.bias !== undefined) {
      const biasData = dataOf(backend, epi.bias);
      // The tensor's own shape, not the stored buffer's: a reshaped bias shares the buffer of its source.
      const biasShape = epi.bias.shape;
      if (biasShape.length !== 1) {
        throw new Error(`_FusedMatMul only supports rank-1 bias but got rank ${biasShape.length}.`);
      }
      const biasSize = biasShape[0];
      if (biasSize === N) {
        biasId = biasData.id;
      } else if (biasSize === 1) {
        // XNNPACK reads N bias values; broadcast the scalar bias to a full row first.
        const tiled = backend.makeOutput([N], "float32");
        temps.push(tiled);
        (backend.typedArrayFromHeap(tiled) as Float32Array).fill(backend.typedArrayFromHeap(epi.bias)[0]);
        biasId = dataOf(backend, tiled).id;
      } else {
        throw new Error(`_FusedMatMul: bias of size ${biasSize} does not broadcast to ${N} columns.`);
      }
    }

    let activation = epi.activation;
    let preluId = 0;
    let preluAfter = false;
    if (activation === FUSABLE_ACTIVATION.prelu) {
      if (epi.prelu === undefined) throw new Error("_FusedMatMul: prelu activation needs preluActivationWeights.");
      preluId = dataOf(backend, epi.prelu).id;
      // The C++ routine tiles the weights over each call's output; if they do not tile one slice, apply them once at the end.
      const wSize = prod(epi.prelu.shape);
      if (batchB !== 1 && (M * N) % wSize !== 0) {
        preluAfter = true;
        activation = FUSABLE_ACTIVATION.linear;
      }
    }
    const preluArg = preluAfter ? 0 : preluId;

    const stockFastCase = !transposeA && !transposeB && batchA === 1 && batchB === 1;
    if (batchB === 1) {
      // Shared right operand: fold every batch of `a` into the rows of one product.
      const rows = batchA * M;
      // Keep the operand's own id (and hence XNNPACK's per-id operator cache) only where stock did.
      const bId = stockFastCase ? bData.id : view(bData, 0, K * N);
      fns.fusedMatMul(
        aData.id, shapeBytes([1, rows, K]), 3,
        bId, shapeBytes([1, K, N]), 3,
        false, false, activation, biasId, preluArg, epi.leakyreluAlpha, outData.id,
      );
    } else {
      const aMap = batchIndexMap(outBatchDims, aBatchDims);
      const bMap = batchIndexMap(outBatchDims, bBatchDims);
      const aShape = shapeBytes([1, M, K]);
      const bShape = shapeBytes([1, K, N]);
      for (let i = 0; i < batch; i++) {
        const aId = view(aData, aMap[i] * M * K, M * K);
        const bId = view(bData, bMap[i] * K * N, K * N);
        const oId = view(outData, i * M * N, M * N);
        fns.fusedMatMul(aId, aShape, 3, bId, bShape, 3, false, false, activation, biasId, preluArg, epi.leakyreluAlpha, oId);
        // Free each slice's ids (and the XNNPACK operator packed for that slice) as soon as it is done.
        for (const v of views.splice(0)) backend.wasm.tfjs.disposeData(v);
      }
    }
    if (preluAfter) fns.prelu(outData.id, preluId, outData.id);
  } catch (e) {
    backend.disposeData(out.dataId);
    throw e;
  } finally {
    for (const v of views) backend.wasm.tfjs.disposeData(v);
    for (const t of temps) backend.disposeData(t.dataId);
  }
  return out;
}

/** Dimensions of one product, as {@link matMul} worked them out. */
interface Dims {
  M: number;
  N: number;
  K: number;
  transposeA: boolean;
  transposeB: boolean;
  batchA: number;
  batchB: number;
  aBatchDims: number[];
  bBatchDims: number[];
  outBatchDims: number[];
  batch: number;
}

/**
 * The same product through the native addon's BLAS (src/backend/native.ts): operands are read where
 * they lie in the wasm heap (BLAS takes the transposes itself), the bias and activation are applied
 * natively, and PReLU by the backend's own kernel afterwards (same tiling as the stock kernel).
 */
function nativeMatMul(native: NativeKernels, backend: WasmBackend, a: tf.TensorInfo, b: tf.TensorInfo, d: Dims, epi: Epilogue): tf.TensorInfo {
  const { M, N, K, batchA, batchB, batch } = d;
  const out = backend.makeOutput([...d.outBatchDims, M, N], "float32");
  if (M === 0 || N === 0 || batch === 0) return out;
  try {
    let biasOff = -1;
    let biasSize = 0;
    if (epi.bias !== undefined) {
      if (epi.bias.shape.length !== 1) throw new Error(`_FusedMatMul only supports rank-1 bias but got rank ${epi.bias.shape.length}.`);
      biasSize = epi.bias.shape[0]!;
      if (biasSize !== N && biasSize !== 1) throw new Error(`_FusedMatMul: bias of size ${biasSize} does not broadcast to ${N} columns.`);
      biasOff = byteOffset(backend, epi.bias);
    }
    let activation = epi.activation;
    if (activation === FUSABLE_ACTIVATION.prelu) {
      if (epi.prelu === undefined) throw new Error("_FusedMatMul: prelu activation needs preluActivationWeights.");
      activation = FUSABLE_ACTIVATION.linear;
    }
    const tA = d.transposeA ? 1 : 0;
    const tB = d.transposeB ? 1 : 0;
    const aOff = byteOffset(backend, a);
    const bOff = byteOffset(backend, b);
    const cOff = byteOffset(backend, out);
    // Read after makeOutput, which may have grown (replaced) the heap's buffer.
    const heap = backend.wasm.HEAPU8.buffer;
    const mk = M * K;
    const kn = K * N;
    if (batchB === 1 && !d.transposeA) {
      // Shared right operand: every batch of `a` is more rows of one product (BLAS is fastest on one big call).
      native.gemm(heap, 1, batchA * M, N, K, 0, tB, aOff, 0, bOff, 0, cOff, biasOff, biasSize, activation, epi.leakyreluAlpha);
    } else if ((batchA === batch || batchA === 1) && (batchB === batch || batchB === 1)) {
      native.gemm(heap, batch, M, N, K, tA, tB, aOff, batchA === 1 ? 0 : mk, bOff, batchB === 1 ? 0 : kn, cOff, biasOff, biasSize, activation, epi.leakyreluAlpha);
    } else {
      // Both sides broadcast (e.g. [2,1] with [1,3]): one call per output slice.
      const aMap = batchIndexMap(d.outBatchDims, d.aBatchDims);
      const bMap = batchIndexMap(d.outBatchDims, d.bBatchDims);
      for (let i = 0; i < batch; i++) {
        native.gemm(heap, 1, M, N, K, tA, tB, aOff + aMap[i]! * mk * 4, 0, bOff + bMap[i]! * kn * 4, 0, cOff + i * M * N * 4, biasOff, biasSize, activation, epi.leakyreluAlpha);
      }
    }
    if (epi.activation === FUSABLE_ACTIVATION.prelu) {
      const outData = dataOf(backend, out);
      wasmFns(backend).prelu(outData.id, dataOf(backend, epi.prelu!).id, outData.id);
    }
  } catch (e) {
    backend.disposeData(out.dataId);
    throw e;
  }
  return out;
}

/** The wasm Transpose kernel; measured as fast as a tiled JS transpose on the heap, so reused. */
function transposeKernel(): tf.KernelFunc {
  const cfg = tf.getKernel("Transpose", "wasm");
  if (cfg === undefined) throw new Error("matmul (wasm): the wasm Transpose kernel is not registered");
  return cfg.kernelFunc;
}

/** The attributes of `BatchMatMul` and `_FusedMatMul`. */
export interface MatMulAttrs {
  transposeA?: boolean;
  transposeB?: boolean;
  activation?: string;
  leakyreluAlpha?: number;
}
