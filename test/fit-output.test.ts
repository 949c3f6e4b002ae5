/**
 * What fit prints outside a notebook (verbose 0/1/2 on stderr, nothing on stdout) and where the live
 * chart is drawn: only in a tslab kernel (simulated here by the kernel module tslab leaves in
 * require's cache), with no SVG rendered anywhere else.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import * as tf from "@tensorflow/tfjs";
import { fit } from "../src/train/fit.js";
import { JointTrainer } from "../src/train/joint-trainer.js";
import { ProgressPrinter, epochLine, formatDuration } from "../src/train/progress.js";
import { chartRenderCount, inNotebook } from "../src/charts/show.js";
import { VEGA_LITE_MIME } from "../src/charts/spec.js";
import { initBackend } from "../src/backend/init.js";
import { twoHeadModel, twoTaskData, twoTasks } from "./fixtures/fit-data.js";

await initBackend({ report: false });

/** A fake terminal or pipe, and a clock the test moves by hand. */
function fakeStream(isTTY: boolean) {
  const chunks: string[] = [];
  return { chunks, stream: { isTTY, columns: 200, write: (s: string) => (chunks.push(s), true) } };
}

test("progress printer: verbose 1 on a terminal redraws 'epoch n/N - k/K batches - ETA' in place, then the epoch line", () => {
  let now = 0;
  const { chunks, stream } = fakeStream(true);
  const p = new ProgressPrinter(1, 3, stream, () => now, 100);
  p.startEpoch(4);
  for (let b = 1; b <= 4; b++) {
    now += 250;
    p.batchEnd(1, b);
  }
  p.endEpoch({ epoch: 1, train: { a: 0.5, b: 1.25 }, validation: { a: { loss: 0.6, accuracy: 0.9 }, b: { loss: 1.5 } } });
  const live = chunks.filter((c) => /batches/.test(c));
  assert.equal(live.length, 4, "each batch redrawn (250 ms apart, redraws at most every 100 ms)");
  assert.match(live[0]!, /^\repoch 1\/3 - 1\/4 batches - ETA 2\.8s\x1b\[K$/, "ETA: 3 batches of 250 ms left (0.75 s), then 2 epochs of 4 x 250 ms (2 s)");
  const last = chunks.at(-1)!;
  assert.equal(last, "\repoch 1/3 - loss a 0.5, b 1.25 - val a 0.6 accuracy 0.9, b 1.5 - 1.0s - ETA 2.0s\x1b[K\n");
  // Batches closer together than the redraw interval are not drawn, except the last one.
  chunks.length = 0;
  p.startEpoch(10);
  for (let b = 1; b <= 10; b++) {
    now += 10;
    p.batchEnd(2, b);
  }
  assert.equal(chunks.length, 2, `redraws: ${JSON.stringify(chunks)}`);
});

test("progress printer: verbose 1 into a pipe and verbose 2 anywhere print one plain line per epoch; verbose 0 nothing", () => {
  for (const [verbose, tty] of [[1, false], [2, true], [2, false]] as const) {
    let now = 0;
    const { chunks, stream } = fakeStream(tty);
    const p = new ProgressPrinter(verbose, 2, stream, () => now);
    for (const epoch of [1, 2]) {
      p.startEpoch(3);
      for (let b = 1; b <= 3; b++) {
        now += 400;
        p.batchEnd(epoch, b);
      }
      p.endEpoch({ epoch, train: { a: 1 / epoch } });
    }
    assert.deepEqual(chunks, ["epoch 1/2 - loss a 1 - 1.2s - ETA 1.2s\n", "epoch 2/2 - loss a 0.5 - 1.2s - ETA 0s\n"], `verbose ${verbose}, tty ${tty}`);
  }
  const { chunks, stream } = fakeStream(true);
  const p = new ProgressPrinter(0, 2, stream, () => 0);
  p.startEpoch(1);
  p.batchEnd(1, 1);
  p.endEpoch({ epoch: 1, train: { a: 1 } });
  p.close("note");
  assert.deepEqual(chunks, []);
  assert.equal(formatDuration(125_000), "2m05s");
  assert.match(epochLine({ epoch: 1, train: { a: 1234567 } }, 1, 5, 0), /loss a 1\.23e\+6/);
});

/** Everything written to stderr and stdout while `run` runs (passed through, so the test runner still reports). */
async function captureOutput<T>(t: { mock: typeof test.mock }, run: () => Promise<T>, stderrTTY?: boolean) {
  const err: string[] = [];
  const out: string[] = [];
  const origOut = process.stdout.write.bind(process.stdout);
  const wasTTY = process.stderr.isTTY;
  if (stderrTTY !== undefined) process.stderr.isTTY = stderrTTY;
  const errMock = t.mock.method(process.stderr, "write", (s: string | Uint8Array) => (err.push(String(s)), true));
  const outMock = t.mock.method(process.stdout, "write", (s: string | Uint8Array, ...rest: unknown[]) => (out.push(String(s)), (origOut as (...a: unknown[]) => boolean)(s, ...rest)));
  try {
    const value = await run();
    return { value, err: err.join(""), out: out.join("") };
  } finally {
    errMock.mock.restore();
    outMock.mock.restore();
    process.stderr.isTTY = wasTTY;
  }
}

const EPOCH_LINE = /^epoch (\d+)\/3 - loss a [-\d.e+]+, b [-\d.e+]+ - val a [-\d.e+]+ accuracy [-\d.e+]+, b [-\d.e+]+ r2 [-\d.e+]+ - \S+ - ETA \S+$/;

test("fit outside a notebook: the default (verbose 1, stderr not a terminal) prints one line per epoch on stderr, nothing on stdout", async (t) => {
  const { x, y } = twoTaskData(32);
  const trainer = new JointTrainer({ model: twoHeadModel(2), tasks: twoTasks(true), optimizer: tf.train.adam(0.01) });
  const { err, out } = await captureOutput(t, () => fit({ trainer, x, y, epochs: 3, batchSize: 8, validation: { x, y } }), false);
  const lines = err.split("\n").filter(Boolean);
  assert.equal(lines.length, 3, `stderr: ${JSON.stringify(err)}`);
  lines.forEach((line, i) => {
    assert.match(line, EPOCH_LINE);
    assert.equal(line.match(EPOCH_LINE)![1], String(i + 1));
  });
  assert.doesNotMatch(err, /\r/, "no in-place redraw into a pipe");
  // stdout also carries the test runner's own (serialised) reports, test names included: look for our lines only.
  assert.doesNotMatch(out, /epoch \d\/3 - loss|<chart:/);
  tf.dispose([x, y.a, y.b]);
});

test("fit with verbose 1 on a terminal redraws a batches/ETA line in place and ends each epoch with its line; verbose 2 never redraws; 0 is silent", async (t) => {
  const { x, y } = twoTaskData(32);
  const trainer = new JointTrainer({ model: twoHeadModel(3), tasks: twoTasks(true), optimizer: tf.train.adam(0.01) });
  const one = await captureOutput(t, () => fit({ trainer, x, y, epochs: 3, batchSize: 8, validation: { x, y }, verbose: 1 }), true);
  // The first batch of every epoch is drawn (nothing was drawn before it), then the epoch's line replaces it.
  assert.equal((one.err.match(/\repoch \d\/3 - 1\/4 batches - ETA \S+\x1b\[K/g) ?? []).length, 3, JSON.stringify(one.err));
  const ends = one.err.split("\n").filter(Boolean).map((l) => l.slice(l.lastIndexOf("\r") + 1).replace("\x1b[K", ""));
  assert.equal(ends.length, 3);
  ends.forEach((l) => assert.match(l, EPOCH_LINE));
  const two = await captureOutput(t, () => fit({ trainer, x, y, epochs: 3, batchSize: 8, validation: { x, y }, verbose: 2 }), true);
  assert.doesNotMatch(two.err, /\r|batches/);
  assert.equal(two.err.split("\n").filter((l) => EPOCH_LINE.test(l)).length, 3);
  const zero = await captureOutput(t, () => fit({ trainer, x, y, epochs: 3, batchSize: 8, verbose: 0 }), true);
  assert.equal(zero.err, "");
  await assert.rejects(fit({ trainer, x, y, epochs: 1, verbose: 3 as never }), /fit: verbose must be 0 \(silent\), 1 \(a progress line\) or 2 \(one line per epoch\), but got 3/);
  tf.dispose([x, y.a, y.b]);
});

test("fit stopped early says so on stderr (verbose 2) with the monitored value and the best epoch", async (t) => {
  const { x, y } = twoTaskData(16);
  const trainer = new JointTrainer({ model: twoHeadModel(4), tasks: twoTasks(), optimizer: tf.train.sgd(0) });
  // A learning rate of 0: nothing improves after epoch 1, so patience 1 stops in epoch 2.
  const { value: run, err } = await captureOutput(t, () => fit({ trainer, x, y, epochs: 5, batchSize: 8, verbose: 2, earlyStopping: { patience: 1, restoreBest: true } }));
  assert.equal(run.epochs, 2);
  assert.match(err, /early stopping in epoch 2: no better train loss for 1 epoch; best [\d.]+ in epoch 1, whose weights were restored\n$/);
  tf.dispose([x, y.a, y.b]);
});

test("outside a kernel no chart is rendered: the default draws none, live: true is ignored with one warning", async (t) => {
  assert.equal(inNotebook(), false);
  const { x, y } = twoTaskData(16);
  const trainer = new JointTrainer({ model: twoHeadModel(5), tasks: twoTasks(), optimizer: tf.train.adam(0.01) });
  const warnings: Error[] = [];
  const onWarning = (w: Error) => warnings.push(w);
  process.on("warning", onWarning);
  try {
    const renders = chartRenderCount();
    const logged: string[] = [];
    t.mock.method(console, "log", (...a: unknown[]) => logged.push(a.join(" ")));
    await fit({ trainer, x, y, epochs: 3, batchSize: 4, verbose: 0 });
    await fit({ trainer, x, y, epochs: 3, batchSize: 4, verbose: 0, live: true });
    await fit({ trainer, x, y, epochs: 2, batchSize: 4, verbose: 0, live: true });
    // process warnings are emitted on the next tick
    await new Promise((r) => setImmediate(r));
    assert.equal(chartRenderCount(), renders, "SVG renders outside a notebook");
    assert.deepEqual(logged, [], "nothing printed on stdout either");
    const ours = warnings.filter((w) => (w as Error & { code?: string }).code === "JOINTLY_LIVE_OUTSIDE_NOTEBOOK");
    assert.equal(ours.length, 1, `warnings: ${warnings.map((w) => w.message).join(" | ")}`);
    assert.equal(ours[0]!.name, "JointlyWarning");
    assert.match(ours[0]!.message, /live: true draws a chart only in a notebook kernel \(tslab\); outside one it is ignored/);
  } finally {
    process.off("warning", onWarning);
    tf.dispose([x, y.a, y.b]);
  }
});

test("in a tslab kernel (its jupyter module in require's cache, wherever tslab lives) fit is silent and draws the live chart", async (t) => {
  const require = createRequire(import.meta.url);
  // Not jointly's own tslab: a kernel started from a global install, say.
  const file = "/opt/elsewhere/lib/node_modules/tslab/dist/jupyter.js";
  const displays: { data: Record<string, unknown>; transient: { display_id?: string } ; update: boolean }[] = [];
  const exportsObj = { lastWriteDisplayData: null as null | ((c: { data: Record<string, unknown>; transient: { display_id?: string } }, update: boolean) => void) };
  require.cache[file] = { id: file, filename: file, loaded: true, exports: exportsObj, children: [], paths: [] } as unknown as NodeJS.Module;
  const { x, y } = twoTaskData(16);
  try {
    assert.equal(inNotebook(), false, "before the kernel executes a cell its writer is null");
    exportsObj.lastWriteDisplayData = (c, update) => displays.push({ ...c, update });
    assert.equal(inNotebook(), true);
    const trainer = new JointTrainer({ model: twoHeadModel(6), tasks: twoTasks(), optimizer: tf.train.adam(0.01) });
    const renders = chartRenderCount();
    const { err } = await captureOutput(t, () => fit({ trainer, x, y, epochs: 2, batchSize: 8 }));
    assert.equal(err, "", "verbose defaults to 0 in a kernel");
    assert.ok(chartRenderCount() > renders, "the live chart rendered");
    assert.ok(displays.length >= 2, `displays: ${displays.length}`);
    const ids = new Set(displays.map((d) => d.transient.display_id));
    assert.equal(ids.size, 1, "one display, updated in place");
    assert.deepEqual(displays.map((d) => d.update), displays.map((_, i) => i > 0));
    const final = displays.at(-1)!.data;
    assert.match(String(final["image/svg+xml"]), /<svg/);
    assert.equal(typeof final[VEGA_LITE_MIME], "object", "the interactive spec, as an object");
    // verbose chosen explicitly still prints in a kernel (as text on the cell's stderr)
    const explicit = await captureOutput(t, () => fit({ trainer, x, y, epochs: 1, batchSize: 8, verbose: 2, live: false }));
    assert.match(explicit.err, /^epoch 1\/1 - loss a /);
  } finally {
    delete require.cache[file];
    tf.dispose([x, y.a, y.b]);
  }
  assert.equal(inNotebook(), false, "gone with the module");
});
