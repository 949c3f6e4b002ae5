/**
 * Save and load Layers models in a folder with pure TensorFlow.js in Node (the `file://` scheme
 * comes with tfjs-node only). The files are the ones tfjs-node writes, `model.json` + `weights.bin`,
 * kept by src/io/atomic.ts in a versioned subfolder that one rename publishes, with `dir/model.json`
 * and `dir/weights.bin` as symlinks to the current pair; folders in the old layout (the two files
 * directly in `dir`) are still read, and the next save converts them.
 */
import * as tf from "@tensorflow/tfjs";
import { promises as fsp } from "node:fs";
import { join } from "node:path";
import { AtomicWriteError, processExists, readFolder, writeFolderAtomically, type FileOps } from "../io/atomic.js";

export type { FileOps } from "../io/atomic.js";

/** File names inside a model folder. */
export const MODEL_JSON = "model.json";
/** The single weights file {@link fileSystemIO} writes. */
export const WEIGHTS_BIN = "weights.bin";

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

/** Temporary files of the earlier, non-atomic save (`model.json.tmp-<pid>-<hex>`), which nothing removed. */
const LEGACY_TEMP = /^(?:model\.json|weights\.bin)\.tmp-(\d+)-[0-9a-f]{8}$/;

/** Remove the earlier layout's temporary files whose process is gone (an old version's killed saves). */
async function removeLegacyTemps(dir: string): Promise<void> {
  for (const name of await fsp.readdir(dir)) {
    const m = LEGACY_TEMP.exec(name);
    if (m && !processExists(Number(m[1]))) await fsp.rm(join(dir, name), { force: true });
  }
}

/** The artifacts of a model.json text whose weight files come from `readWeights`; `where` names it in errors. */
async function artifactsOf(dir: string, where: string, text: string, readWeights: (path: string) => Promise<Uint8Array>): Promise<tf.io.ModelArtifacts> {
  let modelJSON: tf.io.ModelJSON;
  try {
    modelJSON = JSON.parse(text) as tf.io.ModelJSON;
  } catch (err) {
    throw new Error(`fileSystemIO: ${where} is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof modelJSON !== "object" || modelJSON === null || modelJSON.modelTopology == null || !Array.isArray(modelJSON.weightsManifest)) {
    throw new Error(`fileSystemIO: ${where} is not a TensorFlow.js model (it needs modelTopology and weightsManifest).`);
  }
  return tf.io.getModelArtifactsForJSON(modelJSON, async (manifest) => {
    const specs: tf.io.WeightsManifestEntry[] = [];
    const buffers: Uint8Array[] = [];
    for (const group of manifest) {
      specs.push(...group.weights);
      for (const p of group.paths) {
        try {
          buffers.push(await readWeights(p));
        } catch (err) {
          throw new Error(`fileSystemIO: ${where} lists the weights file ${p}, which cannot be read: ${(err as Error).message}`);
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
}

/**
 * A `tf.io.IOHandler` for a folder: `model.save(fileSystemIO(dir))` writes `model.json` and
 * `weights.bin`; `tf.loadLayersModel(fileSystemIO(dir))` reads them back.
 *
 * Saving is atomic and durable (src/io/atomic.ts): both files go into a new versioned subfolder,
 * flushed, and one rename publishes it; so `dir` always holds the previous complete model or the new
 * one, also under SIGKILL or power loss at any moment, and a failed save leaves the previous model
 * untouched. Loading follows the current version; `dir/model.json` and `dir/weights.bin` are
 * symlinks to it for other tools. Temporary files of killed saves are removed by the next save or
 * load. A folder in the old layout (plain `model.json` + `weights.bin`) still loads.
 *
 * @param options.fileOps replace the file write (it must flush) or rename (tests simulate failures).
 */
export function fileSystemIO(dir: string, options: { fileOps?: Partial<FileOps> } = {}): tf.io.IOHandler {
  if (typeof dir !== "string" || dir === "") throw new Error(`fileSystemIO: dir must be a folder path, but got ${JSON.stringify(dir)}.`);
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
        // model.json first: it is the index, the per-file link that appears last.
        await writeFolderAtomically(dir, { [MODEL_JSON]: JSON.stringify(modelJSON), [WEIGHTS_BIN]: weights }, { fileOps: options.fileOps });
      } catch (err) {
        if (!(err instanceof AtomicWriteError)) throw err;
        const message =
          err.stage === "create" ? `fileSystemIO: cannot save the model to ${dir}: ${err.reason}`
          : err.stage === "write" ? `fileSystemIO: saving the model to ${dir} failed, nothing was published: ${err.reason}`
          : err.stage === "flush" ? `fileSystemIO: the model was saved to ${dir}, but flushing the folder failed, so it may not survive a power loss: ${err.reason}`
          : `fileSystemIO: the model was saved to ${dir} (it loads with fileSystemIO), but updating the links ${MODEL_JSON} and ${WEIGHTS_BIN} failed: ${err.reason}`;
        throw new Error(message, { cause: err.cause });
      }
      await removeLegacyTemps(dir).catch(() => {});
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
      let files: Record<string, Uint8Array> | undefined;
      try {
        files = await readFolder(dir);
      } catch (err) {
        throw new Error(`fileSystemIO: cannot load a model from ${dir}: ${(err as Error).message}`, { cause: err });
      }
      if (files !== undefined) {
        const version = files;
        const json = version[MODEL_JSON];
        if (json === undefined) throw new Error(`fileSystemIO: no saved model in ${dir} (its current version has no ${MODEL_JSON}).`);
        return artifactsOf(dir, `${MODEL_JSON} in ${dir}`, new TextDecoder().decode(json), async (p) => {
          const name = p.replace(/^\.\//, "");
          const data = version[name];
          if (data === undefined) throw new Error(`the current version in ${dir} has no file ${name}`);
          return data;
        });
      }
      // The old layout: the files directly in dir.
      const path = join(dir, MODEL_JSON);
      let text: string;
      try {
        text = await fsp.readFile(path, "utf8");
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        throw new Error(code === "ENOENT" ? `fileSystemIO: no saved model in ${dir} (${MODEL_JSON} is missing).` : `fileSystemIO: cannot read ${path}: ${(err as Error).message}`);
      }
      return artifactsOf(dir, path, text, async (p) => new Uint8Array(await fsp.readFile(join(dir, p))));
    },
  };
}
