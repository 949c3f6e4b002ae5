/**
 * `BatchMatMul` for wasm (an override): every product, any transposes and batch shapes, through the
 * addon's BLAS or, without it, XNNPACK's fast path, where the stock kernel takes XNNPACK only for
 * untransposed unbatched products (see ./matmul-common.ts).
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { FUSABLE_ACTIVATION } from "./fusable-activation.js";
import { matMul, type MatMulAttrs } from "./matmul-common.js";
import type { WasmKernel } from "./types.js";

export const batchMatMulKernel: WasmKernel = {
  kernelName: "BatchMatMul",
  role: "override",
  make: (native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const { a, b } = args.inputs;
      if (a === undefined || b === undefined) throw new Error("BatchMatMul needs inputs a and b");
      const attrs = (args.attrs ?? {}) as MatMulAttrs;
      return matMul(
        native,
        args.backend as WasmBackend,
        a,
        b,
        attrs.transposeA === true,
        attrs.transposeB === true,
        { activation: FUSABLE_ACTIVATION.linear, leakyreluAlpha: 0 },
        () => stock(args) as tf.TensorInfo,
        "BatchMatMul",
      );
    };
  },
};
