export { mse, mae, huber, softmaxCrossEntropy, binaryCrossEntropy, maskedMean, resolveLoss, type LossFn, type LossName } from "./per-task.js";
export {
  consistencyMSE, consistencyMAE, consistencyKL, consistencyCosine, stopGradient,
  type ConsistencyFn, type ConsistencyOptions, type KLOptions, type CosineOptions, type StopSide,
} from "./consistency.js";
export { l1, l2, selectVariables, KERNELS, type VariableSource, type VariableFilter } from "./regularization.js";
export { weightedSum } from "./weighted.js";
