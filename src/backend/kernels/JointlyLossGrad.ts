/**
 * `JointlyLossGrad` (one of jointly's own kernels, with the native addon only): the gradient of
 * ./JointlyLoss.ts with respect to the predictions, or (`wrtLabels`) to the labels, in one native
 * pass.
 */
import type * as tf from "@tensorflow/tfjs";
import { byteOffset, type WasmBackend } from "../wasm-internals.js";
import { LOSS_KIND, rowsOf, type LossAttrs } from "./loss-common.js";
import type { WasmKernel } from "./types.js";

export const JOINTLY_LOSS_GRAD = "JointlyLossGrad";

export const jointlyLossGradKernel: WasmKernel = {
  kernelName: JOINTLY_LOSS_GRAD,
  role: "new",
  make: (native) => {
    if (native === undefined) return undefined;
    return ({ inputs, attrs, backend }) => {
      const wasm = backend as unknown as WasmBackend;
      const { pred, labels, dy } = inputs as { pred: tf.TensorInfo; labels: tf.TensorInfo; dy: tf.TensorInfo };
      const { kind, mean, wrtLabels } = attrs as unknown as LossAttrs & { wrtLabels: boolean };
      const { n, cols } = rowsOf(pred);
      const out = wasm.makeOutput(wrtLabels ? labels.shape.slice() : pred.shape.slice(), "float32");
      native.lossBackward(
        wasm.wasm.HEAPU8.buffer, LOSS_KIND[kind], n, cols, byteOffset(wasm, pred), byteOffset(wasm, labels), labels.dtype === "float32" ? 1 : 0,
        byteOffset(wasm, dy), mean ? 1 : 0, byteOffset(wasm, out), wrtLabels ? 1 : 0,
      );
      return out;
    };
  },
};
