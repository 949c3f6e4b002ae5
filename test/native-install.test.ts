/**
 * The native kernels outside the checkout: the prebuilt Linux x64 addons (scripts/build-native.mjs
 * --prebuilt), the loader's order (src/backend/native.ts) in a copy of the package's layout, and the
 * install step (scripts/install-native.mjs) with and without a prebuild, a compiler and the switch.
 */
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
// @ts-expect-error: a plain .mjs script without declarations
import { buildPrebuilt, checkAddon, PREBUILD_DIR, PREBUILD_BLAS, PREBUILDS } from "../scripts/build-native.mjs";
import { prebuiltNativePath } from "../src/backend/native.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const linuxX64 = process.platform === "linux" && process.arch === "x64";
const skip = linuxX64 ? false : "prebuilds are made for linux-x64 only";
let tmp = "";

before(() => {
  if (!linuxX64) return;
  // Up to date after `npm pack` (prepack builds them); otherwise about 6 s.
  buildPrebuilt();
  tmp = mkdtempSync(join(tmpdir(), "jointly-native-install-"));
});
after(() => {
  if (tmp !== "") rmSync(tmp, { recursive: true, force: true });
});

/** The NEEDED entries of a shared object. */
function needed(file: string): string[] {
  const r = spawnSync("readelf", ["-d", file], { encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr);
  return [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] as string);
}

test("the prebuilds need nothing but glibc and their own OpenBLAS library, and each loads in a fresh node", { skip }, () => {
  const files = [PREBUILD_BLAS, ...PREBUILDS.map((p: { file: string }) => p.file)].map((f: string) => join(PREBUILD_DIR, f));
  for (const f of files) {
    assert.ok(existsSync(f), f);
    for (const lib of needed(f)) assert.match(lib, /^(libc|libm|libpthread|libdl|ld-linux-x86-64)\.so|^libjointly_openblas\.so$/, `${f} needs ${lib}`);
  }
  // OpenBLAS is in one file; the addons are small.
  assert.ok(statSync(files[1] as string).size < 2e6 && statSync(files[2] as string).size < 2e6);
  for (const p of PREBUILDS as { file: string }[]) assert.match(checkAddon(join(PREBUILD_DIR, p.file)), /^OpenBLAS [\d.]+ .*DYNAMIC_ARCH/);
});

test("the loader takes the x86-64-v3 prebuild on a CPU with AVX2/FMA and the baseline one otherwise", { skip }, () => {
  const v3 = prebuiltNativePath(new Set(["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm", "sse2"]));
  assert.deepEqual(v3, { path: join(PREBUILD_DIR, "jointly_native-v3.node"), label: "prebuilt x86-64-v3 (linux-x64)" });
  const old = prebuiltNativePath(new Set(["sse2", "avx"]));
  assert.deepEqual(old, { path: join(PREBUILD_DIR, "jointly_native.node"), label: "prebuilt x86-64 (linux-x64)" });
});

/** A copy of the package's layout (src/backend's loader, prebuilds/ if asked) with the checkout's node_modules. */
function layout(name: string, opts: { prebuilds: boolean; build?: "garbage" | "real" }): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, "src", "backend"), { recursive: true });
  for (const f of ["native.ts", "wasm-internals.ts"]) cpSync(join(ROOT, "src", "backend", f), join(dir, "src", "backend", f));
  symlinkSync(join(ROOT, "node_modules"), join(dir, "node_modules"));
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "copy", type: "module" }));
  if (opts.prebuilds) cpSync(PREBUILD_DIR, join(dir, "prebuilds", "linux-x64"), { recursive: true });
  if (opts.build !== undefined) {
    mkdirSync(join(dir, "build", "native"), { recursive: true });
    const target = join(dir, "build", "native", "jointly_native.node");
    if (opts.build === "garbage") writeFileSync(target, "not an ELF file");
    else cpSync(join(ROOT, "build", "native", "jointly_native.node"), target);
  }
  return dir;
}

function status(dir: string, env: Record<string, string> = {}) {
  const code = `import { nativeKernels } from "./src/backend/native.ts"; const s = nativeKernels(); console.log(JSON.stringify({ loaded: s.kernels !== undefined, path: s.path, source: s.source, reason: s.reason, threads: s.threads }));`;
  const clean: Record<string, string | undefined> = { ...process.env, JOINTLY_NATIVE_PATH: undefined, JOINTLY_NATIVE: undefined, JOINTLY_NATIVE_THREADS: undefined, ...env };
  const r = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], { cwd: dir, env: clean as NodeJS.ProcessEnv, encoding: "utf8" });
  assert.equal(r.status, 0, r.stderr.slice(-1500));
  return JSON.parse(r.stdout.trim().split("\n").pop() as string);
}

