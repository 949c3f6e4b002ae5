import { createRequire } from "node:module";
import { realpathSync } from "node:fs";
import { dirname, join } from "node:path";
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

/**
 * tslab's public `display.raw` sends one MIME type per output; JupyterLab wants the spec as JSON while
 * nbconvert and GitHub need an SVG in the same output. So we reach the kernel's own display writer,
 * found in the module cache of the tslab that is running this kernel.
 */
function kernelDisplayWriter(): WriteDisplayData | undefined {
  const candidates: string[] = [];
  const mainScript = process.argv[1];
  if (mainScript) {
    try {
      candidates.push(join(dirname(realpathSync(mainScript)), "..", "dist", "jupyter.js"));
    } catch {
      // not a file: not running under tslab
    }
  }
  try {
    candidates.push(require.resolve("tslab/dist/jupyter.js"));
  } catch {
    // tslab not installed next to jointly
  }
  for (const file of candidates) {
    const mod = require.cache[file]?.exports as { lastWriteDisplayData?: WriteDisplayData | null } | undefined;
    if (mod?.lastWriteDisplayData) return mod.lastWriteDisplayData;
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

/** Build the display bundle for a chart: the interactive spec, a static SVG, and a text fallback. */
export async function chartBundle(spec: VegaLiteSpec): Promise<DisplayBundle> {
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
 * output carries an SVG rendered in Node, which nbconvert's HTML export and GitHub show.
 *
 * @example
 * await show(lossCurvesSpec(history));
 */
export async function show(spec: VegaLiteSpec): Promise<void> {
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
 * Outside a notebook it draws nothing until {@link LiveChart.close}, which prints a text line.
 */
export function liveChart(): LiveChart {
  const id = randomBytes(8).toString("hex");
  let shown = false;
  let latest: VegaLiteSpec | undefined;
  let rendering: Promise<void> | undefined;
  const draw = async (spec: VegaLiteSpec) => {
    const bundle = await chartBundle(spec);
    if (inNotebook()) {
      displayBundle(bundle, id, shown);
      shown = true;
    }
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
      latest = spec;
      if (!rendering) rendering = pump();
      return rendering;
    },
    async close(spec) {
      latest = undefined;
      if (rendering) await rendering;
      const bundle = await chartBundle(spec);
      displayBundle(bundle, inNotebook() ? id : undefined, shown);
      shown = true;
    },
  };
}
