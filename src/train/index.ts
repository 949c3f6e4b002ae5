export {
  JointTrainer, type JointTrainerOptions, type StepResult, type Evaluation,
  type WeightingSpec, type AggregatorSpec, type AggregatorObject, type AggregatorFunction, type TrainerState,
} from "./joint-trainer.js";
export {
  saveAlternatingCheckpoint, loadAlternatingCheckpoint, saveJointObjectiveCheckpoint, loadJointObjectiveCheckpoint,
  saveEnsembleCheckpoint, loadEnsembleCheckpoint,
} from "./loop-checkpoint.js";
export {
  fit, historyTable, FitError,
  type FitOptions, type FitResult, type HistoryRow, type StepRow, type EarlyStoppingOptions, type CheckpointOptions, type Verbosity, type FitInputs, type FitLabels, type ArrayData,
} from "./fit.js";
export {
  taskGradients, representationGradients, perTaskVariableGrads, gradientMatrix, gradientAtRepresentation, unflatten, matrixRows, resolveShared,
  type SharedSelector, type GradientMode, type PerTaskGrads, type RepresentationPass,
} from "./task-gradients.js";
export {
  gradientNorms, cosineMatrix, conflictShare, gradientDiagnostics, DiagnosticsRecorder,
  type GradientDiagnostics, type CosineRow, type NormRow, type ConflictRow, type DiagnosticsTables,
} from "./diagnostics.js";
export { trainable, modelVariables, uniqueVariables, batchRows, gatherInputs, type Inputs, type Trainable, type TrainableOptions } from "./model.js";
export { directForward, type DirectForward } from "./direct-forward.js";
export { resolveTasks, type Task, type ResolvedTask } from "./tasks.js";
export { computeMetric, type MetricName } from "./metrics.js";
export { OptimizerGroups, optimizerGroups, getLearningRate, setLearningRate, type OptimizerGroupSpec, type VariableSelector } from "./optimizer-groups.js";
export { constantLR, stepDecay, cosineDecay, linearWarmup, scheduleValues, type Schedule } from "./schedules.js";
export {
  AlternatingTrainer, JointObjectiveTrainer,
  type AlternatingOptions, type JointObjectiveOptions, type Turn, type ModelPart, type ConsistencyTerm, type ForwardFn, type PartVariables, type MultiStepResult,
} from "./alternating.js";
