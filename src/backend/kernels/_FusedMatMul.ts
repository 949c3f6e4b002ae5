/**
 * `_FusedMatMul` for wasm (an override): the product of ./BatchMatMul.ts with the fused epilogue
 * (bias, then relu / relu6 / elu / sigmoid / leakyrelu / prelu), every transpose and batch shape
 * through the addon's BLAS or XNNPACK (see ./matmul-common.ts).
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { fusableActivation } from "./fusable-activation.js";
import { matMul, type MatMulAttrs } from "./matmul-common.js";
import type { WasmKernel } from "./types.js";

export const fusedMatMulKernel: WasmKernel = {
  kernelName: "_FusedMatMul",
  role: "override",
  make: (native, stock) => {
    if (stock === undefined) return undefined;
    return (args) => {
      const { a, b, bias, preluActivationWeights } = args.inputs;
      if (a === undefined || b === undefined) throw new Error("_FusedMatMul needs inputs a and b");
      const attrs = (args.attrs ?? {}) as MatMulAttrs;
      const activation = fusableActivation(attrs.activation);
      if (activation === undefined) {
        // The stock kernel's message, word for word.
        throw new Error(`${attrs.activation} activation not yet supported for FusedConv2D in the wasm backend.`);
      }
      return matMul(
        native,
        args.backend as WasmBackend,
        a,
        b,
        attrs.transposeA === true,
        attrs.transposeB === true,
        {
          activation,
          bias: bias ?? undefined,
          prelu: preluActivationWeights ?? undefined,
          leakyreluAlpha: attrs.leakyreluAlpha || 0,
        },
        () => stock(args) as tf.TensorInfo,
        "_FusedMatMul",
      );
    };
  },
};
