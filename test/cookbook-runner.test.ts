/**
 * The cookbook runner itself (scripts/cookbook.ts), on tiny notebooks in a temporary folder: a
 * notebook past its time limit is stopped with its kernel's whole session, and a run of some
 * notebooks updates the report instead of replacing it.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { mergeResults, ROOT, summaryLine, type NotebookResult } from "../scripts/lib/notebooks.js";
import { isAlive, processTable, runProcesses } from "../scripts/lib/processes.js";

const RUNNER = join(ROOT, "scripts", "cookbook.ts");

/** A tslab notebook: markdown cells start with "#", the rest are code. */
function writeNotebook(path: string, cells: string[]): void {
  const nb = {
    cells: cells.map((c, i) =>
      c.startsWith("#") ? { cell_type: "markdown", id: `c${i}`, metadata: {}, source: c } : { cell_type: "code", id: `c${i}`, metadata: {}, execution_count: null, outputs: [], source: c },
    ),
    metadata: { kernelspec: { name: "tslab", display_name: "TypeScript", language: "typescript" } },
    nbformat: 4,
    nbformat_minor: 5,
  };
  writeFileSync(path, JSON.stringify(nb));
}

/** Run the cookbook CLI; the test's own limit kills the runner so a hang fails instead of blocking. */
function runner(args: string[], limitMs: number): Promise<{ code: number | null; ms: number; out: string }> {
  return new Promise((done) => {
    const t0 = Date.now();
    const child = spawn(process.execPath, ["--import", "tsx", RUNNER, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d) => (out += d));
    child.stderr.on("data", (d) => (out += d));
    const limit = setTimeout(() => child.kill("SIGKILL"), limitMs);
    child.on("exit", (code) => {
      clearTimeout(limit);
      done({ code, ms: Date.now() - t0, out });
    });
  });
}

interface Report {
  generated: string;
  results: NotebookResult[];
}
const readJson = <T>(file: string): T => JSON.parse(readFileSync(file, "utf8")) as T;

