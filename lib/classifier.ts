/**
 * The MNIST digit classifier that judges generated pairs.
 *
 * A ReLU MLP trained with tfjs on the MNIST training split and measured on
 * the test split. It is an MLP, not a convnet, because the tfjs wasm
 * backend has no gradient kernels for convolution filters.
 *
 * A trained classifier is cached as `weights.bin` (little-endian float32)
 * and `manifest.json` (its config, tensor layout, SHA-256 of the weights
 * and measured test accuracy). A cache that is corrupt, truncated or made
 * with another config is never used: the loader reports why and retrains.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { Adam } from "./adam.ts";
import { IMAGE_SIZE } from "./arch.ts";

import { OptionError } from "./errors.ts";
import {
  float32FromBytes,
  float32ToBytes,
  sha256Hex,
  verifyWeights,
  writeFileAtomic,
} from "./files.ts";
import { loadMnist, type MnistSplit } from "./mnist.ts";
import { freeingTemporaries } from "./model.ts";
import { Rng } from "./rng.ts";

const PIXELS = IMAGE_SIZE * IMAGE_SIZE;
const DIGITS = 10;

/** Format tag of the classifier's `manifest.json`. */
export const CLASSIFIER_FORMAT = "cogan-classifier";
/** Version of the cache format this code writes and reads. */
export const CLASSIFIER_VERSION = 1;

/** How the classifier is built and trained. */
export interface ClassifierConfig {
  /** Widths of the hidden ReLU layers. Default: `[512, 256]`. */
  hidden: number[];
  /** Passes over the training images. Default: 10. */
  epochs: number;
  /** Images per update. Default: 128. */
  batchSize: number;
  /**
   * Adam's starting learning rate, decayed to zero along a cosine over the
   * run. Default: 1e-3.
   */
  learningRate: number;
  /**
   * Training images used, from the start of the training split.
   * Default: 60000 (all of them).
   */
  trainImages: number;
  /**
   * Largest random shift, in pixels along each axis, applied to every
   * training image (0: no augmentation). Default: 1.
   */
  maxShift: number;
  /** Seed of the initial weights, batch order and shifts. Default: 0. */
  seed: number;
  /**
   * Training throws below this test accuracy, so no weak classifier is
   * cached. Default: 0.98.
   */
  minTestAccuracy: number;
}

/** The configuration the metrics rely on. */
export const DEFAULT_CLASSIFIER_CONFIG: Readonly<ClassifierConfig> = {
  hidden: [512, 256],
  epochs: 10,
  batchSize: 128,
  learningRate: 1e-3,
  trainImages: 60000,
  maxShift: 1,
  seed: 0,
  minTestAccuracy: 0.98,
};

/** Fills in defaults and checks every field; throws {@linkcode OptionError}. */
export function resolveClassifierConfig(
  input: Partial<ClassifierConfig> = {},
): ClassifierConfig {
  const config: ClassifierConfig = {
    ...DEFAULT_CLASSIFIER_CONFIG,
    hidden: [...DEFAULT_CLASSIFIER_CONFIG.hidden],
  };
  for (const [key, value] of Object.entries(input)) {
    if (!(key in DEFAULT_CLASSIFIER_CONFIG)) {
      throw new OptionError(
        `Unknown classifier option: "${key}". Should be one of: ${
          Object.keys(DEFAULT_CLASSIFIER_CONFIG).join(", ")
        }`,
      );
    }
    if (value !== undefined) {
      (config as unknown as Record<string, unknown>)[key] = value;
    }
  }

  const fail = (name: string, rule: string, value: unknown) =>
    new OptionError(
      `Cannot train the classifier as '${name}' must be ${rule}: current value is ${
        JSON.stringify(value)
      }`,
    );
  const positiveInt = (n: unknown) => Number.isSafeInteger(n) && Number(n) > 0;
  if (
    !Array.isArray(config.hidden) || !config.hidden.every(positiveInt)
  ) {
    throw fail("hidden", "a list of positive integers", config.hidden);
  }
  for (const key of ["epochs", "batchSize", "trainImages"] as const) {
    if (!positiveInt(config[key])) {
      throw fail(key, "a positive integer", config[key]);
    }
  }
  if (config.trainImages > 60000) {
    throw fail("trainImages", "at most 60000", config.trainImages);
  }
  if (!Number.isInteger(config.maxShift) || config.maxShift < 0) {
    throw fail("maxShift", "an integer >= 0", config.maxShift);
  }
  if (!(config.learningRate > 0 && Number.isFinite(config.learningRate))) {
    throw fail("learningRate", "a positive number", config.learningRate);
  }
  if (!Number.isSafeInteger(config.seed)) {
    throw fail("seed", "an integer", config.seed);
  }
  if (!(config.minTestAccuracy >= 0 && config.minTestAccuracy <= 1)) {
    throw fail("minTestAccuracy", "between 0 and 1", config.minTestAccuracy);
  }
  return config;
}

