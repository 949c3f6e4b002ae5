/**
 * Checkpoints of a whole training run: tensors as raw little-endian float32 / int32 / bool bytes
 * in one `tensors.bin`, and a JSON manifest (`checkpoint.json`) naming each tensor's key, variable
 * name, dtype, shape and byte range, next to the run's JSON state. Raw bytes and JSON numbers
 * (shortest round-trip form; NaN, ±Infinity and -0 tagged) make a resumed run exact.
 *
 * The two files are written as one set (`writeFolderAtomically`): a reader finds the old checkpoint
 * or the new one, never a mix, even when the process is killed during the save or the power fails.
 */
import * as tf from "@tensorflow/tfjs";
import { rmSync } from "node:fs";
import { readFolder, writeFolderAtomically } from "../io/atomic.js";

/** Where and how often `fit` saves its run; see `FitOptions.checkpoint`. */
export interface CheckpointOptions {
  /** The checkpoint folder (made if missing). Each save replaces the previous checkpoint as a whole. */
  dir: string;
  /** Save after every `every` epochs (default 1) and after the last one. */
  every?: number;
  /** Also save every `everySteps` steps inside an epoch (default: only at epoch ends). */
  everySteps?: number;
}

const FORMAT = "jointly-checkpoint";
const VERSION = 1;
const MANIFEST = "checkpoint.json";
const TENSORS = "tensors.bin";

/** One tensor of a checkpoint, as read back: raw values, not yet a tf.Tensor. */
export interface StoredTensor {
  key: string;
  /** The variable's name when it was saved (names differ between processes; matched by position). */
  name: string;
  dtype: "float32" | "int32" | "bool";
  shape: number[];
  values: Float32Array | Int32Array | Uint8Array;
}

/** A checkpoint as read: its JSON state and its tensors by key. */
export interface Checkpoint<S = unknown> {
  state: S;
  tensors: Map<string, StoredTensor>;
}

/** JSON with the numbers JSON cannot hold (NaN, ±Infinity, -0) tagged, so they come back as they were. */
export function stringifyExact(value: unknown): string {
  return JSON.stringify(value, (_k, v) => {
    if (typeof v === "number" && (!Number.isFinite(v) || Object.is(v, -0))) return { $number: Object.is(v, -0) ? "-0" : String(v) };
    return v;
  });
}

/** The inverse of {@link stringifyExact}. */
export function parseExact(text: string): unknown {
  return JSON.parse(text, (_k, v) => {
    if (v && typeof v === "object" && !Array.isArray(v) && Object.keys(v).length === 1 && typeof v.$number === "string") return v.$number === "-0" ? -0 : Number(v.$number);
    return v;
  });
}

/** The checkpoint's two files' contents from its state and named tensors. */
export function encodeCheckpoint(state: unknown, tensors: readonly { key: string; tensor: tf.Tensor }[]): Record<string, Uint8Array | string> {
  const entries: { key: string; name: string; dtype: string; shape: number[]; offset: number; bytes: number }[] = [];
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const { key, tensor } of tensors) {
    if (tensor.dtype !== "float32" && tensor.dtype !== "int32" && tensor.dtype !== "bool") {
      throw new Error(`checkpoint: the tensor "${key}" has dtype ${tensor.dtype}; only float32, int32 and bool tensors can be saved.`);
    }
    const data = tensor.dataSync() as Float32Array | Int32Array | Uint8Array;
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
    entries.push({ key, name: (tensor as tf.Variable).name ?? "", dtype: tensor.dtype, shape: [...tensor.shape], offset, bytes: bytes.byteLength });
    parts.push(bytes);
    // 8-byte alignment keeps every tensor's bytes viewable as its typed array in place.
    const pad = (8 - (bytes.byteLength % 8)) % 8;
    if (pad) parts.push(new Uint8Array(pad));
    offset += bytes.byteLength + pad;
  }
  const bin = new Uint8Array(offset);
  let at = 0;
  for (const p of parts) {
    bin.set(p, at);
    at += p.byteLength;
  }
  const manifest = { format: FORMAT, version: VERSION, tensorsFile: TENSORS, tensorsBytes: offset, tensors: entries, state };
  return { [MANIFEST]: stringifyExact(manifest), [TENSORS]: bin };
}

