import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const KERNEL = join(ROOT, ".jupyter", "share", "jupyter", "kernels", "tslab", "kernel.json");

interface Summary {
  ok: boolean;
  python: string;
  steps: { step: string; action: string; detail: string }[];
}

function setup(): Summary {
  const r = spawnSync(process.execPath, [join(ROOT, "scripts", "setup.mjs"), "--json"], { cwd: ROOT, encoding: "utf8" });
  assert.equal(r.status, 0, `setup failed: ${r.stdout}${r.stderr}`);
  return JSON.parse(r.stdout.trim().split("\n").pop() as string) as Summary;
}

const actions = (s: Summary) => Object.fromEntries(s.steps.map((x) => [x.step, x.action]));

test("setup is idempotent: a second run finds everything in place and changes nothing", () => {
  setup();
  const second = setup();
  assert.deepEqual(actions(second), {
    "node dependencies": "ok",
    "self link": "ok",
    "library build": "ok",
    "native kernels": "ok",
    jupyter: "ok",
    "tslab kernel": "ok",
    redis: "ok",
    "fashion-mnist": "ok",
  });
});

test("setup repairs what is missing: the kernel spec and the self link come back, then it is idle again", () => {
  rmSync(KERNEL);
  rmSync(join(ROOT, "node_modules", "jointly-tfjs"));
  const repaired = setup();
  assert.equal(actions(repaired)["tslab kernel"], "installed");
  assert.equal(actions(repaired)["self link"], "installed");
  assert.ok(existsSync(KERNEL));
  const spec = JSON.parse(readFileSync(KERNEL, "utf8")) as { argv: string[] };
  // The kernel runs this project's own tslab, registered in the project folder, not a global one.
  assert.equal(spec.argv[0], join(ROOT, "node_modules", ".bin", "tslab"));
  assert.ok(existsSync(join(ROOT, "node_modules", "jointly-tfjs", "package.json")));
  assert.ok(Object.values(actions(setup())).every((a) => a === "ok"));
});

test("the Python it reports has Jupyter's execution stack", () => {
  const { python } = setup();
  const r = spawnSync(python, ["-c", "import nbclient, nbconvert, jupyter_client; print('ok')"], { encoding: "utf8" });
  assert.equal(r.stdout.trim(), "ok");
});
