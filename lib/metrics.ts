/**
 * Whether generated pairs correspond: plain functions on images and labels.
 *
 * A coupled model makes a pair from one latent `z`: an image of domain A
 * (MNIST) and one of domain B (MNIST under a transform `T`). The pair
 * corresponds when B is `T(A)`. Two measures check that:
 *
 * - *label agreement*: a digit classifier gives A and `T^-1(B)` the same
 *   digit. Its chance level is measured by re-pairing the same images at
 *   random, so a model that makes good digits without correspondence scores
 *   near that baseline, not near 0.
 * - *pixel agreement*: the share of pixels on which `T(A)` and B agree once
 *   both are binarised at 0.5. Most MNIST pixels are background, so its
 *   chance level (again from random re-pairing) is high; read it against
 *   that baseline.
 *
 * The `edge` transform has no inverse, and the classifier was trained on
 * MNIST only, so for `edge` label agreement and B's confidence are `null`;
 * the report's `notes` says so. Pixel agreement needs only `T` and works
 * for every transform.
 *
 * @module
 */

import { IMAGE_SIZE } from "./arch.ts";
import type { Rng } from "./rng.ts";
import {
  applyTransform,
  invertTransform,
  type TransformName,
} from "./transforms.ts";

const PIXELS = IMAGE_SIZE * IMAGE_SIZE;

/** Pixel threshold of {@linkcode pixelAgreement}. */
export const BINARY_THRESHOLD = 0.5;
/** Probability above which a classification counts as confident. */
export const CONFIDENT_PROBABILITY = 0.9;
/** Share of domain A's labels a digit needs to count as covered. */
export const CLASS_SHARE = 0.02;

/** Anything that labels images, such as `Classifier` of `lib/classifier.ts`. */
export interface ImageClassifier {
  /** Labels `count` images of `count * 784` floats in [0, 1]. */
  classify(
    images: Float32Array,
    count: number,
  ): { labels: Uint8Array; confidence: Float32Array };
}

function checkSameLength(
  what: string,
  a: { length: number },
  b: { length: number },
): void {
  if (a.length === 0 || a.length !== b.length) {
    throw new RangeError(
      `Cannot compute ${what} as both inputs must have the same non-zero length: current lengths are ${a.length} and ${b.length}`,
    );
  }
}

/** Share of positions where `a` and `b` hold the same label. */
export function labelAgreement(a: Uint8Array, b: Uint8Array): number {
  checkSameLength("label agreement", a, b);
  let same = 0;
  for (let i = 0; i < a.length; i++) if (a[i] === b[i]) same++;
  return same / a.length;
}

/**
 * Share of pixels on the same side of `threshold` (a pixel is ink when it
 * is >= `threshold`) in `expected` and `actual`, over all their images.
 */
export function pixelAgreement(
  expected: Float32Array,
  actual: Float32Array,
  threshold: number = BINARY_THRESHOLD,
): number {
  checkSameLength("pixel agreement", expected, actual);
  let same = 0;
  for (let i = 0; i < expected.length; i++) {
    if ((expected[i] >= threshold) === (actual[i] >= threshold)) same++;
  }
  return same / expected.length;
}

/** Share of classifications whose probability exceeds `threshold`. */
export function confidentShare(
  confidence: Float32Array,
  threshold: number = CONFIDENT_PROBABILITY,
): number {
  if (confidence.length === 0) {
    throw new RangeError(
      "Cannot compute the confident share of no classifications",
    );
  }
  let confident = 0;
  for (const p of confidence) if (p > threshold) confident++;
  return confident / confidence.length;
}

/** Digits, ascending, that hold at least `minShare` of `labels`. */
export function classesCovered(
  labels: Uint8Array,
  minShare: number = CLASS_SHARE,
): number[] {
  if (labels.length === 0) {
    throw new RangeError("Cannot count the classes covered by no labels");
  }
  const counts = new Array<number>(10).fill(0);
  for (const l of labels) counts[l]++;
  return counts.flatMap((c, digit) =>
    c / labels.length >= minShare ? [digit] : []
  );
}

/**
 * A random cyclic permutation of `0..n-1` (Sattolo's algorithm): no index
 * maps to itself, so a re-paired image never meets its own partner. With
 * `n` = 1, the only permutation is the identity.
 */
export function derangement(n: number, rng: Rng): Uint32Array {
  const order = Uint32Array.from({ length: n }, (_, i) => i);
  for (let i = n - 1; i > 0; i--) {
    const j = rng.nextInt(i);
    const tmp = order[i];
    order[i] = order[j];
    order[j] = tmp;
  }
  return order;
}

