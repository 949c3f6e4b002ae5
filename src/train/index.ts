export { JointTrainer, type JointTrainerOptions, type StepResult, type Evaluation } from "./joint-trainer.js";
export { fit, historyTable, type FitOptions, type FitResult, type HistoryRow } from "./fit.js";
export { trainable, modelVariables, uniqueVariables, batchRows, gatherInputs, type Inputs, type Trainable } from "./model.js";
export { resolveTasks, type Task, type ResolvedTask } from "./tasks.js";
export { computeMetric, type MetricName } from "./metrics.js";