test("a notebook past --timeout is stopped with its kernel's whole session and reported as timed out in its cell", async () => {
  const dir = mkdtempSync(join(tmpdir(), "jointly-runner-"));
  try {
    const pidFile = join(dir, "sleeper.pid");
    writeNotebook(join(dir, "slow.ipynb"), [
      "# Slow",
      // A child the kernel starts in a session of its own: it must go too.
      `const cp = require("child_process"); const s = cp.spawn("sleep", ["613"], { detached: true, stdio: "ignore" }); require("fs").writeFileSync(${JSON.stringify(pidFile)}, String(s.pid)); 1`,
      "await new Promise((r) => setTimeout(r, 600_000));",
    ]);
    const out = join(dir, "out");
    const run = await runner([join(dir, "slow.ipynb"), "--timeout", "10", "--out", out], 90_000);
    assert.ok(run.ms < 40_000, `the runner took ${run.ms} ms for a 10 s limit:\n${run.out}`);
    assert.notEqual(run.code, 0, run.out);
    assert.notEqual(run.code, null, `the runner hung and was killed by the test:\n${run.out}`);
    const r = readJson<Report>(join(out, "report.json")).results.find((x) => x.name === "slow");
    assert.ok(r, "the report does not list the notebook");
    assert.equal(r.status, "timeout");
    assert.equal(r.failed_cell, 3);
    assert.equal(r.failed_code_cell, 2);
    assert.match(r.error ?? "", /did not finish within 10 s/);
    assert.match(run.out, /slow\.ipynb timeout at cell 3 \(code cell 2\)/);
    // The kernel (its pid from the progress file), its session and the detached child are gone.
    const progress = readFileSync(join(out, "notebooks", "slow.progress.jsonl"), "utf8");
    const kernelPid = (JSON.parse(progress.split("\n")[0]!) as { pid: number }).pid;
    assert.ok(kernelPid > 1, `no kernel pid in ${progress}`);
    const sleeper = Number(readFileSync(pidFile, "utf8"));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(isAlive(kernelPid), false, `the kernel ${kernelPid} is still running`);
    assert.equal(isAlive(sleeper), false, `the kernel's detached child ${sleeper} is still running`);
    assert.deepEqual(processTable().filter((p) => p.sid === kernelPid || p.pgid === kernelPid), [], "processes of the kernel's session are left");
    // What ran before the limit is saved.
    const saved = readJson<{ cells: { outputs?: unknown[] }[] }>(join(out, "notebooks", "slow.ipynb"));
    assert.equal(saved.cells.length, 3);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a run of one notebook keeps the others' last results in the report, marked with their date", async () => {
  const dir = mkdtempSync(join(tmpdir(), "jointly-runner-"));
  try {
    const nbDir = join(dir, "nb");
    mkdirSync(nbDir);
    writeNotebook(join(nbDir, "01-alpha.ipynb"), ["# Alpha", "console.log(1 + 1)"]);
    writeNotebook(join(nbDir, "02-beta.ipynb"), ["# Beta", "console.log(2 + 2)"]);
    const out = join(dir, "out");
    const full = await runner(["--notebooks", nbDir, "--out", out], 120_000);
    assert.equal(full.code, 0, full.out);
    const first = readJson<Report>(join(out, "report.json"));
    assert.deepEqual(first.results.map((r) => [r.name, r.status, r.earlier]), [["01-alpha", "passed", false], ["02-beta", "passed", false]]);

    const subset = await runner(["--notebooks", nbDir, "--out", out, join(nbDir, "02-beta.ipynb")], 120_000);
    assert.equal(subset.code, 0, subset.out);
    const second = readJson<Report>(join(out, "report.json"));
    assert.deepEqual(second.results.map((r) => [r.name, r.status, r.earlier]), [["01-alpha", "passed", true], ["02-beta", "passed", false]]);
    const [alpha, beta] = second.results as [NotebookResult, NotebookResult];
    assert.equal(alpha.ranAt, first.results[0]!.ranAt, "the kept result lost its date");
    assert.ok(beta.ranAt! > first.results[1]!.ranAt!, "the notebook run now kept its old date");

    const html = readFileSync(join(out, "index.html"), "utf8");
    assert.match(html, /<p id="summary">2 of 2 notebooks passed; 1 run now, 1 not run this time/);
    const alphaRow = html.split("<tr").find((row) => row.includes("01-alpha.html")) ?? "";
    const date = `${alpha.ranAt!.slice(0, 10)} ${alpha.ranAt!.slice(11, 16)} UTC`;
    assert.match(alphaRow, /class="passed earlier"/);
    assert.ok(alphaRow.includes(`not run this time: last run ${date}`), alphaRow);
    assert.match(subset.out, /1 run now, 1 not run this time/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("merging: earlier results of deleted or one-off notebooks are dropped, the cookbook's order is kept", () => {
  const dir = mkdtempSync(join(tmpdir(), "jointly-runner-"));
  try {
    for (const n of ["a", "b", "c"]) writeNotebook(join(dir, `${n}.ipynb`), ["# x"]);
    const res = (name: string, at: string, where = dir): NotebookResult => ({
      notebook: join(where, `${name}.ipynb`),
      name,
      title: name,
      status: "passed",
      seconds: 1,
      figures: {},
      html: `notebooks/${name}.html`,
      ipynb: `notebooks/${name}.ipynb`,
      ranAt: at,
    });
    const order = ["a", "b", "c"].map((n) => join(dir, `${n}.ipynb`));
    const previous = [res("c", "2026-01-01T00:00:00Z"), res("a", "2026-01-01T00:00:00Z"), res("gone", "2026-01-01T00:00:00Z"), res("x", "2026-01-01T00:00:00Z", tmpdir())];
    const merged = mergeResults(previous, [res("b", "2026-02-02T00:00:00Z")], order, dir);
    assert.deepEqual(merged.map((r) => [r.name, r.earlier, r.ranAt]), [
      ["a", true, "2026-01-01T00:00:00Z"],
      ["b", false, "2026-02-02T00:00:00Z"],
      ["c", true, "2026-01-01T00:00:00Z"],
    ]);
    assert.equal(summaryLine(merged), "3 of 3 notebooks passed; 1 run now, 2 not run this time: shown with the date of their last run.");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the processes of a run: descendants, their groups and sessions, never the runner's own", () => {
  const table = [
    { pid: 100, ppid: 1, pgid: 100, sid: 100 }, // the runner's terminal session
    { pid: 200, ppid: 100, pgid: 200, sid: 100 }, // the runner
    { pid: 300, ppid: 200, pgid: 300, sid: 300 }, // the executor (detached)
    { pid: 400, ppid: 300, pgid: 400, sid: 400 }, // the kernel, in a session of its own
    { pid: 401, ppid: 400, pgid: 400, sid: 400 }, // the kernel's child
    { pid: 402, ppid: 1, pgid: 400, sid: 400 }, // re-parented member of the kernel's session
    { pid: 403, ppid: 401, pgid: 403, sid: 403 }, // detached grandchild
    { pid: 500, ppid: 200, pgid: 200, sid: 100 }, // another child of the runner, not the run
    { pid: 600, ppid: 1, pgid: 600, sid: 600 }, // unrelated
  ];
  assert.deepEqual(runProcesses(table, [300], { pid: 200 }), [300, 400, 401, 402, 403]);
  // A kernel already orphaned (its executor gone) is found from its own pid.
  assert.deepEqual(runProcesses(table, [400], { pid: 200 }), [400, 401, 402, 403]);
  // A root in the runner's own group never takes the group.
  assert.deepEqual(runProcesses(table, [500], { pid: 200 }), [500]);
});
