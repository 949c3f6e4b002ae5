import { createRequire } from "node:module";
import { randomBytes } from "node:crypto";
import { renderSVG } from "./render.js";
import { VEGA_LITE_MIME, type VegaLiteSpec } from "./spec.js";

const require = createRequire(import.meta.url);

/** A Jupyter display bundle: one output carrying several MIME representations of the same thing. */
export interface DisplayBundle {
  data: Record<string, unknown>;
  metadata?: Record<string, unknown>;
}

type WriteDisplayData = (
  content: { data: Record<string, unknown>; metadata: Record<string, unknown>; transient: { display_id?: string } },
  update: boolean,
) => void;

/** The module tslab's kernel keeps its display writer in: `<somewhere>/tslab/dist/jupyter.js`. */
const TSLAB_JUPYTER = /[\\/]tslab[\\/]dist[\\/]jupyter\.js$/;
let tslabModuleFile: string | undefined;

/**
 * tslab's public `display.raw` sends one MIME type per output; JupyterLab wants the spec as JSON while
 * nbconvert and GitHub need an SVG in the same output. So we reach the kernel's own display writer,
 * found in the module cache of the tslab that is running this kernel. That module is looked for
 * wherever it was loaded from (a project's tslab, a global one, a kernelspec that runs
 * `node .../tslab/dist/main.js`), not only next to jointly: a library install need not have tslab.
 * Its writer is set once the kernel executes its first cell, and a plain Node process never has it.
 */
function kernelDisplayWriter(): WriteDisplayData | undefined {
  const writerOf = (file: string) =>
    (require.cache[file]?.exports as { lastWriteDisplayData?: WriteDisplayData | null } | undefined)?.lastWriteDisplayData ?? undefined;
  const known = tslabModuleFile && writerOf(tslabModuleFile);
  if (known) return known;
  // tslab is CommonJS throughout (bin/tslab requires dist/main.js, which requires dist/jupyter.js),
  // so a running kernel's module is always in require's cache.
  for (const file of Object.keys(require.cache)) {
    if (!TSLAB_JUPYTER.test(file)) continue;
    const write = writerOf(file);
    if (write) {
      // The kernel's module stays loaded for the life of the process: remember where it is.
      tslabModuleFile = file;
      return write;
    }
  }
  return undefined;
}

/** True when running inside a tslab kernel that is executing a cell. */
export function inNotebook(): boolean {
  return kernelDisplayWriter() !== undefined;
}

/**
 * Send one display output with several MIME types. Outside a notebook, prints the `text/plain`
 * representation (if any) and returns false.
 */
export function displayBundle(bundle: DisplayBundle, displayId?: string, update = false): boolean {
  const write = kernelDisplayWriter();
  if (!write) {
    const text = bundle.data["text/plain"];
    if (typeof text === "string") console.log(text);
    return false;
  }
  write({ data: bundle.data, metadata: bundle.metadata ?? {}, transient: displayId ? { display_id: displayId } : {} }, update);
  return true;
}

let svgRenders = 0;

/**
 * How many charts this process has rendered to SVG for display (by {@link chartBundle}, and so by
 * `show` and live charts). For tests and diagnostics: a run outside a notebook should render none.
 */
export function chartRenderCount(): number {
  return svgRenders;
}

/** Build the display bundle for a chart: the interactive spec, a static SVG, and a text fallback. */
export async function chartBundle(spec: VegaLiteSpec): Promise<DisplayBundle> {
  svgRenders++;
  const svg = await renderSVG(spec);
  return {
    data: {
      [VEGA_LITE_MIME]: spec,
      "image/svg+xml": svg,
      "text/plain": `<chart: ${String(spec.title ?? "vega-lite")}>`,
    },
  };
}

/**
 * Display a vega-lite chart in a tslab notebook. JupyterLab renders the spec interactively; the same
 * output carries an SVG rendered in Node, which nbconvert's HTML export and GitHub show. Outside a
 * notebook kernel it prints `<chart: title>` and renders nothing.
 *
 * @example
 * await show(lossCurvesSpec(history));
 */
export async function show(spec: VegaLiteSpec): Promise<void> {
  // Outside a kernel only the text line is seen: skip the SVG render it would throw away.
  if (!inNotebook()) {
    console.log(`<chart: ${String(spec.title ?? "vega-lite")}>`);
    return;
  }
  displayBundle(await chartBundle(spec));
}

/** A chart that redraws in place, e.g. while a model trains. */
export interface LiveChart {
  /** Redraw with a new spec. Calls are coalesced: at most one render is in flight. */
  update(spec: VegaLiteSpec): Promise<void>;
  /** Draw the final spec and wait for it. */
  close(spec: VegaLiteSpec): Promise<void>;
}

/**
 * Start a chart that updates in place (Jupyter `update_display_data`), ending in the final chart.
 * Outside a notebook kernel nobody would see it: it renders nothing (an SVG render costs as much as
 * a small training run), and {@link LiveChart.close} prints the chart's title as a text line.
 */
export function liveChart(): LiveChart {
  const id = randomBytes(8).toString("hex");
  let shown = false;
  let latest: VegaLiteSpec | undefined;
  let rendering: Promise<void> | undefined;
  const draw = async (spec: VegaLiteSpec) => {
    if (!inNotebook()) return;
    const bundle = await chartBundle(spec);
    displayBundle(bundle, id, shown);
    shown = true;
  };
  const pump = async (): Promise<void> => {
    while (latest) {
      const spec = latest;
      latest = undefined;
      await draw(spec);
    }
    rendering = undefined;
  };
  return {
    update(spec) {
      if (!inNotebook()) return Promise.resolve();
      latest = spec;
      if (!rendering) rendering = pump();
      return rendering;
    },
    async close(spec) {
      latest = undefined;
      if (rendering) await rendering;
      if (!inNotebook()) {
        console.log(`<chart: ${String(spec.title ?? "vega-lite")}>`);
        return;
      }
      displayBundle(await chartBundle(spec), id, shown);
      shown = true;
    },
  };
}
