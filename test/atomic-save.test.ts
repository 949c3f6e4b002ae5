/**
 * Saves that are atomic for real (issue 13): a child process saving a model with fileSystemIO is
 * killed with SIGKILL right after each file operation of one save (into a folder of the current
 * layout and into one of the old layout), and at 50 random moments while it saves two models in
 * turn. After each kill the folder must load, and be exactly one of the two complete models (which
 * one is predicted from the child's log of operations); `dir/model.json` + `dir/weights.bin` read
 * directly must be a matching pair too; and the next save must leave no temporary file behind.
 */
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tf from "@tensorflow/tfjs";
import { initBackend } from "../src/backend/init.js";
import { readFolder, writeFolderAtomically } from "../src/io/atomic.js";
import { fileSystemIO } from "../src/parallel/model-files.js";
import { buildModel, type Which } from "./fixtures/atomic-models.js";

await initBackend({ report: false });

const root = mkdtempSync(join(tmpdir(), "jointly-atomic-"));
test.after(() => rmSync(root, { recursive: true, force: true }));
const CHILD = join(import.meta.dirname, "fixtures", "atomic-save-child.ts");
const REPO = join(import.meta.dirname, "..");

const models = { A: buildModel("A"), B: buildModel("B") };
test.after(() => Object.values(models).forEach((m) => m.dispose()));
const values = Object.fromEntries((["A", "B"] as const).map((w) => [w, models[w].getWeights().map((t) => t.dataSync().slice())])) as Record<Which, Float32Array[]>;

/** The exact bytes of each model's two files, from an in-process save. */
const refs = {} as Record<Which, { json: Buffer; bin: Buffer }>;
for (const w of ["A", "B"] as const) {
  await models[w].save(fileSystemIO(join(root, `ref-${w}`)));
  const files = (await readFolder(join(root, `ref-${w}`))) as Record<string, Uint8Array>;
  refs[w] = { json: Buffer.from(files["model.json"] as Uint8Array), bin: Buffer.from(files["weights.bin"] as Uint8Array) };
}
assert.notDeepEqual(refs.A.bin, refs.B.bin);

function whichPair(json: Buffer, bin: Buffer): Which | "mixed" {
  for (const w of ["A", "B"] as const) if (json.equals(refs[w].json) && bin.equals(refs[w].bin)) return w;
  return "mixed";
}

/** Entries a finished save does not leave: temporary and trash entries, old-layout temporaries, extra versions. */
function leftovers(dir: string): { names: string[]; bytes: number } {
  const names = readdirSync(dir);
  const versions = names.filter((n) => /^v-/.test(n)).sort();
  const extra = names.filter((n) => /^\.(tmp|trash)-|\.tmp-\d+-/.test(n)).concat(versions.slice(0, -1));
  const size = (p: string): number => {
    const st = lstatSync(p);
    return st.isDirectory() ? readdirSync(p).reduce((a, n) => a + size(join(p, n)), 0) : st.size;
  };
  return { names: extra, bytes: extra.reduce((a, n) => a + size(join(dir, n)), 0) };
}

let copies = 0;
/**
 * What a kill left in `dir`: the model our loader reads (from a copy of the folder, so its clean-up
 * does not do the next save's work), checked by loading it with tfjs and comparing every weight; and
 * what a tool reading `dir/model.json` + `dir/weights.bin` directly gets.
 */
async function inspect(dir: string): Promise<{ ours: Which; direct: Which | "mixed" | "missing"; leftovers: { names: string[]; bytes: number } }> {
  const left = leftovers(dir);
  const copy = join(root, `copy-${copies++}`);
  cpSync(dir, copy, { recursive: true, verbatimSymlinks: true });
  const before = tf.memory().numTensors;
  const loaded = await tf.loadLayersModel(fileSystemIO(copy));
  const got = loaded.getWeights().map((t) => t.dataSync().slice() as Float32Array);
  loaded.dispose();
  assert.equal(tf.memory().numTensors, before, "loading leaked tensors");
  const same = (w: Which) => got.length === values[w].length && got.every((g, i) => Buffer.from(g.buffer, g.byteOffset, g.byteLength).equals(Buffer.from((values[w][i] as Float32Array).buffer)));
  const ours = same("A") ? "A" : same("B") ? "B" : undefined;
  assert.ok(ours !== undefined, `the model loaded from ${dir} is neither A nor B`);
  const files = await readFolder(copy);
  if (files !== undefined) assert.equal(whichPair(Buffer.from(files["model.json"] as Uint8Array), Buffer.from(files["weights.bin"] as Uint8Array)), ours);
  // The load cleaned the copy: no temporary or trash entry survives a reader either.
  assert.deepEqual(readdirSync(copy).filter((n) => /^\.(tmp|trash)-/.test(n)), [], "the load left temporary entries");
  rmSync(copy, { recursive: true, force: true });
  let direct: Which | "mixed" | "missing";
  try {
    direct = whichPair(readFileSync(join(dir, "model.json")), readFileSync(join(dir, "weights.bin")));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    direct = "missing";
  }
  return { ours, direct, leftovers: left };
}