/** Where one tensor lies in `weights.bin`. */
interface TensorEntry {
  name: string;
  shape: number[];
  /** Offset in floats. */
  offset: number;
}

/** Contents of the cache's `manifest.json`. */
export interface ClassifierManifest {
  format: typeof CLASSIFIER_FORMAT;
  version: number;
  config: ClassifierConfig;
  tensors: TensorEntry[];
  weightsBytes: number;
  /** Hex SHA-256 of `weights.bin`. */
  weightsSha256: string;
  /** Share of the 10,000 MNIST test images classified right. */
  testAccuracy: number;
  /** Seconds training took. */
  trainSeconds: number;
  /** tfjs backend it was trained on. */
  backend: string;
  createdAt: string;
}

/** Labels and confidences of a batch of images. */
export interface Classification {
  /** Most probable digit of each image. */
  labels: Uint8Array;
  /** Softmax probability of that digit. */
  confidence: Float32Array;
}

interface Dense {
  kernel: tf.Variable;
  bias: tf.Variable;
}

/** A trained digit classifier. Call {@linkcode Classifier.dispose} when done. */
export class Classifier {
  readonly config: ClassifierConfig;
  /** Share of the MNIST test split it classifies right. */
  testAccuracy = NaN;
  readonly #layers: Dense[];

  /** Creates the network with seeded He-uniform weights. */
  constructor(config: ClassifierConfig) {
    this.config = config;
    const rng = new Rng(config.seed);
    const widths = [PIXELS, ...config.hidden, DIGITS];
    this.#layers = freeingTemporaries(() =>
      widths.slice(1).map((units, i) => {
        const fanIn = widths[i];
        const bound = Math.sqrt(6 / fanIn);
        const values = Float32Array.from(
          { length: fanIn * units },
          () => (2 * rng.nextFloat() - 1) * bound,
        );
        return {
          kernel: tf.variable(tf.tensor2d(values, [fanIn, units])),
          bias: tf.variable(tf.zeros([units])),
        };
      })
    );
  }

  /** Every tensor, named `<layer>/kernel` and `<layer>/bias`. */
  tensors(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    this.#layers.forEach((l, i) => {
      out.set(`${i}/kernel`, l.kernel);
      out.set(`${i}/bias`, l.bias);
    });
    return out;
  }

  /** Logits, [batch, 10], of images [batch, 784] in [0, 1]. */
  logits(x: tf.Tensor2D): tf.Tensor2D {
    let h = x;
    this.#layers.forEach((layer, i) => {
      h = tf.add(tf.matMul(h, layer.kernel as tf.Tensor2D), layer.bias);
      if (i < this.#layers.length - 1) h = tf.relu(h);
    });
    return h;
  }

  /** Classifies `count` images (`count * 784` floats in [0, 1]). */
  classify(images: Float32Array, count: number): Classification {
    if (images.length !== count * PIXELS) {
      throw new RangeError(
        `Cannot classify ${count} images as they need ${
          count * PIXELS
        } floats: current length is ${images.length}`,
      );
    }
    const labels = new Uint8Array(count);
    const confidence = new Float32Array(count);
    const batch = 1000;
    for (let start = 0; start < count; start += batch) {
      const n = Math.min(batch, count - start);
      const probs = tf.tidy(() =>
        tf.softmax(
          this.logits(
            tf.tensor2d(
              images.subarray(start * PIXELS, (start + n) * PIXELS),
              [n, PIXELS],
            ),
          ),
        ).dataSync()
      );
      for (let i = 0; i < n; i++) {
        let best = 0;
        for (let k = 1; k < DIGITS; k++) {
          if (probs[i * DIGITS + k] > probs[i * DIGITS + best]) best = k;
        }
        labels[start + i] = best;
        confidence[start + i] = probs[i * DIGITS + best];
      }
    }
    return { labels, confidence };
  }

  /** Frees the weights. */
  dispose(): void {
    for (const l of this.#layers) {
      l.kernel.dispose();
      l.bias.dispose();
    }
  }
}

