#!/usr/bin/env node
// @ts-check
/**
 * Builds jointly's native kernels (the C files of native/) into build/native/jointly_native.node:
 * compiled together in one call of the system C compiler against Node-API headers and OpenBLAS.
 * No node-gyp (it would fetch Node's headers from nodejs.org, which not every machine can reach):
 * Node-API is ABI-stable, so the headers of the `node-api-headers` package (or the ones installed
 * with Node) are enough, and the addon's Node-API symbols resolve against the running node.
 *
 *   node scripts/build-native.mjs          build if the source, flags or compiler changed
 *   node scripts/build-native.mjs --force  build anyway
 *
 * Exits non-zero with the compiler's message when the build fails. jointly works without the addon
 * (pure-wasm kernels), just slower; scripts/setup.mjs installs the compiler and OpenBLAS with apt
 * when it can and calls {@link buildNative}.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const NATIVE_DIR = join(ROOT, "native");
export const NATIVE_OUTPUT = join(ROOT, "build", "native", "jointly_native.node");
const STAMP = join(ROOT, "build", "native", "jointly_native.stamp");
// Built beside the real file and renamed over it only once it loads; ends in .node so require() takes it as an addon.
const TMP_OUTPUT = join(ROOT, "build", "native", "jointly_native.new.node");

/**
 * -ffp-contract=off and no -ffast-math: the Adam/SGD loops must round each operation to float32 as
 * tfjs's ops do (bit-identical updates). -march=native: the addon is built on the machine that runs it.
 */
const FLAGS = ["-O3", "-march=native", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"];

/** The C sources of the addon (every native/*.c, in name order) and the headers they share. */
export function nativeSources() {
  const names = readdirSync(NATIVE_DIR).sort();
  return {
    sources: names.filter((n) => n.endsWith(".c")).map((n) => join(NATIVE_DIR, n)),
    headers: names.filter((n) => n.endsWith(".h")).map((n) => join(NATIVE_DIR, n)),
  };
}

/** The directory holding node_api.h: the running Node's own, else the node-api-headers package. */
export function nodeApiInclude() {
  const own = resolve(dirname(process.execPath), "..", "include", "node");
  if (existsSync(join(own, "node_api.h"))) return own;
  try {
    const pkg = createRequire(import.meta.url).resolve("node-api-headers/package.json");
    const dir = join(dirname(pkg), "include");
    if (existsSync(join(dir, "node_api.h"))) return dir;
  } catch {
    // not installed: reported below
  }
  return undefined;
}

/** @param {string} cmd */
function compilerVersion(cmd) {
  const r = spawnSync(cmd, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? (r.stdout.split("\n")[0] ?? "") : undefined;
}

/**
 * Builds the addon unless an up-to-date build exists. Returns what happened; throws with the reason
 * (no compiler, no headers, compiler errors, the library not loading) when it cannot build.
 * @param {{force?: boolean}} [opts]
 * @returns {{action: "ok" | "built", detail: string}}
 */
export function buildNative(opts = {}) {
  const cc = process.env.CC || "cc";
  const version = compilerVersion(cc);
  if (version === undefined) throw new Error(`no C compiler: \`${cc} --version\` failed (install gcc, or set CC)`);
  const include = nodeApiInclude();
  if (include === undefined) throw new Error("no Node-API headers (node_api.h): run npm install (package node-api-headers)");
  const { sources, headers } = nativeSources();
  if (sources.length === 0) throw new Error(`no C sources in ${NATIVE_DIR}`);
  const argv = [...FLAGS, "-DNODE_GYP_MODULE_NAME=jointly_native", `-I${include}`, `-I${NATIVE_DIR}`, ...sources, "-o", TMP_OUTPUT, "-lopenblas", "-lm"];
  // The key covers every source and header (by name and content), so editing any of them rebuilds.
  const hash = createHash("sha256");
  for (const file of [...sources, ...headers]) hash.update(file.slice(NATIVE_DIR.length)).update("\0").update(readFileSync(file)).update("\0");
  const key = hash.update(JSON.stringify([cc, version, argv, process.arch])).digest("hex");
  if (!opts.force && existsSync(NATIVE_OUTPUT) && existsSync(STAMP) && readFileSync(STAMP, "utf8") === key) {
    return { action: "ok", detail: "build/native/jointly_native.node up to date" };
  }
  mkdirSync(dirname(NATIVE_OUTPUT), { recursive: true });
  const res = spawnSync(cc, argv, { encoding: "utf8" });
  if (res.status !== 0) {
    rmSync(TMP_OUTPUT, { force: true });
    const msg = `${res.stderr ?? ""}${res.stdout ?? ""}`.trim().split("\n").slice(-12).join("\n");
    throw new Error(`${cc} failed (exit ${res.status ?? res.error?.message}):\n${msg}`);
  }
  // Load it in a separate process before it replaces a working build (a missing libopenblas.so.0 shows here).
  const check = spawnSync(process.execPath, ["-e", `const m = require(${JSON.stringify(TMP_OUTPUT)}); if (typeof m.gemm !== "function") process.exit(3); console.log(m.info().blasConfig)`], { encoding: "utf8" });
  if (check.status !== 0) {
    rmSync(TMP_OUTPUT, { force: true });
    throw new Error(`the built addon does not load: ${(check.stderr || check.stdout).trim().split("\n")[0]}`);
  }
  renameSync(TMP_OUTPUT, NATIVE_OUTPUT);
  writeFileSync(STAMP, key);
  return { action: "built", detail: `${cc} (${version}) with ${check.stdout.trim()}` };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  try {
    const r = buildNative({ force: process.argv.includes("--force") });
    console.log(`${r.action === "ok" ? "✓" : "+"} native kernels: ${r.detail}`);
  } catch (err) {
    console.error(`✗ native kernels: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
