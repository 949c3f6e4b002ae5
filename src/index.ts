/**
 * jointly: train several TensorFlow.js networks together.
 *
 * @packageDocumentation
 */
export * from "./backend/init.js";
export * from "./charts/index.js";
export * from "./notebook/figures.js";
export * from "./losses/index.js";
export * from "./train/index.js";
export * from "./data/index.js";
