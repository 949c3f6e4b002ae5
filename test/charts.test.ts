import { test } from "node:test";
import assert from "node:assert/strict";
import * as vegaLite from "vega-lite";
import * as aq from "arquero";
import { lossCurvesSpec, taskWeightsSpec } from "../src/charts/loss-curves.js";
import { renderSVG } from "../src/charts/render.js";
import { chartBundle, show, inNotebook } from "../src/charts/show.js";
import { VEGA_LITE_MIME } from "../src/charts/spec.js";

const history = [1, 2, 3].flatMap((epoch) =>
  ["a", "b"].flatMap((task, t) =>
    (["train", "validation"] as const).map((split) => ({ epoch, task, split, loss: (t + 1) / epoch + (split === "validation" ? 0.1 : 0), weight: 0.5 + t * epoch * 0.1 })),
  ),
);

/** Count drawn lines in an SVG rendered by vega: each line is a <path> described as a "line mark". */
function linePaths(svg: string) {
  return (svg.match(/<path [^>]*aria-roledescription="line mark"/g) ?? []).length;
}

test("loss curves: valid vega-lite, one line per task and split, rendered to SVG", async () => {
  const spec = lossCurvesSpec(aq.from(history));
  assert.doesNotThrow(() => vegaLite.compile(spec as never));
  assert.equal((spec.data as { values: unknown[] }).values.length, 12);
  const svg = await renderSVG(spec);
  assert.match(svg, /^<svg[^>]+width="\d+"/);
  assert.equal(linePaths(svg), 4);
  assert.match(svg, /Per-task loss/);
});

test("log scale drops non-positive and non-finite values instead of drawing -Infinity", () => {
  const rows = [...history, { epoch: 4, task: "a", split: "train", loss: 0, weight: 1 }, { epoch: 5, task: "a", split: "train", loss: NaN, weight: 1 }];
  const spec = lossCurvesSpec(rows, { logScale: true });
  const values = (spec.data as { values: { loss: number }[] }).values;
  assert.equal(values.length, 12);
  assert.deepEqual((spec.encoding as { y: { scale: unknown } }).y.scale, { type: "log" });
  assert.ok(values.every((v) => v.loss > 0));
});

test("task weights: one line per task over time, training rows only", async () => {
  const spec = taskWeightsSpec(history);
  const values = (spec.data as { values: { task: string; weight: number }[] }).values;
  assert.equal(values.length, 6);
  const svg = await renderSVG(spec);
  assert.equal(linePaths(svg), 2);
});

test("a spec that does not compile is reported by title", async () => {
  await assert.rejects(renderSVG({ title: "broken", mark: "nonsense-mark", data: { values: [] } }), /"broken" did not compile/);
});

test("chart bundle: the vega-lite spec as an object, a static SVG and a text fallback in one output", async () => {
  const spec = lossCurvesSpec(history);
  const bundle = await chartBundle(spec);
  assert.deepEqual(Object.keys(bundle.data).sort(), ["image/svg+xml", "text/plain", VEGA_LITE_MIME].sort());
  assert.equal(typeof bundle.data[VEGA_LITE_MIME], "object");
  assert.match(String(bundle.data["image/svg+xml"]), /<svg/);
});

test("outside a notebook, show() prints the text fallback", async (t) => {
  assert.equal(inNotebook(), false);
  const logged: unknown[] = [];
  t.mock.method(console, "log", (...a: unknown[]) => logged.push(a.join(" ")));
  await show(lossCurvesSpec(history, { title: "outside" }));
  assert.deepEqual(logged, ["<chart: outside>"]);
});
