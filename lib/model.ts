/**
 * The coupled networks in tfjs.
 *
 * A shared layer is one set of variables used by every domain's path, not
 * copies kept in sync. Parameters are named
 * `generator/shared/<i>/kernel`, `generator/<domain>/<i>/bias`,
 * `discriminator/<domain>/<i>/kernel`, `discriminator/shared/<i>/bias`, and
 * so on; a kernel is `[inputs, units]`. A batch-normalised layer adds
 * `gamma` and `beta` (trained) and `moving_mean` and `moving_variance`
 * (statistics, updated once per step, not trained).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  type Activation,
  type ArchSpec,
  BN_EPSILON,
  BN_MOMENTUM,
  IMAGE_SIZE,
  type LayerSpec,
  LEAKY_SLOPE,
} from "./arch.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { InputError } from "./errors.ts";
import { Rng } from "./rng.ts";

/** Variables of a batch normalisation. */
export interface BatchNorm {
  gamma: tf.Variable;
  beta: tf.Variable;
  movingMean: tf.Variable;
  movingVariance: tf.Variable;
}

/** A dense layer's variables. */
export interface DenseLayer {
  spec: LayerSpec;
  kernel: tf.Variable;
  bias: tf.Variable;
  norm?: BatchNorm;
}

/**
 * Batch statistics of one normalised layer in a training forward pass:
 * mean and unbiased variance over the batch, [units] each.
 */
export interface BatchStats {
  norm: BatchNorm;
  mean: tf.Tensor1D;
  variance: tf.Tensor1D;
}

/** A stack of dense layers. */
export type Stack = DenseLayer[];

/** Applies a dense layer's activation. */
export function activate(x: tf.Tensor2D, activation: Activation): tf.Tensor2D {
  switch (activation) {
    case "linear":
      return x;
    case "relu":
      return tf.relu(x);
    case "leaky_relu":
      return tf.leakyRelu(x, LEAKY_SLOPE);
    case "tanh":
      return tf.tanh(x);
    case "sigmoid":
      return tf.sigmoid(x);
  }
}

/**
 * Runs `x` ([batch, inputs]) through a stack: [batch, last units]. With
 * `batchStats`, batch normalisation uses the batch's statistics (training)
 * and records them there, kept, for {@linkcode updateMovingStats};
 * without, it uses the moving averages (generating).
 */
export function runStack(
  stack: Stack,
  x: tf.Tensor2D,
  batchStats?: BatchStats[],
): tf.Tensor2D {
  let h = x;
  for (const layer of stack) {
    h = tf.add(tf.matMul(h, layer.kernel as tf.Tensor2D), layer.bias);
    if (layer.norm) h = normalise(h, layer.norm, batchStats);
    h = activate(h, layer.spec.activation);
  }
  return h;
}

/**
 * Records, kept, a training batch's statistics for
 * {@linkcode updateMovingStats}: its `mean`, and its `variance` over `n`
 * rows made unbiased, as PyTorch keeps it.
 */
export function recordBatchStats(
  batchStats: BatchStats[],
  norm: BatchNorm,
  mean: tf.Tensor1D,
  variance: tf.Tensor1D,
  n: number,
): void {
  batchStats.push({
    norm,
    mean: tf.keep(mean),
    variance: tf.keep(tf.mul(variance, n / Math.max(1, n - 1))),
  });
}

function normalise(
  h: tf.Tensor2D,
  norm: BatchNorm,
  batchStats?: BatchStats[],
): tf.Tensor2D {
  let mean: tf.Tensor1D;
  let variance: tf.Tensor1D;
  if (batchStats) {
    mean = tf.mean(h, 0);
    variance = tf.mean(tf.square(tf.sub(h, mean)), 0);
    recordBatchStats(batchStats, norm, mean, variance, h.shape[0]);
  } else {
    mean = norm.movingMean as tf.Tensor1D;
    variance = norm.movingVariance as tf.Tensor1D;
  }
  const scale = tf.div(norm.gamma, tf.sqrt(tf.add(variance, BN_EPSILON)));
  return tf.add(tf.mul(tf.sub(h, mean), scale), norm.beta);
}

