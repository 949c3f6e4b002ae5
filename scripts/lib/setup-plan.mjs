// @ts-check
/**
 * The decisions of scripts/setup.mjs, as pure functions so the tests can check them without
 * installing anything: what a command needs from apt, and how to bring node_modules up to date
 * without rewriting package-lock.json. Plain JavaScript with no dependencies, like setup.mjs.
 */

/** Debian packages a step installs when what it checks for is missing (as root, with apt-get). */
export const APT = {
  native: ["gcc", "libc6-dev", "libopenblas-dev"],
  jupyter: ["jupyter-nbconvert", "jupyter-notebook", "python3-ipykernel", "python3-nbclient", "jupyter-client"],
  redis: ["redis-server"],
  "fashion-mnist": ["dataset-fashion-mnist"],
  chromium: ["chromium"],
  // The rediss:// test makes its CA and certificates with the openssl command.
  openssl: ["openssl"],
  // The bench's PyTorch columns (bench/torch_bench.py): Debian's CPU build of PyTorch.
  pytorch: ["python3-torch"],
};

/**
 * What the set-up is for, from its flags and from npm: `npm run bench` runs
 * `node scripts/setup.mjs && ...` with `npm_lifecycle_event` set to "bench", so the bench's set-up
 * needs no flag of its own; `--for-bench` asks for the same by hand.
 * @param {string[]} argv the set-up's arguments
 * @param {Record<string, string | undefined>} env
 * @returns {{forTests: boolean, forBench: boolean, depsOnly: boolean, json: boolean}}
 */
export function setupPurpose(argv, env) {
  const args = new Set(argv);
  return {
    forTests: args.has("--for-tests"),
    forBench: args.has("--for-bench") || env.npm_lifecycle_event === "bench",
    depsOnly: args.has("--deps-only"),
    json: args.has("--json"),
  };
}

/**
 * The steps a set-up runs, in order, with the apt packages each installs when its check fails.
 * @param {{forTests: boolean, forBench: boolean, depsOnly?: boolean}} purpose
 * @returns {{step: string, apt: string[]}[]}
 */
export function setupSteps(purpose) {
  if (purpose.depsOnly) return [{ step: "node dependencies", apt: [] }];
  /** @type {{step: string, apt: string[]}[]} */
  const steps = [
    { step: "node dependencies", apt: [] },
    { step: "self link", apt: [] },
    { step: "library build", apt: [] },
    { step: "native kernels", apt: APT.native },
    { step: "jupyter", apt: APT.jupyter },
    { step: "tslab kernel", apt: [] },
    { step: "redis", apt: APT.redis },
    { step: "fashion-mnist", apt: APT["fashion-mnist"] },
  ];
  if (purpose.forBench) steps.push({ step: "pytorch", apt: APT.pytorch });
  if (purpose.forTests) steps.push({ step: "chromium", apt: APT.chromium }, { step: "openssl", apt: APT.openssl });
  return steps;
}

const DEPENDENCY_FIELDS = /** @type {const} */ (["dependencies", "devDependencies", "optionalDependencies", "peerDependencies"]);

/**
 * Where package.json's dependency lists and the lock's record of them (its root entry) differ,
 * e.g. `devDependencies.tslab: "1.0.22" in package.json, missing in the lock`; empty when they agree.
 * `npm ci` refuses to run on such a lock.
 * @param {any} pkg package.json
 * @param {any} lock package-lock.json
 * @returns {string[]}
 */
export function lockMismatches(pkg, lock) {
  const root = lock?.packages?.[""];
  if (!root) return ["the lock has no root entry (packages[\"\"]): it predates lockfileVersion 2"];
  const out = [];
  for (const field of DEPENDENCY_FIELDS) {
    const want = pkg?.[field] ?? {};
    const have = root[field] ?? {};
    for (const name of new Set([...Object.keys(want), ...Object.keys(have)])) {
      if (want[name] === have[name]) continue;
      const show = (/** @type {unknown} */ v) => (v === undefined ? "missing" : JSON.stringify(v));
      out.push(`${field}.${name}: ${show(want[name])} in package.json, ${show(have[name])} in the lock`);
    }
  }
  return out;
}

/**
 * Whether node_modules holds exactly what the lock says, judged by npm's own record of the
 * installed tree (node_modules/.package-lock.json): every package of the lock at its version, except
 * optional ones npm skipped (other platforms' binaries). A change to package.json that leaves the
 * lock alone (scripts, files) then costs no reinstall.
 * @param {any} lock package-lock.json
 * @param {any} installed node_modules/.package-lock.json, or undefined when missing
 * @returns {string[]} what differs, empty when up to date
 */
export function installedDiffers(lock, installed) {
  if (!installed?.packages) return ["node_modules/.package-lock.json is missing: nothing installed by npm 7+"];
  const out = [];
  for (const [path, entry] of Object.entries(lock?.packages ?? {})) {
    if (path === "") continue;
    const have = installed.packages[path];
    if (!have) {
      if (!entry.optional) out.push(`${path} is not installed`);
      continue;
    }
    const want = entry.link ? entry.resolved : entry.version;
    const got = have.link ? have.resolved : have.version;
    if (want !== got) out.push(`${path} is ${got}, the lock says ${want}`);
  }
  return out;
}

/**
 * How to bring node_modules up to date: nothing, `npm ci` (installs exactly the lock, never writes
 * it), or `npm install` (only when there is no lock or it does not match package.json: it then
 * rewrites the lock, and the set-up says so).
 * @param {{lock: any, pkg: any, installed: any, toolsPresent: boolean}} state
 * @returns {{action: "ok" | "ci" | "install", reason: string}}
 */
export function dependencyPlan({ lock, pkg, installed, toolsPresent }) {
  if (!lock) return { action: "install", reason: "there is no package-lock.json: npm install writes one" };
  const mismatch = lockMismatches(pkg, lock);
  if (mismatch.length) {
    return { action: "install", reason: `package-lock.json does not match package.json (${mismatch.slice(0, 3).join("; ")}${mismatch.length > 3 ? "; ..." : ""}): npm install, which updates the lock` };
  }
  const differs = installedDiffers(lock, installed);
  if (differs.length === 0 && toolsPresent) return { action: "ok", reason: "node_modules matches package-lock.json" };
  const why = differs.length ? `${differs[0]}${differs.length > 1 ? ` (and ${differs.length - 1} more)` : ""}` : "the project's tools are missing from node_modules/.bin";
  return { action: "ci", reason: `${why}: npm ci installs the lock as it is` };
}

/**
 * Whether `npm ci` failed because the lock and package.json are out of sync (then npm install is the
 * way), as opposed to a network or build failure (then the error stands).
 * @param {string} output npm's stdout and stderr
 */
export function ciFailedOnSync(output) {
  return /can only install packages when your package\.json and package-lock\.json[^\n]*in sync|missing from lock file|Invalid: lock file/i.test(output);
}
