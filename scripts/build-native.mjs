#!/usr/bin/env node
// @ts-check
/**
 * Builds jointly's native kernels (the C files of native/) against Node-API headers and OpenBLAS,
 * with one call of the system C compiler. No node-gyp (it would fetch Node's headers from
 * nodejs.org, which not every machine can reach): Node-API is ABI-stable, so Node's own headers (or
 * the `node-api-headers` package's) are enough, and the addon's Node-API symbols resolve against the
 * running node.
 *
 *   node scripts/build-native.mjs             build/native/jointly_native.node for this machine
 *                                              (-march=native, the system's libopenblas.so), if
 *                                              the source, flags or compiler changed
 *   node scripts/build-native.mjs --force     build anyway
 *   node scripts/build-native.mjs --prebuilt  the binaries shipped in the package (prepack):
 *                                              prebuilds/linux-x64/ (see {@link buildPrebuilt})
 *
 * Exits non-zero with the compiler's message when the build fails. jointly works without the addon
 * (pure-wasm kernels), just slower; scripts/setup.mjs installs the compiler and OpenBLAS with apt
 * when it can and calls {@link buildNative}; scripts/install-native.mjs (the package's install
 * step) picks a prebuild or calls {@link buildNative}.
 */
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const NATIVE_DIR = join(ROOT, "native");
export const NATIVE_OUTPUT = join(ROOT, "build", "native", "jointly_native.node");
const STAMP = join(ROOT, "build", "native", "jointly_native.stamp");
// Built beside the real file and renamed over it only once it loads; ends in .node so require() takes it as an addon.
const TMP_OUTPUT = join(ROOT, "build", "native", "jointly_native.new.node");

/** Where `--prebuilt` writes, by platform (only Linux x64 is prebuilt). */
export const PREBUILD_DIR = join(ROOT, "prebuilds", "linux-x64");
/**
 * The prebuilt addons, most demanding first: the loader (src/backend/native.ts) takes the first whose
 * CPU flags (from /proc/cpuinfo) the machine has. x86-64-v3 is Haswell (2013) and later: AVX2, FMA,
 * BMI1/2, F16C, MOVBE, LZCNT; the baseline runs on every x86-64. OpenBLAS picks its own kernels at
 * run time either way (DYNAMIC_ARCH), so only jointly's own loops differ between the two.
 */
export const PREBUILDS = [
  { file: "jointly_native-v3.node", march: "x86-64-v3", cpuFlags: ["avx", "avx2", "fma", "bmi1", "bmi2", "f16c", "movbe", "abm"] },
  { file: "jointly_native.node", march: "x86-64", cpuFlags: [] },
];
/** OpenBLAS's few entry points the addon calls, in one shared library beside the prebuilt addons. */
export const PREBUILD_BLAS = "libjointly_openblas.so";
// Outside prebuilds/, which is shipped.
const PREBUILD_STAMP = join(ROOT, "build", "native", "prebuild.stamp");

/** Warnings on, and the float semantics the kernels' bit-identity depends on. */
const COMMON_FLAGS = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fPIC", "-shared", "-std=c11", "-Wall", "-Wextra", "-Wno-unused-parameter"];
/**
 * -ffp-contract=off and no -ffast-math: the Adam/SGD loops must round each operation to float32 as
 * tfjs's ops do (bit-identical updates). -march=native: the addon is built on the machine that runs it.
 */
const FLAGS = ["-O3", "-march=native", ...COMMON_FLAGS.slice(1)];

/** The C sources of the addon (every native/*.c, in name order) and the headers they share. */
export function nativeSources() {
  const names = readdirSync(NATIVE_DIR).sort();
  return {
    sources: names.filter((n) => n.endsWith(".c")).map((n) => join(NATIVE_DIR, n)),
    headers: names.filter((n) => n.endsWith(".h")).map((n) => join(NATIVE_DIR, n)),
  };
}

/** Where Node's own headers may be: $JOINTLY_NODE_INCLUDE if set (e.g. for a Node installed without them), else <execPath>/../include/node and /usr/include/node. */
function nodeIncludeCandidates() {
  const env = process.env.JOINTLY_NODE_INCLUDE;
  return env ? [env] : [resolve(dirname(process.execPath), "..", "include", "node"), "/usr/include/node"];
}

/**
 * The directory holding node_api.h: the running Node's own (see {@link nodeIncludeCandidates}),
 * else the node-api-headers package's; undefined when none exists.
 */
export function nodeApiInclude() {
  for (const dir of nodeIncludeCandidates()) {
    if (existsSync(join(dir, "node_api.h"))) return dir;
  }
  try {
    const pkg = createRequire(import.meta.url).resolve("node-api-headers/package.json");
    const dir = join(dirname(pkg), "include");
    if (existsSync(join(dir, "node_api.h"))) return dir;
  } catch {
    // not installed: the caller reports it
  }
  return undefined;
}

