/**
 * One training step: a discriminator update, then a generator update, both
 * from the same latent batch `z`.
 *
 * Losses are binary cross-entropy on logits (`softplus(-l)` for "real",
 * `softplus(l)` for "fake"): the seed's objective without its `1e-8`
 * guard. The generator uses the non-saturating form. Gradients of shared
 * parameters are divided by the number of domains, so a shared layer takes
 * the mean of the domains' pulls, not their sum.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { Adam, type AdamConfig } from "./adam.ts";
import { denseOps } from "./dense_kernels.ts";
import { fastTrainStep } from "./fast_step.ts";
import {
  averageShared,
  type BatchStats,
  type CoupledModel,
  discriminate,
  generate,
  parameterNames,
  updateMovingStats,
} from "./model.ts";

/**
 * Order of the statistics a step adds to its accumulator, per domain:
 * discriminator loss, generator loss, mean D(real), mean D(fake).
 */
export const STEP_STATS = ["dLoss", "gLoss", "dReal", "dFake"] as const;

/** Optimisers of the two networks. */
export interface Optimisers {
  discriminator: Adam;
  generator: Adam;
}

/** One Adam for the discriminators' parameters, one for the generators'. */
export function createOptimisers(
  model: CoupledModel,
  config: AdamConfig,
): Optimisers {
  const of = (network: "generator" | "discriminator") =>
    new Map(
      parameterNames(model, network).map((n) => [n, model.parameters.get(n)!]),
    );
  return {
    discriminator: new Adam(of("discriminator"), config),
    generator: new Adam(of("generator"), config),
  };
}

/** Frees both optimisers' state. */
export function disposeOptimisers(optimisers: Optimisers): void {
  optimisers.discriminator.dispose();
  optimisers.generator.dispose();
}

function pickVariables(model: CoupledModel, names: string[]): tf.Variable[] {
  return names.map((n) => model.parameters.get(n)!);
}

/** Gradients of one network's loss, with the step's statistics. */
export interface NetworkGrads {
  /** By parameter name; shared ones already divided by the domains. */
  grads: tf.NamedTensorMap;
  /** Per domain: the loss, and for the discriminator D(real), D(fake). */
  losses: tf.Scalar[];
  dReal: tf.Scalar[];
  dFake: tf.Scalar[];
}

/**
 * Discriminator gradients for real batches `reals[d]` and generated
 * batches `fakes[d]` (each [batch, 784]); the fakes are constants here.
 */
export function discriminatorGrads(
  model: CoupledModel,
  reals: tf.Tensor2D[],
  fakes: tf.Tensor2D[],
): NetworkGrads {
  const losses: tf.Scalar[] = [];
  const dReal: tf.Scalar[] = [];
  const dFake: tf.Scalar[] = [];
  const vars = pickVariables(model, parameterNames(model, "discriminator"));
  const { grads } = tf.variableGrads(() => {
    const perDomain = model.domains.map((_, i) => {
      const realLogits = discriminate(model, i, reals[i]);
      const fakeLogits = discriminate(model, i, fakes[i]);
      dReal.push(tf.keep(tf.mean(tf.sigmoid(realLogits))));
      dFake.push(tf.keep(tf.mean(tf.sigmoid(fakeLogits))));
      const loss = tf.add(
        tf.mean(tf.softplus(tf.neg(realLogits))),
        tf.mean(tf.softplus(fakeLogits)),
      ) as tf.Scalar;
      losses.push(tf.keep(loss));
      return loss;
    });
    return tf.addN(perDomain) as tf.Scalar;
  }, vars);
  return {
    grads: averageShared(Object.entries(grads), model.domains.length),
    losses,
    dReal,
    dFake,
  };
}

/**
 * Generator gradients (non-saturating loss) for latents `z`. Batch
 * normalisation uses the batch's statistics and records them, kept, in
 * `batchStats`.
 */
export function generatorGrads(
  model: CoupledModel,
  z: tf.Tensor2D,
  batchStats: BatchStats[] = [],
): NetworkGrads {
  const losses: tf.Scalar[] = [];
  const vars = pickVariables(model, parameterNames(model, "generator"));
  const { grads } = tf.variableGrads(() => {
    const images = generate(model, z, batchStats);
    const perDomain = images.map((x, i) => {
      const loss = tf.mean(
        tf.softplus(tf.neg(discriminate(model, i, x))),
      ) as tf.Scalar;
      losses.push(tf.keep(loss));
      return loss;
    });
    return tf.addN(perDomain) as tf.Scalar;
  }, vars);
  return {
    grads: averageShared(Object.entries(grads), model.domains.length),
    losses,
    dReal: [],
    dFake: [],
  };
}

/**
 * How a step computes its gradients: `fast`, the backward pass written out
 * by hand (`lib/fast_step.ts`), or `tape`, tfjs's gradient tape
 * (`tf.variableGrads`), the reference the fast one is tested against.
 */
export const STEP_METHODS = ["fast", "tape"] as const;

/** One of {@linkcode STEP_METHODS}. */
export type StepMethod = typeof STEP_METHODS[number];

/**
 * Runs one step. `reals[d]` is a [batch, 784] batch of domain `d`, `z` is
 * [batch, latentDim]. The step's statistics ([domains * 4], ordered as
 * {@linkcode STEP_STATS} for domain 0, then domain 1, ...) are added to
 * `stats` without reading anything back to the host. Both methods give the
 * same result within float rounding (tested); `fast` is the default.
 */
export function trainStep(
  model: CoupledModel,
  optimisers: Optimisers,
  reals: tf.Tensor2D[],
  z: tf.Tensor2D,
  stats: tf.Variable,
  method: StepMethod = "fast",
): void {
  if (method === "fast") {
    fastTrainStep(model, optimisers, reals, z, stats, denseOps());
    return;
  }
  tf.tidy(() => {
    // Fakes as the generator makes them in training: batch statistics.
    const fakeStats: BatchStats[] = [];
    const fakes = generate(model, z, fakeStats);
    tf.dispose(fakeStats.flatMap((s) => [s.mean, s.variance]));
    const d = discriminatorGrads(model, reals, fakes);
    optimisers.discriminator.apply(d.grads);
    // The generator learns through the discriminator just updated.
    const batchStats: BatchStats[] = [];
    const g = generatorGrads(model, z, batchStats);
    optimisers.generator.apply(g.grads);
    updateMovingStats(batchStats);

    const values = model.domains.flatMap((_, i) => [
      d.losses[i],
      g.losses[i],
      d.dReal[i],
      d.dFake[i],
    ]);
    stats.assign(tf.add(stats, tf.stack(values)));
    // Kept tensors escape the gradient scopes; free them here.
    tf.dispose([...d.losses, ...d.dReal, ...d.dFake, ...g.losses]);
  });
}
