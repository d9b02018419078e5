/**
 * The training step without tfjs's gradient tape: the same step as
 * `lib/step.ts` (its `tape` method, kept as the reference), with the
 * backward pass written out layer by layer (`lib/dense_grad.ts`).
 *
 * Beyond dropping the tape's bookkeeping it saves work the tape cannot see:
 * the generator runs forward once (the reference runs it again inside
 * `generatorGrads`, on the same `z` with the same weights and batch
 * statistics, so the fakes are the same); the discriminators see a domain's
 * real and generated images as one batch, and the shared layers see every
 * domain's rows as one batch, so one matrix product serves them all; and the
 * generator's pass through the discriminators skips the discriminators'
 * weight gradients.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import type { DenseOps, LayerTrace } from "./dense_grad.ts";
import {
  averageShared,
  type BatchStats,
  type CoupledModel,
  type Stack,
  updateMovingStats,
} from "./model.ts";
import type { Optimisers } from "./step.ts";

function forwardStack(
  ops: DenseOps,
  stack: Stack,
  x: tf.Tensor2D,
  batchStats: BatchStats[],
): LayerTrace[] {
  const traces: LayerTrace[] = [];
  for (const layer of stack) {
    traces.push(ops.forward(layer, x, batchStats));
    x = traces[traces.length - 1].a;
  }
  return traces;
}

function outputOf(traces: LayerTrace[], x: tf.Tensor2D): tf.Tensor2D {
  return traces.length > 0 ? traces[traces.length - 1].a : x;
}

/**
 * Backward through a stack from `dA` at its output. Adds parameter
 * gradients to `grads` when `params`; returns the input's gradient when
 * `input` (an empty stack passes `dA` through).
 */
function backwardStack(
  ops: DenseOps,
  traces: LayerTrace[],
  dA: tf.Tensor2D,
  want: { params: boolean; input: boolean },
  grads: Map<string, tf.Tensor>,
): tf.Tensor2D | undefined {
  let d: tf.Tensor2D | undefined = dA;
  for (let i = traces.length - 1; i >= 0 && d; i--) {
    const out = ops.backward(traces[i], d, {
      params: want.params,
      input: i > 0 || want.input,
    });
    for (const [name, g] of out.params) grads.set(name, g);
    d = out.dX;
  }
  return d;
}

interface DiscriminatorTrace {
  /** Per domain: its private stack on its rows. */
  private: LayerTrace[][];
  /** The shared stack on every domain's rows, domain 0's first. */
  shared: LayerTrace[];
  /** [sum of rows, 1]. */
  logits: tf.Tensor2D;
}

/** Logits of domain `d`'s discriminator on `inputs[d]`, all in one column. */
function discriminatorForward(
  ops: DenseOps,
  model: CoupledModel,
  inputs: tf.Tensor2D[],
): DiscriminatorTrace {
  const own = inputs.map((x, d) =>
    forwardStack(ops, model.discriminatorPrivate[d], x, [])
  );
  const joined = tf.concat(own.map((t, d) => outputOf(t, inputs[d])));
  const shared = forwardStack(ops, model.discriminatorShared, joined, []);
  return { private: own, shared, logits: outputOf(shared, joined) };
}

/** Backward from the logits' gradient; returns each domain's input gradient. */
function discriminatorBackward(
  ops: DenseOps,
  trace: DiscriminatorTrace,
  dLogits: tf.Tensor2D,
  want: { params: boolean; input: boolean },
  grads: Map<string, tf.Tensor>,
): (tf.Tensor2D | undefined)[] {
  const dJoined = backwardStack(
    ops,
    trace.shared,
    dLogits,
    { params: want.params, input: true },
    grads,
  )!;
  const parts = tf.split(dJoined, trace.private.length) as tf.Tensor2D[];
  return trace.private.map((t, d) =>
    backwardStack(ops, t, parts[d], want, grads)
  );
}

