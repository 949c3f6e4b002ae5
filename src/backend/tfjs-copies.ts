/**
 * Two copies of TensorFlow.js in one process. A project that depends on `@tensorflow/tfjs` at
 * another version than the one jointly-tfjs resolves gets a second copy: both register their
 * kernels in the one global engine (hundreds of "already registered" warnings), and a model
 * made by the project's copy is not an `instanceof` jointly's classes, so it used to fail deep
 * inside with a meaningless message (`"_callHook" is not a tf.LayersModel`). These helpers recognise such a value and say which
 * copies are loaded and what to do.
 */
import * as tf from "@tensorflow/tfjs";
import { createRequire } from "node:module";
import { dirname, sep } from "node:path";

const require = createRequire(import.meta.url);

/** One loaded copy of a TensorFlow.js package: its version and its package directory. */
export interface TfjsCopy {
  package: string;
  version: string;
  dir: string;
}

/** The package directory of `@tensorflow/<name>` as jointly resolves it, or undefined when it cannot. */
function ownDir(name: string): string | undefined {
  try {
    // tfjs-layers and tfjs-core are resolved from tfjs's own folder: that is the copy jointly's `import * as tf` gets.
    const tfjsPkg = require.resolve("@tensorflow/tfjs/package.json");
    if (name === "tfjs") return dirname(tfjsPkg);
    return dirname(createRequire(tfjsPkg).resolve(`@tensorflow/${name}/package.json`));
  } catch {
    return undefined;
  }
}

function versionAt(dir: string): string {
  try {
    return String((require(`${dir}${sep}package.json`) as { version?: unknown }).version ?? "unknown");
  } catch {
    return "unknown";
  }
}

/**
 * Every copy of `@tensorflow/<name>` (default `tfjs-layers`, the package whose classes models are)
 * that this process has loaded through CommonJS (TensorFlow.js's Node entry points are CommonJS), the
 * one jointly uses first. A copy loaded only as an ES module bundle is not seen.
 */
export function loadedTfjsCopies(name = "tfjs-layers"): TfjsCopy[] {
  const marker = `${sep}@tensorflow${sep}${name}${sep}`;
  const dirs = new Set<string>();
  const own = ownDir(name);
  if (own !== undefined) dirs.add(own);
  for (const file of Object.keys(require.cache)) {
    const at = file.lastIndexOf(marker);
    if (at >= 0) dirs.add(file.slice(0, at + marker.length - 1));
  }
  return [...dirs].map((dir) => ({ package: `@tensorflow/${name}`, version: versionAt(dir), dir }));
}

/** True for an object that has a LayersModel's shape (layers, weights, outputs, predict) without being one of jointly's copy. */
export function isForeignLayersModel(value: unknown): boolean {
  if (value === null || typeof value !== "object" || value instanceof tf.LayersModel) return false;
  const v = value as Record<string, unknown>;
  return typeof v.predict === "function" && typeof v.getClassName === "function" && Array.isArray(v.layers) && Array.isArray(v.outputNames) && "trainableWeights" in v;
}

/** The peer dependency range jointly-tfjs declares for `@tensorflow/tfjs`, read from its package.json. */
function peerRange(): string {
  try {
    const pkg = require("../../package.json") as { peerDependencies?: Record<string, string> };
    return pkg.peerDependencies?.["@tensorflow/tfjs"] ?? "^4.22.0";
  } catch {
    return "^4.22.0";
  }
}

/**
 * The error for `what` (e.g. `trainable(): "encoder"`), a LayersModel made by another copy of
 * TensorFlow.js: names jointly's copy and the others loaded (version and folder), and the fix.
 */
export function foreignTfjsError(what: string): Error {
  // A model's classes are tfjs-layers'.
  const pkgName = "tfjs-layers";
  const copies = loadedTfjsCopies(pkgName);
  const ownPath = ownDir(pkgName);
  const own = copies.find((c) => c.dir === ownPath);
  const others = copies.filter((c) => c.dir !== ownPath);
  const ownText = own ? `${own.package} ${own.version} at ${own.dir}` : `@tensorflow/tfjs ${tf.version.tfjs}`;
  const otherText =
    others.length > 0
      ? others.map((c) => `${c.package} ${c.version} at ${c.dir}`).join(", ")
      : "another copy (not among the CommonJS modules loaded, so its version and folder are unknown)";
  return new Error(
    `${what} is a tf.LayersModel from another copy of TensorFlow.js. jointly-tfjs uses ${ownText}; the value comes from ${otherText}. ` +
      `Two copies share no classes (and the second one registers every kernel again: the "already registered" warnings). ` +
      `Run \`npm ls @tensorflow/tfjs\` to see both, then keep one: jointly-tfjs takes @tensorflow/tfjs as a peer dependency (${peerRange()}), ` +
      `so depend on a version in that range in your package.json (and @tensorflow/tfjs-backend-wasm at the same version), run \`npm dedupe\`, ` +
      `and import tf from that one package.`,
  );
}

/**
 * Throws {@link foreignTfjsError} when `value` is a LayersModel of another TensorFlow.js copy (its
 * layers and `instanceof` checks are that copy's); returns quietly for anything else, so callers keep
 * their own type errors for values that are not models. Tensors need no check: every copy creates
 * them through the one global engine, with the first-loaded copy's Tensor class, and tfjs-core's
 * `instanceof tf.Tensor` is duck-typed anyway.
 */
export function assertOwnTfjs(value: unknown, what: string): void {
  if (isForeignLayersModel(value)) throw foreignTfjsError(what);
}