/**
 * Moves each layer's moving averages towards the batch statistics recorded
 * by a training forward pass, then frees those statistics.
 */
export function updateMovingStats(batchStats: BatchStats[]): void {
  tf.tidy(() => {
    for (const { norm, mean, variance } of batchStats) {
      norm.movingMean.assign(tf.add(
        tf.mul(norm.movingMean, 1 - BN_MOMENTUM),
        tf.mul(mean, BN_MOMENTUM),
      ));
      norm.movingVariance.assign(tf.add(
        tf.mul(norm.movingVariance, 1 - BN_MOMENTUM),
        tf.mul(variance, BN_MOMENTUM),
      ));
    }
  });
  tf.dispose(batchStats.flatMap((s) => [s.mean, s.variance]));
}

/** The layers of every network, by role. */
export interface CoupledModel {
  arch: ArchSpec;
  /** Domain names, in order: index 0 is domain A. */
  domains: string[];
  generatorShared: Stack;
  generatorPrivate: Stack[];
  discriminatorPrivate: Stack[];
  discriminatorShared: Stack;
  /** Every trained parameter by name, in a stable order. */
  parameters: Map<string, tf.Variable>;
  /** Batch normalisation's moving averages by name: state, not trained. */
  statistics: Map<string, tf.Variable>;
}

function makeStack(
  prefix: string,
  inputs: number,
  specs: LayerSpec[],
  rng: Rng,
  parameters: Map<string, tf.Variable>,
  statistics: Map<string, tf.Variable>,
): Stack {
  let fanIn = inputs;
  return specs.map((spec, i) => {
    // PyTorch's default for nn.Linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    // for kernel and bias, drawn here from our seeded generator so every
    // backend starts from the same numbers.
    const bound = 1 / Math.sqrt(fanIn);
    const uniform = (n: number) =>
      Float32Array.from({ length: n }, () => (2 * rng.nextFloat() - 1) * bound);
    const kernel = tf.variable(
      tf.tensor2d(uniform(fanIn * spec.units), [fanIn, spec.units]),
      true,
      `${prefix}/${i}/kernel`,
    );
    const bias = tf.variable(
      tf.tensor1d(uniform(spec.units)),
      true,
      `${prefix}/${i}/bias`,
    );
    parameters.set(kernel.name, kernel);
    parameters.set(bias.name, bias);
    fanIn = spec.units;
    if (!spec.batchNorm) return { spec, kernel, bias };
    const make = (name: string, value: number, trainable: boolean) => {
      const v = tf.variable(
        tf.fill([spec.units], value),
        trainable,
        `${prefix}/${i}/${name}`,
      );
      (trainable ? parameters : statistics).set(v.name, v);
      return v;
    };
    const norm: BatchNorm = {
      gamma: make("gamma", 1, true),
      beta: make("beta", 0, true),
      movingMean: make("moving_mean", 0, false),
      movingVariance: make("moving_variance", 1, false),
    };
    return { spec, kernel, bias, norm };
  });
}

function width(specs: LayerSpec[], inputs: number): number {
  return specs.length > 0 ? specs[specs.length - 1].units : inputs;
}

/**
 * Creates the coupled networks with seeded initial weights. Variable names
 * are unique per tfjs engine, so dispose a model before making another with
 * the same domains.
 */
export function createModel(
  arch: ArchSpec,
  domains: string[],
  seed: number,
): CoupledModel {
  return freeingTemporaries(() => buildModel(arch, domains, new Rng(seed)));
}

/**
 * Runs `f` in a tfjs scope that frees every tensor it made except
 * variables: the initial values a variable was made from stay alive (and
 * hold a second reference to its first buffer) unless freed.
 */
export function freeingTemporaries<T>(f: () => T): T {
  tf.engine().startScope();
  try {
    return f();
  } finally {
    tf.engine().endScope();
  }
}

