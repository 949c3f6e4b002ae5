/**
 * Execute notebooks on the tslab kernel (nbclient, nbconvert's engine, via execute_notebook.py) and
 * write the cookbook report. Shared by `npm run cookbook` and the test suite.
 */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { escapeHtml, formatFigure, type Figure } from "../../src/notebook/figures.js";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..", "..");
export const NOTEBOOK_DIR = join(ROOT, "notebooks");

/** What scripts/setup.mjs found: the Python with Jupyter and the project-local kernel folder. */
export interface SetupInfo {
  python: string;
  jupyterPath: string;
  kernel: string;
}

export function readSetup(): SetupInfo {
  const file = join(ROOT, "build", "setup.json");
  if (!existsSync(file)) throw new Error(`${file} is missing: run "node scripts/setup.mjs" first.`);
  return JSON.parse(readFileSync(file, "utf8")) as SetupInfo;
}

/** The environment Jupyter needs to find the project-local tslab kernel before any other. */
export function jupyterEnv(setup: SetupInfo): NodeJS.ProcessEnv {
  const prior = process.env.JUPYTER_PATH;
  return { ...process.env, JUPYTER_PATH: prior ? `${setup.jupyterPath}:${prior}` : setup.jupyterPath };
}

export interface NotebookResult {
  /** Path relative to the project root. */
  notebook: string;
  name: string;
  title: string;
  status: "passed" | "failed" | "timeout";
  seconds: number;
  /** 1-based index among all cells / among code cells of the failing cell. */
  failed_cell?: number | null;
  failed_code_cell?: number | null;
  error?: string;
  figures: Record<string, Figure>;
  /** Outputs, relative to the build folder. */
  html: string;
  ipynb: string;
}

/** Notebooks to run: all of notebooks/*.ipynb in order, or those matching the given paths or globs. */
export function listNotebooks(patterns: string[] = []): string[] {
  const all = readdirSync(NOTEBOOK_DIR)
    .filter((f) => f.endsWith(".ipynb"))
    .sort()
    .map((f) => join(NOTEBOOK_DIR, f));
  if (patterns.length === 0) return all;
  const picked = new Set<string>();
  for (const p of patterns) {
    const abs = resolve(p);
    if (p.includes("*")) {
      const re = new RegExp(`^${abs.replace(/[.+^${}()|[\]\\]/g, "\\$&").replace(/\*/g, "[^/]*")}$`);
      const hits = all.filter((f) => re.test(f));
      if (hits.length === 0) throw new Error(`No notebook matches "${p}".`);
      hits.forEach((h) => picked.add(h));
    } else if (existsSync(abs) && abs.endsWith(".ipynb")) picked.add(abs);
    else throw new Error(`No notebook "${p}" (looked for ${abs}).`);
  }
  return all.filter((f) => picked.has(f)).concat([...picked].filter((f) => !all.includes(f)));
}

/** Per-notebook time limit in seconds: the notebook's `metadata.jointly.timeout`, else the default. */
export function notebookTimeout(path: string, fallback: number): number {
  try {
    const t = JSON.parse(readFileSync(path, "utf8"))?.metadata?.jointly?.timeout;
    return typeof t === "number" && t > 0 ? t : fallback;
  } catch {
    return fallback;
  }
}

/**
 * Execute one notebook; never throws for a failing notebook (the result says why). The whole run is
 * limited to `timeoutSec`: past it the process group (Python and the kernel) is killed.
 */
export function executeNotebook(path: string, outDir: string, setup: SetupInfo, timeoutSec: number): Promise<NotebookResult> {
  const name = basename(path, ".ipynb");
  const nbDir = join(outDir, "notebooks");
  mkdirSync(nbDir, { recursive: true });
  const outIpynb = join(nbDir, `${name}.ipynb`);
  const outHtml = join(nbDir, `${name}.html`);
  const base: Omit<NotebookResult, "status" | "seconds"> = {
    notebook: relative(ROOT, path),
    name,
    title: name,
    figures: {},
    html: relative(outDir, outHtml),
    ipynb: relative(outDir, outIpynb),
  };
  const started = Date.now();
  return new Promise((done) => {
    const child = spawn(
      setup.python,
      [join(ROOT, "scripts", "execute_notebook.py"), path, outIpynb, outHtml, "--kernel", setup.kernel, "--cell-timeout", String(timeoutSec)],
      { cwd: ROOT, env: jupyterEnv(setup), detached: true, stdio: ["ignore", "pipe", "pipe"] },
    );
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-(child.pid as number), "SIGKILL");
      } catch {
        // already gone
      }
    }, timeoutSec * 1000);
    child.on("close", (code) => {
      clearTimeout(timer);
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      if (timedOut) {
        done({ ...base, status: "timeout", seconds, error: `did not finish within ${timeoutSec} s` });
        return;
      }
      const last = stdout.trim().split("\n").pop() ?? "";
      try {
        const r = JSON.parse(last) as Partial<NotebookResult>;
        done({ ...base, ...r, notebook: base.notebook, name, html: base.html, ipynb: base.ipynb, status: r.status === "passed" ? "passed" : "failed", seconds });
      } catch {
        const tail = stderr.trim().split("\n").slice(-8).join("\n");
        done({ ...base, status: "failed", seconds, error: `the executor exited with code ${code}: ${tail || last}` });
      }
    });
  });
}