test("loader order in a package without a build from source: the prebuild, named with why; a broken build gives way to it; with neither, one line saying why", { skip }, () => {
  const pre = layout("prebuilt-only", { prebuilds: true });
  const expected = prebuiltNativePath();
  assert.ok("path" in expected);
  const s = status(pre);
  assert.equal(s.loaded, true, s.reason);
  assert.equal(s.path, join(pre, "prebuilds", "linux-x64", expected.path.split("/").pop() as string));
  assert.equal(s.source, expected.label);
  assert.equal(s.threads, 1);

  const broken = status(layout("broken-build", { prebuilds: true, build: "garbage" }));
  assert.equal(broken.loaded, true, broken.reason);
  assert.match(broken.source, new RegExp(`^${expected.label.replace(/[()]/g, "\\$&")}; failed to load .*build/native/jointly_native\\.node: `));

  // A build from source comes before the prebuild.
  const both = layout("both", { prebuilds: true, build: "real" });
  const b = status(both);
  assert.deepEqual([b.loaded, b.path, b.source, b.reason], [true, join(both, "build", "native", "jointly_native.node"), "built from source", undefined]);
  // JOINTLY_NATIVE_PATH comes first of all.
  const v = status(both, { JOINTLY_NATIVE_PATH: join(PREBUILD_DIR, "jointly_native.node") });
  assert.deepEqual([v.loaded, v.source, v.path], [true, "JOINTLY_NATIVE_PATH", join(PREBUILD_DIR, "jointly_native.node")]);

  const none = layout("nothing", { prebuilds: false });
  const n = status(none);
  assert.equal(n.loaded, false);
  assert.equal(n.reason, `not built (no ${join(none, "build", "native", "jointly_native.node")}; no prebuild for linux-x64; run \`npm run native\` with a C compiler and OpenBLAS)`);
});

/** A package as shipped for the install step: scripts/, native/, and prebuilds/ if asked. */
function shipped(name: string, prebuilds: boolean): string {
  const dir = join(tmp, name);
  mkdirSync(join(dir, "scripts"), { recursive: true });
  for (const f of ["build-native.mjs", "install-native.mjs"]) cpSync(join(ROOT, "scripts", f), join(dir, "scripts", f));
  cpSync(join(ROOT, "native"), join(dir, "native"), { recursive: true });
  if (prebuilds) cpSync(PREBUILD_DIR, join(dir, "prebuilds", "linux-x64"), { recursive: true });
  return dir;
}

function install(dir: string, env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, ["scripts/install-native.mjs"], { cwd: dir, env: { ...process.env, ...env }, encoding: "utf8" });
  const lines = `${r.stdout}${r.stderr}`.trim().split("\n");
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  assert.equal(lines.length, 1, `one line of output, got:\n${lines.join("\n")}`);
  return lines[0] as string;
}

test("the install step: a prebuild that loads is taken; without one it builds from the shipped source (no node-api-headers package); without a compiler one line says why; JOINTLY_NATIVE=0 skips; it never fails", { skip }, () => {
  const pre = shipped("with-prebuild", true);
  assert.match(install(pre), /^jointly-tfjs: native kernels from the prebuild linux-x64\/jointly_native(-v3)?\.node \(OpenBLAS [\d.]+\)$/);
  assert.ok(!existsSync(join(pre, "build")), "nothing built when the prebuild loads");

  assert.equal(install(pre, { JOINTLY_NATIVE: "0" }), "jointly-tfjs: native kernels skipped (JOINTLY_NATIVE=0)");

  const src = shipped("source-only", false);
  assert.equal(install(src, { CC: "/nonexistent/cc" }), "jointly-tfjs: native kernels unavailable, the pure-wasm kernels will be used (no prebuild for linux-x64; cannot build from source: no C compiler: `/nonexistent/cc --version` failed (install gcc, or set CC))");
  // No node_modules at all here: the headers come from Node's own include/node.
  assert.match(install(src), /^jointly-tfjs: native kernels built from source in build\/native \(.* with OpenBLAS [\d.]+ .*; no prebuild for linux-x64\)$/);
  assert.match(checkAddon(join(src, "build", "native", "jointly_native.node")), /^OpenBLAS/);
  // Neither Node's headers nor the node-api-headers package: one line saying so.
  assert.equal(
    install(shipped("no-headers", false), { JOINTLY_NODE_INCLUDE: "/nonexistent/include/node" }),
    "jointly-tfjs: native kernels unavailable, the pure-wasm kernels will be used (no prebuild for linux-x64; cannot build from source: no Node-API headers (no node_api.h in /nonexistent/include/node or the node-api-headers package))",
  );

  // A prebuild that does not load (here: a truncated file), no compiler: still exit 0, one line.
  const picked = prebuiltNativePath();
  assert.ok("path" in picked);
  writeFileSync(join(pre, "prebuilds", "linux-x64", picked.path.split("/").pop() as string), "truncated");
  assert.match(install(pre, { CC: "/nonexistent/cc" }), /^jointly-tfjs: native kernels unavailable, the pure-wasm kernels will be used \(.*jointly_native(-v3)?\.node does not load: .*; cannot build from source: no C compiler/);
});
