/**
 * Save and load Layers models in a folder with pure TensorFlow.js in Node (the `file://` scheme
 * comes with tfjs-node only). The layout is the one tfjs-node writes: `model.json` + `weights.bin`.
 */
import * as tf from "@tensorflow/tfjs";
import { randomBytes } from "node:crypto";
import { constants as fsConstants, promises as fsp } from "node:fs";
import { dirname, join, resolve } from "node:path";

/** File names inside a model folder. */
export const MODEL_JSON = "model.json";
/** The single weights file {@link fileSystemIO} writes. */
export const WEIGHTS_BIN = "weights.bin";

/** Replaceable file operations: tests use them to simulate a failing write. */
export interface FileOps {
  /** Write `data` to `path` and flush it to disk. */
  writeFile(path: string, data: Uint8Array | string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
}

/** Write then fsync, so a rename never publishes a file whose bytes are still in the page cache. */
async function writeDurable(path: string, data: Uint8Array | string): Promise<void> {
  const handle = await fsp.open(path, "w");
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** The nearest part of `path` (itself or an ancestor) that exists, with whether it is a folder. */
async function nearestExisting(path: string): Promise<{ path: string; isDir: boolean }> {
  let p = resolve(path);
  for (;;) {
    try {
      const st = await fsp.stat(p);
      return { path: p, isDir: st.isDirectory() };
    } catch {
      const up = dirname(p);
      if (up === p) return { path: p, isDir: true };
      p = up;
    }
  }
}

/**
 * Why a model cannot be written under `dir`, in words: a folder that is not writable or on a
 * read-only file system, or a file standing where a folder should be, named; else the system's
 * message. (Node's own message names only the operation, e.g. `EACCES: permission denied, mkdir
 * '/data/new'`, or ENOENT for a path under a read-only mount.)
 */
async function writeFailure(dir: string, err: unknown): Promise<string> {
  const code = (err as NodeJS.ErrnoException)?.code;
  const raw = (err as Error)?.message ?? String(err);
  const at = await nearestExisting(dir);
  if (!at.isDir) return `${at.path} is a file, not a folder (${raw}); choose another output folder, or move the file away.`;
  let access: string | undefined;
  try {
    await fsp.access(at.path, fsConstants.W_OK);
  } catch (e) {
    access = (e as NodeJS.ErrnoException).code;
  }
  if (code === "EROFS" || access === "EROFS") return `the folder ${at.path} is on a read-only file system (${raw}); choose an output folder on a writable disk.`;
  if (code === "EACCES" || code === "EPERM" || access !== undefined) {
    return `the folder ${at.path} is not writable by this process (${raw}); choose a folder you can write to, or change its permissions.`;
  }
  return raw;
}

const NODE_FILE_OPS: FileOps = { writeFile: writeDurable, rename: (a, b) => fsp.rename(a, b) };

const BYTES: Record<string, number> = { float32: 4, int32: 4, bool: 1, complex64: 8, uint8: 1, uint16: 2, float16: 2 };

/** Bytes the manifest's weights take, or undefined when a string weight makes that unknowable. */
function expectedBytes(specs: readonly tf.io.WeightsManifestEntry[]): number | undefined {
  let total = 0;
  for (const s of specs) {
    const dtype = s.quantization?.dtype ?? s.dtype;
    const size = BYTES[dtype];
    if (size === undefined) return undefined;
    total += size * s.shape.reduce((a, b) => a * b, 1);
  }
  return total;
}

/**
 * A `tf.io.IOHandler` for a folder: `model.save(fileSystemIO(dir))` writes `dir/model.json` and
 * `dir/weights.bin`; `tf.loadLayersModel(fileSystemIO(dir))` reads them back.
 *
 * Saving is atomic for readers: both files are written to temporary names and flushed, an older
 * `model.json` is removed, then `weights.bin` and finally `model.json` are renamed into place. So
 * whenever `model.json` exists it describes the `weights.bin` beside it, and a failure or crash at
 * any point leaves no half-written model (temporary files are removed on failure).
 */
export function fileSystemIO(dir: string, options: { fileOps?: Partial<FileOps> } = {}): tf.io.IOHandler {
  if (typeof dir !== "string" || dir === "") throw new Error(`fileSystemIO: dir must be a folder path, but got ${JSON.stringify(dir)}.`);
  const ops: FileOps = { ...NODE_FILE_OPS, ...options.fileOps };
  return {
    async save(artifacts: tf.io.ModelArtifacts): Promise<tf.io.SaveResult> {
      if (artifacts.modelTopology instanceof ArrayBuffer) {
        throw new Error(`fileSystemIO(${dir}): saving a binary (graph-model) topology is not supported; save a Layers model.`);
      }
      const weights = new Uint8Array(artifacts.weightData === undefined ? new ArrayBuffer(0) : tf.io.CompositeArrayBuffer.join(artifacts.weightData));
      const modelJSON: tf.io.ModelJSON = {
        modelTopology: artifacts.modelTopology ?? {},
        weightsManifest: [{ paths: [`./${WEIGHTS_BIN}`], weights: artifacts.weightSpecs ?? [] }],
        format: artifacts.format ?? "layers-model",
        generatedBy: artifacts.generatedBy ?? `TensorFlow.js tfjs-layers v${tf.version_layers}`,
        convertedBy: artifacts.convertedBy ?? null,
        ...(artifacts.trainingConfig ? { trainingConfig: artifacts.trainingConfig } : {}),
        ...(artifacts.signature ? { signature: artifacts.signature } : {}),
        ...(artifacts.userDefinedMetadata ? { userDefinedMetadata: artifacts.userDefinedMetadata } : {}),
      };
      try {
        await fsp.mkdir(dir, { recursive: true });
      } catch (err) {
        throw new Error(`fileSystemIO: cannot save the model to ${dir}: ${await writeFailure(dir, err)}`, { cause: err });
      }
      // One suffix per save: two concurrent saves into one folder never share a temporary file.
      const tag = `.tmp-${process.pid}-${randomBytes(4).toString("hex")}`;
      const tmpWeights = join(dir, WEIGHTS_BIN + tag);
      const tmpJSON = join(dir, MODEL_JSON + tag);
      try {
        await ops.writeFile(tmpWeights, weights);
        await ops.writeFile(tmpJSON, JSON.stringify(modelJSON));
        await fsp.rm(join(dir, MODEL_JSON), { force: true });
        await ops.rename(tmpWeights, join(dir, WEIGHTS_BIN));
        await ops.rename(tmpJSON, join(dir, MODEL_JSON));
      } catch (err) {
        await Promise.all([fsp.rm(tmpWeights, { force: true }), fsp.rm(tmpJSON, { force: true })]).catch(() => {});
        throw new Error(`fileSystemIO: saving the model to ${dir} failed, nothing was published: ${await writeFailure(dir, err)}`, { cause: err });
      }
      return {
        modelArtifactsInfo: {
          dateSaved: new Date(),
          modelTopologyType: "JSON",
          modelTopologyBytes: JSON.stringify(modelJSON.modelTopology).length,
          weightSpecsBytes: JSON.stringify(modelJSON.weightsManifest).length,
          weightDataBytes: weights.byteLength,
        },
      };
    },

    async load(): Promise<tf.io.ModelArtifacts> {
      const path = join(dir, MODEL_JSON);
      let modelJSON: tf.io.ModelJSON;
      try {
        modelJSON = JSON.parse(await fsp.readFile(path, "utf8")) as tf.io.ModelJSON;
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new Error(code === "ENOENT" ? `fileSystemIO: no saved model in ${dir} (${MODEL_JSON} is missing).` : `fileSystemIO: cannot read ${path}: ${(err as Error).message}`);
      }
      if (typeof modelJSON !== "object" || modelJSON === null || modelJSON.modelTopology == null || !Array.isArray(modelJSON.weightsManifest)) {
        throw new Error(`fileSystemIO: ${path} is not a TensorFlow.js model (it needs modelTopology and weightsManifest).`);
      }
      return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
        const specs: tf.io.WeightsManifestEntry[] = [];
        const buffers: Uint8Array[] = [];
        for (const group of manifest) {
          specs.push(...group.weights);
          for (const p of group.paths) {
            const file = join(dir, p);
            try {
              buffers.push(await fsp.readFile(file));
            } catch (err) {
              throw new Error(`fileSystemIO: ${path} lists the weights file ${p}, which cannot be read: ${(err as Error).message}`);
            }
          }
        }
        const total = buffers.reduce((a, b) => a + b.byteLength, 0);
        const expected = expectedBytes(specs);
        if (expected !== undefined && expected !== total) {
          throw new Error(`fileSystemIO: the weights in ${dir} hold ${total} bytes but ${MODEL_JSON} describes ${expected}; the files do not belong together.`);
        }
        const joined = new Uint8Array(total);
        let at = 0;
        for (const b of buffers) {
          joined.set(b, at);
          at += b.byteLength;
        }
        return [specs, joined.buffer];
      });
    },
  };
}
