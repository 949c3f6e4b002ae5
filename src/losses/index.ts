export { mse, mae, huber, softmaxCrossEntropy, binaryCrossEntropy, maskedMean, resolveLoss, type LossFn, type LossName } from "./per-task.js";