/**
 * `[domains * 2 * batch, 1]`: per domain, -1 on its `batch` real rows, then
 * 1 on its `batch` generated rows.
 */
function realFakeSigns(domains: number, batch: number): tf.Tensor2D {
  const values = new Float32Array(domains * 2 * batch).fill(-1);
  for (let d = 0; d < domains; d++) {
    values.fill(1, (2 * d + 1) * batch, (2 * d + 2) * batch);
  }
  return tf.tensor2d(values, [values.length, 1]);
}

/**
 * Runs one step with `ops` for the layers: the same update, statistics and
 * moving averages as `trainStep(..., "tape")` within float rounding.
 */
export function fastTrainStep(
  model: CoupledModel,
  optimisers: Optimisers,
  reals: tf.Tensor2D[],
  z: tf.Tensor2D,
  stats: tf.Variable,
  ops: DenseOps,
): void {
  const domains = model.domains.length;
  const batch = z.shape[0];
  const batchStats: BatchStats[] = [];
  tf.tidy(() => {
    // The generator, once: its fakes serve both updates.
    const gShared = forwardStack(ops, model.generatorShared, z, batchStats);
    const h = outputOf(gShared, z);
    const gPrivate = model.generatorPrivate.map((stack) =>
      forwardStack(ops, stack, h, batchStats)
    );
    const fakes = gPrivate.map((t) => outputOf(t, h));

    // Discriminator: rows of domain d are its reals, then its fakes.
    // Loss softplus(s * l) with s = -1 on reals and 1 on fakes; its
    // gradient on l is (sigmoid(l) - [real]) / batch.
    const dTrace = discriminatorForward(
      ops,
      model,
      reals.map((r, d) => tf.concat([r, fakes[d]])),
    );
    const dSigns = realFakeSigns(domains, batch);
    const dProb = tf.sigmoid(dTrace.logits);
    const dGrads = new Map<string, tf.Tensor>();
    discriminatorBackward(
      ops,
      dTrace,
      tf.div(tf.sub(dProb, tf.mul(0.5, tf.sub(1, dSigns))), batch),
      { params: true, input: false },
      dGrads,
    );
    // [domains, 2]: real, then generated.
    const dLosses = tf.mean(
      tf.reshape(tf.softplus(tf.mul(dSigns, dTrace.logits)), [
        domains,
        2,
        batch,
      ]),
      2,
    );
    const dMeans = tf.mean(tf.reshape(dProb, [domains, 2, batch]), 2);
    optimisers.discriminator.apply(averageShared(dGrads, domains));

    // Generator, through the discriminator just updated (its weight
    // gradients are not needed): non-saturating loss softplus(-l).
    const gTrace = discriminatorForward(ops, model, fakes);
    const gGrads = new Map<string, tf.Tensor>();
    const dFakes = discriminatorBackward(
      ops,
      gTrace,
      tf.div(tf.sub(tf.sigmoid(gTrace.logits), 1), batch),
      { params: false, input: true },
      gGrads,
    );
    const dH = gPrivate.map((t, d) =>
      backwardStack(
        ops,
        t,
        dFakes[d]!,
        { params: true, input: gShared.length > 0 },
        gGrads,
      )
    );
    if (gShared.length > 0) {
      backwardStack(
        ops,
        gShared,
        tf.addN(dH as tf.Tensor2D[]),
        { params: true, input: false },
        gGrads,
      );
    }
    const gLosses = tf.mean(
      tf.reshape(tf.softplus(tf.neg(gTrace.logits)), [domains, batch]),
      1,
    );
    optimisers.generator.apply(averageShared(gGrads, domains));

    // Per domain: dLoss, gLoss, dReal, dFake (STEP_STATS's order).
    const values = tf.stack([
      tf.sum(dLosses, 1),
      gLosses,
      ...tf.unstack(dMeans, 1),
    ], 1);
    stats.assign(tf.add(stats, tf.reshape(values, [-1])));
  });
  updateMovingStats(batchStats);
}
