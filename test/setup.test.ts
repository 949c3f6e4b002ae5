import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { APT, ciFailedOnSync, dependencyPlan, lockMismatches, setupPurpose, setupSteps } from "../scripts/lib/setup-plan.mjs";

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

// ---- The set-up's decisions (scripts/lib/setup-plan.mjs), checked without installing anything ----

const aptFor = (argv: string[], env: Record<string, string>) =>
  Object.fromEntries(setupSteps(setupPurpose(argv, env)).filter((s) => s.apt.length).map((s) => [s.step, s.apt]));

test("the bench's set-up installs PyTorch from apt like the rest; the other commands do not", () => {
  // `npm run bench` runs `node scripts/setup.mjs && ...`: npm names the script in npm_lifecycle_event.
  const bench = aptFor([], { npm_lifecycle_event: "bench" });
  assert.deepEqual(bench.pytorch, ["python3-torch"]);
  assert.deepEqual(aptFor(["--for-bench"], {}).pytorch, ["python3-torch"]);
  for (const [argv, event] of [[[], "cookbook"], [[], "lab"], [["--for-tests"], "test"], [[], "worker"]] as const) {
    const plan = aptFor([...argv], { npm_lifecycle_event: event });
    assert.equal(plan.pytorch, undefined, `${event} should not install PyTorch`);
    assert.deepEqual(plan.jupyter, APT.jupyter);
    assert.deepEqual(plan.redis, ["redis-server"]);
  }
  assert.deepEqual(aptFor(["--for-tests"], {}).chromium, ["chromium"]);
  assert.deepEqual(aptFor(["--for-tests"], {}).openssl, ["openssl"]);
  assert.equal(aptFor([], {}).openssl, undefined);
  assert.equal(aptFor([], { npm_lifecycle_event: "bench" }).chromium, undefined);
  assert.deepEqual(setupSteps(setupPurpose(["--deps-only"], {})).map((s) => s.step), ["node dependencies"]);
});

test("node dependencies: npm ci where the lock matches, npm install only without a lock or on a mismatch", () => {
  const pkg = { dependencies: { a: "^1.0.0" }, devDependencies: { tslab: "1.0.22" } };
  const lock = {
    lockfileVersion: 3,
    packages: {
      "": { dependencies: { a: "^1.0.0" }, devDependencies: { tslab: "1.0.22" } },
      "node_modules/a": { version: "1.2.0" },
      "node_modules/tslab": { version: "1.0.22", dev: true },
      "node_modules/@msgpackr-extract/msgpackr-extract-darwin-arm64": { version: "3.0.3", optional: true },
    },
  };
  const installed = { packages: { "node_modules/a": { version: "1.2.0" }, "node_modules/tslab": { version: "1.0.22" } } };
  // Another platform's optional binary is not installed: still up to date.
  assert.equal(dependencyPlan({ lock, pkg, installed, toolsPresent: true }).action, "ok");
  assert.equal(dependencyPlan({ lock, pkg, installed: undefined, toolsPresent: false }).action, "ci");
  const old = { packages: { ...installed.packages, "node_modules/a": { version: "1.1.0" } } };
  assert.match(dependencyPlan({ lock, pkg, installed: old, toolsPresent: true }).reason, /node_modules\/a is 1\.1\.0, the lock says 1\.2\.0: npm ci/);
  assert.equal(dependencyPlan({ lock, pkg, installed, toolsPresent: false }).action, "ci");
  const moved = { dependencies: { a: "^1.0.0" }, devDependencies: { tslab: "1.0.22", bullmq: "^5.0.0" } };
  const mismatch = dependencyPlan({ lock, pkg: moved, installed, toolsPresent: true });
  assert.equal(mismatch.action, "install");
  assert.match(mismatch.reason, /devDependencies\.bullmq: "\^5\.0\.0" in package\.json, missing in the lock/);
  assert.equal(dependencyPlan({ lock: undefined, pkg, installed, toolsPresent: true }).action, "install");
  // The project's own lock matches its package.json, so a fresh clone gets npm ci.
  const readJson = (f: string) => JSON.parse(readFileSync(join(ROOT, f), "utf8"));
  assert.deepEqual(lockMismatches(readJson("package.json"), readJson("package-lock.json")), []);
});

test("npm ci's refusal of an out-of-sync lock is told apart from other failures (npm's real message)", () => {
  const dir = mkdtempSync(join(tmpdir(), "jointly-ci-"));
  try {
    writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "x", version: "1.0.0", dependencies: { "is-number": "^7.0.0" } }));
    writeFileSync(join(dir, "package-lock.json"), JSON.stringify({ name: "x", version: "1.0.0", lockfileVersion: 3, requires: true, packages: { "": { name: "x", version: "1.0.0" } } }));
    // npm checks the lock against package.json before it fetches anything.
    const r = spawnSync("npm", ["ci", "--offline", "--no-audit", "--no-fund"], { cwd: dir, encoding: "utf8" });
    assert.notEqual(r.status, 0);
    assert.equal(ciFailedOnSync(`${r.stdout}${r.stderr}`), true, r.stderr);
    assert.equal(ciFailedOnSync("npm error code ENOTCACHED\nnpm error request to https://registry.npmjs.org/x failed"), false);
    assert.equal(ciFailedOnSync("npm error code E404\nnpm error 404 Not Found - GET https://registry.npmjs.org/@uwdata%2fwk-geojson"), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("in a fresh clone the set-up installs with npm ci and leaves package-lock.json untouched", { timeout: 900_000 }, () => {
  const dir = mkdtempSync(join(tmpdir(), "jointly-clone-"));
  try {
    const git = (args: string[], cwd = dir) => spawnSync("git", args, { cwd, encoding: "utf8" });
    assert.equal(git(["clone", "-q", "--no-hardlinks", ROOT, dir], tmpdir()).status, 0);
    // The set-up under test is this checkout's (it may be ahead of HEAD while it is being worked on).
    for (const f of ["scripts/setup.mjs", "scripts/lib/setup-plan.mjs"]) writeFileSync(join(dir, f), readFileSync(join(ROOT, f)));
    const env: NodeJS.ProcessEnv = { ...process.env, npm_config_prefer_offline: "true" };
    delete env.npm_lifecycle_event;
    const once = () => {
      const r = spawnSync(process.execPath, [join(dir, "scripts", "setup.mjs"), "--deps-only", "--json"], { cwd: dir, encoding: "utf8", env });
      assert.equal(r.status, 0, `setup failed: ${r.stdout}${r.stderr}`);
      return (JSON.parse(r.stdout.trim().split("\n").pop() as string) as Summary).steps[0]!;
    };
    const first = once();
    assert.equal(first.action, "installed");
    assert.match(first.detail, /^npm ci \(/);
    assert.equal(git(["status", "--porcelain", "package-lock.json", "package.json"]).stdout, "", "the set-up changed package.json or package-lock.json");
    assert.ok(existsSync(join(dir, "node_modules", ".bin", "tslab")));
    // Installed once, it is then up to date.
    assert.equal(once().action, "ok");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
