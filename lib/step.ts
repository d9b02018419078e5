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
import type { Adam } from "./adam.ts";
import {
  type CoupledModel,
  discriminate,
  generate,
  isShared,
  parameterNames,
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

function scaleShared(
  grads: tf.NamedTensorMap,
  domains: number,
): tf.NamedTensorMap {
  const out: tf.NamedTensorMap = {};
  for (const [name, g] of Object.entries(grads)) {
    out[name] = isShared(name) ? tf.div(g, domains) : g;
  }
  return out;
}

function pickVariables(model: CoupledModel, names: string[]): tf.Variable[] {
  return names.map((n) => model.parameters.get(n)!);
}

/**
 * Runs one step. `reals[d]` is a [batch, 784] batch of domain `d`, `z` is
 * [batch, latentDim]. The step's statistics ([domains * 4], ordered as
 * {@linkcode STEP_STATS} for domain 0, then domain 1, ...) are added to
 * `stats` without reading anything back to the host.
 */
export function trainStep(
  model: CoupledModel,
  optimisers: Optimisers,
  reals: tf.Tensor2D[],
  z: tf.Tensor2D,
  stats: tf.Variable,
): void {
  const n = model.domains.length;
  tf.tidy(() => {
    // Discriminator update; the fakes are constants here.
    const fakes = generate(model, z);
    const dReal: tf.Scalar[] = [];
    const dFake: tf.Scalar[] = [];
    const dLoss: tf.Scalar[] = [];
    const dVars = pickVariables(model, parameterNames(model, "discriminator"));
    const d = tf.variableGrads(() => {
      const losses = model.domains.map((_, i) => {
        const realLogits = discriminate(model, i, reals[i]);
        const fakeLogits = discriminate(model, i, fakes[i]);
        dReal.push(tf.keep(tf.mean(tf.sigmoid(realLogits))));
        dFake.push(tf.keep(tf.mean(tf.sigmoid(fakeLogits))));
        const loss = tf.add(
          tf.mean(tf.softplus(tf.neg(realLogits))),
          tf.mean(tf.softplus(fakeLogits)),
        ) as tf.Scalar;
        dLoss.push(tf.keep(loss));
        return loss;
      });
      return tf.addN(losses) as tf.Scalar;
    }, dVars);
    optimisers.discriminator.apply(scaleShared(d.grads, n));

    // Generator update with the same z, through the updated discriminator.
    const gLoss: tf.Scalar[] = [];
    const gVars = pickVariables(model, parameterNames(model, "generator"));
    const g = tf.variableGrads(() => {
      const images = generate(model, z);
      const losses = images.map((x, i) => {
        const loss = tf.mean(
          tf.softplus(tf.neg(discriminate(model, i, x))),
        ) as tf.Scalar;
        gLoss.push(tf.keep(loss));
        return loss;
      });
      return tf.addN(losses) as tf.Scalar;
    }, gVars);
    optimisers.generator.apply(scaleShared(g.grads, n));

    const values = model.domains.flatMap((_, i) => [
      dLoss[i],
      gLoss[i],
      dReal[i],
      dFake[i],
    ]);
    stats.assign(tf.add(stats, tf.stack(values)));
    // Kept tensors escape the gradient scopes; free them here.
    for (const t of [...dReal, ...dFake, ...dLoss, ...gLoss]) t.dispose();
  });
}
