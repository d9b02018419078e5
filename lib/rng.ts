/**
 * A small seeded random number generator whose whole state can be saved in
 * a checkpoint, so a resumed run draws exactly the numbers an uninterrupted
 * one would.
 *
 * The generator is xoshiro128** (Blackman and Vigna), seeded through
 * splitmix32. It is not cryptographic.
 *
 * @module
 */

/** The four 32-bit words of a {@linkcode Rng}'s state. */
export type RngState = [number, number, number, number];

function splitmix32(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
}

function rotl(x: number, k: number): number {
  return ((x << k) | (x >>> (32 - k))) >>> 0;
}

/** Seeded xoshiro128** generator. */
export class Rng {
  #s: Uint32Array;

  /** Seeds from any integer; the same seed gives the same stream. */
  constructor(seed: number) {
    if (!Number.isSafeInteger(seed)) {
      throw new RangeError(
        `Cannot seed the generator as the seed must be an integer: current value is ${seed}`,
      );
    }
    const next = splitmix32(seed ^ Math.floor(seed / 2 ** 32));
    this.#s = new Uint32Array([next(), next(), next(), next()]);
  }

  /** Restores a generator from {@linkcode Rng.state}. */
  static fromState(state: readonly number[]): Rng {
    if (
      state.length !== 4 ||
      !state.every((w) => Number.isInteger(w) && w >= 0 && w < 2 ** 32) ||
      state.every((w) => w === 0)
    ) {
      throw new RangeError(
        `Cannot restore the generator as its state must be four 32-bit words, not all zero: current value is ${
          JSON.stringify(state)
        }`,
      );
    }
    const rng = new Rng(0);
    rng.#s.set(state);
    return rng;
  }

  /** The state, as plain numbers for JSON. */
  state(): RngState {
    const s = this.#s;
    return [s[0], s[1], s[2], s[3]];
  }

  /** A uniform 32-bit unsigned integer. */
  nextUint32(): number {
    const s = this.#s;
    const result = Math.imul(rotl(Math.imul(s[1], 5) >>> 0, 7), 9) >>> 0;
    const t = (s[1] << 9) >>> 0;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 11);
    return result;
  }

  /** A uniform number in [0, 1) with 32 bits of resolution. */
  nextFloat(): number {
    return this.nextUint32() / 2 ** 32;
  }

  /** A uniform integer in [0, n), without modulo bias. */
  nextInt(n: number): number {
    const limit = 2 ** 32 - (2 ** 32 % n);
    let x = this.nextUint32();
    while (x >= limit) x = this.nextUint32();
    return x % n;
  }

  /** Fills `out` with standard normal samples (Box-Muller, both outputs). */
  fillNormal(out: Float32Array): Float32Array {
    for (let i = 0; i < out.length; i += 2) {
      // 1 - u keeps the logarithm's argument in (0, 1].
      const r = Math.sqrt(-2 * Math.log(1 - this.nextFloat()));
      const theta = 2 * Math.PI * this.nextFloat();
      out[i] = r * Math.cos(theta);
      if (i + 1 < out.length) out[i + 1] = r * Math.sin(theta);
    }
    return out;
  }

  /** Shuffles `items` in place (Fisher-Yates) and returns it. */
  shuffle<T extends { length: number; [i: number]: unknown }>(items: T): T {
    for (let i = items.length - 1; i > 0; i--) {
      const j = this.nextInt(i + 1);
      const tmp = items[i];
      items[i] = items[j];
      items[j] = tmp;
    }
    return items;
  }
}
