// The package as a user gets it: packed, from a git URL and from a folder, each installed into a
// fresh temporary project of its own (outside the repository), where a small two-head training
// script runs as ESM TypeScript (tsx), ESM JavaScript, CommonJS (require) and CommonJS TypeScript
// (.cts through tsx), is type-checked by the project's own tsc, and reports its backend line and
// native kernels. The scripts are test/fixtures/consumer/. npm's cache is reused (--prefer-offline),
// so a warm run is mostly the git install's clone build; the first run fetches from the registry.
//
// npm 11 runs a dependency's install scripts (and a git or folder dependency's `prepare`) only when
// the project's package.json allows them (`allowScripts`, keyed by the spec it was installed from):
// each consumer here allows jointly-tfjs, as the README tells users to.
import { test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync, spawn, type ExecFileSyncOptions } from "node:child_process";
import { createHash } from "node:crypto";
import { createServer, type Server } from "node:http";
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";

const REPO = new URL("..", import.meta.url).pathname.replace(/\/$/, "");
const FIXTURES = join(REPO, "test", "fixtures", "consumer");
const OWN = JSON.parse(readFileSync(join(REPO, "package.json"), "utf8")) as {
  name: string;
  version: string;
  engines: { node: string };
  peerDependencies: Record<string, string>;
  devDependencies: Record<string, string>;
};
const NPM_FLAGS = ["--prefer-offline", "--no-audit", "--no-fund"];
// The consumer's own tools, at the versions the checkout uses.
const DEV_TOOLS = { typescript: OWN.devDependencies.typescript!, tsx: OWN.devDependencies.tsx!, "@types/node": OWN.devDependencies["@types/node"]! };
const SCRIPTS = [
  { kind: "esm-ts", argv: ["node_modules/.bin/tsx", "train.ts"] },
  { kind: "esm-js", argv: ["train.mjs"] },
  { kind: "cjs", argv: ["train.cjs"] },
  { kind: "cts", argv: ["node_modules/.bin/tsx", "train.cts"] },
] as const;

/** The environment of the consumer's commands: none of this checkout's jointly or npm lifecycle settings. */
function consumerEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith("JOINTLY_") && !k.startsWith("npm_") && k !== "NODE_OPTIONS" && k !== "INIT_CWD") env[k] = v;
  return env;
}

function run(file: string, args: string[], cwd: string, options: ExecFileSyncOptions = {}): string {
  try {
    return execFileSync(file, args, { cwd, env: consumerEnv(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], maxBuffer: 64 << 20, ...options }) as string;
  } catch (e) {
    const err = e as { status?: number; stdout?: string; stderr?: string };
    throw new Error(`${file} ${args.join(" ")} (in ${cwd}) exited ${err.status}:\n${String(err.stdout ?? "").slice(-3000)}\n${String(err.stderr ?? "").slice(-3000)}`);
  }
}

/** A fresh project depending on jointly-tfjs by `spec` and on TensorFlow.js (the peer dependencies), scripts allowed for jointly-tfjs only. */
function makeProject(dir: string, spec: string, devDependencies: Record<string, string>): void {
  mkdirSync(dir, { recursive: true });
  for (const f of readdirSync(FIXTURES)) cpSync(join(FIXTURES, f), join(dir, f));
  const pkg = {
    name: `consumer-${dir.split("/").pop()}`,
    private: true,
    type: "module",
    dependencies: { [OWN.name]: spec, "@tensorflow/tfjs": OWN.peerDependencies["@tensorflow/tfjs"], "@tensorflow/tfjs-backend-wasm": OWN.peerDependencies["@tensorflow/tfjs-backend-wasm"] },
    devDependencies,
    allowScripts: { [spec]: true },
  };
  writeFileSync(join(dir, "package.json"), `${JSON.stringify(pkg, null, 2)}\n`);
}

