/**
 * The notebooks are regression tests: every notebook is executed on the tslab kernel, must pass its
 * own check cells within its time limit, and the HTML report is opened in headless Chromium.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { describeFailure, executeNotebook, listNotebooks, readSetup, ROOT, runCookbook, type NotebookResult } from "../scripts/lib/notebooks.js";

const BUILD = join(ROOT, "build");
const CHROMIUM = process.env.JOINTLY_CHROMIUM ?? "/usr/bin/chromium";
const notebooks = listNotebooks();
let results: NotebookResult[] = [];

test("every notebook runs on the tslab kernel and its checks hold", async (t) => {
  assert.ok(notebooks.length >= 1, "no notebooks found");
  const run = await runCookbook(notebooks, BUILD);
  results = run.results;
  for (const r of results) {
    await t.test(r.name, () => {
      assert.equal(r.status, "passed", describeFailure(r));
      assert.ok(Object.keys(r.figures).length > 0, `${r.notebook} reports no key figures`);
    });
  }
});

test("a check that no model can meet fails the notebook, naming the notebook and the cell", async () => {
  const source = join(ROOT, "notebooks", "00-quickstart.ipynb");
  const nb = JSON.parse(readFileSync(source, "utf8")) as { cells: { cell_type: string; source: string | string[] }[] };
  const text = (c: { source: string | string[] }) => (Array.isArray(c.source) ? c.source.join("") : c.source);
  const checkCell = nb.cells.findIndex((c) => c.cell_type === "code" && text(c).includes('claim("species accuracy'));
  assert.ok(checkCell >= 0, "the quickstart has no species-accuracy check cell");
  const cell = nb.cells[checkCell]!;
  cell.source = text(cell).replace(/claim\("species accuracy on held-out birds", evaluation\.species\.accuracy, \{ atLeast: [0-9.]+ \}\)/, 'claim("species accuracy on held-out birds", evaluation.species.accuracy, { atLeast: 1.01 })');
  assert.match(text(cell), /atLeast: 1\.01/);
  const dir = join(BUILD, "broken-check");
  mkdirSync(dir, { recursive: true });
  const broken = join(dir, "00-quickstart-broken.ipynb");
  writeFileSync(broken, JSON.stringify(nb));
  const r = await executeNotebook(broken, dir, readSetup(), 240);
  assert.equal(r.status, "failed");
  assert.equal(r.failed_cell, checkCell + 1);
  assert.match(r.error ?? "", /Claim failed: species accuracy on held-out birds = 1, expected >= 1\.01/);
  assert.match(describeFailure(r), new RegExp(`00-quickstart-broken\\.ipynb failed at cell ${checkCell + 1}`));
});

test("the HTML report works in a real browser: no console errors, every notebook linked, charts drawn", async (t) => {
  assert.ok(results.length > 0, "the notebooks did not run");
  const browser: Browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
    const problems: string[] = [];
    page.on("console", (m) => m.type() === "error" && problems.push(`console: ${m.text()}`));
    page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
    page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()}`));
    mkdirSync(join(BUILD, "screenshots"), { recursive: true });

    await t.test("index page", async () => {
      await page.goto(`file://${join(BUILD, "index.html")}`);
      const summary = await page.textContent("#summary");
      assert.match(summary ?? "", new RegExp(`${results.length} of ${results.length} notebooks passed`));
      const links = await page.$$eval("tbody tr td:first-child a", (as) => as.map((a) => a.getAttribute("href")));
      assert.deepEqual(links, results.map((r) => r.html));
      await page.screenshot({ path: join(BUILD, "screenshots", "index.png"), fullPage: true });
      assert.deepEqual(problems, []);
    });

    for (const r of results) {
      await t.test(`${r.name} page`, async () => {
        await page.goto(`file://${join(BUILD, r.html)}`);
        const charts = await page.$$("div[data-mime-type='image/svg+xml'] svg");
        assert.ok(charts.length >= 1, `${r.html} shows no chart`);
        for (const c of charts) {
          const box = await c.boundingBox();
          assert.ok(box && box.width > 100 && box.height > 100, `a chart in ${r.html} is drawn at ${JSON.stringify(box)}`);
          // Vega puts every data mark (line, bar, point, rect, area, text) in a group classed
          // "role-mark"; axes and legends are "role-axis" / "role-legend". A drawn chart has items there.
          const marks = await c.$$("g[class*='role-mark'] > path, g[class*='role-mark'] > text, g[class*='role-mark'] > rect");
          assert.ok(marks.length >= 1, `a chart in ${r.html} has no data marks`);
        }
        await page.screenshot({ path: join(BUILD, "screenshots", `${r.name}.png`), fullPage: true });
        assert.deepEqual(problems, []);
      });
    }
  } finally {
    await browser.close();
  }
});
