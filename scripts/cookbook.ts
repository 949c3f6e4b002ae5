/**
 * `npm run cookbook [-- notebooks/03*.ipynb ...] [--save] [--timeout SECONDS] [--out DIR] [--notebooks DIR]`
 *
 * Executes every notebook (or the ones named) on the tslab kernel, writes the executed notebooks,
 * their HTML and an index page under build/ (or `--out DIR`, or $JOINTLY_COOKBOOK_OUT), prints a
 * summary table, and exits non-zero if any notebook run now fails or times out. A run of some
 * notebooks updates the report: the others keep their last results, marked with their date.
 * `--timeout` limits each notebook (default: the notebook's own limit, else 240 s); past it the
 * kernel and everything it started are stopped. `--notebooks DIR` takes the cookbook from DIR
 * instead of notebooks/. `--save` also writes each passing notebook's outputs back into its file.
 */
import { copyFileSync } from "node:fs";
import { join, relative, resolve } from "node:path";
import { listNotebooks, NOTEBOOK_DIR, ROOT, runCookbook, summaryLine, summaryTable } from "./lib/notebooks.js";

const argv = process.argv.slice(2);
const VALUED = ["--timeout", "--out", "--notebooks"];
const option = (name: string): string | undefined => {
  const i = argv.indexOf(name);
  if (i < 0) return undefined;
  const v = argv[i + 1];
  if (v === undefined || v.startsWith("--")) throw new Error(`${name} needs a value, but got ${v === undefined ? "nothing" : `"${v}"`}.`);
  return v;
};
const save = argv.includes("--save");
const timeoutArg = option("--timeout");
const timeoutSec = timeoutArg === undefined ? undefined : Number(timeoutArg);
if (timeoutSec !== undefined && !(timeoutSec > 0)) throw new Error(`--timeout must be a positive number of seconds, but got "${timeoutArg}".`);
const outDir = resolve(option("--out") ?? process.env.JOINTLY_COOKBOOK_OUT ?? join(ROOT, "build"));
const notebookDir = resolve(option("--notebooks") ?? NOTEBOOK_DIR);
const unknown = argv.filter((a, i) => a.startsWith("--") && a !== "--save" && !VALUED.includes(a) && !VALUED.includes(argv[i - 1] ?? ""));
if (unknown.length) throw new Error(`Unknown option(s) ${unknown.join(", ")}: use --save, --timeout SECONDS, --out DIR, --notebooks DIR.`);
const patterns = argv.filter((a, i) => !a.startsWith("--") && !VALUED.includes(argv[i - 1] ?? ""));

const notebooks = listNotebooks(patterns, notebookDir);
console.log(`Running ${notebooks.length} notebook(s) on the tslab kernel...`);
const { results, report, index } = await runCookbook(notebooks, outDir, {
  timeoutSec,
  notebookDir,
  onResult: (r) => console.log(`  ${r.status === "passed" ? "✓" : r.status === "timeout" ? "⏱" : "✗"} ${r.name} (${r.seconds.toFixed(1)} s)`),
});
console.log(`\n${summaryTable(report)}\n`);
console.log(summaryLine(report));
console.log(`Report: ${relative(process.cwd(), index) || index}`);
if (save) {
  for (const r of results.filter((x) => x.status === "passed")) {
    copyFileSync(join(outDir, r.ipynb), join(ROOT, r.notebook));
    console.log(`saved outputs into ${r.notebook}`);
  }
}
const failed = results.filter((r) => r.status !== "passed");
if (failed.length) {
  console.error(`${failed.length} of ${results.length} notebook(s) run now failed or timed out.`);
  process.exit(1);
}