function duBytes(path: string): number {
  const s = statSync(path, { throwIfNoEntry: false });
  if (!s) return 0;
  if (!s.isDirectory()) return s.size;
  return readdirSync(path).reduce((n, e) => n + duBytes(join(path, e)), 0);
}

/** Every installed package's package.json under node_modules (nested ones too). */
function installedPackages(nodeModules: string): { name: string; version: string; engines?: { node?: string }; dir: string }[] {
  const out: { name: string; version: string; engines?: { node?: string }; dir: string }[] = [];
  const visit = (dir: string): void => {
    if (!existsSync(dir)) return;
    for (const e of readdirSync(dir)) {
      if (e.startsWith(".")) continue;
      if (e.startsWith("@")) {
        for (const s of readdirSync(join(dir, e))) visitPackage(join(dir, e, s));
      } else visitPackage(join(dir, e));
    }
  };
  const visitPackage = (dir: string): void => {
    const file = join(dir, "package.json");
    if (!existsSync(file)) return;
    const p = JSON.parse(readFileSync(file, "utf8")) as { name: string; version: string; engines?: { node?: string } };
    out.push({ ...p, dir });
    visit(join(dir, "node_modules"));
  };
  visit(nodeModules);
  return out;
}

/** semver as npm itself resolves engines (npm's own copy: the project does not depend on semver). */
function npmSemver(): { satisfies(v: string, range: string): boolean } {
  const root = execFileSync("npm", ["root", "-g"], { encoding: "utf8" }).trim();
  return createRequire(join(root, "npm", "package.json"))("semver") as { satisfies(v: string, range: string): boolean };
}

interface ScriptReport {
  kind: string;
  backend: string;
  line: string;
  native: boolean;
  nativeSource: string | null;
  nativeReason: string | null;
  first: number;
  last: number;
}

/** Runs the four training scripts and both type checks in a consumer project and checks what they report. */
function checkConsumer(dir: string, label: string): string[] {
  const installed = join(dir, "node_modules", OWN.name);
  assert.ok(existsSync(join(installed, "dist", "index.js")), `${label}: dist/index.js installed`);
  // A folder install is a real copy with its own dependencies (not a symlink into the checkout).
  assert.equal(lstatSync(installed).isSymbolicLink(), false, `${label}: node_modules/${OWN.name} is a symlink`);
  const hasPrebuild = existsSync(join(installed, "prebuilds", "linux-x64", "manifest.json"));
  const hasBuild = existsSync(join(installed, "build", "native", "jointly_native.node"));
  const reports: ScriptReport[] = [];
  for (const s of SCRIPTS) {
    const out = run(process.execPath, [...s.argv], dir);
    const line = out.trim().split("\n").filter((l) => l.startsWith("{")).pop();
    assert.ok(line, `${label} ${s.kind}: no report in ${out}`);
    const r = JSON.parse(line) as ScriptReport;
    assert.equal(r.kind, s.kind);
    assert.equal(r.backend, "wasm", `${label} ${s.kind}: ${r.line}`);
    assert.match(r.line, /^jointly: TensorFlow\.js backend "wasm" \(not native; tfjs 4\.22\.0, backend package 4\.22\.0; /, `${label} ${s.kind}`);
    assert.ok(Number.isFinite(r.first) && r.last < 0.5 * r.first, `${label} ${s.kind}: loss ${r.first} -> ${r.last} did not fall by half`);
    if (hasPrebuild || hasBuild) {
      assert.equal(r.native, true, `${label} ${s.kind}: native kernels off although ${hasPrebuild ? "a prebuild" : "a build"} is installed: ${r.nativeReason}`);
      assert.match(r.line, /native kernels on \(OpenBLAS/, `${label} ${s.kind}`);
    } else {
      assert.equal(r.native, false);
      assert.match(r.line, /native kernels off: /, `${label} ${s.kind}`);
    }
    reports.push(r);
  }
  run(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.json"], dir);
  run(process.execPath, ["node_modules/typescript/bin/tsc", "-p", "tsconfig.bundler.json"], dir);
  // One line per script for the test's diagnostic: native source and the loss's fall.
  return reports.map((r) => `${r.kind}: ${r.native ? `native ${r.nativeSource}` : `no native (${r.nativeReason})`}, loss ${r.first.toFixed(3)} -> ${r.last.toFixed(3)}`);
}

let packedTarball: string | undefined;
/** npm pack of the checkout (prepack: dist/ and the prebuilt addon) into a temporary folder, once per run of this file. */
function packOnce(): string {
  if (packedTarball !== undefined) return packedTarball;
  const packDir = mkdtempSync(join(tmpdir(), "jointly-pack-"));
  process.on("exit", () => rmSync(packDir, { recursive: true, force: true }));
  run("npm", ["pack", "--pack-destination", packDir, "--silent"], REPO);
  const tarball = join(packDir, `${OWN.name}-${OWN.version}.tgz`);
  assert.ok(existsSync(tarball), `npm pack wrote ${readdirSync(packDir).join(", ")}`);
  packedTarball = tarball;
  return tarball;
}

/** `cmd args` in `cwd` without blocking the event loop (the local registry answers in this process); rejects with its output on failure. */
function runAsync(file: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, env: consumerEnv(), stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => (code === 0 ? resolve(out) : reject(new Error(`${file} ${args.join(" ")} (in ${cwd}) exited ${code}:\n${out.slice(-4000)}`))));
  });
}

