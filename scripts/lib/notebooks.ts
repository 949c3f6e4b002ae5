/**
 * Execute notebooks on the tslab kernel (nbclient, nbconvert's engine, via execute_notebook.py) and
 * write the cookbook report. Shared by `npm run cookbook` and the test suite.
 */
import { spawn } from "node:child_process";
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { escapeHtml, formatFigure, type Figure } from "../../src/notebook/figures.js";
import { killRun, processTable, runProcesses } from "./processes.js";

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
  /** When this run started (ISO 8601). */
  ranAt?: string;
  /** True for a result kept from an earlier run: the notebook was not run this time. */
  earlier?: boolean;
}

/** Notebooks to run: all of `dir`/*.ipynb (notebooks/ by default) in order, or those matching the given paths or globs. */
export function listNotebooks(patterns: string[] = [], dir: string = NOTEBOOK_DIR): string[] {
  const all = readdirSync(dir)
    .filter((f) => f.endsWith(".ipynb"))
    .sort()
    .map((f) => join(resolve(dir), f));
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

/** What execute_notebook.py's progress file says so far: the kernel's pid and the cell it started last. */
export function readProgress(file: string): { kernelPid?: number; cell?: number; codeCell?: number } {
  const out: { kernelPid?: number; cell?: number; codeCell?: number } = {};
  let text = "";
  try {
    text = readFileSync(file, "utf8");
  } catch {
    return out;
  }
  for (const line of text.split("\n")) {
    try {
      const e = JSON.parse(line) as { event?: string; pid?: number | null; cell?: number; code_cell?: number | null };
      if (e.event === "kernel" && typeof e.pid === "number") out.kernelPid = e.pid;
      if (e.event === "cell" && typeof e.cell === "number") {
        out.cell = e.cell;
        out.codeCell = e.code_cell ?? undefined;
      }
    } catch {
      // a line cut short by a kill: ignore it
    }
  }
  return out;
}

/** Seconds the executor gets after SIGTERM to save what ran before everything is killed. */
const SAVE_GRACE_SEC = 10;

/**
 * Execute one notebook; never throws for a failing notebook (the result says why). The whole run is
 * limited to `timeoutSec`. Past it the kernel is killed together with its session, its process
 * group and everything it started (Jupyter gives the kernel a session of its own, so killing the
 * executor's group alone leaves it running), the executor saves the cells that ran, and the result
 * is "timeout" with the cell it was in. The executor writes to a log file, not to pipes: a leftover
 * process can then never keep the runner waiting.
 */
export function executeNotebook(path: string, outDir: string, setup: SetupInfo, timeoutSec: number): Promise<NotebookResult> {
  const name = basename(path, ".ipynb");
  const nbDir = join(outDir, "notebooks");
  mkdirSync(nbDir, { recursive: true });
  const outIpynb = join(nbDir, `${name}.ipynb`);
  const outHtml = join(nbDir, `${name}.html`);
  const progressFile = join(nbDir, `${name}.progress.jsonl`);
  const resultFile = join(nbDir, `${name}.result.json`);
  const logFile = join(nbDir, `${name}.log`);
  for (const f of [progressFile, resultFile]) rmSync(f, { force: true });
  const base: Omit<NotebookResult, "status" | "seconds"> = {
    notebook: relative(ROOT, path),
    name,
    title: name,
    figures: {},
    html: relative(outDir, outHtml),
    ipynb: relative(outDir, outIpynb),
    ranAt: new Date().toISOString(),
  };
  const started = Date.now();
  const log = openSync(logFile, "w");
  const child = spawn(
    setup.python,
    [
      join(ROOT, "scripts", "execute_notebook.py"),
      path,
      outIpynb,
      outHtml,
      "--kernel",
      setup.kernel,
      // The runner's own limit is the one that counts; nbclient's per-cell limit is only a backstop.
      "--cell-timeout",
      String(Math.ceil(timeoutSec) + 60),
      "--progress",
      progressFile,
      "--result",
      resultFile,
    ],
    { cwd: ROOT, env: jupyterEnv(setup), detached: true, stdio: ["ignore", log, log] },
  );
  closeSync(log);
  const pid = child.pid as number;
  let timedOut = false;
  let stopped: number[] = [];
  let hardKill: NodeJS.Timeout | undefined;
  const timer = setTimeout(() => {
    timedOut = true;
    // Read the table first, while parent links still say what the run started.
    const kernelPid = readProgress(progressFile).kernelPid;
    stopped = runProcesses(processTable(), kernelPid ? [pid, kernelPid] : [pid], { pid: process.pid });
    try {
      process.kill(pid, "SIGTERM"); // the executor saves what ran, then exits
    } catch {
      // already gone
    }
    for (const p of stopped) {
      if (p === pid) continue;
      try {
        process.kill(p, "SIGKILL");
      } catch {
        // already gone
      }
    }
    hardKill = setTimeout(() => killRun([pid, ...stopped]), SAVE_GRACE_SEC * 1000);
  }, timeoutSec * 1000);

  return new Promise((done) => {
    child.on("exit", (code, signal) => {
      clearTimeout(timer);
      clearTimeout(hardKill);
      const seconds = Math.round((Date.now() - started) / 100) / 10;
      const progress = readProgress(progressFile);
      // Whatever is still alive of the run goes too: after a timeout everything it started; after a
      // normal exit a kernel that outlived its executor (still leading its own session).
      if (timedOut) killRun([pid, ...stopped]);
      else if (progress.kernelPid && processTable().some((r) => r.pid === progress.kernelPid && r.sid === progress.kernelPid)) killRun([progress.kernelPid]);
      let r: Partial<NotebookResult> | undefined;
      try {
        r = JSON.parse(readFileSync(resultFile, "utf8")) as Partial<NotebookResult>;
      } catch {
        r = undefined;
      }
      const fixed = { notebook: base.notebook, name, html: base.html, ipynb: base.ipynb, seconds };
      if (timedOut) {
        const cell = r?.failed_cell ?? progress.cell ?? null;
        const codeCell = r?.failed_cell ? r.failed_code_cell : progress.codeCell;
        const where = cell ? "" : " (the kernel was still starting)";
        const error = `did not finish within ${timeoutSec} s${where}; stopped ${stopped.length} process(es): the executor, the kernel and what they started`;
        done({ ...base, ...r, ...fixed, status: "timeout", failed_cell: cell, failed_code_cell: codeCell ?? null, error });
        return;
      }
      if (r) {
        done({ ...base, ...r, ...fixed, status: r.status === "passed" ? "passed" : "failed" });
        return;
      }
      let tail = "";
      try {
        tail = readFileSync(logFile, "utf8").trim().split("\n").slice(-8).join("\n");
      } catch {
        // no log
      }
      done({ ...base, status: "failed", seconds, error: `the executor exited with ${code !== null ? `code ${code}` : `signal ${signal}`}${tail ? `: ${tail}` : ""} (log: ${logFile})` });
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

/** The results of the last report in `outDir` (report.json), each with its date; none if there is no report. */
export function readReport(outDir: string): NotebookResult[] {
  let report: { generated?: string; results?: NotebookResult[] };
  try {
    report = JSON.parse(readFileSync(join(outDir, "report.json"), "utf8")) as typeof report;
  } catch {
    return [];
  }
  // Reports written before results carried their own date take the report's.
  return (report.results ?? []).map((r) => ({ ...r, ranAt: r.ranAt ?? report.generated }));
}

/**
 * The report after a run: this run's results, plus the earlier results (marked `earlier`) of the
 * notebooks in `notebookDir` that did not run this time, so that a subset run updates the report
 * instead of replacing it. Earlier results of notebooks that no longer exist, or that lie outside
 * `notebookDir` (one-off runs), are dropped. Order: `order` (the notebooks' own order), then the rest
 * as they came.
 */
export function mergeResults(previous: NotebookResult[], current: NotebookResult[], order: string[], notebookDir: string = NOTEBOOK_DIR): NotebookResult[] {
  const key = (r: NotebookResult) => resolve(ROOT, r.notebook);
  const now = new Set(current.map(key));
  const dir = resolve(notebookDir);
  const kept = previous
    .filter((r) => !now.has(key(r)) && dirname(key(r)) === dir && existsSync(key(r)))
    .map((r) => ({ ...r, earlier: true }));
  const all = [...current.map((r) => ({ ...r, earlier: false })), ...kept];
  const rank = (r: NotebookResult) => {
    const i = order.indexOf(key(r));
    return i < 0 ? order.length : i;
  };
  return all.map((r, i) => ({ r, i })).sort((a, b) => rank(a.r) - rank(b.r) || a.i - b.i).map((x) => x.r);
}

/** "2026-12-03 19:40 UTC" */
const shortDate = (iso: string | undefined): string => (iso ? `${iso.slice(0, 10)} ${iso.slice(11, 16)} UTC` : "an earlier run");

/** The report's summary line: how many passed, how many ran now and how many are kept from earlier runs. */
export function summaryLine(results: NotebookResult[]): string {
  const passed = results.filter((r) => r.status === "passed").length;
  const earlier = results.filter((r) => r.earlier).length;
  const now = results.length - earlier;
  const kept = earlier ? `, ${earlier} not run this time: shown with the date of their last run` : "";
  return `${passed} of ${results.length} notebooks passed; ${now} run now${kept}.`;
}

/** Write build/index.html and build/report.json for a set of results. */
export function writeReport(results: NotebookResult[], outDir: string, meta: Record<string, string> = {}): string {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, "report.json"), JSON.stringify({ generated: new Date().toISOString(), meta, results }, null, 2));
  const rows = results
    .map((r) => {
      const figures = Object.entries(r.figures ?? {})
        .map(([k, v]) => `<li><span class="k">${esc(k)}</span> <b>${esc(formatFigure(v))}</b></li>`)
        .join("");
      const failure = r.status === "passed" ? "" : `<div class="err">${esc(describeFailure(r))}</div>`;
      const when = r.earlier ? `<div class="when">not run this time: last run ${esc(shortDate(r.ranAt))}</div>` : `<div class="when">run ${esc(shortDate(r.ranAt))}</div>`;
      return `<tr class="${r.status}${r.earlier ? " earlier" : ""}">
  <td><a href="${esc(r.html)}">${esc(r.name)}</a><div class="title">${esc(r.title)}</div>${failure}</td>
  <td class="status">${r.status === "passed" ? "✓ passed" : r.status === "timeout" ? "⏱ timeout" : "✗ failed"}${when}</td>
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
.when { color: #777; font-size: 0.8em; font-weight: normal; } tr.earlier td { background: #f6f6f6; } tr.earlier .when { color: #8a5a00; }
</style></head>
<body>
<h1>jointly cookbook report</h1>
<p id="summary">${esc(summaryLine(results))} ${metaLine}</p>
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
    const when = r.earlier ? `  (not run this time: last run ${shortDate(r.ranAt)})` : "";
    lines.push(`${r.name.padEnd(w)}  ${r.status.padEnd(7)} ${`${r.seconds.toFixed(1)}s`.padStart(6)}  ${figs}${when}`);
    if (r.status !== "passed") lines.push(`${"".padEnd(w)}  ↳ ${describeFailure(r)}`);
  }
  return lines.join("\n");
}

/**
 * Run notebooks one after another and write the report into `outDir`. `timeoutSec`, when given,
 * limits every notebook (it overrides a notebook's own `metadata.jointly.timeout`, which otherwise
 * applies, else 240 s). The report keeps the earlier results of the notebooks in `notebookDir` that
 * did not run (see {@link mergeResults}). Returns this run's results and the report's.
 */
export async function runCookbook(
  notebooks: string[],
  outDir: string,
  options: { timeoutSec?: number; notebookDir?: string; onResult?: (r: NotebookResult) => void } = {},
): Promise<{ results: NotebookResult[]; report: NotebookResult[]; index: string }> {
  const setup = readSetup();
  const notebookDir = options.notebookDir ?? NOTEBOOK_DIR;
  const previous = readReport(outDir);
  const results: NotebookResult[] = [];
  for (const nb of notebooks) {
    const r = await executeNotebook(nb, outDir, setup, options.timeoutSec ?? notebookTimeout(nb, 240));
    results.push(r);
    options.onResult?.(r);
  }
  const report = mergeResults(previous, results, listNotebooks([], notebookDir), notebookDir);
  const index = writeReport(report, outDir, { machine: `${process.platform} ${process.arch}, node ${process.version}` });
  return { results, report, index };
}