const noHeaders = () => `no Node-API headers (no node_api.h in ${nodeIncludeCandidates().join(", ")} or the node-api-headers package)`;

/** @param {string} cmd */
function compilerVersion(cmd) {
  const r = spawnSync(cmd, ["--version"], { encoding: "utf8" });
  return r.status === 0 ? (r.stdout.split("\n")[0] ?? "") : undefined;
}

/** The C compiler to use ($CC, else cc) and its version line; throws when there is none. */
function compiler() {
  const cc = process.env.CC || "cc";
  const version = compilerVersion(cc);
  if (version === undefined) throw new Error(`no C compiler: \`${cc} --version\` failed (install gcc, or set CC)`);
  return { cc, version };
}

/**
 * Where the compiler finds a library file (e.g. libopenblas.so), or undefined. gcc and clang print
 * the bare name back when the file is not on their search path.
 * @param {string} cc @param {string} file
 */
function libraryPath(cc, file) {
  const r = spawnSync(cc, [`-print-file-name=${file}`], { encoding: "utf8" });
  const path = r.status === 0 ? r.stdout.trim() : "";
  return path !== "" && path !== file && existsSync(path) ? path : undefined;
}

/** A hash of every source and header (by name and content) and of `extra`, so editing any of them rebuilds. @param {unknown} extra */
function buildKey(extra) {
  const { sources, headers } = nativeSources();
  const hash = createHash("sha256");
  for (const file of [...sources, ...headers]) hash.update(file.slice(NATIVE_DIR.length)).update("\0").update(readFileSync(file)).update("\0");
  return hash.update(JSON.stringify(extra)).digest("hex");
}

/** Runs the compiler; throws with the last lines of its output when it fails. @param {string} cc @param {string[]} argv @param {string} output */
function compile(cc, argv, output) {
  const res = spawnSync(cc, argv, { encoding: "utf8" });
  if (res.status !== 0) {
    rmSync(output, { force: true });
    const msg = `${res.stderr ?? ""}${res.stdout ?? ""}`.trim().split("\n").slice(-12).join("\n");
    throw new Error(`${cc} failed (exit ${res.status ?? res.error?.message}):\n${msg}`);
  }
}

/**
 * Loads an addon in a separate `node` process (a missing shared library or an illegal instruction
 * shows there, not in the caller) and returns its BLAS description; throws with the first line of
 * the error when it does not load.
 * @param {string} file
 */
export function checkAddon(file) {
  const code = `const m = require(${JSON.stringify(file)}); if (typeof m.gemm !== "function") { console.error("no gemm function"); process.exit(3); } console.log(m.info().blasConfig)`;
  const check = spawnSync(process.execPath, ["-e", code], { encoding: "utf8", env: { ...process.env, OPENBLAS_NUM_THREADS: "1" } });
  if (check.status !== 0) {
    const why = (check.stderr || check.stdout || `exit ${check.status ?? check.signal}`).trim().split("\n").find((l) => /error|not|cannot/i.test(l)) ?? (check.stderr || check.stdout).trim().split("\n")[0];
    throw new Error(`${file} does not load: ${(why ?? `exit ${check.status ?? check.signal}`).replace(/^Error: /, "").replace(`${file}: `, "")}`);
  }
  return check.stdout.trim();
}

/**
 * Builds the addon for this machine into build/native/jointly_native.node unless an up-to-date
 * build exists. Returns what happened; throws with the reason (no compiler, no headers, no
 * OpenBLAS, compiler errors, the library not loading) when it cannot build.
 * @param {{force?: boolean}} [opts]
 * @returns {{action: "ok" | "built", detail: string}}
 */
