/** Metrics computed on whole data sets (after prediction), in plain numbers. */
export type MetricName = "accuracy" | "mae" | "rmse" | "r2";

/** Every metric by name. */
export const metricNames: readonly MetricName[] = ["accuracy", "mae", "rmse", "r2"];

/** Which metrics fit which built-in loss: accuracy scores classes, the others regression values. */
const FITTING: Record<string, readonly MetricName[]> = {
  mse: ["mae", "rmse", "r2"],
  mae: ["mae", "rmse", "r2"],
  huber: ["mae", "rmse", "r2"],
  softmaxCrossEntropy: ["accuracy"],
  binaryCrossEntropy: ["accuracy"],
};

/**
 * Throws unless `metric` is a known metric that fits the task's loss (`lossName`, undefined for a
 * custom loss: then any known metric is allowed). Accuracy on a regression task compared rounded
 * arg-maxes of one column and reported nonsense such as 1.
 */
export function checkMetricFits(metric: unknown, task: string, lossName: string | undefined): asserts metric is MetricName {
  if (!(metricNames as readonly unknown[]).includes(metric)) {
    throw new Error(`Task "${task}": unknown metric ${JSON.stringify(metric)}; use one of ${metricNames.join(", ")}.`);
  }
  const fits = lossName === undefined ? undefined : FITTING[lossName];
  if (fits && !fits.includes(metric as MetricName)) {
    const kind = fits.includes("accuracy") ? "a classification" : "a regression";
    throw new Error(`Task "${task}": the metric "${String(metric)}" does not fit its loss ${lossName} (${kind} task); use ${fits.join(", ")}.`);
  }
}

/** Compute a metric from labels and predictions read back as arrays. `width` is the prediction row width. */
export function computeMetric(name: MetricName, labels: ArrayLike<number>, predictions: ArrayLike<number>, width: number, task: string): number {
  const n = width > 0 ? predictions.length / width : 0;
  if (name === "accuracy") {
    let correct = 0;
    const oneHot = labels.length === predictions.length && width > 1;
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let j = 1; j < width; j++) if ((predictions[i * width + j] as number) > (predictions[i * width + best] as number)) best = j;
      let truth: number;
      if (oneHot) {
        truth = 0;
        for (let j = 1; j < width; j++) if ((labels[i * width + j] as number) > (labels[i * width + truth] as number)) truth = j;
      } else if (width === 1) {
        // one logit: positive means class 1
        best = (predictions[i] as number) > 0 ? 1 : 0;
        truth = (labels[i] as number) > 0.5 ? 1 : 0;
      } else truth = labels[i] as number;
      if (best === truth) correct++;
    }
    return n ? correct / n : NaN;
  }
  if (labels.length !== predictions.length) {
    throw new Error(`Metric "${name}" of task "${task}": ${labels.length} labels but ${predictions.length} predictions.`);
  }
  const m = labels.length;
  let se = 0, ae = 0, sum = 0;
  for (let i = 0; i < m; i++) {
    const d = (labels[i] as number) - (predictions[i] as number);
    se += d * d;
    ae += Math.abs(d);
    sum += labels[i] as number;
  }
  if (name === "mae") return ae / m;
  if (name === "rmse") return Math.sqrt(se / m);
  if (name === "r2") {
    const mean = sum / m;
    let ss = 0;
    for (let i = 0; i < m; i++) ss += ((labels[i] as number) - mean) ** 2;
    return 1 - se / ss;
  }
  throw new Error(`Unknown metric "${String(name)}" for task "${task}"; use accuracy, mae, rmse or r2.`);
}
