/**
 * Correspondence of a tfjs model's pairs: generation in batches, then the
 * measures of `lib/metrics.ts`. Used by `deno task eval --run` and by
 * training every `evalEvery` steps.
 *
 * Library code: it prints nothing.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { IMAGE_SIZE } from "./arch.ts";
import {
  type EvalReport,
  evaluatePairs,
  type ImageClassifier,
} from "./metrics.ts";
import { type CoupledModel, generate } from "./model.ts";
import { Rng } from "./rng.ts";
import type { TransformName } from "./transforms.ts";

const PIXELS = IMAGE_SIZE * IMAGE_SIZE;

/** Options of {@linkcode evaluateModel}. */
export interface EvaluateOptions {
  /** Pairs generated and measured. */
  count: number;
  /** Seed of the latents and of the re-pairing of the chance baselines. */
  seed: number;
  /** Pairs generated per tfjs call. Default: 500. */
  batchSize?: number;
}

/**
 * `count` standard normal latents, [count, latentDim], drawn row by row
 * from `rng`: the same rows `LatentStream` of `lib/infer.ts` draws from a
 * fresh `Rng` of the same seed, so an ONNX export and its checkpoint see
 * the same `z`.
 */
export function drawLatents(
  rng: Rng,
  count: number,
  latentDim: number,
): Float32Array {
  const z = new Float32Array(count * latentDim);
  for (let r = 0; r < count; r++) {
    rng.fillNormal(z.subarray(r * latentDim, (r + 1) * latentDim));
  }
  return z;
}

/**
 * The images of `count` pairs from latents `z` ([count, latentDim]), one
 * `count * 784` array per domain, generated `batchSize` pairs at a time.
 */
export async function generatePairs(
  model: CoupledModel,
  z: Float32Array,
  count: number,
  batchSize = 500,
): Promise<Float32Array[]> {
  const latentDim = model.arch.latentDim;
  if (z.length !== count * latentDim) {
    throw new RangeError(
      `Cannot generate ${count} pairs as z must hold ${
        count * latentDim
      } floats: current length is ${z.length}`,
    );
  }
  const out = model.domains.map(() => new Float32Array(count * PIXELS));
  for (let start = 0; start < count; start += batchSize) {
    const n = Math.min(batchSize, count - start);
    const images = tf.tidy(() =>
      generate(
        model,
        tf.tensor2d(
          z.subarray(start * latentDim, (start + n) * latentDim),
          [n, latentDim],
        ),
      )
    );
    try {
      for (let d = 0; d < images.length; d++) {
        out[d].set(await images[d].data() as Float32Array, start * PIXELS);
      }
    } finally {
      tf.dispose(images);
    }
  }
  return out;
}

/**
 * Generates `count` pairs with `model` from seeded latents and measures
 * their correspondence under `transform` (see `evaluatePairs`). The same
 * seed gives the same latents and the same re-pairing.
 */
export async function evaluateModel(
  model: CoupledModel,
  transform: TransformName,
  classifier: ImageClassifier,
  options: EvaluateOptions,
): Promise<EvalReport> {
  const { count, seed, batchSize = 500 } = options;
  if (!Number.isSafeInteger(count) || count < 2) {
    throw new RangeError(
      `Cannot evaluate ${count} pairs: the count must be an integer >= 2`,
    );
  }
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) {
    throw new RangeError(
      `Cannot evaluate as 'batchSize' must be a positive integer: current value is ${batchSize}`,
    );
  }
  const rng = new Rng(seed);
  const z = drawLatents(rng, count, model.arch.latentDim);
  const images = await generatePairs(model, z, count, batchSize);
  return evaluatePairs(images, count, transform, classifier, rng);
}