export function buildNative(opts = {}) {
  const { cc, version } = compiler();
  const include = nodeApiInclude();
  if (include === undefined) throw new Error(noHeaders());
  const { sources } = nativeSources();
  if (sources.length === 0) throw new Error(`no C sources in ${NATIVE_DIR}`);
  if (libraryPath(cc, "libopenblas.so") === undefined && libraryPath(cc, "libopenblas.a") === undefined) {
    throw new Error(`no OpenBLAS: ${cc} finds no libopenblas.so (install libopenblas-dev)`);
  }
  const argv = [...FLAGS, "-DNODE_GYP_MODULE_NAME=jointly_native", `-I${include}`, `-I${NATIVE_DIR}`, ...sources, "-o", TMP_OUTPUT, "-lopenblas", "-lm"];
  const key = buildKey([cc, version, argv, process.arch]);
  if (!opts.force && existsSync(NATIVE_OUTPUT) && existsSync(STAMP) && readFileSync(STAMP, "utf8") === key) {
    return { action: "ok", detail: "build/native/jointly_native.node up to date" };
  }
  mkdirSync(dirname(NATIVE_OUTPUT), { recursive: true });
  compile(cc, argv, TMP_OUTPUT);
  // Load it in a separate process before it replaces a working build (a missing libopenblas.so.0 shows here).
  let blas;
  try {
    blas = checkAddon(TMP_OUTPUT);
  } catch (err) {
    rmSync(TMP_OUTPUT, { force: true });
    throw new Error(`the built addon does not load: ${err instanceof Error ? err.message.replace(`${TMP_OUTPUT} does not load: `, "") : String(err)}`);
  }
  renameSync(TMP_OUTPUT, NATIVE_OUTPUT);
  writeFileSync(STAMP, key);
  return { action: "built", detail: `${cc} (${version}) with ${blas}` };
}

/** The static OpenBLAS to link into the prebuilds: $OPENBLAS_STATIC, else the compiler's libopenblas.a. @param {string} cc */
function staticOpenblas(cc) {
  const env = process.env.OPENBLAS_STATIC;
  if (env) {
    if (!existsSync(env)) throw new Error(`OPENBLAS_STATIC=${env} does not exist`);
    return env;
  }
  const found = libraryPath(cc, "libopenblas.a");
  if (found === undefined) throw new Error(`no static OpenBLAS: ${cc} finds no libopenblas.a (install libopenblas-dev, or set OPENBLAS_STATIC)`);
  return resolve(found);
}

/** Shared libraries a prebuild may need: glibc's, present on every Linux it can run on. */
const SYSTEM_LIBS = /^(libc|libm|libpthread|libdl|librt|ld-linux-x86-64)\.so/;

/** The DT_NEEDED entries of a shared object (readelf -d), or undefined without readelf. @param {string} file */
function neededLibraries(file) {
  const r = spawnSync("readelf", ["-d", file], { encoding: "utf8" });
  if (r.status !== 0) return undefined;
  return [...r.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1] ?? "");
}

/**
 * Builds the binaries shipped in the package into prebuilds/linux-x64/: OpenBLAS's static library
 * (Debian's is the pthread build with DYNAMIC_ARCH, so it picks its kernels for the CPU at run time)
 * reduced to the four entry points the addon calls, as {@link PREBUILD_BLAS}, and one addon per
 * entry of {@link PREBUILDS} linked against it through an $ORIGIN rpath (one copy of OpenBLAS, 25 MB,
 * instead of one per addon). Flags are portable (-march=x86-64 or x86-64-v3, -mtune=generic) with the
 * same float semantics as {@link buildNative}. Checks that nothing but glibc is needed and that each
 * addon loads, and writes manifest.json (files, CPU flags, sizes), which the loader and the install
 * step read. Skips when the sources, flags and compiler are unchanged unless `force`.
 * @param {{force?: boolean}} [opts]
 * @returns {{action: "ok" | "built", detail: string, files: {file: string, bytes: number}[]}}
 */