/** Scales MNIST bytes to floats in [0, 1]. */
export function mnistFloats(
  split: MnistSplit,
  count = split.count,
): Float32Array {
  const out = new Float32Array(count * PIXELS);
  for (let i = 0; i < out.length; i++) out[i] = split.pixels[i] / 255;
  return out;
}

/** Share of `split`'s images that `classifier` labels right. */
export function testAccuracy(
  classifier: Classifier,
  split: MnistSplit,
): number {
  const { labels } = classifier.classify(mnistFloats(split), split.count);
  let right = 0;
  for (let i = 0; i < split.count; i++) {
    if (labels[i] === split.labels[i]) right++;
  }
  return right / split.count;
}

/** Copies image `src` into `out` moved by (`dr`, `dc`), zero-filled. */
function shifted(
  src: Float32Array,
  out: Float32Array,
  dr: number,
  dc: number,
): void {
  out.fill(0);
  for (let r = 0; r < IMAGE_SIZE; r++) {
    const rr = r + dr;
    if (rr < 0 || rr >= IMAGE_SIZE) continue;
    for (let c = 0; c < IMAGE_SIZE; c++) {
      const cc = c + dc;
      if (cc < 0 || cc >= IMAGE_SIZE) continue;
      out[rr * IMAGE_SIZE + cc] = src[r * IMAGE_SIZE + c];
    }
  }
}

/** Events of {@linkcode loadOrTrainClassifier}. */
export type ClassifierEvent =
  | {
    /** The cache exists but cannot be used; it will be retrained. */
    kind: "cache-rejected";
    reason: string;
  }
  | {
    /** One epoch finished. */
    kind: "epoch";
    epoch: number;
    epochs: number;
    /** Mean cross-entropy over the epoch. */
    loss: number;
    seconds: number;
  }
  | {
    /** Training finished and the test split was measured. */
    kind: "trained";
    testAccuracy: number;
    seconds: number;
  };

