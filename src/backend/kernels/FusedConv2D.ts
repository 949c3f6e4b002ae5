/**
 * `FusedConv2D` for wasm (an override, with the native addon only): Conv2D + bias + activation in
 * one native call (native/conv.c: im2col + sgemm, the bias as sgemm's starting value, the
 * activation on each block of rows). Activations linear, relu, relu6, leakyrelu, sigmoid and elu;
 * prelu (and any other) goes to the stock kernel. NCHW is transposed to NHWC and back. Without
 * the addon the stock kernel stays.
 */
import type * as tf from "@tensorflow/tfjs";
import type { WasmBackend } from "../wasm-internals.js";
import { nativeConv2dForward, type ConvAttrs } from "./conv-util.js";
import { FUSABLE_ACTIVATION, fusableActivation } from "./fusable-activation.js";
import type { WasmKernel } from "./types.js";

interface Attrs extends ConvAttrs {
  activation?: string;
  leakyreluAlpha?: number;
}

export const fusedConv2DKernel: WasmKernel = {
  kernelName: "FusedConv2D",
  role: "override",
  make: (native, stock) => {
    if (native === undefined) return undefined;
    return (args) => {
      const { x, filter, bias } = args.inputs as { x: tf.TensorInfo; filter: tf.TensorInfo; bias?: tf.TensorInfo | null };
      const a = args.attrs as unknown as Attrs;
      const activation = fusableActivation(a.activation);
      if (activation === undefined || activation === FUSABLE_ACTIVATION.prelu) {
        if (stock === undefined) throw new Error(`FusedConv2D (wasm): activation '${a.activation}' needs the stock kernel, which is not registered.`);
        return stock(args);
      }
      return nativeConv2dForward(native, args.backend as unknown as WasmBackend, "FusedConv2D", x, filter, a, {
        bias: bias ?? undefined,
        activation,
        leakyreluAlpha: a.leakyreluAlpha ?? 0,
      });
    };
  },
};
