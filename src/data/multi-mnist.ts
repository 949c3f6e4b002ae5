/**
 * MultiMNIST, MultiFashion and Multi-(Fashion+MNIST): two-task image classification benchmarks, built
 * as in Sener & Koltun, "Multi-Task Learning as Multi-Objective Optimization" (NeurIPS 2018) and
 * Lin et al., "Pareto Multi-Task Learning" (NeurIPS 2019). Each image holds two 28x28 items on a
 * 36x36 canvas, one in the top-left corner and one in the bottom-right corner, each shifted by up to
 * 4 px towards the centre (independently along each axis), overlapping where they meet (pixel-wise
 * maximum), and the canvas is resized back to 28x28. Task 1 ("left") is the class of the top-left
 * item, task 2 ("right") that of the bottom-right one.
 *
 * Sets are seeded and cached under `build/data/` (never committed). On a 2-core machine, composing
 * 10,000 images takes about 0.35 s (plus 0.1 s to read MNIST, 0.3 s to unzip Fashion-MNIST), and
 * reading them back from the cache about 50 ms.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { crc32 } from "node:zlib";
import { Rng } from "./random.js";
import { FASHION_MNIST_CLASSES, MNIST_CLASSES, loadFashionMnist, loadMnist, type ImageSet, type MnistSplit } from "./mnist.js";

/** Which data sets the two items come from: both MNIST, both Fashion-MNIST, or one of each. */
export type MultiMnistVariant = "mnist" | "fashion" | "fashion+mnist";

const VARIANTS: readonly MultiMnistVariant[] = ["mnist", "fashion", "fashion+mnist"];

/**
 * The source of each corner per variant. In "fashion+mnist" the top-left item is a Fashion-MNIST
 * article and the bottom-right one an MNIST digit.
 */
export const MULTI_MNIST_SOURCES: Record<MultiMnistVariant, { left: "mnist" | "fashion"; right: "mnist" | "fashion" }> = {
  mnist: { left: "mnist", right: "mnist" },
  fashion: { left: "fashion", right: "fashion" },
  "fashion+mnist": { left: "fashion", right: "mnist" },
};

/** Side of the canvas the two items are placed on. */
export const MULTI_MNIST_CANVAS = 36;
/** Largest shift of an item from its corner, in pixels, along each axis. */
export const MULTI_MNIST_MAX_SHIFT = 4;

export interface MultiMnistOptions<D extends "float32" | "uint8" = "float32"> {
  variant: MultiMnistVariant;
  /** Items of the composed training images come from the training split only, test from test. */
  split: MnistSplit;
  /** Number of images (any positive integer; beyond the split's size, items are reused in new pairs). */
  n: number;
  /** Seed of the pairing and the shifts (default 0). */
  seed?: number;
  /** Float32 in [0, 1] (default) or the bytes 0..255. */
  dtype?: D;
  /** Folder for the cached set (default `build/data/` in the project); `null` neither reads nor writes a cache. */
  cacheDir?: string | null;
}

/**
 * A MultiMNIST-style data set. `images` is row-major `[n, 28, 28, 1]` (the channel axis has size 1, so
 * it is also `[n, 28, 28]`): Float32 k/255 for whole k in 0..255, or the bytes k with `dtype: "uint8"`.
 */
export interface MultiMnist<T extends Float32Array | Uint8Array = Float32Array> {
  variant: MultiMnistVariant;
  split: MnistSplit;
  seed: number;
  n: number;
  rows: number;
  cols: number;
  images: T;
  /** Class of the top-left item (task 1), Int32. */
  left: Int32Array;
  /** Class of the bottom-right item (task 2), Int32. */
  right: Int32Array;
  /** Index of the top-left item in its source split (MNIST or Fashion-MNIST, see `sources`). */
  leftIndex: Int32Array;
  /** Index of the bottom-right item in its source split. */
  rightIndex: Int32Array;
  /** Per image: row and column of the top-left item's corner on the 36x36 canvas, then the bottom-right item's (n * 4). */
  offsets: Uint8Array;
  sources: { left: "mnist" | "fashion"; right: "mnist" | "fashion" };
  classNames: { left: readonly string[]; right: readonly string[] };
  /** Where the set was cached, and whether it was read from there ("hit"), built ("built"), or built because the file was unusable ("rebuilt", with the reason). */
  cache?: { file: string; status: "hit" | "built" | "rebuilt"; reason?: string };
}

