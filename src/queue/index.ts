/** A distributed job queue for training jobs: Redis + BullMQ, workers on any number of machines. */
export { DEFAULT_QUEUE_NAME, connectionOptions, describeConnection, probeRedis, type QueueConnection, type QueueTls, type RedisChecks, type RedisServerFacts, type ProbeRedisOptions } from "./connection.js";
export {
  submitJobs,
  attachQueue,
  queueStatus,
  outcomesTable,
  type SubmitJobsOptions,
  type JobOutcome,
  type JobProgressEvent,
  type RetryBackoff,
  type QueueCounts,
  type AttachedQueue,
} from "./producer.js";
export { startWorker, type StartWorkerOptions, type QueueWorker, type TrainingProgress } from "./worker.js";
export { parseWorkerArgs, WORKER_USAGE, type WorkerCliOptions } from "./cli-args.js";
export { startRedis, freeLoopbackPort, type StartRedisOptions, type StartRedisTls, type LocalRedis } from "./redis-server.js";
