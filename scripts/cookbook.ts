/**
 * `npm run cookbook [-- notebooks/03*.ipynb ...] [--save] [--timeout SECONDS]`
 *
 * Executes every notebook (or the ones named) on the tslab kernel, writes the executed notebooks,
 * their HTML and an index page under build/, prints a summary table, and exits non-zero if any
 * notebook fails. `--save` also writes each passing notebook's outputs back into notebooks/.
 */
import { copyFileSync } from "node:fs";
import { join, relative } from "node:path";
import { listNotebooks, ROOT, runCookbook, summaryTable } from "./lib/notebooks.js";

const argv = process.argv.slice(2);
const save = argv.includes("--save");
const t = argv.indexOf("--timeout");
const timeoutSec = t >= 0 ? Number(argv[t + 1]) : 240;
if (!(timeoutSec > 0)) throw new Error(`--timeout must be a positive number of seconds, but got "${argv[t + 1]}".`);
const patterns = argv.filter((a, i) => !a.startsWith("--") && !(t >= 0 && i === t + 1));

const notebooks = listNotebooks(patterns);
const outDir = join(ROOT, "build");
console.log(`Running ${notebooks.length} notebook(s) on the tslab kernel...`);
const { results, index } = await runCookbook(notebooks, outDir, {
  timeoutSec,
  onResult: (r) => console.log(`  ${r.status === "passed" ? "✓" : "✗"} ${r.name} (${r.seconds.toFixed(1)} s)`),
});
console.log(`\n${summaryTable(results)}\n`);
console.log(`Report: ${relative(process.cwd(), index)}`);
if (save) {
  for (const r of results.filter((x) => x.status === "passed")) {
    copyFileSync(join(outDir, r.ipynb), join(ROOT, r.notebook));
    console.log(`saved outputs into ${r.notebook}`);
  }
}
const failed = results.filter((r) => r.status !== "passed");
if (failed.length) {
  console.error(`${failed.length} of ${results.length} notebook(s) failed.`);
  process.exit(1);
}
