export { lossCurvesSpec, taskWeightsSpec, type LossCurveOptions } from "./loss-curves.js";
export { cosineHeatmapSpec, gradientNormsSpec, conflictShareSpec, type ConflictChartOptions, type CosineHeatmapOptions } from "./conflict.js";
export { imageGridSpec, tradeoffSpec, type ImageGridOptions, type TradeoffOptions } from "./images.js";
export { renderSVG } from "./render.js";
export { show, liveChart, chartBundle, displayBundle, inNotebook, chartRenderCount, type LiveChart, type DisplayBundle } from "./show.js";
export { VEGA_LITE_MIME, VEGA_LITE_SCHEMA, type VegaLiteSpec, type Rows } from "./spec.js";
