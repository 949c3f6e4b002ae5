import type * as VegaLite from "vega-lite";
import type * as Vega from "vega";
import type { VegaLiteSpec } from "./spec.js";

// vega 6 has a top-level await (vega-canvas), so a static import would stop tslab, which compiles
// cells to CommonJS, from require()-ing jointly at all. Load the renderers on first use instead.
let renderers: Promise<{ vegaLite: typeof VegaLite; vega: typeof Vega }> | undefined;
function loadRenderers() {
  renderers ??= Promise.all([import("vega-lite"), import("vega")]).then(([vegaLite, vega]) => ({ vegaLite, vega }));
  return renderers;
}

/**
 * Compile a vega-lite spec and render it to an SVG string in Node, with no browser.
 * Throws, naming the problem, if the spec does not compile.
 */
export async function renderSVG(spec: VegaLiteSpec): Promise<string> {
  const { vegaLite, vega } = await loadRenderers();
  let compiled: Vega.Spec;
  try {
    // vega-lite's TopLevelSpec type is far richer than our JSON type; compile() validates it.
    compiled = vegaLite.compile(spec as unknown as VegaLite.TopLevelSpec).spec;
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