type ImagesOf<D> = D extends "uint8" ? Uint8Array : Float32Array;

/** The source images for {@link buildMultiMnist}: uint8 sets of 28x28 items. */
export interface MultiMnistSources {
  left: ImageSet<Uint8Array>;
  right: ImageSet<Uint8Array>;
}

const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
/** Default folder of the cached sets. */
export const MULTI_MNIST_CACHE_DIR = join(PROJECT_ROOT, "build", "data");

function checkOptions(o: MultiMnistOptions<"float32" | "uint8">): number {
  if (!VARIANTS.includes(o.variant)) throw new Error(`MultiMNIST variant must be one of ${VARIANTS.map((v) => `"${v}"`).join(", ")}, but got ${JSON.stringify(o.variant)}.`);
  if (o.split !== "train" && o.split !== "test") throw new Error(`MultiMNIST split must be "train" or "test", but got ${JSON.stringify(o.split)}.`);
  if (!(Number.isInteger(o.n) && o.n > 0)) throw new Error(`MultiMNIST n must be a positive integer, but got ${o.n}.`);
  const seed = o.seed ?? 0;
  if (!Number.isInteger(seed)) throw new Error(`MultiMNIST seed must be an integer, but got ${seed}.`);
  if (o.dtype !== undefined && o.dtype !== "float32" && o.dtype !== "uint8") throw new Error(`MultiMNIST dtype must be "float32" or "uint8", but got ${JSON.stringify(o.dtype)}.`);
  return seed;
}

/**
 * Integer weights of an area (box-filter) resize from `src` to `dst` pixels along one axis. Output
 * pixel o covers input [o*src/dst, (o+1)*src/dst); in units of 1/dst of an input pixel each overlap is a
 * whole number, and the weights of one output pixel sum to `src`.
 */
function areaWeights(src: number, dst: number): { from: number; weight: number }[][] {
  const out: { from: number; weight: number }[][] = [];
  for (let o = 0; o < dst; o++) {
    const lo = o * src;
    const hi = (o + 1) * src;
    const taps: { from: number; weight: number }[] = [];
    for (let i = Math.floor(lo / dst); i * dst < hi; i++) {
      const w = Math.min((i + 1) * dst, hi) - Math.max(i * dst, lo);
      if (w > 0) taps.push({ from: i, weight: w });
    }
    out.push(taps);
  }
  return out;
}

/**
 * Compose one image: `a` with its corner at (`offsets[0]`, `offsets[1]`) and `b` at
 * (`offsets[2]`, `offsets[3]`) on a `(size + 8)`-square canvas, overlapping as the pixel-wise maximum,
 * then resized to `size` x `size` by area averaging (each output pixel the mean of the canvas area it
 * covers), rounded to whole grey levels. `a` and `b` are `size * size` bytes; the result is written to
 * `out` (`size * size` bytes) at `outOffset`.
 */
export function composeMultiImage(a: Uint8Array, b: Uint8Array, offsets: ArrayLike<number>, size = 28, out = new Uint8Array(size * size), outOffset = 0): Uint8Array {
  return makeComposer(size)(a, b, offsets, out, outOffset);
}