/** Save `which` in this process and check the folder holds exactly one clean version of it. */
async function saveAndCheckClean(dir: string, which: Which): Promise<void> {
  await models[which].save(fileSystemIO(dir));
  const names = readdirSync(dir).sort();
  assert.equal(names.length, 4, `after a save ${dir} holds ${names.join(", ")}`);
  const version = names[2] as string;
  assert.deepEqual([names[0], names[1], names[3]], ["current", "model.json", "weights.bin"]);
  assert.match(version, /^v-\d{10}-[0-9a-f]{8}$/);
  assert.equal(readlinkSync(join(dir, "current")), version);
  assert.deepEqual(readdirSync(join(dir, version)).sort(), ["model.json", "weights.bin"]);
  assert.equal(whichPair(readFileSync(join(dir, "model.json")), readFileSync(join(dir, "weights.bin"))), which);
}

interface ChildRun {
  lines: string[];
  signal: NodeJS.Signals | null;
  code: number | null;
}

/** Run the child saver; with `killAfterMs`, SIGKILL it that long after it says `ready`. */
function runChild(args: string[], killAfterMs?: number): Promise<ChildRun> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", CHILD, ...args], { cwd: REPO, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    const guard = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.stdout.on("data", (d: Buffer) => {
      const first = !out.includes("ready\n");
      out += d.toString();
      if (killAfterMs !== undefined && first && out.includes("ready\n")) setTimeout(() => child.kill("SIGKILL"), killAfterMs);
    });
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      clearTimeout(guard);
      const lines = out.split("\n").filter((l) => l !== "");
      const failed = lines.find((l) => l.startsWith("error "));
      if (failed) reject(new Error(`the child failed: ${failed}\n${err.slice(-2000)}`));
      else resolve({ lines, signal, code });
    });
  });
}

/** The operations of one save, as the child printed them: [kind, path]. */
const opsOf = (lines: string[]): [string, string][] => lines.filter((l) => l.startsWith("op ")).map((l) => l.split(" ").slice(2, 4) as [string, string]);

/** Write `which` in the old layout (plain files in `dir`) plus temporary files of the old saver, as a dead process left them. */
function writeOldLayout(dir: string, which: Which, deadPid: number): void {
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "model.json"), refs[which].json);
  writeFileSync(join(dir, "weights.bin"), refs[which].bin);
  writeFileSync(join(dir, `weights.bin.tmp-${deadPid}-0badf00d`), refs[which].bin.subarray(0, 1000));
  writeFileSync(join(dir, `model.json.tmp-${deadPid}-0badf00d`), refs[which].json);
}

const deadPid = (): number => {
  const r = spawnSync("true");
  return r.pid as number;
};

const report: string[] = [];
test.after(() => console.log(`# atomic saves: ${report.join("; ")}`));

test("SIGKILL right after each file operation of one save: the old model before the publishing rename, the new one after, never a mix", { timeout: 240_000 }, async (t) => {
  const dir = join(root, "each-op");
  rmSync(dir, { recursive: true, force: true });
  await saveAndCheckClean(dir, "A");
  // A run without a kill, on a copy, lists the operations of one save.
  const dry = join(root, "each-op-dry");
  cpSync(dir, dry, { recursive: true, verbatimSymlinks: true });
  const full = await runChild([dry, "once", "B", "999"]);
  const ops = opsOf(full.lines);
  assert.match(full.lines.at(-1) ?? "", new RegExp(`^done ${ops.length}$`));
  const publishAt = ops.findIndex(([k, p]) => k === "rename" && /\/v-\d+-[0-9a-f]+$/.test(p)) + 1;
  const currentAt = ops.findIndex(([k, p]) => k === "rename" && p.endsWith("/current")) + 1;
  assert.ok(publishAt > 0 && currentAt > publishAt, `unexpected operations: ${JSON.stringify(ops)}`);
  t.diagnostic(`one save: ${ops.length} file operations (${ops.map(([k]) => k).join(", ")}); published by operation ${publishAt}`);
  let maxLeft = 0;
  for (let k = 1; k <= ops.length; k++) {
    const run = await runChild([dir, "once", "B", String(k)]);
    assert.equal(run.signal, "SIGKILL", `the child was not killed after operation ${k}`);
    assert.equal(opsOf(run.lines).length, k);
    const seen = await inspect(dir);
    assert.equal(seen.ours, k >= publishAt ? "B" : "A", `killed after operation ${k} (${ops[k - 1]?.join(" ")})`);
    assert.equal(seen.direct, k >= currentAt ? "B" : "A", `dir/model.json + dir/weights.bin after operation ${k}`);
    maxLeft = Math.max(maxLeft, seen.leftovers.names.length);
    await saveAndCheckClean(dir, "A");
  }
  report.push(`${ops.length} kills at each file operation of a save (${ops.length} operations, publishing rename = operation ${publishAt}), up to ${maxLeft} leftover entries per kill, 0 after the next save`);
});

