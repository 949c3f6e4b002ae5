/**
 * Fleets of independent models: partitions of a data set, a sharded batching pipeline, atomic model
 * files, the training job, and a worker-thread pool that runs many jobs.
 */
export {
  ROW_ID, PARTITION_SCHEMES, addRowIds, partitionIndices, partitionTable, checkPartition,
  type PartitionScheme, type PartitionOptions, type PartitionCheck,
} from "./partition.js";
export { confineOutDir, defaultOutRoots, resolveReal, OUT_ROOT_ENV } from "./confine.js";
export { fileSystemIO, MODEL_JSON, WEIGHTS_BIN, type FileOps } from "./model-files.js";
export { runTrainingJob, validateJobSpec, weightsHash, type TrainingJobSpec, type TrainingJobResult } from "./job.js";
export { trainMany, defaultWorkerScript, type TrainManyOptions, type PoolRow, type WorkerEvent } from "./pool.js";
export { serveTrainingJobs, type JobRunner, type PoolWorkerData, type ToWorker, type FromWorker } from "./worker.js";
export { batchPipeline, shardIndices, epochOrder, type PipelineOptions, type PipelineBatch } from "./pipeline.js";
export * from "./ensemble.js";