/** A composer with its canvas, scratch rows and resize weights allocated once, for many images. */
function makeComposer(size: number): (a: Uint8Array, b: Uint8Array, offsets: ArrayLike<number>, out: Uint8Array, outOffset: number) => Uint8Array {
  const side = size + 2 * MULTI_MNIST_MAX_SHIFT;
  const canvas = new Uint8Array(side * side);
  const rowsResized = new Int32Array(side * size);
  const taps = areaWeights(side, size);
  const norm = side * side;
  return (a, b, offsets, out, outOffset) => {
    canvas.fill(0);
    for (const [img, r0, c0] of [[a, offsets[0], offsets[1]], [b, offsets[2], offsets[3]]] as [Uint8Array, number, number][]) {
      if (!(r0 >= 0 && c0 >= 0 && r0 + size <= side && c0 + size <= side)) throw new Error(`composeMultiImage: an item at (${r0}, ${c0}) does not fit on the ${side}x${side} canvas.`);
      for (let r = 0; r < size; r++) {
        const src = r * size;
        const dst = (r0 + r) * side + c0;
        for (let c = 0; c < size; c++) {
          const v = img[src + c] as number;
          if (v > (canvas[dst + c] as number)) canvas[dst + c] = v;
        }
      }
    }
    // Separable area resize in integers: columns first, then rows; one division at the end.
    for (let r = 0; r < side; r++) {
      for (let oc = 0; oc < size; oc++) {
        let s = 0;
        for (const t of taps[oc] as { from: number; weight: number }[]) s += (canvas[r * side + t.from] as number) * t.weight;
        rowsResized[r * size + oc] = s;
      }
    }
    for (let or = 0; or < size; or++) {
      for (let oc = 0; oc < size; oc++) {
        let s = 0;
        for (const t of taps[or] as { from: number; weight: number }[]) s += (rowsResized[t.from * size + oc] as number) * t.weight;
        out[outOffset + or * size + oc] = Math.round(s / norm);
      }
    }
    return out;
  };
}

/**
 * Build a MultiMNIST-style set from given sources, with no cache. The pairing follows Sener & Koltun:
 * the top-left items run through a seeded permutation of the left source (a fresh one each time it is
 * used up), each paired with a bottom-right item drawn uniformly from the right source (never the
 * same image when both corners share a source). The top-left item's corner is at (u, v) and the
 * bottom-right one's at (8 - u', 8 - v'), with u, v, u', v' uniform in 0..4.
 */
export function buildMultiMnist<D extends "float32" | "uint8" = "float32">(
  options: Omit<MultiMnistOptions<D>, "cacheDir">,
  sources: MultiMnistSources,
): MultiMnist<ImagesOf<D>> {
  const seed = checkOptions(options);
  const { left: L, right: R } = sources;
  for (const [name, s] of [["left", L], ["right", R]] as const) {
    if (s.rows !== 28 || s.cols !== 28) throw new Error(`buildMultiMnist: the ${name} source must hold 28x28 images, but holds ${s.rows}x${s.cols}.`);
    if (!(s.images instanceof Uint8Array)) throw new Error(`buildMultiMnist: the ${name} source must be loaded with dtype "uint8".`);
    if (s.n < 2) throw new Error(`buildMultiMnist: the ${name} source needs at least 2 images, but has ${s.n}.`);
  }
  const sameSource = L === R || L.images === R.images;
  const { n } = options;
  const px = 28 * 28;
  const rng = new Rng(seed);
  const pixels = new Uint8Array(n * px);
  const left = new Int32Array(n);
  const right = new Int32Array(n);
  const leftIndex = new Int32Array(n);
  const rightIndex = new Int32Array(n);
  const offsets = new Uint8Array(n * 4);
  const compose = makeComposer(28);
  const span = MULTI_MNIST_MAX_SHIFT + 1;
  const far = 2 * MULTI_MNIST_MAX_SHIFT;
  let perm: number[] = [];
  for (let i = 0; i < n; i++) {
    if (i % L.n === 0) perm = rng.permutation(L.n);
    const li = perm[i % L.n] as number;
    let ri = rng.int(sameSource ? R.n - 1 : R.n);
    if (sameSource && ri >= li) ri++;
    const o = offsets.subarray(4 * i, 4 * i + 4);
    o[0] = rng.int(span);
    o[1] = rng.int(span);
    o[2] = far - rng.int(span);
    o[3] = far - rng.int(span);
    compose(L.images.subarray(li * px, (li + 1) * px), R.images.subarray(ri * px, (ri + 1) * px), o, pixels, i * px);
    leftIndex[i] = li;
    rightIndex[i] = ri;
    left[i] = L.labels[li] as number;
    right[i] = R.labels[ri] as number;
  }
  const variant = options.variant;
  return {
    variant, split: options.split, seed, n, rows: 28, cols: 28,
    images: toDtype(pixels, options.dtype) as ImagesOf<D>,
    left, right, leftIndex, rightIndex, offsets,
    sources: MULTI_MNIST_SOURCES[variant],
    classNames: { left: L.classNames, right: R.classNames },
  };
}

