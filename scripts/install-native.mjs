#!/usr/bin/env node
// @ts-check
/**
 * The package's install step (`"install": "node scripts/install-native.mjs"`): makes jointly's
 * native kernels available in a consumer's install (and in the checkout), choosing in this order:
 *
 *   1. the prebuild shipped in the package for this platform and CPU (prebuilds/linux-x64/), if it
 *      loads in a child `node` process: nothing to build;
 *   2. else, with a C compiler, Node-API headers and OpenBLAS: a build from the shipped native/
 *      sources into build/native/ (scripts/build-native.mjs's buildNative);
 *   3. else nothing, and the one-line reason the pure-wasm kernels will be used.
 *
 * Never fails the install (exit 0 whatever happens; jointly works without the addon, only slower)
 * and prints one line. `JOINTLY_NATIVE=0` skips it.
 */
/** What the install step decided, as the one line it prints. */
async function installNative() {
  const env = process.env.JOINTLY_NATIVE;
  if (env === "0" || env === "false") return `jointly-tfjs: native kernels skipped (JOINTLY_NATIVE=${env})`;
  // Imported here, so that even a broken or missing build script leaves the install to go on.
  const { NATIVE_OUTPUT, buildNative, checkAddon, findPrebuild } = await import("./build-native.mjs");
  const pre = findPrebuild();
  let prebuildProblem;
  if ("file" in pre) {
    try {
      const blas = checkAddon(pre.file);
      return `jointly-tfjs: native kernels from the prebuild ${pre.file.split("/").slice(-2).join("/")} (${blas.split(" ").slice(0, 2).join(" ")})`;
    } catch (err) {
      prebuildProblem = err instanceof Error ? err.message : String(err);
    }
  } else {
    prebuildProblem = pre.reason;
  }
  try {
    const r = buildNative();
    return `jointly-tfjs: native kernels ${r.action === "built" ? "built from source" : "already built"} in build/native (${r.detail}; ${prebuildProblem})`;
  } catch (err) {
    const why = (err instanceof Error ? err.message : String(err)).split("\n")[0];
    try {
      // An earlier build that still loads is what the loader will take.
      checkAddon(NATIVE_OUTPUT);
      return `jointly-tfjs: native kernels from an earlier build in build/native (${prebuildProblem}; cannot rebuild: ${why})`;
    } catch {
      // none, or a broken one: no native kernels
    }
    return `jointly-tfjs: native kernels unavailable, the pure-wasm kernels will be used (${prebuildProblem}; cannot build from source: ${why})`;
  }
}

try {
  console.log(await installNative());
} catch (err) {
  // Whatever went wrong (an unreadable manifest, a file system error), the install goes on.
  console.log(`jointly-tfjs: native kernels unavailable, the pure-wasm kernels will be used (${(err instanceof Error ? err.message : String(err)).split("\n")[0]})`);
}
process.exitCode = 0;
