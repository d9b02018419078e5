/**
 * Architectures of the coupled networks, as data.
 *
 * A coupled MLP is four stacks of dense layers. The generators run the
 * *shared* stack on the latent `z` once, then each domain's *private* stack
 * on the result; the discriminators run each domain's private stack on an
 * image, then the shared stack, which ends in one logit.
 *
 * @module
 */

import { OptionError } from "./errors.ts";

/** Element-wise activations a dense layer may end with. */
export const ACTIVATIONS = [
  "linear",
  "relu",
  "leaky_relu",
  "tanh",
  "sigmoid",
] as const;

/** One of {@linkcode ACTIVATIONS}; `leaky_relu` has slope 0.2. */
export type Activation = typeof ACTIVATIONS[number];

/** Slope of `leaky_relu` for negative inputs. */
export const LEAKY_SLOPE = 0.2;

/**
 * A dense layer: `activation(x W + b)` with `units` outputs, or with
 * `batchNorm`, `activation(BN(x W + b))`.
 */
export interface LayerSpec {
  units: number;
  activation: Activation;
  /**
   * Batch normalisation before the activation: batch statistics while
   * training, moving averages (momentum {@linkcode BN_MOMENTUM}) when
   * generating. Default: false.
   */
  batchNorm?: boolean;
}

/** Added to the variance in batch normalisation, as in PyTorch. */
export const BN_EPSILON = 1e-5;
/** Weight of each batch in the moving averages, as in PyTorch. */
export const BN_MOMENTUM = 0.1;

/** The layers and training defaults of one coupled architecture. */
export interface ArchSpec {
  /** Name used by `--arch`. */
  name: string;
  /** One line for `--help` and the README. */
  summary: string;
  /** Size of the latent vector `z`. */
  latentDim: number;
  /** Generator layers run once on `z`, common to all domains. */
  generatorShared: LayerSpec[];
  /** Each domain's own generator layers; the last one outputs the image. */
  generatorPrivate: LayerSpec[];
  /** Each domain's own discriminator layers, run on the image. */
  discriminatorPrivate: LayerSpec[];
  /** Discriminator layers common to all domains; the last one is a logit. */
  discriminatorShared: LayerSpec[];
  /** Adam learning rate. */
  learningRate: number;
  /** Adam first-moment decay. */
  beta1: number;
  /** Adam second-moment decay. */
  beta2: number;
  /** Images per domain in one step. */
  batchSize: number;
}

/** Pixels of one 28 x 28 MNIST image. */
export const IMAGE_SIZE = 28;
const PIXELS = IMAGE_SIZE * IMAGE_SIZE;

/** The seed network, layer for layer, with its optimiser settings. */
export const SEED_ARCH: ArchSpec = {
  name: "seed",
  summary:
    "the seed network: G shared 100-128, private 128-784; D private 784-128, shared 128-1; Adam 1e-3, batch 32",
  latentDim: 100,
  generatorShared: [{ units: 128, activation: "relu" }],
  generatorPrivate: [{ units: PIXELS, activation: "sigmoid" }],
  discriminatorPrivate: [{ units: 128, activation: "relu" }],
  discriminatorShared: [{ units: 1, activation: "linear" }],
  learningRate: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  batchSize: 32,
};

/**
 * The default: everything shared but the generators' last layer and the
 * discriminators' first, as in the CoGAN paper, with batch normalisation in
 * the shared generator layers (without it these MLPs collapse to one digit
 * within a thousand steps; see the README).
 */
export const DEEP_ARCH: ArchSpec = {
  name: "deep",
  summary:
    "G shared 100-256-512-1024 (batch norm), private 1024-784; D private 784-512, shared 512-256-1; leaky ReLU; Adam 2e-4 (0.5, 0.999), batch 64",
  latentDim: 100,
  generatorShared: [
    { units: 256, activation: "leaky_relu", batchNorm: true },
    { units: 512, activation: "leaky_relu", batchNorm: true },
    { units: 1024, activation: "leaky_relu", batchNorm: true },
  ],
  generatorPrivate: [{ units: PIXELS, activation: "sigmoid" }],
  discriminatorPrivate: [{ units: 512, activation: "leaky_relu" }],
  discriminatorShared: [
    { units: 256, activation: "leaky_relu" },
    { units: 1, activation: "linear" },
  ],
  learningRate: 2e-4,
  beta1: 0.5,
  beta2: 0.999,
  batchSize: 64,
};

/** Every architecture `--arch` accepts, by name. */
export const ARCHS: Readonly<Record<string, ArchSpec>> = {
  deep: DEEP_ARCH,
  seed: SEED_ARCH,
};

/** Name of the architecture used when none is given. */
export const DEFAULT_ARCH = "deep";

/** Looks an architecture up by name. */
export function getArch(name: string): ArchSpec {
  const arch = ARCHS[name];
  if (!arch) {
    throw new OptionError(
      `Unsupported architecture: "${name}". Should be one of: ${
        Object.keys(ARCHS).join(", ")
      }`,
    );
  }
  return arch;
}

/** Checks an architecture's layer list for the image and logit sizes. */
export function checkArch(arch: ArchSpec, pixels: number = PIXELS): void {
  const problems: string[] = [];
  const last = (layers: LayerSpec[]) => layers[layers.length - 1];
  const all = [
    ...arch.generatorShared,
    ...arch.generatorPrivate,
    ...arch.discriminatorPrivate,
    ...arch.discriminatorShared,
  ];
  if (!Number.isInteger(arch.latentDim) || arch.latentDim < 1) {
    problems.push(
      `latentDim must be a positive integer, not ${arch.latentDim}`,
    );
  }
  if (all.some((l) => !Number.isInteger(l.units) || l.units < 1)) {
    problems.push("every layer must have a positive integer number of units");
  }
  if (
    all.some((l) => !(ACTIVATIONS as readonly string[]).includes(l.activation))
  ) {
    problems.push(`activations must be one of ${ACTIVATIONS.join(", ")}`);
  }
  if (
    arch.generatorPrivate.length === 0 ||
    last(arch.generatorPrivate).units !== pixels
  ) {
    problems.push(`the private generator must end in ${pixels} units`);
  }
  if (arch.discriminatorPrivate.length === 0) {
    problems.push("the private discriminator needs at least one layer");
  }
  const discriminator = [
    ...arch.discriminatorPrivate,
    ...arch.discriminatorShared,
  ];
  if (
    last(discriminator)?.units !== 1 ||
    last(discriminator)?.activation !== "linear"
  ) {
    problems.push("the discriminator must end in one linear unit (a logit)");
  }
  const discriminatorNorm = [
    ...arch.discriminatorPrivate,
    ...arch.discriminatorShared,
  ].some((l) => l.batchNorm);
  if (discriminatorNorm) {
    problems.push("batch normalisation is supported in generators only");
  }
  if (problems.length > 0) {
    throw new OptionError(
      `Cannot use architecture "${arch.name}": ${problems.join("; ")}`,
    );
  }
}

/**
 * The same networks with nothing shared: every domain gets its own copy of
 * the layers `arch` shares. For ablations (`--no-share`).
 */
export function unshared(arch: ArchSpec): ArchSpec {
  return {
    ...arch,
    summary: `${arch.summary}; nothing shared`,
    generatorShared: [],
    generatorPrivate: [...arch.generatorShared, ...arch.generatorPrivate],
    discriminatorPrivate: [
      ...arch.discriminatorPrivate,
      ...arch.discriminatorShared,
    ],
    discriminatorShared: [],
  };
}
