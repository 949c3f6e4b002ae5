#!/usr/bin/env node
// @ts-check
/**
 * Builds what the package ships but git does not hold.
 *
 *   node scripts/prepack.mjs --dist   dist/ with tsc (the `prepare` script: the checkout's
 *                                      npm install / npm ci, git installs, folder installs, pack)
 *   node scripts/prepack.mjs          dist/, then the prebuilt native addon (the `prepack` script)
 *
 * dist/ is compiled by the project's own TypeScript (a devDependency; npm installs devDependencies
 * before `prepare` for git dependencies). Without it, an existing dist/ is kept with a warning, and
 * a missing one is an error. Files in dist/ whose source no longer exists are removed, so a pack
 * never ships a module deleted from src/. The prebuilt addon (scripts/build-native.mjs --prebuilt)
 * is optional: if that script or its flag is missing, or the build fails (no compiler, no OpenBLAS),
 * the pack goes on without prebuilds and says why; consumers then build from the shipped native/
 * sources or use the pure-wasm kernels.
 */
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const DIST = join(ROOT, "dist");
const SRC = join(ROOT, "src");

/** The path of TypeScript's tsc script as this package resolves it, or undefined when TypeScript is not installed. */
function tscPath() {
  try {
    const pkg = createRequire(join(ROOT, "package.json")).resolve("typescript/package.json");
    return join(dirname(pkg), "bin", "tsc");
  } catch {
    return undefined;
  }
}

/** @param {string} dir @returns {string[]} every file under dir */
function walk(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? walk(join(dir, e.name)) : [join(dir, e.name)]));
}

/** Removes dist files (x.js, x.js.map, x.d.ts, x.d.ts.map) whose src/x.ts is gone, and the folders left empty. */
function pruneStale() {
  let removed = 0;
  for (const file of walk(DIST)) {
    const rel = relative(DIST, file);
    const stem = rel.replace(/(\.d\.ts\.map|\.d\.ts|\.js\.map|\.js)$/, "");
    if (stem === rel) continue;
    if (!existsSync(join(SRC, `${stem}.ts`))) {
      rmSync(file);
      removed++;
    }
  }
  for (const dir of listDirs(DIST).reverse()) if (readdirSync(dir).length === 0) rmSync(dir, { recursive: true });
  return removed;
}

/** @param {string} dir @returns {string[]} dir's subfolders, parents before children */
function listDirs(dir) {
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .flatMap((e) => [join(dir, e.name), ...listDirs(join(dir, e.name))]);
}

function buildDist() {
  const tsc = tscPath();
  if (tsc === undefined) {
    if (existsSync(join(DIST, "index.js"))) {
      console.warn("jointly-tfjs: TypeScript is not installed (a devDependency): dist/ is kept as it is, not rebuilt.");
      return;
    }
    throw new Error("cannot build dist/: TypeScript is not installed (it is a devDependency: run npm install without --omit=dev)");
  }
  // tsc is incremental (build/.tsbuildinfo): with dist/ deleted that file would still say "up to date" and nothing would be written.
  const buildInfo = join(ROOT, "build", ".tsbuildinfo");
  if (!existsSync(join(DIST, "index.js")) && existsSync(buildInfo)) rmSync(buildInfo);
  const started = Date.now();
  const r = spawnSync(process.execPath, [tsc, "-p", join(ROOT, "tsconfig.json")], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) throw new Error(`tsc -p tsconfig.json failed (exit ${r.status ?? r.signal}): dist/ is not built`);
  const removed = pruneStale();
  console.log(`jointly-tfjs: dist/ built in ${((Date.now() - started) / 1000).toFixed(1)} s${removed > 0 ? `, ${removed} stale file(s) removed` : ""}`);
}

function buildPrebuilt() {
  const script = join(ROOT, "scripts", "build-native.mjs");
  if (!existsSync(script) || !readFileSync(script, "utf8").includes("--prebuilt")) {
    console.warn("jointly-tfjs: no prebuilt native addon in this pack (scripts/build-native.mjs has no --prebuilt)");
    return;
  }
  const r = spawnSync(process.execPath, [script, "--prebuilt"], { cwd: ROOT, stdio: "inherit" });
  if (r.status !== 0) console.warn(`jointly-tfjs: no prebuilt native addon in this pack (build-native.mjs --prebuilt exit ${r.status ?? r.signal}); consumers build from native/ or use the pure-wasm kernels`);
  const dir = join(ROOT, "prebuilds");
  if (existsSync(dir)) {
    const files = walk(dir).map((f) => `${relative(ROOT, f)} (${(statSync(f).size / 1e6).toFixed(2)} MB)`);
    console.log(`jointly-tfjs: prebuilds: ${files.join(", ") || "none"}`);
  }
}

try {
  buildDist();
  if (!process.argv.includes("--dist")) buildPrebuilt();
} catch (err) {
  console.error(`jointly-tfjs: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
}