function toDtype(pixels: Uint8Array, dtype: "float32" | "uint8" | undefined): Float32Array | Uint8Array {
  if (dtype === "uint8") return pixels;
  const f = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) f[i] = (pixels[i] as number) / 255;
  return f;
}

// Cache file: a fixed header (little-endian), then the payload, whose CRC-32 is in the header.
// Bump CACHE_VERSION whenever the construction changes, so old files are rebuilt, not reused.
const CACHE_MAGIC = "JMMNIST\n";
const CACHE_VERSION = 1;
const HEADER_BYTES = 32;

function cacheFileName(variant: MultiMnistVariant, split: MnistSplit, n: number, seed: number): string {
  return `multi-mnist-${variant}-${split}-${n}-${seed}.bin`;
}

function payloadBytes(n: number): number {
  return n * (28 * 28 + 2 * 4 + 2 * 4 + 4);
}

function encodeCache(d: MultiMnist<Float32Array | Uint8Array>, pixels: Uint8Array): Buffer {
  const n = d.n;
  const buf = Buffer.alloc(HEADER_BYTES + payloadBytes(n));
  buf.write(CACHE_MAGIC, 0, "latin1");
  buf.writeUInt32LE(CACHE_VERSION, 8);
  buf.writeUInt32LE(n, 12);
  buf.writeInt32LE(d.seed, 16);
  buf.writeUInt8(VARIANTS.indexOf(d.variant), 20);
  buf.writeUInt8(d.split === "train" ? 0 : 1, 21);
  let at = HEADER_BYTES;
  const put = (a: ArrayBufferView) => {
    buf.set(new Uint8Array(a.buffer, a.byteOffset, a.byteLength), at);
    at += a.byteLength;
  };
  for (const a of [d.left, d.right, d.leftIndex, d.rightIndex, d.offsets, pixels]) put(a);
  buf.writeUInt32LE(crc32(buf.subarray(HEADER_BYTES)), 24);
  return buf;
}

/** The cached set, or the reason it cannot be used. */
function decodeCache(buf: Buffer, want: { variant: MultiMnistVariant; split: MnistSplit; n: number; seed: number }): { pixels: Uint8Array; fields: Int32Array[]; offsets: Uint8Array } | string {
  const n = want.n;
  if (buf.length !== HEADER_BYTES + payloadBytes(n)) return `it has ${buf.length} bytes, expected ${HEADER_BYTES + payloadBytes(n)}`;
  if (buf.toString("latin1", 0, 8) !== CACHE_MAGIC) return "bad magic";
  if (buf.readUInt32LE(8) !== CACHE_VERSION) return `format version ${buf.readUInt32LE(8)}, expected ${CACHE_VERSION}`;
  if (buf.readUInt32LE(12) !== n || buf.readInt32LE(16) !== want.seed || buf.readUInt8(20) !== VARIANTS.indexOf(want.variant) || buf.readUInt8(21) !== (want.split === "train" ? 0 : 1)) {
    return "its header describes another set";
  }
  if (crc32(buf.subarray(HEADER_BYTES)) !== buf.readUInt32LE(24)) return "checksum mismatch";
  let at = HEADER_BYTES;
  const fields: Int32Array[] = [];
  for (let k = 0; k < 4; k++) {
    // Copy out of the file buffer (whose offset in its pool may not be 4-aligned).
    fields.push(new Int32Array(new Uint8Array(buf.subarray(at, at + 4 * n)).buffer));
    at += 4 * n;
  }
  const offsets = new Uint8Array(buf.subarray(at, at + 4 * n));
  at += 4 * n;
  const pixels = new Uint8Array(buf.subarray(at, at + 28 * 28 * n));
  return { pixels, fields, offsets };
}

/** The source sets a variant needs (uint8, full split). */
export function multiMnistSources(variant: MultiMnistVariant, split: MnistSplit): MultiMnistSources {
  if (!VARIANTS.includes(variant)) throw new Error(`MultiMNIST variant must be one of ${VARIANTS.map((v) => `"${v}"`).join(", ")}, but got ${JSON.stringify(variant)}.`);
  const load = { mnist: () => loadMnist({ split, dtype: "uint8" }), fashion: () => loadFashionMnist({ split, dtype: "uint8" }) };
  const { left, right } = MULTI_MNIST_SOURCES[variant];
  const l = load[left]();
  return { left: l, right: right === left ? l : load[right]() };
}