function buildModel(
  arch: ArchSpec,
  domains: string[],
  rng: Rng,
): CoupledModel {
  const parameters = new Map<string, tf.Variable>();
  const statistics = new Map<string, tf.Variable>();
  const pixels = IMAGE_SIZE * IMAGE_SIZE;
  const generatorShared = makeStack(
    "generator/shared",
    arch.latentDim,
    arch.generatorShared,
    rng,
    parameters,
    statistics,
  );
  const sharedOut = width(arch.generatorShared, arch.latentDim);
  const generatorPrivate = domains.map((d) =>
    makeStack(
      `generator/${d}`,
      sharedOut,
      arch.generatorPrivate,
      rng,
      parameters,
      statistics,
    )
  );
  const discriminatorPrivate = domains.map((d) =>
    makeStack(
      `discriminator/${d}`,
      pixels,
      arch.discriminatorPrivate,
      rng,
      parameters,
      statistics,
    )
  );
  const discriminatorShared = makeStack(
    "discriminator/shared",
    width(arch.discriminatorPrivate, pixels),
    arch.discriminatorShared,
    rng,
    parameters,
    statistics,
  );
  return {
    arch,
    domains,
    generatorShared,
    generatorPrivate,
    discriminatorPrivate,
    discriminatorShared,
    parameters,
    statistics,
  };
}

/** Frees every variable of the model. */
export function disposeModel(model: CoupledModel): void {
  for (const v of model.parameters.values()) v.dispose();
  for (const v of model.statistics.values()) v.dispose();
}

/** Names of the generator's or the discriminator's parameters. */
export function parameterNames(
  model: CoupledModel,
  network: "generator" | "discriminator",
): string[] {
  return [...model.parameters.keys()].filter((n) =>
    n.startsWith(`${network}/`)
  );
}

/** Whether a parameter belongs to a shared layer. */
export function isShared(name: string): boolean {
  return name.split("/")[1] === "shared";
}

/**
 * Gradients by parameter name with the shared parameters' divided by the
 * number of domains, so a shared layer takes the mean of the domains' pulls.
 */
export function averageShared(
  grads: Iterable<[string, tf.Tensor]>,
  domains: number,
): tf.NamedTensorMap {
  const out: tf.NamedTensorMap = {};
  for (const [name, g] of grads) {
    out[name] = isShared(name) ? tf.div(g, domains) : g;
  }
  return out;
}

/**
 * One image per domain for each row of `z` ([batch, latentDim]): the shared
 * layers run once, each private stack on their output. Each result is
 * [batch, 784] in [0, 1]. Pass `batchStats` when training (see
 * {@linkcode runStack}).
 */
export function generate(
  model: CoupledModel,
  z: tf.Tensor2D,
  batchStats?: BatchStats[],
): tf.Tensor2D[] {
  const h = runStack(model.generatorShared, z, batchStats);
  return model.generatorPrivate.map((stack) => runStack(stack, h, batchStats));
}

/** Discriminator logits ([batch, 1]) of domain `d` for images [batch, 784]. */
export function discriminate(
  model: CoupledModel,
  d: number,
  images: tf.Tensor2D,
): tf.Tensor2D {
  return runStack(
    model.discriminatorShared,
    runStack(model.discriminatorPrivate[d], images),
  );
}

/**
 * Sets every parameter of `model` from named values (a checkpoint's
 * tensors). Throws when one is missing or has the wrong size.
 */
export function assignParameters(
  model: CoupledModel,
  values: Map<string, Float32Array>,
  source: string,
): void {
  for (const [name, variable] of [...model.parameters, ...model.statistics]) {
    const v = values.get(name);
    if (!v || v.length !== variable.size) {
      throw new InputError(
        `Cannot load weights from "${source}": parameter "${name}" is ${
          v ? `of size ${v.length}, not ${variable.size}` : "missing"
        }`,
      );
    }
    tf.tidy(() => variable.assign(tf.tensor(v, variable.shape)));
  }
}

/** Builds the networks of a checkpoint with its trained weights. */
export function modelFromCheckpoint(checkpoint: Checkpoint): CoupledModel {
  const { arch, domains } = checkpoint.manifest;
  const model = createModel(arch, domains.map((d) => d.name), 0);
  try {
    assignParameters(model, checkpoint.tensors, checkpoint.path);
  } catch (err) {
    disposeModel(model);
    throw err;
  }
  return model;
}
