import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import { initBackend, describeBackend, BACKEND_ENV } from "../src/backend/init.js";
import { nativeKernels } from "../src/backend/native.js";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const quiet = { report: false } as const;

/** Run a snippet in a fresh Node process (backend choice is per process) and return its stdout. */
function inFreshProcess(code: string, env: Record<string, string> = {}) {
  const res = spawnSync(process.execPath, ["--import", "tsx", "--input-type=module", "-e", code], {
    cwd: ROOT,
    env: { ...process.env, ...env },
    encoding: "utf8",
  });
  return { status: res.status, stdout: res.stdout, stderr: res.stderr };
}

test("auto: skips the native backends that are not installed here and settles on wasm", () => {
  const r = inFreshProcess(
    `import { initBackend } from "./src/backend/init.ts"; const i = await initBackend({ report: false }); console.log(JSON.stringify(i));`,
    { [BACKEND_ENV]: "" },
  );
  assert.equal(r.status, 0, r.stderr);
  const info = JSON.parse(r.stdout.trim().split("\n").pop() as string);
  assert.equal(info.name, "wasm");
  assert.equal(info.native, false);
  assert.deepEqual(info.skipped.map((s: { name: string }) => s.name), ["tensorflow-gpu", "tensorflow"]);
  for (const s of info.skipped) assert.match(s.reason, /Cannot find (package|module)/);
});

test("the environment variable forces a backend, and an unknown value is a clear error", () => {
  const ok = inFreshProcess(
    `import { initBackend } from "./src/backend/init.ts"; import * as tf from "@tensorflow/tfjs"; const i = await initBackend({ report: false }); console.log(i.name, i.reason, tf.getBackend());`,
    { [BACKEND_ENV]: "cpu" },
  );
  assert.equal(ok.status, 0, ok.stderr);
  assert.equal(ok.stdout.trim(), "cpu env cpu");
  const bad = inFreshProcess(`import { initBackend } from "./src/backend/init.ts"; await initBackend({ report: false });`, { [BACKEND_ENV]: "tpu" });
  assert.notEqual(bad.status, 0);
  assert.match(bad.stderr, /JOINTLY_BACKEND must be one of tensorflow-gpu, tensorflow, wasm, cpu or "auto", but got "tpu"/);
});

