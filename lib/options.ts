/**
 * Training options: one typed object, every field's default documented,
 * validated before any work starts. The resolved options are stored in
 * `config.json` and in every checkpoint.
 *
 * @module
 */

import {
  type ArchSpec,
  checkArch,
  DEFAULT_ARCH,
  getArch,
  unshared,
} from "./arch.ts";
import { OptionError } from "./errors.ts";
import { MATMUL_KERNELS, type MatMulKernel } from "./kernels.ts";
import { STEP_METHODS, type StepMethod } from "./step.ts";
import { checkTransform, type TransformName } from "./transforms.ts";

/** tfjs backends training can run on. */
export const BACKENDS = ["wasm", "cpu"] as const;

/** One of {@linkcode BACKENDS}. */
export type BackendName = typeof BACKENDS[number];

/** Every option of a training run, resolved. */
export interface TrainOptions {
  /** Run folder. Default: `runs/<UTC timestamp>`. */
  out: string;
  /** Total steps the run should reach. Default: 20000. */
  steps: number;
  /** Architecture name (see `ARCHS`). Default: `deep`. */
  arch: string;
  /**
   * Whether the architecture's shared layers are shared; false gives each
   * domain its own copy (an ablation). Default: true.
   */
  share: boolean;
  /** Transform that makes domain B from MNIST. Default: `rot90`. */
  transform: TransformName;
  /** Images per domain in one step. Default: the architecture's. */
  batchSize: number;
  /** Adam learning rate. Default: the architecture's. */
  learningRate: number;
  /** Seed for initial weights, batches and latents. Default: 0. */
  seed: number;
  /** Steps between lines of `metrics.jsonl`. Default: 100. */
  logEvery: number;
  /** Steps between sample grids (0: only at the end). Default: 1000. */
  sampleEvery: number;
  /** Steps between checkpoints (0: only at the end). Default: 1000. */
  checkpointEvery: number;
  /** Newest checkpoints kept on disk (0: keep all). Default: 5. */
  keepCheckpoints: number;
  /**
   * Steps between correspondence evaluations (0: never). The first one
   * trains the digit classifier if it is not cached (minutes). Default: 1000.
   */
  evalEvery: number;
  /** tfjs backend. Default: `wasm`. */
  backend: BackendName;
  /**
   * Matrix product kernel on the wasm backend (see `lib/kernels.ts`):
   * `auto` uses OpenBLAS through FFI where it is installed, else the pure
   * wasm path. Default: `auto`.
   */
  kernel: MatMulKernel;
  /**
   * OpenBLAS threads with the `blas` kernel; 0 leaves OpenBLAS's own choice
   * (`OPENBLAS_NUM_THREADS`, else every core). Default: 0.
   */
  blasThreads: number;
  /**
   * How a step computes its gradients (see `lib/step.ts`): `fast` writes
   * the backward pass out per layer, `tape` is tfjs's gradient tape, the
   * reference it is tested against. Default: `fast`.
   */
  step: StepMethod;
}

/** Options as a user may give them: anything left out takes its default. */
export type TrainOptionsInput = Partial<TrainOptions>;

/** A run folder name from the current time: `runs/20261203-153012`. */
export function defaultRunDir(now: Date = new Date()): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace("T", "-")
    .slice(0, 15);
  return `runs/${stamp}`;
}

function checkInteger(
  name: string,
  value: number,
  min: number,
): number {
  if (!Number.isSafeInteger(value) || value < min) {
    throw new OptionError(
      `Cannot train as '${name}' must be an integer >= ${min}: current value is ${value}`,
    );
  }
  return value;
}

function checkChoice(
  what: string,
  value: string,
  choices: readonly string[],
): void {
  if (!choices.includes(value)) {
    throw new OptionError(
      `Unsupported ${what}: "${value}". Should be one of: ${
        choices.join(", ")
      }`,
    );
  }
}

/**
 * Options that a resumed run may change; the others define the networks
 * and their data, and must stay as the run started.
 */
export const SCHEDULE_OPTIONS = [
  "steps",
  "logEvery",
  "sampleEvery",
  "checkpointEvery",
  "keepCheckpoints",
  "evalEvery",
  "backend",
  "kernel",
  "blasThreads",
  "step",
  "out",
] as const;

/** Fills in defaults and validates every field. */
export function resolveTrainOptions(
  input: TrainOptionsInput = {},
): TrainOptions {
  const arch = getArch(input.arch ?? DEFAULT_ARCH);
  const options: TrainOptions = {
    out: input.out ?? defaultRunDir(),
    steps: input.steps ?? 20000,
    arch: arch.name,
    share: input.share ?? true,
    transform: checkTransform(input.transform ?? "rot90"),
    batchSize: input.batchSize ?? arch.batchSize,
    learningRate: input.learningRate ?? arch.learningRate,
    seed: input.seed ?? 0,
    logEvery: input.logEvery ?? 100,
    sampleEvery: input.sampleEvery ?? 1000,
    checkpointEvery: input.checkpointEvery ?? 1000,
    keepCheckpoints: input.keepCheckpoints ?? 5,
    evalEvery: input.evalEvery ?? 1000,
    backend: input.backend ?? "wasm",
    kernel: input.kernel ?? "auto",
    blasThreads: input.blasThreads ?? 0,
    step: input.step ?? "fast",
  };
  checkInteger("steps", options.steps, 1);
  checkInteger("batchSize", options.batchSize, 1);
  checkInteger("seed", options.seed, 0);
  checkInteger("logEvery", options.logEvery, 1);
  checkInteger("sampleEvery", options.sampleEvery, 0);
  checkInteger("checkpointEvery", options.checkpointEvery, 0);
  checkInteger("keepCheckpoints", options.keepCheckpoints, 0);
  checkInteger("evalEvery", options.evalEvery, 0);
  checkInteger("blasThreads", options.blasThreads, 0);
  if (
    !Number.isFinite(options.learningRate) || options.learningRate <= 0 ||
    options.learningRate >= 1
  ) {
    throw new OptionError(
      `Cannot train as 'learningRate' must be a number in (0, 1): current value is ${options.learningRate}`,
    );
  }
  checkChoice("backend", options.backend, BACKENDS);
  checkChoice("matmul kernel", options.kernel, MATMUL_KERNELS);
  if (
    options.kernel !== "auto" && options.kernel !== "tfjs" &&
    options.backend !== "wasm"
  ) {
    throw new OptionError(
      `Cannot use matmul kernel "${options.kernel}" as it needs backend "wasm": current backend is "${options.backend}"`,
    );
  }
  checkChoice("step", options.step, STEP_METHODS);
  if (options.out.trim() === "") {
    throw new OptionError(
      "Cannot train as 'out' must be a folder path: current value is empty",
    );
  }
  return options;
}

/** The layers a run trains: its architecture, unshared if asked. */
export function archOf(
  options: Pick<TrainOptions, "arch" | "share">,
): ArchSpec {
  const arch = options.share
    ? getArch(options.arch)
    : unshared(getArch(options.arch));
  checkArch(arch);
  return arch;
}
