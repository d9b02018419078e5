/**
 * A dense layer's training forward pass and its backward pass, written out
 * by hand instead of recorded on tfjs's gradient tape.
 *
 * For `a = act(BN(x W + b))` with upstream gradient `dA`:
 * `dY = dA * act'` (computed from `a`), then for batch normalisation
 * `dBeta = colsum(dY)`, `dGamma = colsum(dY * xhat)` and
 * `dZ = invStd / n * (n * dXhat - colsum(dXhat) - xhat * colsum(dXhat * xhat))`
 * with `dXhat = dY * gamma`; without it `dZ = dY`. Then `db = colsum(dZ)`,
 * `dW = x^T dZ` and `dX = dZ W^T`.
 *
 * Two implementations: plain tfjs ops (any backend, any matmul kernel), and
 * on the wasm backend with the `blas` kernel two registered kernels that do
 * a layer's whole forward or backward pass in one call (see
 * `lib/dense_kernels.ts`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { BN_EPSILON, LEAKY_SLOPE } from "./arch.ts";
import {
  activate,
  type BatchStats,
  type DenseLayer,
  recordBatchStats,
} from "./model.ts";

/** What a layer's forward pass keeps for its backward pass. */
export interface LayerTrace {
  layer: DenseLayer;
  /** The layer's input, [batch, inputs]. */
  x: tf.Tensor2D;
  /** The layer's output after its activation, [batch, units]. */
  a: tf.Tensor2D;
  /** With batch normalisation: the normalised pre-activation, [batch, units]. */
  xhat?: tf.Tensor2D;
  /** With batch normalisation: `1 / sqrt(variance + epsilon)`, [units]. */
  invStd?: tf.Tensor1D;
}

/** Gradients of one layer. */
export interface LayerGrads {
  /** By parameter name, when asked for. */
  params: [string, tf.Tensor][];
  /** Gradient of the layer's input, when asked for. */
  dX?: tf.Tensor2D;
}

/** One implementation of a layer's forward and backward passes. */
export interface DenseOps {
  /**
   * Training forward pass: batch normalisation uses the batch's statistics
   * and records them, kept, in `batchStats`.
   */
  forward(
    layer: DenseLayer,
    x: tf.Tensor2D,
    batchStats: BatchStats[],
  ): LayerTrace;
  /** Backward pass of `dA`, [batch, units]: parameters, input, or both. */
  backward(
    trace: LayerTrace,
    dA: tf.Tensor2D,
    want: { params: boolean; input: boolean },
  ): LayerGrads;
}

/** `dA * act'`, from the activation's output `a`. */
export function activationGrad(
  dA: tf.Tensor2D,
  a: tf.Tensor2D,
  activation: DenseLayer["spec"]["activation"],
): tf.Tensor2D {
  switch (activation) {
    case "linear":
      return dA;
    case "relu":
      return tf.mul(dA, tf.step(a));
    case "leaky_relu":
      return tf.where(tf.greater(a, 0), dA, tf.mul(dA, LEAKY_SLOPE));
    case "tanh":
      return tf.mul(dA, tf.sub(1, tf.square(a)));
    case "sigmoid":
      return tf.mul(dA, tf.mul(a, tf.sub(1, a)));
  }
}

/** The layer passes in plain tfjs ops: any backend. */
export const OPS_DENSE: DenseOps = {
  forward(layer, x, batchStats) {
    let h: tf.Tensor2D = tf.add(
      tf.matMul(x, layer.kernel as tf.Tensor2D),
      layer.bias,
    );
    let xhat: tf.Tensor2D | undefined;
    let invStd: tf.Tensor1D | undefined;
    if (layer.norm) {
      const n = h.shape[0];
      const mean = tf.mean(h, 0) as tf.Tensor1D;
      const centred = tf.sub(h, mean);
      const variance = tf.mean(tf.square(centred), 0) as tf.Tensor1D;
      recordBatchStats(batchStats, layer.norm, mean, variance, n);
      invStd = tf.rsqrt(tf.add(variance, BN_EPSILON));
      xhat = tf.mul(centred, invStd);
      h = tf.add(tf.mul(xhat, layer.norm.gamma), layer.norm.beta);
    }
    const a = activate(h, layer.spec.activation);
    return { layer, x, a, xhat, invStd };
  },

  backward({ layer, x, a, xhat, invStd }, dA, want) {
    const params: [string, tf.Tensor][] = [];
    let dZ = activationGrad(dA, a, layer.spec.activation);
    if (layer.norm && xhat && invStd) {
      const n = dZ.shape[0];
      if (want.params) {
        params.push([layer.norm.gamma.name, tf.sum(tf.mul(dZ, xhat), 0)]);
        params.push([layer.norm.beta.name, tf.sum(dZ, 0)]);
      }
      const dXhat = tf.mul(dZ, layer.norm.gamma);
      dZ = tf.mul(
        tf.sub(
          tf.sub(tf.mul(dXhat, n), tf.sum(dXhat, 0)),
          tf.mul(xhat, tf.sum(tf.mul(dXhat, xhat), 0)),
        ),
        tf.div(invStd, n),
      );
    }
    // NOTE: the products take explicitly transposed operands. With the
    // wasm backend's stock matmul kernel, `matMul(dZ, W, false, true)` here
    // gave the default network's shared generator gradients 40% off from
    // the third step on, though each product checked equal to a plain
    // one when recomputed: not understood. Explicit transposes avoid it
    // (tested against the tape with every kernel) and are what the `wasm`
    // kernel does anyway; revisit when tfjs-backend-wasm changes.
    if (want.params) {
      params.push([layer.kernel.name, tf.matMul(tf.transpose(x), dZ)]);
      params.push([layer.bias.name, tf.sum(dZ, 0)]);
    }
    const dX: tf.Tensor2D | undefined = want.input
      ? tf.matMul(dZ, tf.transpose(layer.kernel as tf.Tensor2D))
      : undefined;
    return { params, dX };
  },
};
