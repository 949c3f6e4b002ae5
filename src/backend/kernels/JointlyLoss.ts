/**
 * `JointlyLoss` (one of jointly's own kernels, with the native addon only): a per-task loss as one
 * op (softmax cross-entropy on class ids or on probability rows, MSE, sigmoid cross-entropy), the
 * mean over rows or one value per row, where the composite tfjs ops take about 14 ops forward and as
 * many backward; its gradient is the one op ./JointlyLossGrad.ts. The sums run in double and are
 * rounded once, so the values differ from the composite float32 ops by rounding only. A class id
 * that is not an integer in [0, classes) is an error naming it (the composite one-hot silently gives
 * such a row a zero loss). Run by src/ops/fused.ts's `fusedLoss`.
 */
import * as tf from "@tensorflow/tfjs";
import { byteOffset, type WasmBackend } from "../wasm-internals.js";
import { JOINTLY_LOSS_GRAD } from "./JointlyLossGrad.js";
import { LOSS_KIND, rowsOf, type LossAttrs } from "./loss-common.js";
import type { WasmKernel } from "./types.js";

export const JOINTLY_LOSS = "JointlyLoss";

export const jointlyLossKernel: WasmKernel = {
  kernelName: JOINTLY_LOSS,
  role: "new",
  make: (native) => {
    if (native === undefined) return undefined;
    return ({ inputs, attrs, backend }) => {
      const wasm = backend as unknown as WasmBackend;
      const { pred, labels } = inputs as { pred: tf.TensorInfo; labels: tf.TensorInfo };
      const { kind, mean } = attrs as unknown as LossAttrs;
      const { n, cols } = rowsOf(pred);
      const out = wasm.makeOutput(mean ? [] : [n], "float32");
      const bad = native.lossForward(wasm.wasm.HEAPU8.buffer, LOSS_KIND[kind], n, cols, byteOffset(wasm, pred), byteOffset(wasm, labels), labels.dtype === "float32" ? 1 : 0, byteOffset(wasm, out), mean ? 1 : 0);
      if (bad >= 0) {
        const value = wasm.typedArrayFromHeap(labels)[bad];
        wasm.disposeData(out.dataId);
        throw new Error(`softmaxCrossEntropy: label ${value} of row ${bad} is not a class id in [0, ${cols - 1}] (logits of shape [${pred.shape}]).`);
      }
      return out;
    };
  },
  gradient: {
    kernelName: JOINTLY_LOSS,
    inputsToSave: ["pred", "labels"],
    gradFunc: (dy, saved, attrs) => {
      const [pred, labels] = saved as [tf.Tensor, tf.Tensor];
      const a = attrs as unknown as LossAttrs;
      const grad = (wrtLabels: boolean) => (): tf.Tensor =>
        tf.engine().runKernel(JOINTLY_LOSS_GRAD, { pred, labels, dy: dy as tf.Tensor }, { kind: a.kind, mean: a.mean, wrtLabels }) as tf.Tensor;
      return {
        pred: grad(false),
        // Class ids have no gradient; MSE and sigmoid CE labels do (another network's output, say).
        labels: a.kind === "softmaxCrossEntropy" ? () => tf.zerosLike(labels) : grad(true),
      };
    },
  },
};
