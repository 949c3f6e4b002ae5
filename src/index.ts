/**
 * jointly: train several TensorFlow.js networks together.
 *
 * @packageDocumentation
 */
export * from "./backend/init.js";
export * from "./charts/index.js";
export * from "./notebook/figures.js";
export * from "./losses/index.js";
export * from "./layers/index.js";
export * from "./train/index.js";
export * from "./data/index.js";
export * from "./architectures/index.js";
/** Gradient aggregators (MGDA, PCGrad, CAGrad, UPGrad, ...) as pure functions of the per-task gradient matrix. */
export * as aggregation from "./aggregation/index.js";
export { aggregate, aggregators, aggregatorNames, type AggregatorName, type Aggregation } from "./aggregation/index.js";
/** Dynamic loss weightings (GradNorm, uncertainty, DWA, RLW, GLS, IMTL-L, STCH, FAMO, DB-MTL) over per-task loss values. */
export * as weighting from "./weighting/index.js";
export { createWeighting, weightingNames, weightingRequirements } from "./weighting/index.js";
/** Adam and SGD that update each variable and its slots in one pass on wasm (same numbers as tf.train). */
export { FusedAdam, FusedSGD, fusedAdam, fusedSgd, type FusedUpdateCounts } from "./optimizers/index.js";
export { dense, type FusedActivation } from "./ops/dense.js";
export { nativeKernels, setNativeKernelsEnabled, type NativeStatus } from "./backend/native.js";
/** Many independent networks: partitions, pipelines, atomic model files, training jobs, a worker pool, vectorised ensembles. */
export * from "./parallel/index.js";
export { writeFolderAtomically, readFolder, AtomicWriteError } from "./io/atomic.js";
/** The distributed job queue (BullMQ on Redis): producer, workers, a loopback Redis for notebooks and tests. */
export * as queue from "./queue/index.js";
export { submitJobs, startWorker, startRedis, queueStatus, attachQueue } from "./queue/index.js";
