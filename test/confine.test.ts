import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { JOB_FILE, claimModelDir, confineOutDir, defaultOutRoots } from "../src/parallel/confine.js";
import type { TrainingJobSpec } from "../src/parallel/job.js";
import { trainMany, type PoolRow } from "../src/parallel/pool.js";

const base = realpathSync(mkdtempSync(join(tmpdir(), "jointly-confine-")));
test.after(() => rmSync(base, { recursive: true, force: true }));
const allowed = join(base, "allowed");
const elsewhere = join(base, "elsewhere");
mkdirSync(join(allowed, "sub"), { recursive: true });
mkdirSync(elsewhere, { recursive: true });
symlinkSync(elsewhere, join(allowed, "escape"));
symlinkSync(join(allowed, "sub"), join(allowed, "inner"));
symlinkSync(join(base, "not-there"), join(allowed, "dangling"));

function spec(id: string, outDir: string): TrainingJobSpec {
  return {
    id,
    architecture: { hidden: [4], task: "classification" },
    hyper: { epochs: 2, batchSize: 32, learningRate: 0.03 },
    data: { dataset: "penguins", features: ["bill_length", "bill_depth"], label: "species", partition: { scheme: "stratified", parts: 2, index: 0, seed: 3 } },
    seed: 5,
    outDir,
  };
}

test("confineOutDir: inside after .. and symlinks is accepted; allowed/../../x, a symlink out, a dangling link out, an absolute path elsewhere and a sibling prefix are refused", () => {
  assert.equal(confineOutDir(join(allowed, "sub"), [allowed]), join(allowed, "sub"));
  assert.equal(confineOutDir(allowed, [allowed]), allowed);
  assert.equal(confineOutDir(join(allowed, "new", "deeper"), [allowed]), join(allowed, "new", "deeper"), "a folder that does not exist yet");
  assert.equal(confineOutDir(join(allowed, "inner", "m"), [allowed]), join(allowed, "sub", "m"), "a symlink that stays inside");
  // `..` after a symlink goes up from the link's target, as the kernel does: escape/.. is base.
  assert.equal(confineOutDir(`${allowed}/escape/../allowed/ok`, [allowed]), join(allowed, "ok"));
  // Relative to the process's folder, unresolved on purpose: join() would fold the `..` away.
  const rel = `${relative(process.cwd(), allowed)}/../../x`;
  const refused: [string, string][] = [
    [rel, join(base, "..", "x")],
    [`${allowed}/../../x`, join(base, "..", "x")],
    [join(allowed, "escape", "m"), join(elsewhere, "m")],
    [join(allowed, "dangling", "m"), join(base, "not-there", "m")],
    ["/etc/jointly", "/etc/jointly"],
    [`${allowed}X/m`, `${allowed}X/m`],
  ];
  for (const [outDir, real] of refused) {
    assert.throws(() => confineOutDir(outDir, [allowed]), (err: Error) => {
      assert.equal(err.message.startsWith(`The output folder ${JSON.stringify(outDir)} resolves to ${real}, which is outside the allowed output root ${allowed};`), true, err.message);
      assert.match(err.message, /--out-root \(or JOINTLY_OUT_ROOT\)/);
      return true;
    });
  }
  // Any of several roots; a root given through a symlink is compared by its real path.
  assert.equal(confineOutDir(join(elsewhere, "m"), [allowed, elsewhere]), join(elsewhere, "m"));
  assert.equal(confineOutDir(join(elsewhere, "m"), [join(allowed, "escape")]), join(elsewhere, "m"));
  assert.throws(() => confineOutDir("/etc", [allowed, elsewhere]), /outside the allowed output roots .*allowed, .*elsewhere; write under one of them/);
  assert.throws(() => confineOutDir("x", []), /roots must be a non-empty array of folder paths, but got \[\]/);
  assert.throws(() => confineOutDir("", [allowed]), /outDir must be a folder path, but got ""/);
});

