/**
 * The coupled networks in tfjs.
 *
 * A shared layer is one set of variables used by every domain's path, not
 * copies kept in sync. Parameters are named
 * `generator/shared/<i>/kernel`, `generator/<domain>/<i>/bias`,
 * `discriminator/<domain>/<i>/kernel`, `discriminator/shared/<i>/bias`, and
 * so on; a kernel is `[inputs, units]`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import {
  type Activation,
  type ArchSpec,
  IMAGE_SIZE,
  type LayerSpec,
  LEAKY_SLOPE,
} from "./arch.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { InputError } from "./errors.ts";
import { Rng } from "./rng.ts";

/** A dense layer's variables. */
export interface DenseLayer {
  spec: LayerSpec;
  kernel: tf.Variable;
  bias: tf.Variable;
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

/** Runs `x` ([batch, inputs]) through a stack: [batch, last units]. */
export function runStack(stack: Stack, x: tf.Tensor2D): tf.Tensor2D {
  let h = x;
  for (const layer of stack) {
    h = activate(
      tf.add(tf.matMul(h, layer.kernel as tf.Tensor2D), layer.bias),
      layer.spec.activation,
    );
  }
  return h;
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
  /** Every parameter by name, in a stable order. */
  parameters: Map<string, tf.Variable>;
}

function makeStack(
  prefix: string,
  inputs: number,
  specs: LayerSpec[],
  rng: Rng,
  parameters: Map<string, tf.Variable>,
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
    return { spec, kernel, bias };
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
  const rng = new Rng(seed);
  const parameters = new Map<string, tf.Variable>();
  const pixels = IMAGE_SIZE * IMAGE_SIZE;
  const generatorShared = makeStack(
    "generator/shared",
    arch.latentDim,
    arch.generatorShared,
    rng,
    parameters,
  );
  const sharedOut = width(arch.generatorShared, arch.latentDim);
  const generatorPrivate = domains.map((d) =>
    makeStack(
      `generator/${d}`,
      sharedOut,
      arch.generatorPrivate,
      rng,
      parameters,
    )
  );
  const discriminatorPrivate = domains.map((d) =>
    makeStack(
      `discriminator/${d}`,
      pixels,
      arch.discriminatorPrivate,
      rng,
      parameters,
    )
  );
  const discriminatorShared = makeStack(
    "discriminator/shared",
    width(arch.discriminatorPrivate, pixels),
    arch.discriminatorShared,
    rng,
    parameters,
  );
  return {
    arch,
    domains,
    generatorShared,
    generatorPrivate,
    discriminatorPrivate,
    discriminatorShared,
    parameters,
  };
}

/** Frees every variable of the model. */
export function disposeModel(model: CoupledModel): void {
  for (const v of model.parameters.values()) v.dispose();
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
 * One image per domain for each row of `z` ([batch, latentDim]): the shared
 * layers run once, each private stack on their output. Each result is
 * [batch, 784] in [0, 1].
 */
export function generate(model: CoupledModel, z: tf.Tensor2D): tf.Tensor2D[] {
  const h = runStack(model.generatorShared, z);
  return model.generatorPrivate.map((stack) => runStack(stack, h));
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
  for (const [name, variable] of model.parameters) {
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