test("SIGKILL at each file operation of a save over a folder of the old layout: it still loads (old or new), old temporary files are removed", { timeout: 240_000 }, async (t) => {
  const dir = join(root, "old-layout");
  const dry = join(root, "old-layout-dry");
  writeOldLayout(dry, "A", deadPid());
  assert.ok(existsSync(join(dry, "model.json")));
  const full = await runChild([dry, "once", "B", "999"]);
  const ops = opsOf(full.lines);
  const publishAt = ops.findIndex(([k, p]) => k === "rename" && /\/v-\d+-[0-9a-f]+$/.test(p)) + 1;
  const removeAt = ops.findIndex(([k, p]) => k === "remove" && p.endsWith("/model.json")) + 1;
  const jsonAt = ops.findIndex(([k, p]) => k === "rename" && p.endsWith("/model.json")) + 1;
  assert.ok(publishAt > 0 && removeAt > publishAt && jsonAt > removeAt, `unexpected operations: ${JSON.stringify(ops)}`);
  t.diagnostic(`a save converting the old layout: ${ops.length} file operations`);
  for (let k = 1; k <= ops.length; k++) {
    writeOldLayout(dir, "A", deadPid());
    const run = await runChild([dir, "once", "B", String(k)]);
    assert.equal(run.signal, "SIGKILL");
    const seen = await inspect(dir);
    assert.equal(seen.ours, k >= publishAt ? "B" : "A", `killed after operation ${k} (${ops[k - 1]?.join(" ")})`);
    // Tools reading the two files directly never get a mixed pair: model.json goes first, comes back last.
    assert.equal(seen.direct, k < removeAt ? "A" : k < jsonAt ? "missing" : "B", `dir/model.json + dir/weights.bin after operation ${k}`);
    await saveAndCheckClean(dir, "A");
  }
  report.push(`${ops.length} kills at each file operation of a save over the old layout`);
});

test("SIGKILL at 50 random moments while a child saves A, B, A, ...: always one complete model, the one the log predicts", { timeout: 300_000 }, async (t) => {
  const dir = join(root, "random");
  rmSync(dir, { recursive: true, force: true });
  let last: Which = "A";
  await saveAndCheckClean(dir, last);
  const where = new Map<string, number>();
  let maxLeft = 0;
  let maxBytes = 0;
  let saves = 0;
  const before = tf.memory().numTensors;
  const kills = 50;
  for (let i = 0; i < kills; i++) {
    const run = await runChild([dir, "loop"], Math.random() * 200);
    assert.equal(run.signal, "SIGKILL");
    // Replay the log: the last finished save, and how far the one in flight got.
    let inFlight: string[] = [];
    let n = 0;
    for (const line of run.lines) {
      if (line.startsWith("saved ")) {
        last = line.slice(6) as Which;
        inFlight = [];
        n++;
      } else if (line.startsWith("op ")) inFlight.push(line);
    }
    saves += n;
    const next: Which = n % 2 === 0 ? "A" : "B";
    const ops = inFlight.map((l) => l.split(" ").slice(2, 4) as [string, string]);
    const published = ops.some(([k, p]) => k === "rename" && /\/v-\d+-[0-9a-f]+$/.test(p));
    const swapped = ops.some(([k, p]) => k === "rename" && p.endsWith("/current"));
    const lastOp = ops.at(-1);
    const key = lastOp === undefined ? "between saves" : `after operation ${ops.length} (${lastOp[0]})`;
    where.set(key, (where.get(key) ?? 0) + 1);
    const seen = await inspect(dir);
    // A kill can land after an operation and before its log line: then the next state is allowed too.
    const expectOurs: Set<Which> = new Set([published ? next : last]);
    if (!published && lastOp?.[0] === "fsync-dir") expectOurs.add(next);
    assert.ok(expectOurs.has(seen.ours), `kill ${i}: loaded ${seen.ours}, expected ${[...expectOurs].join(" or ")} (${key})`);
    const direct: Set<string> = new Set([swapped ? next : last]);
    if (published && !swapped && lastOp?.[0] === "symlink") direct.add(next);
    assert.ok(direct.has(seen.direct), `kill ${i}: dir/model.json + dir/weights.bin are ${seen.direct}, expected ${[...direct].join(" or ")} (${key})`);
    maxLeft = Math.max(maxLeft, seen.leftovers.names.length);
    maxBytes = Math.max(maxBytes, seen.leftovers.bytes);
    last = seen.ours === "A" ? "B" : "A";
    await saveAndCheckClean(dir, last);
  }
  assert.equal(tf.memory().numTensors, before, "tensors leaked over the kills");
  const landed = [...where].sort((a, b) => b[1] - a[1]).map(([k, v]) => `${v} ${k}`).join(", ");
  t.diagnostic(`${kills} kills during ${saves} finished saves; killed ${landed}`);
  report.push(`${kills} random kills during ${saves} saves (${kills - (where.get("between saves") ?? 0)} inside a save), up to ${maxLeft} leftover entries (${(maxBytes / 1e6).toFixed(2)} MB) before the next save, 0 after it`);
});