/** Trains a classifier on MNIST as `config` says and measures it. */
export async function trainClassifier(
  config: ClassifierConfig,
  onProgress: (event: ClassifierEvent) => void = () => {},
): Promise<{ classifier: Classifier; seconds: number }> {
  const started = performance.now();
  const train = await loadMnist("train");
  const test = await loadMnist("test");
  const images = mnistFloats(train, config.trainImages);
  const classifier = new Classifier(config);
  const params = new Map(
    [...classifier.tensors().values()].map((v) => [v.name, v]),
  );
  const adam = new Adam(params, {
    learningRate: config.learningRate,
    beta1: 0.9,
    beta2: 0.999,
  });
  const updates = config.epochs *
    Math.ceil(config.trainImages / config.batchSize);
  const rng = new Rng(config.seed + 1);
  const order = Uint32Array.from({ length: config.trainImages }, (_, i) => i);
  const batch = new Float32Array(config.batchSize * PIXELS);
  const onehot = new Float32Array(config.batchSize * DIGITS);
  const one = new Float32Array(PIXELS);

  try {
    for (let epoch = 1; epoch <= config.epochs; epoch++) {
      rng.shuffle(order);
      let lossSum: tf.Tensor = tf.scalar(0);
      for (let start = 0; start < order.length; start += config.batchSize) {
        // The last batch of an epoch may be short.
        const n = Math.min(config.batchSize, order.length - start);
        onehot.fill(0);
        for (let b = 0; b < n; b++) {
          const index = order[start + b];
          const src = images.subarray(index * PIXELS, (index + 1) * PIXELS);
          const s = config.maxShift;
          if (s > 0) {
            shifted(
              src,
              one,
              rng.nextInt(2 * s + 1) - s,
              rng.nextInt(2 * s + 1) - s,
            );
            batch.set(one, b * PIXELS);
          } else {
            batch.set(src, b * PIXELS);
          }
          onehot[b * DIGITS + train.labels[index]] = 1;
        }
        // Cosine decay from the configured rate to zero over the run.
        adam.config.learningRate = config.learningRate * 0.5 *
          (1 + Math.cos(Math.PI * adam.updates / updates));
        const cost = tf.tidy(() => {
          const x = tf.tensor2d(batch.subarray(0, n * PIXELS), [n, PIXELS]);
          const y = tf.tensor2d(onehot.subarray(0, n * DIGITS), [n, DIGITS]);
          const { value, grads } = tf.variableGrads(
            () => tf.losses.softmaxCrossEntropy(y, classifier.logits(x)),
            [...params.values()],
          );
          adam.apply(grads);
          return value;
        });
        const next = tf.add(lossSum, tf.mul(cost, n));
        tf.dispose([lossSum, cost]);
        lossSum = next;
      }
      const loss = (await lossSum.data())[0] / order.length;
      lossSum.dispose();
      onProgress({
        kind: "epoch",
        epoch,
        epochs: config.epochs,
        loss,
        seconds: (performance.now() - started) / 1000,
      });
    }
  } catch (err) {
    classifier.dispose();
    throw err;
  } finally {
    adam.dispose();
  }

  classifier.testAccuracy = testAccuracy(classifier, test);
  const seconds = (performance.now() - started) / 1000;
  onProgress({
    kind: "trained",
    testAccuracy: classifier.testAccuracy,
    seconds,
  });
  if (classifier.testAccuracy < config.minTestAccuracy) {
    classifier.dispose();
    throw new Error(
      `Cannot use the trained classifier as its test accuracy must be at least ${config.minTestAccuracy}: current value is ${
        classifier.testAccuracy.toFixed(4)
      }; train longer or wider`,
    );
  }
  return { classifier, seconds };
}

/** Writes `classifier` to `cacheDir` (weights first, then the manifest). */
export async function saveClassifier(
  classifier: Classifier,
  cacheDir: string,
  trainSeconds: number,
): Promise<ClassifierManifest> {
  const entries: TensorEntry[] = [];
  const parts: Float32Array[] = [];
  let floats = 0;
  for (const [name, t] of classifier.tensors()) {
    entries.push({ name, shape: t.shape, offset: floats });
    const values = t.dataSync() as Float32Array;
    parts.push(values);
    floats += values.length;
  }
  const all = new Float32Array(floats);
  parts.forEach((p, i) => all.set(p, entries[i].offset));
  const bytes = float32ToBytes(all);
  const manifest: ClassifierManifest = {
    format: CLASSIFIER_FORMAT,
    version: CLASSIFIER_VERSION,
    config: classifier.config,
    tensors: entries,
    weightsBytes: bytes.length,
    weightsSha256: await sha256Hex(bytes),
    testAccuracy: classifier.testAccuracy,
    trainSeconds,
    backend: tf.getBackend(),
    createdAt: new Date().toISOString(),
  };
  await Deno.mkdir(cacheDir, { recursive: true });
  // The manifest goes last: a crash in between leaves a manifest whose hash
  // does not match, which the loader rejects.
  await writeFileAtomic(join(cacheDir, "weights.bin"), bytes);
  await writeFileAtomic(
    join(cacheDir, "manifest.json"),
    new TextEncoder().encode(JSON.stringify(manifest, null, 1) + "\n"),
  );
  return manifest;
}

/** Why a cached classifier cannot be used. */
export class CacheProblem extends Error {
  override name = "CacheProblem";
}

/**
 * Reads a cached classifier made with `config`, or returns `undefined` when
 * there is no cache. Throws a {@linkcode CacheProblem} saying what is wrong
 * with a cache that exists but cannot be used.
 */