test("a backend module that is missing or throws on load is skipped with a one-line reason", async () => {
  const info = await initBackend({
    ...quiet,
    backend: "auto",
    loaders: {
      "tensorflow-gpu": async () => {
        throw new Error("libcudart.so.11.0: cannot open shared object file\nsecond line of a long trace");
      },
      tensorflow: async () => {
        await import("jointly-no-such-module-" + "x");
      },
      wasm: async () => {
        throw new Error("wasm disabled for this test");
      },
    },
  });
  assert.equal(info.name, "cpu");
  assert.equal(tf.getBackend(), "cpu");
  assert.deepEqual(info.skipped, [
    { name: "tensorflow-gpu", reason: "libcudart.so.11.0: cannot open shared object file" },
    { name: "tensorflow", reason: info.skipped[1]?.reason },
    { name: "wasm", reason: "wasm disabled for this test" },
  ]);
  assert.match(info.skipped[1]?.reason ?? "", /Cannot find (package|module) 'jointly-no-such-module-x'/);
  const line = describeBackend(info);
  assert.match(line, /backend "cpu" \(not native/);
  assert.match(line, /skipped tensorflow-gpu \(libcudart/);
});

test("a loader that loads but registers no backend is skipped, not trusted", async () => {
  const info = await initBackend({ ...quiet, loaders: { "tensorflow-gpu": async () => {}, tensorflow: async () => {} } });
  // "tensorflow" is not registered in this process, so both native candidates fall through.
  assert.equal(info.skipped[0]?.reason, 'module loaded but registered no "tensorflow" backend');
  assert.equal(info.name, "wasm");
  assert.equal(tf.getBackend(), "wasm");
});

test("forcing a backend that cannot load is an error naming it, not a silent fallback", async () => {
  await assert.rejects(
    initBackend({ ...quiet, backend: "tensorflow-gpu" }),
    /The backend "tensorflow-gpu" was requested \(backend option\) but did not load: Cannot find/,
  );
});

test("the report is printed once per choice, with name, kind and versions", async () => {
  const lines: string[] = [];
  const info = await initBackend({ backend: "cpu", log: (l) => lines.push(l) });
  assert.equal(lines.length, 1);
  assert.match(lines[0] as string, new RegExp(`backend "cpu" \\(not native; tfjs ${tf.version_core}`));
  assert.equal(info.reason, "option");
  const again = await initBackend({ backend: "cpu", log: (l) => lines.push(l) });
  assert.equal(again, info);
  assert.equal(lines.length, 1);
});

test("on wasm the fast matmul, identity, native and missing segment-sum kernels are registered; JOINTLY_NATIVE=0 or a missing addon keeps the wasm paths; JOINTLY_FAST_PATHS=0 leaves the stock matmul (the missing kernel stays)", () => {
  const code = `import { initBackend } from "./src/backend/init.ts"; import * as tf from "@tensorflow/tfjs";
    const stock = (await import("@tensorflow/tfjs-backend-wasm"), tf.getKernel("BatchMatMul", "wasm").kernelFunc);
    const i = await initBackend({ report: false, backend: "wasm" });
    console.log(JSON.stringify({ fast: i.fastPaths, native: i.nativeKernels, replaced: tf.getKernel("BatchMatMul", "wasm").kernelFunc !== stock, segmentSum: tf.getKernel("UnsortedSegmentSum", "wasm") !== undefined }));`;
  // The test command builds the native addon first (scripts/setup.mjs), so it must be in use here.
  const on = inFreshProcess(code, { [BACKEND_ENV]: "" });
  assert.equal(on.status, 0, on.stderr);
  const onOut = JSON.parse(on.stdout.trim());
  assert.match(onOut.native, /^native kernels on \(OpenBLAS [\d.]+, 1 BLAS thread, built from source\)$/);
  assert.deepEqual({ ...onOut, native: undefined }, { fast: ["wasm-matmul", "wasm-fast-kernels", "native-blas", "wasm-segment-sum", "wasm-kernels"], native: undefined, replaced: true, segmentSum: true });
  // Without the addon the wasm fast paths stay, and the report says why the native kernels are off.
  const noNative = inFreshProcess(code, { [BACKEND_ENV]: "", JOINTLY_NATIVE: "0" });
  assert.equal(noNative.status, 0, noNative.stderr);
  assert.deepEqual(JSON.parse(noNative.stdout.trim()), {
    fast: ["wasm-matmul", "wasm-fast-kernels", "wasm-segment-sum", "wasm-kernels"],
    native: "native kernels off: switched off (JOINTLY_NATIVE=0)",
    replaced: true,
    segmentSum: true,
  });
  const missing = inFreshProcess(code, { [BACKEND_ENV]: "", JOINTLY_NATIVE_PATH: "/nonexistent/jointly_native.node" });
  assert.equal(missing.status, 0, missing.stderr);
  assert.match(JSON.parse(missing.stdout.trim()).native, /native kernels off: not built \(\/nonexistent\/jointly_native\.node does not exist; run `npm run native`\)/);
  const off = inFreshProcess(code, { [BACKEND_ENV]: "", JOINTLY_FAST_PATHS: "0" });
  assert.equal(off.status, 0, off.stderr);
  // The missing kernel and the fixes ("wasm-kernels") stay: they are needed for correctness (gather
  // gradients, max-pool gradients), not for speed.
  assert.deepEqual(JSON.parse(off.stdout.trim()), { fast: ["wasm-segment-sum", "wasm-kernels"], replaced: false, segmentSum: true });
});

test("the addon switched off before initBackend is used again once switched back on", { skip: nativeKernels().kernels ? false : "native addon not built" }, () => {
  const r = inFreshProcess(
    `import * as tf from "@tensorflow/tfjs";
     import { initBackend } from "./src/backend/init.ts";
     import { nativeKernels, setNativeKernelsEnabled } from "./src/backend/native.ts";
     setNativeKernelsEnabled(false);
     await initBackend({ backend: "wasm", report: false });
     setNativeKernelsEnabled(true);
     const k = nativeKernels().kernels;
     let calls = 0;
     const gemm = k.gemm;
     k.gemm = (...a) => { calls++; return gemm(...a); };
     tf.tidy(() => { tf.matMul(tf.ones([64, 64]), tf.ones([64, 64])).dataSync(); });
     console.log(calls);`,
  );
  assert.equal(r.status, 0, r.stderr.slice(-1500));
  assert.equal(r.stdout.trim().split("\n").pop(), "1", "sgemm calls after switching the addon back on");
});

test("a bad JOINTLY_NATIVE_THREADS is an error naming the variable and the value, not a fall to the cpu backend", () => {
  for (const value of ["abc", "0", "1.5", "-2"]) {
    const r = inFreshProcess(
      `import { initBackend } from "./src/backend/init.ts";
       try { const i = await initBackend({ report: false }); console.log("chose", i.name); } catch (err) { console.log("error:", err.message); }`,
      { [BACKEND_ENV]: "", JOINTLY_NATIVE_THREADS: value },
    );
    assert.equal(r.status, 0, r.stderr.slice(-1500));
    assert.equal(r.stdout.trim(), `error: JOINTLY_NATIVE_THREADS must be an integer >= 1 (the number of BLAS threads), but got "${value}"; unset it for 1 thread.`);
  }
  const ok = inFreshProcess(`import { initBackend } from "./src/backend/init.ts"; const i = await initBackend({ report: false }); console.log(i.name, i.nativeKernels);`, { [BACKEND_ENV]: "", JOINTLY_NATIVE_THREADS: "2" });
  assert.equal(ok.status, 0, ok.stderr.slice(-1500));
  assert.match(ok.stdout.trim(), /^wasm native kernels on \(OpenBLAS [\d.]+, 2 BLAS threads, /);
});

test("with a tfjs-backend-wasm version other than the supported one, jointly steps aside: no addon, the stock wasm kernels, the reason in nativeKernels() and the backend line", () => {
  const r = inFreshProcess(
    `import * as tf from "@tensorflow/tfjs";
     import { initBackend, describeBackend } from "./src/backend/init.ts";
     import { nativeKernels } from "./src/backend/native.ts";
     import { setWasmVersionForTesting } from "./src/backend/wasm-internals.ts";
     import { activeWasm } from "./src/optimizers/wasm-update.ts";
     setWasmVersionForTesting("4.21.0");
     const stock = (await import("@tensorflow/tfjs-backend-wasm"), tf.getKernel("BatchMatMul", "wasm").kernelFunc);
     const i = await initBackend({ report: false, backend: "wasm" });
     const sum = tf.tidy(() => tf.matMul(tf.ones([3, 4]), tf.ones([4, 2])).sum().arraySync());
     console.log(JSON.stringify({ fast: i.fastPaths, line: describeBackend(i), reason: nativeKernels().reason, loaded: nativeKernels().kernels !== undefined, stock: tf.getKernel("BatchMatMul", "wasm").kernelFunc === stock, fusedOnHeap: activeWasm() !== undefined, sum }));`,
    { [BACKEND_ENV]: "" },
  );
  assert.equal(r.status, 0, r.stderr.slice(-1500));
  const out = JSON.parse(r.stdout.trim().split("\n").pop() as string);
  const why = "@tensorflow/tfjs-backend-wasm 4.21.0 is installed, and jointly's wasm kernels work on the internals of 4.22.0 only (install @tensorflow/tfjs-backend-wasm@4.22.0 for them)";
  assert.deepEqual(out, {
    fast: [],
    line: out.line,
    reason: why,
    loaded: false,
    stock: true,
    fusedOnHeap: false,
    sum: 24,
  });
  assert.ok(out.line.includes(`; jointly's wasm kernels and native kernels off: ${why})`), out.line);
});

test("an uncaught error or unhandled rejection on wasm prints Node's usual message and exits with 1 (no minified tfjs-wasm source, no exit code 7)", () => {
  for (const [how, message] of [
    ["setTimeout(() => { throw new Error('jointly test: thrown later'); }, 0);", "jointly test: thrown later"],
    ["Promise.reject(new Error('jointly test: rejected'));", "jointly test: rejected"],
  ] as const) {
    const r = inFreshProcess(`import { initBackend } from "./src/backend/init.ts"; await initBackend({ report: false, backend: "wasm" }); ${how}`);
    assert.equal(r.status, 1, r.stderr.slice(0, 500));
    assert.ok(r.stderr.length < 2000, `stderr is ${r.stderr.length} characters: ${r.stderr.slice(0, 300)}`);
    assert.ok(r.stderr.includes(`Error: ${message}`), r.stderr);
  }
});
