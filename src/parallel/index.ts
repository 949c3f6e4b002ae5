/**
 * Fleets of independent models: partitions of a data set, a sharded batching pipeline, atomic model
 * files, the training job, and a worker-thread pool that runs many jobs.
 */
export {
  ROW_ID, PARTITION_SCHEMES, addRowIds, partitionIndices, partitionTable, checkPartition,
  type PartitionScheme, type PartitionOptions, type PartitionCheck,
} from "./partition.js";
export { confineOutDir, defaultOutRoots, resolveReal, claimModelDir, OUT_ROOT_ENV, JOB_FILE, type JobClaim } from "./confine.js";
export { OutOfMemoryError, isOutOfMemory, backendHealthy, mlpMemoryEstimate, WASM_HEAP_MAX_BYTES } from "./health.js";
export { JobThread, type JobFailureKind, type ThreadOutcome, type JobThreadOptions, type ThreadRunOptions } from "./job-thread.js";
export { fileSystemIO, MODEL_JSON, WEIGHTS_BIN, type FileOps } from "./model-files.js";
export { runTrainingJob, validateJobSpec, weightsHash, type TrainingJobSpec, type TrainingJobResult, type RunJobOptions } from "./job.js";
export { trainMany, defaultWorkerScript, DEFAULT_JOB_TIMEOUT_SECONDS, type TrainManyOptions, type PoolRow, type WorkerEvent } from "./pool.js";
export { serveTrainingJobs, type JobRunner, type PoolWorkerData, type ToWorker, type FromWorker } from "./worker.js";
export { batchPipeline, shardIndices, epochOrder, type PipelineOptions, type PipelineBatch } from "./pipeline.js";
export * from "./ensemble.js";