test("writeFolderAtomically: exactly the new set, files dropped from the set go, names are checked, a file in the way is named", async () => {
  const dir = join(root, "generic");
  assert.equal(await readFolder(dir), undefined);
  await writeFolderAtomically(dir, { "a.json": "{}", "b.bin": new Uint8Array([1, 2, 3]) });
  assert.deepEqual(Object.keys((await readFolder(dir)) ?? {}).sort(), ["a.json", "b.bin"]);
  await writeFolderAtomically(dir, { "c.txt": "c" });
  const files = (await readFolder(dir)) as Record<string, Uint8Array>;
  assert.deepEqual(Object.keys(files), ["c.txt"]);
  assert.equal(new TextDecoder().decode(files["c.txt"]), "c");
  assert.deepEqual(readdirSync(dir).filter((n) => !/^v-/.test(n)).sort(), ["c.txt", "current"]);
  assert.equal(readFileSync(join(dir, "c.txt"), "utf8"), "c");
  await assert.rejects(writeFolderAtomically(dir, { "../x": "no" }), /writeFolderAtomically\(.*generic\): "\.\.\/x" cannot be a file name here/);
  await assert.rejects(writeFolderAtomically(dir, { current: "no" }), /"current" cannot be a file name here/);
  writeFileSync(join(root, "plain-file"), "x");
  await assert.rejects(writeFolderAtomically(join(root, "plain-file", "sub"), { a: "1" }), /cannot create the folder .*plain-file\/sub: .*plain-file is a file, not a folder/);
  await assert.rejects(readFolder(join(root, "plain-file")), /readFolder: .*plain-file is a file, not a folder/);
  assert.ok(statSync(join(root, "plain-file")).isFile());
});

test("concurrent writes into one folder: readers always get one complete set, and one clean version remains", async () => {
  const dir = join(root, "concurrent");
  const set = (i: number) => ({ "index.json": JSON.stringify({ i }), "data.bin": new Uint8Array(50_000).fill(i) });
  await writeFolderAtomically(dir, set(0));
  let reads = 0;
  let writing = true;
  const reader = (async () => {
    while (writing) {
      const files = (await readFolder(dir, { cleanUp: false })) as Record<string, Uint8Array>;
      const i = (JSON.parse(new TextDecoder().decode(files["index.json"])) as { i: number }).i;
      assert.ok((files["data.bin"] as Uint8Array).every((b) => b === i), `read index ${i} with other data`);
      reads++;
    }
  })();
  await Promise.all(Array.from({ length: 12 }, (_, k) => writeFolderAtomically(dir, set(k + 1))));
  writing = false;
  await reader;
  await writeFolderAtomically(dir, set(99)); // the last write cleans what racing writes left
  const names = readdirSync(dir).sort();
  assert.deepEqual(names.filter((n) => !/^v-/.test(n)), ["current", "data.bin", "index.json"], names.join(", "));
  assert.equal(names.filter((n) => /^v-/.test(n)).length, 1);
  assert.equal(readFileSync(join(dir, "index.json"), "utf8"), JSON.stringify({ i: 99 }));
  assert.ok(reads > 0);
});
