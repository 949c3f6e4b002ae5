import * as vegaLite from "vega-lite";
import * as vega from "vega";
import type { VegaLiteSpec } from "./spec.js";

/**
 * Compile a vega-lite spec and render it to an SVG string in Node, with no browser.
 * Throws, naming the problem, if the spec does not compile.
 */
export async function renderSVG(spec: VegaLiteSpec): Promise<string> {
  let compiled: vega.Spec;
  try {
    // vega-lite's TopLevelSpec type is far richer than our JSON type; compile() validates it.
    compiled = vegaLite.compile(spec as unknown as vegaLite.TopLevelSpec).spec;
  } catch (err) {
    throw new Error(`The vega-lite spec "${String(spec.title ?? "untitled")}" did not compile: ${(err as Error).message}`);
  }
  const view = new vega.View(vega.parse(compiled), { renderer: "none" });
  try {
    return await view.toSVG();
  } finally {
    view.finalize();
  }
}
