/**
 * jointly's optimizers: Adam and SGD that update each variable (and its slots) in one pass on the
 * wasm backend's memory, with the stock optimizers' numbers.
 */
export { FusedAdam, fusedAdam, FUSED_ADAM_MAX_ELEMENTS } from "./fused-adam.js";
export { FusedSGD, fusedSgd, FUSED_SGD_MAX_ELEMENTS } from "./fused-sgd.js";
export type { FusedUpdateCounts, NamedTensor } from "./wasm-update.js";