test("defaultOutRoots: JOINTLY_OUT_ROOT, colon-separated, else the process's folder", () => {
  assert.deepEqual(defaultOutRoots({}), [process.cwd()]);
  assert.deepEqual(defaultOutRoots({ JOINTLY_OUT_ROOT: "" }), [process.cwd()]);
  assert.deepEqual(defaultOutRoots({ JOINTLY_OUT_ROOT: `${allowed}:${elsewhere}` }), [allowed, elsewhere]);
});

test("claimModelDir: a fresh or own folder is claimed; another job id's folder and a folder of unrelated files are refused", async () => {
  const dir = join(allowed, "claims");
  await claimModelDir(join(dir, "a"), "a");
  assert.equal(JSON.parse(readFileSync(join(dir, "a", JOB_FILE), "utf8")).job, "a");
  await claimModelDir(join(dir, "a"), "a"); // a retry of the same id
  await assert.rejects(claimModelDir(join(dir, "a"), "b"), /Job "b" will not write its model to .*claims\/a: the folder was written by job "a" \(.*job\.json\)\. Choose another outDir/);
  mkdirSync(join(dir, "mine"));
  writeFileSync(join(dir, "mine", "notes.txt"), "keep me");
  await assert.rejects(claimModelDir(join(dir, "mine"), "mine"), /the folder holds notes\.txt and no job\.json, so no job wrote it/);
  // A model saved before job.json existed names its job in its metadata.
  mkdirSync(join(dir, "old"));
  writeFileSync(join(dir, "old", "model.json"), JSON.stringify({ modelTopology: {}, userDefinedMetadata: { jointly: { job: "old" } } }));
  await claimModelDir(join(dir, "old"), "old");
  await assert.rejects(claimModelDir(join(dir, "old"), "other"), /written by job "old"/);
});

test("trainMany with outRoots: escaping jobs fail with the clear error, a folder another job id wrote is left untouched, the good job is saved", { timeout: 120_000 }, async () => {
  const root = join(allowed, "pool");
  mkdirSync(root, { recursive: true });
  // A model folder of job "other", and a link named like a new job pointing at it.
  mkdirSync(join(root, "other"));
  writeFileSync(join(root, "other", JOB_FILE), JSON.stringify({ job: "other" }));
  writeFileSync(join(root, "other", "model.json"), "other's model");
  symlinkSync(join(root, "other"), join(root, "hijack"));
  const specs = [spec("good", root), spec("dotdot", `${root}/../../../x`), spec("link", join(allowed, "escape")), spec("abs", elsewhere), spec("hijack", root), spec("trick", `${root}/../escape/..`)];
  const table = await trainMany(specs, { workers: 1, outRoots: [allowed] });
  const rows = new Map((table.objects() as PoolRow[]).map((r) => [r.id, r]));
  assert.equal(rows.get("good")!.status, "ok", String(rows.get("good")!.error));
  assert.equal(JSON.parse(readFileSync(join(root, "good", JOB_FILE), "utf8")).job, "good");
  assert.match(rows.get("dotdot")!.error as string, /^Job "dotdot": The output folder ".*\/pool\/\.\.\/\.\.\/\.\.\/x\/dotdot" resolves to .*\/x\/dotdot, which is outside the allowed output root/);
  assert.match(rows.get("link")!.error as string, new RegExp(`^Job "link": The output folder .* resolves to ${join(elsewhere, "link")}, which is outside`));
  assert.match(rows.get("abs")!.error as string, /^Job "abs": The output folder .* which is outside the allowed output root/);
  // path.join would fold escape/.. away (and accept it); the kernel follows the link first.
  assert.match(rows.get("trick")!.error as string, new RegExp(`^Job "trick": The output folder .* resolves to ${join(base, "trick")}, which is outside`));
  assert.match(rows.get("hijack")!.error as string, /Job "hijack" will not write its model to .*\/other: the folder was written by job "other"/);
  for (const id of ["dotdot", "link", "abs", "hijack", "trick"]) assert.equal(rows.get(id)!.status, "failed");
  assert.equal(readFileSync(join(root, "other", "model.json"), "utf8"), "other's model", "the other job's model is untouched");
  assert.deepEqual(readdirSync(elsewhere), [], "nothing was written outside the root");
});