/** The inverse of {@link encodeCheckpoint}; `where` names the folder in errors. */
export function decodeCheckpoint<S>(files: Record<string, Uint8Array | string>, where: string): Checkpoint<S> {
  const text = files[MANIFEST];
  const bin = files[TENSORS];
  if (text === undefined || bin === undefined) throw new Error(`resume: ${where} holds no checkpoint (${MANIFEST} and ${TENSORS} are needed; found ${Object.keys(files).join(", ") || "nothing"}).`);
  const manifest = parseExact(typeof text === "string" ? text : new TextDecoder().decode(text)) as {
    format?: string; version?: number; tensorsBytes?: number; state: S;
    tensors: { key: string; name: string; dtype: StoredTensor["dtype"]; shape: number[]; offset: number; bytes: number }[];
  };
  if (manifest?.format !== FORMAT) throw new Error(`resume: ${where}/${MANIFEST} is not a jointly checkpoint (format ${JSON.stringify(manifest?.format)}).`);
  if (manifest.version !== VERSION) throw new Error(`resume: ${where} holds a checkpoint of version ${manifest.version}; this jointly reads version ${VERSION}.`);
  const raw = typeof bin === "string" ? new TextEncoder().encode(bin) : bin;
  if (raw.byteLength !== manifest.tensorsBytes) throw new Error(`resume: ${where}/${TENSORS} has ${raw.byteLength} bytes, but its manifest says ${manifest.tensorsBytes}; the checkpoint is damaged.`);
  const tensors = new Map<string, StoredTensor>();
  for (const e of manifest.tensors) {
    const copy = raw.slice(e.offset, e.offset + e.bytes);
    const values = e.dtype === "float32" ? new Float32Array(copy.buffer) : e.dtype === "int32" ? new Int32Array(copy.buffer) : copy;
    const size = e.shape.reduce((a, b) => a * b, 1);
    if (values.length !== size) throw new Error(`resume: the tensor "${e.key}" in ${where} has ${values.length} values for shape [${e.shape}]; the checkpoint is damaged.`);
    tensors.set(e.key, { key: e.key, name: e.name, dtype: e.dtype, shape: e.shape, values });
  }
  return { state: manifest.state, tensors };
}

/** A stored tensor as a new tf.Tensor (the caller disposes it). */
export function toTensor(t: StoredTensor): tf.Tensor {
  return tf.tensor(t.values, t.shape, t.dtype);
}

/**
 * Put stored values into variables, by position: names differ between processes (tfjs numbers
 * layers per process), so the shapes and dtypes are what is checked.
 */
export function assignVariables(vars: readonly tf.Variable[], stored: readonly StoredTensor[], what: string, where: string): void {
  if (stored.length !== vars.length) {
    throw new Error(`resume: ${where} holds ${stored.length} ${what} but this run has ${vars.length}; resume with the model the checkpoint was made with.`);
  }
  vars.forEach((v, i) => {
    const s = stored[i] as StoredTensor;
    if (s.dtype !== v.dtype || s.shape.length !== v.shape.length || s.shape.some((d, k) => d !== v.shape[k])) {
      throw new Error(`resume: ${what} ${i} ("${v.name}") has shape [${v.shape}] (${v.dtype}), but ${where} holds shape [${s.shape}] (${s.dtype}) for it (saved as "${s.name}"); resume with the model the checkpoint was made with.`);
    }
  });
  tf.tidy(() => vars.forEach((v, i) => v.assign(toTensor(stored[i] as StoredTensor))));
}

/** Whether `dir` holds a complete checkpoint. */
export async function hasCheckpoint(dir: string): Promise<boolean> {
  const files = await readFolder(dir);
  return files !== undefined && MANIFEST in files && TENSORS in files;
}

/** Save a checkpoint (state and tensors) into `dir`, replacing the previous one as a whole. */
export async function saveCheckpoint(dir: string, state: unknown, tensors: readonly { key: string; tensor: tf.Tensor }[]): Promise<void> {
  await writeFolderAtomically(dir, encodeCheckpoint(state, tensors));
}

/** Read the checkpoint in `dir`; an error naming the folder when there is none. */
export async function loadCheckpoint<S>(dir: string): Promise<Checkpoint<S>> {
  const files = await readFolder(dir);
  if (!files) throw new Error(`resume: ${dir} holds no checkpoint (no complete version in it). Start the run with checkpoint: { dir: ${JSON.stringify(dir)} }, or pass resume: true to start afresh when none exists.`);
  return decodeCheckpoint<S>(files, dir);
}

/** Remove a checkpoint folder (e.g. after the run finished and its model was saved). */
export function removeCheckpoint(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
}