/**
 * A registry on loopback that serves jointly-tfjs's packument and the packed tarball, and passes every
 * other request to the configured upstream registry: the registry form of the install, without publishing.
 */
async function startRegistry(tarball: string, manifest: Record<string, unknown>, upstream: string): Promise<{ url: string; server: Server; served: string[] }> {
  const data = readFileSync(tarball);
  const integrity = `sha512-${createHash("sha512").update(data).digest("base64")}`;
  const shasum = createHash("sha1").update(data).digest("hex");
  const name = String(manifest.name);
  const version = String(manifest.version);
  const served: string[] = [];
  let base = "";
  const server = createServer((req, res) => {
    const path = req.url ?? "/";
    if (path === `/${name}`) {
      served.push("packument");
      const packument = { name, "dist-tags": { latest: version }, versions: { [version]: { ...manifest, _id: `${name}@${version}`, dist: { tarball: `${base}/${name}/-/${name}-${version}.tgz`, integrity, shasum } } } };
      res.writeHead(200, { "content-type": "application/json" });
      res.end(JSON.stringify(packument));
      return;
    }
    if (path === `/${name}/-/${name}-${version}.tgz`) {
      served.push("tarball");
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": data.length });
      res.end(data);
      return;
    }
    const accept = req.headers.accept;
    fetch(new URL(path.replace(/^\//, ""), upstream), { headers: accept ? { accept } : {} })
      .then(async (r) => {
        // fetch has decoded the body: send it without the upstream's encoding and length headers.
        const body = Buffer.from(await r.arrayBuffer());
        res.writeHead(r.status, { "content-type": r.headers.get("content-type") ?? "application/json", "content-length": body.length });
        res.end(body);
      })
      .catch((e: unknown) => {
        res.writeHead(502, { "content-type": "text/plain" });
        res.end(`upstream ${upstream} failed for ${path}: ${String(e)}`);
      });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error(`registry server address: ${JSON.stringify(address)}`);
  base = `http://127.0.0.1:${address.port}`;
  return { url: `${base}/`, server, served };
}

test("registry install: jointly-tfjs by name from a local registry (upstream for everything else)", { timeout: 600_000 }, async (t) => {
  const root = mkdtempSync(join(tmpdir(), "jointly-registry-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const tarball = packOnce();
  const manifest = JSON.parse(run("tar", ["-xzOf", tarball, "package/package.json"], root)) as Record<string, unknown>;
  const upstream = execFileSync("npm", ["config", "get", "registry"], { cwd: root, env: consumerEnv(), encoding: "utf8" }).trim().replace(/\/?$/, "/");
  const registry = await startRegistry(tarball, manifest, upstream);
  t.after(() => new Promise<void>((resolve) => registry.server.close(() => resolve())));

  const project = join(root, "registry");
  makeProject(project, OWN.version, DEV_TOOLS);
  // allowScripts for a registry package is its bare name (matched against the resolved tarball URL).
  const pkg = JSON.parse(readFileSync(join(project, "package.json"), "utf8")) as { allowScripts: Record<string, boolean> };
  pkg.allowScripts = { [OWN.name]: true };
  writeFileSync(join(project, "package.json"), JSON.stringify(pkg, null, 2));
  writeFileSync(join(project, ".npmrc"), `registry=${registry.url}\n`);
  await runAsync("npm", ["install", ...NPM_FLAGS], project);
  // The tarball itself may come from npm's cache (same integrity as the other tests' installs).
  assert.ok(registry.served.includes("packument"), `served: ${registry.served.join(", ")}`);
  const lock = JSON.parse(readFileSync(join(project, "package-lock.json"), "utf8")) as { packages: Record<string, { resolved?: string; version?: string }> };
  const entry = lock.packages[`node_modules/${OWN.name}`];
  assert.equal(entry?.version, OWN.version);
  // npm here omits registry URLs from lockfiles (omit-lockfile-registry-resolved); where it records one, it is ours.
  if (entry?.resolved !== undefined) assert.equal(entry.resolved, `${registry.url}${OWN.name}/-/${OWN.name}-${OWN.version}.tgz`);
  t.diagnostic(JSON.stringify(checkConsumer(project, "registry")));
});

test("consumer installs: packed tarball, git URL, folder (--install-links); ESM/CJS/TS scripts train, type-check, native kernels", { timeout: 900_000 }, (t) => {
  const root = mkdtempSync(join(tmpdir(), "jointly-consumer-"));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  const summary: Record<string, unknown> = {};

  // (a) npm pack (prepack: dist/ and the prebuilt addon), then a plain library install of the tarball.
  const tarball = packOnce();
  const files = run("tar", ["-tzf", tarball], root).split("\n").filter(Boolean);
  assert.ok(files.includes("package/dist/index.js") && files.includes("package/src/index.ts") && files.includes("package/native/jointly_native.h"), "dist, src and native shipped");
  assert.deepEqual(files.filter((f) => /^package\/(test|notebooks|bench|build|scratch)\/|\.ipynb$|\.tsbuildinfo$/.test(f)), [], "no tests, notebooks or build output");
  // Source maps point at files in the package.
  const map = JSON.parse(run("tar", ["-xzOf", tarball, "package/dist/train/model.js.map"], root)) as { sources: string[] };
  assert.deepEqual(map.sources, ["../../src/train/model.ts"]);
  assert.ok(files.includes("package/src/train/model.ts"));

  const packed = join(root, "tarball");
  const tarSpec = `file:${tarball}`;
  makeProject(packed, tarSpec, {});
  run("npm", ["install", ...NPM_FLAGS], packed);
  const plain = installedPackages(join(packed, "node_modules"));
  const names = new Set(plain.map((p) => p.name));
  for (const absent of ["tslab", "zeromq", "typescript", "bullmq", "ioredis"]) assert.equal(names.has(absent), false, `${absent} in a plain library install`);
  const flechettes = plain.filter((p) => p.name === "@uwdata/flechette").map((p) => p.version);
  assert.deepEqual(flechettes, ["2.6.0"], "one @uwdata/flechette, 2.6.0 (2.7.0 needs a package the registry lacks)");
  assert.deepEqual([...new Set(plain.filter((p) => p.name === "@tensorflow/tfjs").map((p) => p.version))], ["4.22.0"], "one TensorFlow.js");
  // engines: every runtime package admits the oldest Node jointly-tfjs says it supports.
  const semver = npmSemver();
  const oldest = OWN.engines.node.replace(/^>=\s*/, "").split(".").concat(["0", "0"]).slice(0, 3).join(".");
  const misfits = plain.filter((p) => p.engines?.node && !semver.satisfies(oldest, p.engines.node)).map((p) => `${p.name}@${p.version} (${p.engines?.node})`);
  assert.deepEqual(misfits, [], `packages whose engines exclude Node ${oldest}`);
  // Size: TensorFlow.js alone is most of it (~290 MB, the user's peer dependency); what jointly-tfjs
  // adds is measured against a project with only the peers (same cache, a few seconds).
  const baseline = join(root, "tfjs-only");
  mkdirSync(baseline);
  writeFileSync(join(baseline, "package.json"), JSON.stringify({ name: "tfjs-only", private: true, dependencies: { "@tensorflow/tfjs": OWN.peerDependencies["@tensorflow/tfjs"], "@tensorflow/tfjs-backend-wasm": OWN.peerDependencies["@tensorflow/tfjs-backend-wasm"] } }));
  run("npm", ["install", ...NPM_FLAGS], baseline);
  const plainMB = duBytes(join(packed, "node_modules")) / 1e6;
  const tfjsMB = duBytes(join(baseline, "node_modules")) / 1e6;
  summary.plainInstall = { packages: plain.length, megabytes: Number(plainMB.toFixed(1)), tfjsAloneMegabytes: Number(tfjsMB.toFixed(1)), addedMegabytes: Number((plainMB - tfjsMB).toFixed(1)), jointlyPackageMegabytes: Number((duBytes(join(packed, "node_modules", OWN.name)) / 1e6).toFixed(1)) };
  assert.ok(plainMB - tfjsMB < 80, `jointly-tfjs adds ${(plainMB - tfjsMB).toFixed(1)} MB to TensorFlow.js's ${tfjsMB.toFixed(1)} MB`);
  // Without bullmq the queue says what to install.
  const queue = JSON.parse(run(process.execPath, ["queue.mjs"], packed).trim().split("\n").pop() ?? "{}") as { threw: boolean; message?: string };
  assert.equal(queue.threw, true);
  assert.match(queue.message ?? "", /^the job queue needs the optional package bullmq: npm install bullmq \(not found from .*node_modules\/jointly-tfjs\/dist\/queue\/connection\.js\)\.$/);
  run("npm", ["install", ...NPM_FLAGS, "--save-dev", ...Object.entries(DEV_TOOLS).map(([n, v]) => `${n}@${v}`)], packed);
  summary.tarball = checkConsumer(packed, "tarball");

  // (b) git URL of a clone of HEAD: npm installs its devDependencies and runs prepare (dist/) and prepack.
  const clone = join(root, "clone");
  run("git", ["clone", "--quiet", REPO, clone], root);
  const gitProject = join(root, "git");
  const gitSpec = `git+file://${clone}`;
  makeProject(gitProject, gitSpec, DEV_TOOLS);
  run("npm", ["install", ...NPM_FLAGS], gitProject);
  summary.git = checkConsumer(gitProject, "git");

  // (c) the checkout's folder: --install-links makes it a packed copy with its dependencies (a plain
  // folder install would be a symlink into the checkout, resolving nothing from the project).
  const folderProject = join(root, "folder");
  const folderSpec = `file:${REPO}`;
  makeProject(folderProject, folderSpec, DEV_TOOLS);
  run("npm", ["install", ...NPM_FLAGS, "--install-links"], folderProject);
  summary.folder = checkConsumer(folderProject, "folder");

  t.diagnostic(JSON.stringify(summary));
});