export function buildPrebuilt(opts = {}) {
  if (process.platform !== "linux" || process.arch !== "x64") throw new Error(`prebuilds are made on linux-x64 only, not ${process.platform}-${process.arch}`);
  const { cc, version } = compiler();
  const include = nodeApiInclude();
  if (include === undefined) throw new Error(noHeaders());
  const { sources } = nativeSources();
  const blasArchive = staticOpenblas(cc);
  const blasOut = join(PREBUILD_DIR, PREBUILD_BLAS);
  const map = join(PREBUILD_DIR, "openblas.map");
  const entries = ["cblas_sgemm", "openblas_set_num_threads", "openblas_get_num_threads", "openblas_get_config"];
  const blasArgv = ["-shared", "-fPIC", "-s", `-Wl,-soname,${PREBUILD_BLAS}`, `-Wl,--version-script=${map}`, "-Wl,--no-undefined", ...entries.map((e) => `-Wl,-u,${e}`), blasArchive, "-lpthread", "-lm", "-o", blasOut];
  const addonArgv = PREBUILDS.map((p) => [
    ...COMMON_FLAGS, `-march=${p.march}`, "-mtune=generic", "-Wno-psabi", "-s", "-DNODE_GYP_MODULE_NAME=jointly_native", `-I${include}`, `-I${NATIVE_DIR}`, ...sources,
    "-o", join(PREBUILD_DIR, p.file), `-L${PREBUILD_DIR}`, `-l:${PREBUILD_BLAS}`, "-Wl,-rpath,$ORIGIN", "-lm",
  ]);
  const key = buildKey([cc, version, blasArgv, addonArgv, statSync(blasArchive).size]);
  const manifestFile = join(PREBUILD_DIR, "manifest.json");
  const outputs = [PREBUILD_BLAS, ...PREBUILDS.map((p) => p.file)].map((f) => join(PREBUILD_DIR, f));
  const sizes = () => outputs.map((f) => ({ file: f.slice(ROOT.length + 1), bytes: statSync(f).size }));
  if (!opts.force && [...outputs, manifestFile].every((f) => existsSync(f)) && existsSync(PREBUILD_STAMP) && readFileSync(PREBUILD_STAMP, "utf8") === key) {
    return { action: "ok", detail: "prebuilds/linux-x64 up to date", files: sizes() };
  }
  rmSync(PREBUILD_DIR, { recursive: true, force: true });
  mkdirSync(PREBUILD_DIR, { recursive: true });
  writeFileSync(map, `{ global: ${entries.join("; ")}; local: *; };\n`);
  compile(cc, blasArgv, blasOut);
  rmSync(map);
  for (const argv of addonArgv) compile(cc, argv, argv[argv.indexOf("-o") + 1] ?? "");
  const blas = [];
  for (const f of outputs) {
    const needed = neededLibraries(f);
    if (needed === undefined) throw new Error("readelf not found (binutils): cannot check what the prebuilds link against");
    const foreign = needed.filter((n) => n !== PREBUILD_BLAS && !SYSTEM_LIBS.test(n));
    // libgfortran would come from the LAPACK half of the archive; the four BLAS entry points never need it.
    if (foreign.length > 0) throw new Error(`${f} needs ${foreign.join(", ")}, which a consumer's machine may lack: link them statically or drop them`);
  }
  const thisCpu = cpuFlags();
  for (const p of PREBUILDS) if (p.cpuFlags.every((f) => thisCpu.has(f))) blas.push(checkAddon(join(PREBUILD_DIR, p.file)));
  const manifest = {
    platform: "linux-x64",
    note: "jointly's native kernels; the loader takes the first addon whose cpuFlags the CPU has",
    blas: blas[0] ?? "unchecked",
    addons: PREBUILDS.map((p) => ({ file: p.file, march: p.march, cpuFlags: p.cpuFlags })),
  };
  writeFileSync(manifestFile, `${JSON.stringify(manifest, null, 2)}\n`);
  mkdirSync(dirname(PREBUILD_STAMP), { recursive: true });
  writeFileSync(PREBUILD_STAMP, key);
  return { action: "built", detail: `${cc} (${version}), ${blasArchive} (${blas[0] ?? "not loaded on this CPU"})`, files: sizes() };
}

/** The CPU's feature flags (the first "flags" line of /proc/cpuinfo); empty where there is none. */
export function cpuFlags() {
  try {
    const line = readFileSync("/proc/cpuinfo", "utf8").split("\n").find((l) => l.startsWith("flags"));
    return new Set((line ?? "").replace(/^flags\s*:/, "").trim().split(/\s+/));
  } catch {
    return new Set();
  }
}

/**
 * The prebuilt addon for this machine: prebuilds/<platform>-<arch>/manifest.json's first addon whose
 * CPU flags this CPU has. Returns the file, or the reason there is none.
 * @returns {{file: string} | {reason: string}}
 */
export function findPrebuild() {
  const dir = join(ROOT, "prebuilds", `${process.platform}-${process.arch}`);
  const manifestFile = join(dir, "manifest.json");
  if (!existsSync(manifestFile)) return { reason: `no prebuild for ${process.platform}-${process.arch}` };
  /** @type {{addons: {file: string, cpuFlags: string[]}[]}} */
  const manifest = JSON.parse(readFileSync(manifestFile, "utf8"));
  const flags = cpuFlags();
  const pick = manifest.addons.find((a) => a.cpuFlags.every((f) => flags.has(f)));
  if (pick === undefined) return { reason: `no prebuild in ${dir} matches this CPU` };
  return { file: join(dir, pick.file) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const force = process.argv.includes("--force");
  try {
    if (process.argv.includes("--prebuilt")) {
      const r = buildPrebuilt({ force });
      const files = r.files.map((f) => `${f.file} ${(f.bytes / 1e6).toFixed(2)} MB`).join(", ");
      console.log(`${r.action === "ok" ? "✓" : "+"} native prebuilds: ${r.detail}; ${files}`);
    } else {
      const r = buildNative({ force });
      console.log(`${r.action === "ok" ? "✓" : "+"} native kernels: ${r.detail}`);
    }
  } catch (err) {
    console.error(`✗ native kernels: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  }
}