export async function loadClassifier(
  cacheDir: string,
  config: ClassifierConfig,
): Promise<Classifier | undefined> {
  const fail = (problem: string) =>
    new CacheProblem(`Cannot use cached classifier "${cacheDir}": ${problem}`);
  let text: string;
  try {
    text = await Deno.readTextFile(join(cacheDir, "manifest.json"));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
  let manifest: ClassifierManifest;
  try {
    manifest = JSON.parse(text);
  } catch (err) {
    throw fail(`manifest.json is not valid JSON (${(err as Error).message})`);
  }
  if (manifest?.format !== CLASSIFIER_FORMAT) {
    throw fail(`manifest.json is not a ${CLASSIFIER_FORMAT} manifest`);
  }
  if (manifest.version !== CLASSIFIER_VERSION) {
    throw fail(
      `format version must be ${CLASSIFIER_VERSION}: current value is ${manifest.version}`,
    );
  }
  if (JSON.stringify(manifest.config) !== JSON.stringify(config)) {
    throw fail(
      `it was trained with config ${
        JSON.stringify(manifest.config)
      }, not the requested ${JSON.stringify(config)}`,
    );
  }
  if (!(manifest.testAccuracy >= config.minTestAccuracy)) {
    throw fail(
      `its test accuracy must be at least ${config.minTestAccuracy}: current value is ${manifest.testAccuracy}`,
    );
  }

  let bytes: Uint8Array<ArrayBuffer>;
  try {
    bytes = await Deno.readFile(join(cacheDir, "weights.bin"));
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw fail("weights.bin is missing");
    }
    throw err;
  }
  await verifyWeights(bytes, manifest, fail);

  const all = float32FromBytes(bytes);
  const classifier = new Classifier(config);
  try {
    const byName = new Map(manifest.tensors.map((e) => [e.name, e]));
    for (const [name, variable] of classifier.tensors()) {
      const entry = byName.get(name);
      if (
        !entry || entry.shape.join("x") !== variable.shape.join("x") ||
        entry.offset < 0 || entry.offset + variable.size > all.length
      ) {
        throw fail(
          `tensor "${name}" must have shape [${variable.shape}] inside weights.bin`,
        );
      }
      variable.assign(
        tf.tensor(
          all.subarray(entry.offset, entry.offset + variable.size),
          variable.shape,
        ),
      );
    }
  } catch (err) {
    classifier.dispose();
    throw err;
  }
  classifier.testAccuracy = manifest.testAccuracy;
  return classifier;
}

/** Options of {@linkcode loadOrTrainClassifier}. */
export interface LoadOrTrainOptions {
  /** Folder of the cache. Default: `.cache/classifier`. */
  cacheDir?: string;
  /** Overrides of {@linkcode DEFAULT_CLASSIFIER_CONFIG}. */
  config?: Partial<ClassifierConfig>;
  /** Told when the cache is rejected and as training goes. */
  onProgress?: (event: ClassifierEvent) => void;
}

/** What {@linkcode loadOrTrainClassifier} did. */
export interface LoadedClassifier {
  classifier: Classifier;
  /** Whether the classifier came from the cache or was trained now. */
  source: "cache" | "trained";
  /** Why an existing cache was not used, when one was rejected. */
  rejectedCache?: string;
  /** Seconds training took, when it was trained now. */
  trainSeconds?: number;
}

/**
 * Loads the cached classifier, or trains and caches one. A cache that
 * exists but is unusable is reported (event `cache-rejected` and
 * `rejectedCache` in the result) and replaced.
 */
export async function loadOrTrainClassifier(
  options: LoadOrTrainOptions = {},
): Promise<LoadedClassifier> {
  const cacheDir = options.cacheDir ?? join(".cache", "classifier");
  const config = resolveClassifierConfig(options.config);
  const onProgress = options.onProgress ?? (() => {});

  let rejectedCache: string | undefined;
  try {
    const cached = await loadClassifier(cacheDir, config);
    if (cached) return { classifier: cached, source: "cache" };
  } catch (err) {
    if (!(err instanceof CacheProblem)) throw err;
    rejectedCache = err.message;
    onProgress({ kind: "cache-rejected", reason: err.message });
  }

  const { classifier, seconds } = await trainClassifier(config, onProgress);
  await saveClassifier(classifier, cacheDir, seconds);
  return {
    classifier,
    source: "trained",
    rejectedCache,
    trainSeconds: seconds,
  };
}
