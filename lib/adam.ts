/**
 * Adam, written out so that its whole state is plain named tensors a
 * checkpoint can store and restore exactly.
 *
 * The update is PyTorch's: `p -= lr / (1 - b1^t) * m / (sqrt(v) /
 * sqrt(1 - b2^t) + eps)`, with the bias corrections computed on the host.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { adamSimd } from "./simd.ts";

/**
 * Floor of the second-moment estimate. Where a gradient stays zero (MNIST's
 * always-blank border pixels), `v` decays into float32 subnormals, which
 * slow the wasm backend's arithmetic by ~30% on long runs. The floor is far
 * below `epsilon ** 2`, so updates do not change.
 */
export const V_FLOOR = 1e-30;

/** Adam hyper-parameters. */
export interface AdamConfig {
  learningRate: number;
  beta1: number;
  beta2: number;
  /** Added to the denominator. Default: 1e-8. */
  epsilon?: number;
  /**
   * On the wasm backend, update each parameter in one pass over the heap
   * (WebAssembly SIMD, `lib/simd.ts`) instead of fourteen tfjs kernels
   * (several times faster; equal within float32 rounding, see the tests).
   * Default: true.
   */
  fused?: boolean;
}

/** The slice of tfjs's wasm backend the fused update reads and writes. */
interface HeapBackend {
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  wasm: { asm: { memory: WebAssembly.Memory } };
}

/** Adam over a fixed set of named variables. */
export class Adam {
  readonly config: Required<AdamConfig>;
  /** Updates applied so far. */
  updates = 0;
  readonly #params: Map<string, tf.Variable>;
  readonly #m = new Map<string, tf.Variable>();
  readonly #v = new Map<string, tf.Variable>();

  constructor(params: Map<string, tf.Variable>, config: AdamConfig) {
    this.config = { epsilon: 1e-8, fused: true, ...config };
    this.#params = params;
    // tidy frees the zero tensors; the variables keep their buffers.
    tf.tidy(() => {
      for (const [name, p] of params) {
        this.#m.set(name, tf.variable(tf.zerosLike(p), false));
        this.#v.set(name, tf.variable(tf.zerosLike(p), false));
      }
    });
  }

  /** Applies one update from gradients keyed by parameter name. */
  apply(grads: Record<string, tf.Tensor>): void {
    for (const name of this.#params.keys()) {
      if (!grads[name]) {
        throw new Error(`Cannot apply Adam: no gradient for "${name}"`);
      }
    }
    this.updates++;
    if (this.config.fused && tf.getBackend() === "wasm") {
      this.#applyFused(grads);
    } else {
      this.#applyOps(grads);
    }
  }

  #corrections(): { stepSize: number; rootCorrection: number } {
    const { learningRate, beta1, beta2 } = this.config;
    const t = this.updates;
    return {
      stepSize: learningRate / (1 - beta1 ** t),
      rootCorrection: Math.sqrt(1 - beta2 ** t),
    };
  }

  #applyOps(grads: Record<string, tf.Tensor>): void {
    const { beta1, beta2, epsilon } = this.config;
    const { stepSize, rootCorrection } = this.#corrections();
    tf.tidy(() => {
      for (const [name, p] of this.#params) {
        const g = grads[name];
        const m = this.#m.get(name)!;
        const v = this.#v.get(name)!;
        m.assign(tf.add(tf.mul(m, beta1), tf.mul(g, 1 - beta1)));
        v.assign(tf.maximum(
          tf.add(tf.mul(v, beta2), tf.mul(tf.square(g), 1 - beta2)),
          V_FLOOR,
        ));
        const denom = tf.add(tf.div(tf.sqrt(v), rootCorrection), epsilon);
        p.assign(tf.sub(p, tf.mul(tf.div(m, denom), stepSize)));
      }
    });
  }

  /**
   * Updates the moments in place on the wasm heap and writes each parameter
   * into a new tensor. Parameters must not change in place: the wasm
   * backend's XNNPACK matrix product caches its packing of a weight matrix
   * by tensor, and would go on using the old values.
   */
  #applyFused(grads: Record<string, tf.Tensor>): void {
    const { beta1, beta2, epsilon } = this.config;
    const { stepSize, rootCorrection } = this.#corrections();
    const backend = tf.backend() as unknown as HeapBackend;
    const offset = (t: tf.TensorInfo) =>
      backend.dataIdMap.get(t.dataId).memoryOffset;
    for (const [name, variable] of this.#params) {
      const next = tf.engine().makeTensorFromTensorInfo(
        backend.makeOutput(variable.shape, "float32"),
      );
      const moments = [this.#m.get(name)!, this.#v.get(name)!];
      const tensors = [variable, ...moments, grads[name], next];
      // Four lanes at a time in WebAssembly, the last few elements here.
      const lanes = variable.size - variable.size % 4;
      adamSimd(backend.wasm.asm.memory, {
        param: offset(variable),
        m: offset(moments[0]),
        v: offset(moments[1]),
        grad: offset(grads[name]),
        out: offset(next),
        count: lanes,
        beta1,
        beta2,
        inverseRootCorrection: 1 / rootCorrection,
        epsilon,
        stepSize,
        vFloor: V_FLOOR,
      });
      const [p, m, v, g, out] = tensors.map((t) =>
        backend.typedArrayFromHeap(t)
      );
      for (let i = lanes; i < p.length; i++) {
        const gi = g[i];
        const mi = beta1 * m[i] + (1 - beta1) * gi;
        const vi = Math.max(beta2 * v[i] + (1 - beta2) * gi * gi, V_FLOOR);
        m[i] = mi;
        v[i] = vi;
        out[i] = p[i] -
          stepSize * mi / (Math.sqrt(vi) / rootCorrection + epsilon);
      }
      variable.assign(next);
      next.dispose();
    }
  }

  /** The moment estimates, named `adam/m/<param>` and `adam/v/<param>`. */
  state(): Map<string, tf.Variable> {
    const out = new Map<string, tf.Variable>();
    for (const [name, m] of this.#m) out.set(`adam/m/${name}`, m);
    for (const [name, v] of this.#v) out.set(`adam/v/${name}`, v);
    return out;
  }

  /** Frees the moment estimates. */
  dispose(): void {
    for (const t of [...this.#m.values(), ...this.#v.values()]) t.dispose();
  }
}