/** Images `order[0]`, `order[1]`, ... of `images`, in that order. */
function reorder(images: Float32Array, order: Uint32Array): Float32Array {
  const out = new Float32Array(images.length);
  order.forEach((src, i) =>
    out.set(images.subarray(src * PIXELS, (src + 1) * PIXELS), i * PIXELS)
  );
  return out;
}

/** Applies `fn` to each of `count` images. */
function mapImages(
  images: Float32Array,
  count: number,
  fn: (image: Float32Array) => Float32Array | undefined,
): Float32Array | undefined {
  const out = new Float32Array(count * PIXELS);
  for (let i = 0; i < count; i++) {
    const mapped = fn(images.subarray(i * PIXELS, (i + 1) * PIXELS));
    if (!mapped) return undefined;
    out.set(mapped, i * PIXELS);
  }
  return out;
}

/** What {@linkcode evaluatePairs} measured. Shares are in [0, 1]. */
export type EvalReport = {
  transform: TransformName;
  /** Pairs evaluated. */
  count: number;
  /**
   * Share of pairs whose A and `T^-1(B)` get the same digit; `null` where
   * `T` has no inverse (see `notes`).
   */
  label_agreement: number | null;
  /** Label agreement of the same images randomly re-paired. */
  label_agreement_chance: number | null;
  /** Share of pixels where binarised `T(A)` and B agree. */
  pixel_agreement: number;
  /** Pixel agreement of the same images randomly re-paired. */
  pixel_agreement_chance: number;
  /** Share of A images classified with probability > 0.9. */
  confident_a: number;
  /** The same for `T^-1(B)`; `null` where `T` has no inverse. */
  confident_b: number | null;
  /** Digits holding at least 2% of A's labels, ascending. */
  classes: number[];
  /** Why a measure is `null`, when one is. */
  notes: string[];
};

/**
 * Measures how well `count` pairs correspond. `domains[0]` holds the A
 * images and `domains[1]` the B images, each `count * 784` floats in
 * [0, 1], pair `i` at image `i` of both. `rng` draws the random re-pairing
 * of the chance baselines.
 */
export function evaluatePairs(
  domains: Float32Array[],
  count: number,
  transform: TransformName,
  classifier: ImageClassifier,
  rng: Rng,
): EvalReport {
  if (!Number.isSafeInteger(count) || count < 2) {
    throw new RangeError(
      `Cannot evaluate ${count} pairs: the count must be an integer >= 2, so pairs can be re-paired`,
    );
  }
  if (domains.length !== 2) {
    throw new RangeError(
      `Cannot evaluate pairs of ${domains.length} domains: there must be 2 (A and B)`,
    );
  }
  domains.forEach((images, d) => {
    if (images.length !== count * PIXELS) {
      throw new RangeError(
        `Cannot evaluate ${count} pairs as domain ${d} must hold ${
          count * PIXELS
        } floats: current length is ${images.length}`,
      );
    }
  });
  const [a, b] = domains;
  const order = derangement(count, rng);

  const transformed = mapImages(
    a,
    count,
    (image) => applyTransform(transform, image, IMAGE_SIZE),
  )!;
  const pixel_agreement = pixelAgreement(transformed, b);
  const pixel_agreement_chance = pixelAgreement(transformed, reorder(b, order));

  const labelsA = classifier.classify(a, count);
  const notes: string[] = [];
  let label_agreement: number | null = null;
  let label_agreement_chance: number | null = null;
  let confident_b: number | null = null;
  const restored = mapImages(
    b,
    count,
    (image) => invertTransform(transform, image, IMAGE_SIZE),
  );
  if (restored) {
    const labelsB = classifier.classify(restored, count);
    label_agreement = labelAgreement(labelsA.labels, labelsB.labels);
    label_agreement_chance = labelAgreement(
      labelsA.labels,
      Uint8Array.from(order, (i) => labelsB.labels[i]),
    );
    confident_b = confidentShare(labelsB.confidence);
  } else {
    notes.push(
      `label_agreement and confident_b are null: transform "${transform}" has no inverse, so B cannot be mapped back to MNIST for the MNIST classifier`,
    );
  }

  return {
    transform,
    count,
    label_agreement,
    label_agreement_chance,
    pixel_agreement,
    pixel_agreement_chance,
    confident_a: confidentShare(labelsA.confidence),
    confident_b,
    classes: classesCovered(labelsA.labels),
    notes,
  };
}
