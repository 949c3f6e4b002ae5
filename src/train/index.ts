export { JointTrainer, type JointTrainerOptions, type StepResult, type Evaluation } from "./joint-trainer.js";
export { fit, historyTable, type FitOptions, type FitResult, type HistoryRow } from "./fit.js";
export { trainable, modelVariables, uniqueVariables, batchRows, gatherInputs, type Inputs, type Trainable } from "./model.js";
export { resolveTasks, type Task, type ResolvedTask } from "./tasks.js";
export { computeMetric, type MetricName } from "./metrics.js";
export { OptimizerGroups, optimizerGroups, getLearningRate, setLearningRate, type OptimizerGroupSpec, type VariableSelector } from "./optimizer-groups.js";
export { constantLR, stepDecay, cosineDecay, linearWarmup, scheduleValues, type Schedule } from "./schedules.js";
export {
  AlternatingTrainer, JointObjectiveTrainer,
  type AlternatingOptions, type JointObjectiveOptions, type Turn, type ModelPart, type ConsistencyTerm, type ForwardFn, type PartVariables, type MultiStepResult,
} from "./alternating.js";
