/**
 * The exact image transforms that turn MNIST into a second domain.
 *
 * Each works on one square float image in [0, 1], row-major, and returns a
 * new array. `rot90` and `negative` are invertible; `edge` is not.
 *
 * @module
 */

import { OptionError } from "./errors.ts";

/** Names of the transforms that define domain B. */
export const TRANSFORMS = ["rot90", "negative", "edge"] as const;

/** One of {@linkcode TRANSFORMS}. */
export type TransformName = typeof TRANSFORMS[number];

/** Checks that `name` is a transform and narrows its type. */
export function checkTransform(name: string): TransformName {
  if (!(TRANSFORMS as readonly string[]).includes(name)) {
    throw new OptionError(
      `Unsupported transform: "${name}". Should be one of: ${
        TRANSFORMS.join(", ")
      }`,
    );
  }
  return name as TransformName;
}

/** Rotates a `size` x `size` image 90 degrees counter-clockwise. */
export function rot90(image: Float32Array, size: number): Float32Array {
  const out = new Float32Array(size * size);
  // Counter-clockwise: out[r][c] = in[c][size - 1 - r].
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      out[r * size + c] = image[c * size + (size - 1 - r)];
    }
  }
  return out;
}

/** Rotates 90 degrees clockwise: the inverse of {@linkcode rot90}. */
export function rot270(image: Float32Array, size: number): Float32Array {
  return rot90(rot90(rot90(image, size), size), size);
}

/** `1 - x` for every pixel. */
export function negative(image: Float32Array): Float32Array {
  return image.map((x) => 1 - x);
}

/**
 * Morphological edge: the 3x3 grey dilation (zero outside the image) minus
 * the image, as the CoGAN paper built its edge domain.
 */
export function edge(image: Float32Array, size: number): Float32Array {
  const out = new Float32Array(size * size);
  for (let r = 0; r < size; r++) {
    for (let c = 0; c < size; c++) {
      let max = 0;
      for (let dr = -1; dr <= 1; dr++) {
        const rr = r + dr;
        if (rr < 0 || rr >= size) continue;
        for (let dc = -1; dc <= 1; dc++) {
          const cc = c + dc;
          if (cc < 0 || cc >= size) continue;
          max = Math.max(max, image[rr * size + cc]);
        }
      }
      out[r * size + c] = max - image[r * size + c];
    }
  }
  return out;
}

/** Applies the named transform to a `size` x `size` image. */
export function applyTransform(
  name: TransformName,
  image: Float32Array,
  size: number,
): Float32Array {
  switch (name) {
    case "rot90":
      return rot90(image, size);
    case "negative":
      return negative(image);
    case "edge":
      return edge(image, size);
  }
}

/**
 * Maps a domain-B image back to domain A, or returns `undefined` where the
 * transform has no inverse (`edge`).
 */
export function invertTransform(
  name: TransformName,
  image: Float32Array,
  size: number,
): Float32Array | undefined {
  switch (name) {
    case "rot90":
      return rot270(image, size);
    case "negative":
      return negative(image);
    case "edge":
      return undefined;
  }
}