// The report shows figures exactly as the notebooks do.
const esc = (text: unknown): string => escapeHtml(String(text));

/** Where a failure happened, for people: notebook, cell number and the error's first lines. */
export function describeFailure(r: NotebookResult): string {
  const where = r.failed_cell ? ` at cell ${r.failed_cell}${r.failed_code_cell ? ` (code cell ${r.failed_code_cell})` : ""}` : "";
  return `${r.notebook} ${r.status}${where}: ${r.error ?? "unknown error"}`;
}

/** Write build/index.html and build/report.json for a set of results. */
export function writeReport(results: NotebookResult[], outDir: string, meta: Record<string, string> = {}): string {
  mkdirSync(outDir, { recursive: true });
  const passed = results.filter((r) => r.status === "passed").length;
  writeFileSync(join(outDir, "report.json"), JSON.stringify({ generated: new Date().toISOString(), meta, results }, null, 2));
  const rows = results
    .map((r) => {
      const figures = Object.entries(r.figures ?? {})
        .map(([k, v]) => `<li><span class="k">${esc(k)}</span> <b>${esc(formatFigure(v))}</b></li>`)
        .join("");
      const failure = r.status === "passed" ? "" : `<div class="err">${esc(describeFailure(r))}</div>`;
      return `<tr class="${r.status}">
  <td><a href="${esc(r.html)}">${esc(r.name)}</a><div class="title">${esc(r.title)}</div>${failure}</td>
  <td class="status">${r.status === "passed" ? "✓ passed" : r.status === "timeout" ? "⏱ timeout" : "✗ failed"}</td>
  <td class="num">${r.seconds.toFixed(1)} s</td>
  <td><ul>${figures}</ul></td>
</tr>`;
    })
    .join("\n");
  const metaLine = Object.entries(meta)
    .map(([k, v]) => `${esc(k)}: ${esc(v)}`)
    .join(" · ");
  const html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>jointly cookbook report</title>
<style>
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; width: 100%; }
th, td { border-bottom: 1px solid #ddd; padding: 0.5em; vertical-align: top; text-align: left; }
tr.passed .status { color: #17803d; } tr.failed .status, tr.timeout .status { color: #b3261e; font-weight: bold; }
.title { color: #555; font-size: 0.9em; } .err { color: #b3261e; font-family: monospace; white-space: pre-wrap; font-size: 0.85em; }
.num { text-align: right; white-space: nowrap; } ul { margin: 0; padding-left: 1em; } .k { color: #555; }
</style></head>
<body>
<h1>jointly cookbook report</h1>
<p id="summary">${passed} of ${results.length} notebooks passed. ${metaLine}</p>
<table>
<thead><tr><th>notebook</th><th>status</th><th>duration</th><th>key figures</th></tr></thead>
<tbody>
${rows}
</tbody></table>
</body></html>
`;
  const file = join(outDir, "index.html");
  writeFileSync(file, html);
  return file;
}

/** A plain-text summary table for the terminal. */
export function summaryTable(results: NotebookResult[]): string {
  const w = Math.max(8, ...results.map((r) => r.name.length));
  const lines = [`${"notebook".padEnd(w)}  status   time    key figures`];
  for (const r of results) {
    const figs = Object.entries(r.figures ?? {})
      .map(([k, v]) => `${k}=${formatFigure(v)}`)
      .join(", ");
    lines.push(`${r.name.padEnd(w)}  ${r.status.padEnd(7)} ${`${r.seconds.toFixed(1)}s`.padStart(6)}  ${figs}`);
    if (r.status !== "passed") lines.push(`${"".padEnd(w)}  ↳ ${describeFailure(r)}`);
  }
  return lines.join("\n");
}

/** Run notebooks one after another and write the report. */
export async function runCookbook(notebooks: string[], outDir: string, options: { timeoutSec?: number; onResult?: (r: NotebookResult) => void } = {}) {
  const setup = readSetup();
  const results: NotebookResult[] = [];
  for (const nb of notebooks) {
    const r = await executeNotebook(nb, outDir, setup, notebookTimeout(nb, options.timeoutSec ?? 240));
    results.push(r);
    options.onResult?.(r);
  }
  const index = writeReport(results, outDir, { machine: `${process.platform} ${process.arch}, node ${process.version}` });
  return { results, index };
}