/**
 * MultiMNIST (`variant: "mnist"`), MultiFashion (`"fashion"`) or Multi-(Fashion+MNIST)
 * (`"fashion+mnist"`), `n` images of one split, seeded. Read from
 * `build/data/multi-mnist-<variant>-<split>-<n>-<seed>.bin` when that file is valid (size, header and
 * checksum), else built from MNIST / Fashion-MNIST ({@link buildMultiMnist}) and written there
 * atomically (a temporary file, then a rename). Pareto MTL used 120,000 training and 20,000 test images.
 *
 * @example
 * const train = loadMultiMnist({ variant: "mnist", split: "train", n: 10000, seed: 1 });
 * const { x, left, right } = multiMnistTensors(train);   // x: [10000, 28, 28, 1]
 */
export function loadMultiMnist<D extends "float32" | "uint8" = "float32">(options: MultiMnistOptions<D>): MultiMnist<ImagesOf<D>> {
  const seed = checkOptions(options);
  const { variant, split, n } = options;
  const cacheDir = options.cacheDir === undefined ? MULTI_MNIST_CACHE_DIR : options.cacheDir;
  if (cacheDir === null) return buildMultiMnist(options, multiMnistSources(variant, split));
  const file = join(cacheDir, cacheFileName(variant, split, n, seed));
  let reason: string | undefined;
  if (existsSync(file)) {
    const got = decodeCache(readFileSync(file), { variant, split, n, seed });
    if (typeof got !== "string") {
      const [left, right, leftIndex, rightIndex] = got.fields as [Int32Array, Int32Array, Int32Array, Int32Array];
      const src = MULTI_MNIST_SOURCES[variant];
      const names = { mnist: MNIST_CLASSES, fashion: FASHION_MNIST_CLASSES };
      return {
        variant, split, seed, n, rows: 28, cols: 28,
        images: toDtype(got.pixels, options.dtype) as ImagesOf<D>,
        left, right, leftIndex, rightIndex, offsets: got.offsets,
        sources: src,
        classNames: { left: names[src.left], right: names[src.right] },
        cache: { file, status: "hit" },
      };
    }
    reason = `${file} was not used: ${got}`;
  }
  const built = buildMultiMnist({ ...options, dtype: "uint8" }, multiMnistSources(variant, split));
  mkdirSync(cacheDir, { recursive: true });
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  try {
    writeFileSync(tmp, encodeCache(built, built.images));
    renameSync(tmp, file);
  } catch (err) {
    rmSync(tmp, { force: true });
    throw new Error(`Could not write the MultiMNIST cache ${file}: ${(err as Error).message}. Pass cacheDir (a writable folder) or cacheDir: null.`);
  }
  return {
    ...built,
    images: toDtype(built.images, options.dtype) as ImagesOf<D>,
    cache: reason === undefined ? { file, status: "built" } : { file, status: "rebuilt", reason },
  };
}

/**
 * A MultiMNIST set as tensors: `x` `[n, 28, 28, 1]` float32 in [0, 1], `left` and `right` int32 class ids
 * `[n]`, or one-hot float32 `[n, 10]` with `oneHot: true`. The caller disposes them.
 */
export function multiMnistTensors(d: MultiMnist<Float32Array | Uint8Array>, options: { oneHot?: boolean } = {}): { x: tf.Tensor4D; left: tf.Tensor1D | tf.Tensor2D; right: tf.Tensor1D | tf.Tensor2D } {
  const images = d.images instanceof Float32Array ? d.images : toDtype(d.images, "float32");
  return tf.tidy(() => {
    const x = tf.tensor4d(images, [d.n, d.rows, d.cols, 1]);
    const ids = (labels: Int32Array, classes: number) => {
      const t = tf.tensor1d(labels, "int32");
      return options.oneHot ? (tf.oneHot(t, classes).toFloat() as tf.Tensor2D) : t;
    };
    return { x, left: ids(d.left, d.classNames.left.length), right: ids(d.right, d.classNames.right.length) };
  });
}
