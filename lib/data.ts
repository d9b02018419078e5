/**
 * The two training domains and their batches.
 *
 * Domain A is MNIST; domain B is MNIST under a transform. Each draws only
 * from its own half of the training set (A the first 30,000 images, B the
 * last 30,000), so no digit image is ever seen in both: the networks never
 * see a corresponding pair.
 *
 * @module
 */

import { IMAGE_SIZE } from "./arch.ts";
import type { MnistSplit } from "./mnist.ts";
import { Rng, type RngState } from "./rng.ts";
import { applyTransform, type TransformName } from "./transforms.ts";

/** A domain's name and how its images derive from MNIST. */
export interface DomainInfo {
  /** `mnist` or `mnist-<transform>`. */
  name: string;
  /** Transform applied to MNIST, or `identity`. */
  transform: TransformName | "identity";
}

/** A domain with its images. */
export interface Domain extends DomainInfo {
  /** Indices into the MNIST training split of the images used. */
  sourceIndices: Uint32Array;
  /** `count * 784` floats in [0, 1]. */
  images: Float32Array;
  count: number;
}

/** The domains of a run: MNIST and MNIST under `transform`. */
export function domainInfos(transform: TransformName): DomainInfo[] {
  return [
    { name: "mnist", transform: "identity" },
    { name: `mnist-${transform}`, transform },
  ];
}

/**
 * Splits MNIST into two disjoint halves and makes domain A from the first,
 * domain B (transformed) from the second.
 */
export function makeDomains(
  mnist: MnistSplit,
  transform: TransformName,
): [Domain, Domain] {
  const pixels = IMAGE_SIZE * IMAGE_SIZE;
  const half = Math.floor(mnist.count / 2);
  const [infoA, infoB] = domainInfos(transform);
  const build = (info: DomainInfo, start: number, count: number): Domain => {
    const sourceIndices = new Uint32Array(count);
    const images = new Float32Array(count * pixels);
    for (let i = 0; i < count; i++) {
      const src = start + i;
      sourceIndices[i] = src;
      const image = new Float32Array(pixels);
      for (let p = 0; p < pixels; p++) {
        image[p] = mnist.pixels[src * pixels + p] / 255;
      }
      images.set(
        info.transform === "identity"
          ? image
          : applyTransform(info.transform, image, IMAGE_SIZE),
        i * pixels,
      );
    }
    return { ...info, sourceIndices, images, count };
  };
  return [build(infoA, 0, half), build(infoB, half, half)];
}

/** Where a {@linkcode Batcher} stands, for checkpoints. */
export interface BatcherState {
  /** Generator state when the current epoch's order was drawn. */
  epochRng: RngState;
  /** Next position in the current epoch's order. */
  position: number;
}

/**
 * Draws batches from a domain in a seeded shuffled order, reshuffled each
 * epoch. Its state is small: the order is redrawn from the saved generator
 * state on restore.
 */
export class Batcher {
  readonly domain: Domain;
  #rng: Rng;
  #epochRng: RngState;
  #order: Uint32Array;
  #position = 0;

  constructor(domain: Domain, seed: number, state?: BatcherState) {
    this.domain = domain;
    this.#rng = state ? Rng.fromState(state.epochRng) : new Rng(seed);
    this.#epochRng = this.#rng.state();
    this.#order = this.#newOrder();
    if (state) this.#position = state.position;
  }

  #newOrder(): Uint32Array {
    this.#epochRng = this.#rng.state();
    const order = new Uint32Array(this.domain.count);
    for (let i = 0; i < order.length; i++) order[i] = i;
    return this.#rng.shuffle(order);
  }

  /** Fills `out` (`batch * 784` floats) with the next images. */
  next(out: Float32Array): Float32Array {
    const pixels = IMAGE_SIZE * IMAGE_SIZE;
    const batch = out.length / pixels;
    for (let b = 0; b < batch; b++) {
      if (this.#position >= this.#order.length) {
        this.#order = this.#newOrder();
        this.#position = 0;
      }
      const index = this.#order[this.#position++];
      out.set(
        this.domain.images.subarray(index * pixels, (index + 1) * pixels),
        b * pixels,
      );
    }
    return out;
  }

  /** The state to restore this batcher from. */
  state(): BatcherState {
    return { epochRng: this.#epochRng, position: this.#position };
  }
}
