/**
 * `_FusedMatMul` for wasm (an override): the product of ./BatchMatMul.ts with the fused epilogue
 * (bias, then relu / relu6 / elu / sigmoid / leakyrelu / prelu), every transpose and batch shape
 * through the addon's BLAS or XNNPACK (see ./matmul-common.ts). Without the addon, relu and relu6 run
 * after a linear product, in JavaScript: XNNPACK's clamp (and the stock loop's) turns NaN into 0, and
 * a NaN input must stay NaN as on the cpu backend, or no loss ever sees it.
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { applyActivation, clampDropsNaN, FUSABLE_ACTIVATION, fusableActivation } from "./fusable-activation.js";
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
      // Without the addon, relu/relu6 are applied here after a linear product (see the module comment).
      const after = native === undefined && clampDropsNaN(activation) ? activation : undefined;
      const linearArgs = after === undefined ? args : { ...args, attrs: { ...attrs, activation: "linear" } };
      const out = matMul(
        native,
        args.backend as WasmBackend,
        a,
        b,
        attrs.transposeA === true,
        attrs.transposeB === true,
        {
          activation: after === undefined ? activation : FUSABLE_ACTIVATION.linear,
          bias: bias ?? undefined,
          prelu: preluActivationWeights ?? undefined,
          leakyreluAlpha: attrs.leakyreluAlpha || 0,
        },
        () => stock(linearArgs) as tf.TensorInfo,
        "_FusedMatMul",
      );
      if (after !== undefined) applyActivation((args.backend as WasmBackend).typedArrayFromHeap(out) as Float32Array, after, 0);
      return out;
    };
  },
};
