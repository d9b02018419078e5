/**
 * The training loop behind `deno task train`: run folder, metrics, sample
 * grids, checkpoints, resume and interruption.
 *
 * Library code: it prints nothing; callers get progress through
 * {@linkcode TrainHooks} and stop it with an `AbortSignal`.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { IMAGE_SIZE } from "./arch.ts";
import { useBackend, versions } from "./backend.ts";
import {
  type Checkpoint,
  type CheckpointInfo,
  findCheckpoint,
  listCheckpoints,
  loadCheckpoint,
  pruneCheckpoints,
  saveCheckpoint,
} from "./checkpoint.ts";
import { Batcher, domainInfos, makeDomains } from "./data.ts";
import { InputError, OptionError } from "./errors.ts";
import { type Classifier, loadOrTrainClassifier } from "./classifier.ts";
import { evaluateModel } from "./evaluate.ts";
import { writeFileAtomic } from "./files.ts";
import { setBlasThreads, useMatMulKernel } from "./kernels.ts";
import type { EvalReport, ImageClassifier } from "./metrics.ts";
import { loadMnist } from "./mnist.ts";
import {
  type CoupledModel,
  createModel,
  disposeModel,
  generate,
} from "./model.ts";
import {
  archOf,
  resolveTrainOptions,
  SCHEDULE_OPTIONS,
  type TrainOptions,
  type TrainOptionsInput,
} from "./options.ts";
import { encodePng, pairGrid } from "./png.ts";
import { Rng } from "./rng.ts";
import {
  createOptimisers,
  disposeOptimisers,
  type Optimisers,
  STEP_STATS,
  trainStep,
} from "./step.ts";

/** Pairs measured by each `--eval-every` evaluation. */
export const EVAL_PAIRS = 1000;

/** Pairs in each sample grid. */
export const SAMPLE_PAIRS = 20;

/** Independent random streams derived from the run's seed. */
export const STREAMS = {
  weights: 0,
  latents: 1,
  batches: 2,
  samples: 8,
  evaluation: 9,
} as const;

/** The seed of one random stream of a run. */
export function streamSeed(seed: number, stream: number): number {
  return seed * 16 + stream;
}

/** One line of `metrics.jsonl`: means over the steps since the last line. */
export interface MetricsRecord {
  step: number;
  /** Discriminator loss per domain. */
  dLoss: Record<string, number>;
  /** Generator loss per domain. */
  gLoss: Record<string, number>;
  /** Mean discriminator output (probability "real") on real images. */
  dReal: Record<string, number>;
  /** Mean discriminator output on generated images. */
  dFake: Record<string, number>;
  /** Wall-clock milliseconds per step over the interval. */
  msPerStep: number;
  /** Correspondence metrics, on the steps where they were measured. */
  eval?: EvalReport;
}

/** Progress reported after every step. */
export interface TrainProgress {
  step: number;
  steps: number;
  /** Steps per second over the recent steps. */
  stepsPerSecond: number;
  /** The newest metrics line, once there is one. */
  metrics?: MetricsRecord;
}

/** Callbacks and controls for {@linkcode train}. */
export interface TrainHooks {
  /** Continue the run in `out` from its newest checkpoint. */
  resume?: boolean;
  /** Stop early: a checkpoint is written, then `train` returns. */
  signal?: AbortSignal;
  onProgress?: (progress: TrainProgress) => void;
  onMetrics?: (record: MetricsRecord) => void;
  /**
   * Digit classifier for `evalEvery`. Default: the cached one of
   * `loadOrTrainClassifier`, trained on first use (about 3 minutes).
   */
  classifier?: ImageClassifier;
  /** Told about slow one-off work, such as training the eval classifier. */
  onStatus?: (message: string) => void;
}

/** What a run left behind. */
export interface TrainResult {
  options: TrainOptions;
  /** Matrix product kernel that ran (see `lib/kernels.ts`). */
  kernel: string;
  runDir: string;
  /** Steps completed. */
  step: number;
  /** True when the signal stopped the run before `options.steps`. */
  interrupted: boolean;
  /** Path of the last checkpoint written. */
  checkpoint: string;
  /** Path of the last sample grid written. */
  sample: string;
  metricsPath: string;
}

/** Resolves the options of a resumed run against its checkpoint's. */
function resumeOptions(
  input: TrainOptionsInput,
  saved: TrainOptions,
  runDir: string,
): TrainOptions {
  const merged = { ...saved };
  for (const [key, value] of Object.entries(input)) {
    if (value === undefined) continue;
    const k = key as keyof TrainOptions;
    if ((SCHEDULE_OPTIONS as readonly string[]).includes(k)) {
      (merged as Record<string, unknown>)[k] = value;
    } else if (saved[k] !== value) {
      throw new OptionError(
        `Cannot resume run "${runDir}" as '${k}' must stay ${
          JSON.stringify(saved[k])
        }: current value is ${JSON.stringify(value)}`,
      );
    }
  }
  return resolveTrainOptions(merged);
}

function tensorsOf(
  model: CoupledModel,
  optimisers: Optimisers,
): Map<string, tf.Variable> {
  return new Map([
    ...model.parameters,
    ...model.statistics,
    ...optimisers.discriminator.state(),
    ...optimisers.generator.state(),
  ]);
}

/** Writes the sample grid for `step` from the run's fixed latents. */
async function writeSample(
  model: CoupledModel,
  z: tf.Tensor2D,
  runDir: string,
  step: number,
): Promise<string> {
  const images = tf.tidy(() => generate(model, z));
  const arrays = await Promise.all(
    images.map(async (t) => new Float32Array(await t.data())),
  );
  tf.dispose(images);
  const path = join(
    runDir,
    "samples",
    `step-${String(step).padStart(6, "0")}.png`,
  );
  await writeFileAtomic(
    path,
    encodePng(pairGrid(arrays, SAMPLE_PAIRS, IMAGE_SIZE)),
  );
  return path;
}

/** The digit classifier of `--eval-every`, from its cache or trained now. */
async function loadEvalClassifier(hooks: TrainHooks): Promise<Classifier> {
  const loaded = await loadOrTrainClassifier({
    onProgress: (event) => {
      if (event.kind === "cache-rejected") {
        hooks.onStatus?.(`classifier cache rejected: ${event.reason}`);
      } else if (event.kind === "epoch") {
        hooks.onStatus?.(
          `training the eval classifier (first use only): epoch ${event.epoch}/${event.epochs}`,
        );
      }
    },
  });
  if (loaded.source === "trained") {
    hooks.onStatus?.(
      `trained the eval classifier: MNIST test accuracy ${loaded.classifier.testAccuracy}`,
    );
  }
  return loaded.classifier;
}

/**
 * Trains coupled networks as `input` says, writing the run folder, until
 * `steps` or until `hooks.signal` aborts.
 */
export async function train(
  input: TrainOptionsInput = {},
  hooks: TrainHooks = {},
): Promise<TrainResult> {
  let options: TrainOptions;
  let resumeFrom: Checkpoint | undefined;
  if (hooks.resume) {
    if (input.out === undefined) {
      throw new OptionError("Cannot resume as 'out' must name the run folder");
    }
    resumeFrom = await loadCheckpoint(await findCheckpoint(input.out));
    options = resumeOptions(input, resumeFrom.manifest.options, input.out);
  } else {
    options = resolveTrainOptions(input);
    if ((await listCheckpoints(options.out)).length > 0) {
      throw new OptionError(
        `Cannot start a run in "${options.out}": it already holds checkpoints; pass --resume to continue it or choose another --out`,
      );
    }
  }
  const runDir = options.out;
  const arch = archOf(options);
  await useBackend(options.backend);
  const kernel = options.backend === "wasm"
    ? useMatMulKernel(options.kernel)
    : "tfjs";

  const mnist = await loadMnist("train");
  const domains = makeDomains(mnist, options.transform);
  const names = domainInfos(options.transform).map((d) => d.name);

  const model = createModel(
    arch,
    names,
    streamSeed(options.seed, STREAMS.weights),
  );
  const adamConfig = {
    learningRate: options.learningRate,
    beta1: arch.beta1,
    beta2: arch.beta2,
  };
  const optimisers = createOptimisers(model, adamConfig);
  const stats = tf.tidy(() =>
    tf.variable(tf.zeros([names.length * STEP_STATS.length]))
  );
  const sampleZ = tf.tensor2d(
    new Rng(streamSeed(options.seed, STREAMS.samples)).fillNormal(
      new Float32Array(SAMPLE_PAIRS * arch.latentDim),
    ),
    [SAMPLE_PAIRS, arch.latentDim],
  );

  const blasThreads = kernel === "blas" && options.blasThreads > 0
    ? setBlasThreads(options.blasThreads)
    : undefined;
  let classifier: Classifier | undefined;
  try {
    let step = 0;
    let latentRng = new Rng(streamSeed(options.seed, STREAMS.latents));
    let batchers = domains.map((d, i) =>
      new Batcher(d, streamSeed(options.seed, STREAMS.batches + i))
    );
    if (resumeFrom) {
      const checkpoint = resumeFrom;
      const all = tensorsOf(model, optimisers);
      for (const [name, variable] of all) {
        const values = checkpoint.tensors.get(name);
        if (!values || values.length !== variable.size) {
          throw new InputError(
            `Cannot resume from "${checkpoint.path}": tensor "${name}" is missing or has the wrong size`,
          );
        }
        tf.tidy(() => variable.assign(tf.tensor(values, variable.shape)));
      }
      const state = checkpoint.manifest.state;
      step = state.step;
      latentRng = Rng.fromState(state.latentRng);
      batchers = domains.map((d, i) => new Batcher(d, 0, state.batchers[i]));
      optimisers.discriminator.updates = state.optimiserUpdates.discriminator;
      optimisers.generator.updates = state.optimiserUpdates.generator;
    }

    await Deno.mkdir(join(runDir, "samples"), { recursive: true });
    await writeFileAtomic(
      join(runDir, "config.json"),
      new TextEncoder().encode(
        JSON.stringify(
          {
            options,
            arch,
            domains: domainInfos(options.transform),
            versions: versions(),
            kernel,
            resumedFrom: resumeFrom?.path ?? null,
            writtenAt: new Date().toISOString(),
          },
          null,
          2,
        ) + "\n",
      ),
    );
    const metricsPath = join(runDir, "metrics.jsonl");

    const checkpoint = async (): Promise<string> => {
      const tensors = new Map<
        string,
        { shape: number[]; values: Float32Array }
      >();
      for (const [name, v] of tensorsOf(model, optimisers)) {
        tensors.set(name, {
          shape: v.shape,
          values: (await v.data()) as Float32Array,
        });
      }
      const info: CheckpointInfo = {
        step,
        options,
        arch,
        domains: domainInfos(options.transform),
        state: {
          step,
          latentRng: latentRng.state(),
          batchers: batchers.map((b) => b.state()),
          optimiserUpdates: {
            discriminator: optimisers.discriminator.updates,
            generator: optimisers.generator.updates,
          },
        },
        versions: versions(),
      };
      const path = await saveCheckpoint(
        join(runDir, "checkpoints"),
        info,
        tensors,
      );
      await pruneCheckpoints(runDir, options.keepCheckpoints);
      return path;
    };

    // Loaded at the first evaluation: training it on first use takes minutes.
    let evalClassifier: ImageClassifier | undefined = hooks.classifier;
    const batch = options.batchSize;
    const pixels = IMAGE_SIZE * IMAGE_SIZE;
    const realBuffers = domains.map(() => new Float32Array(batch * pixels));
    const zBuffer = new Float32Array(batch * arch.latentDim);
    let intervalStart = performance.now();
    let intervalSteps = 0;
    let lastYield = performance.now();
    let recent = { time: performance.now(), step };
    let stepsPerSecond = 0;
    let lastMetrics: MetricsRecord | undefined;
    let lastCheckpoint = resumeFrom?.path ?? "";
    let lastSample = "";
    let lastSampleStep = -1;

    while (step < options.steps && !hooks.signal?.aborted) {
      tf.tidy(() => {
        const reals = batchers.map((b, i) =>
          tf.tensor2d(b.next(realBuffers[i]), [batch, pixels])
        );
        const z = tf.tensor2d(latentRng.fillNormal(zBuffer), [
          batch,
          arch.latentDim,
        ]);
        trainStep(model, optimisers, reals, z, stats, options.step);
      });
      step++;
      intervalSteps++;

      let evaluation: EvalReport | undefined;
      if (options.evalEvery > 0 && step % options.evalEvery === 0) {
        evalClassifier ??= classifier = await loadEvalClassifier(hooks);
        evaluation = await evaluateModel(
          model,
          options.transform,
          evalClassifier,
          {
            count: EVAL_PAIRS,
            seed: streamSeed(options.seed, STREAMS.evaluation),
          },
        );
      }
      if (step % options.logEvery === 0 || step === options.steps) {
        const sums = await stats.data();
        const now = performance.now();
        const perDomain = (k: number) =>
          Object.fromEntries(
            names.map((n, d) => [
              n,
              sums[d * STEP_STATS.length + k] / intervalSteps,
            ]),
          );
        lastMetrics = {
          step,
          dLoss: perDomain(0),
          gLoss: perDomain(1),
          dReal: perDomain(2),
          dFake: perDomain(3),
          msPerStep: (now - intervalStart) / intervalSteps,
          ...(evaluation ? { eval: evaluation } : {}),
        };
        tf.tidy(() => stats.assign(tf.zerosLike(stats)));
        intervalStart = now;
        intervalSteps = 0;
        await Deno.writeTextFile(
          metricsPath,
          JSON.stringify(lastMetrics) + "\n",
          { append: true },
        );
        hooks.onMetrics?.(lastMetrics);
      } else if (evaluation) {
        const record = { step, eval: evaluation };
        await Deno.writeTextFile(metricsPath, JSON.stringify(record) + "\n", {
          append: true,
        });
      }
      if (options.sampleEvery > 0 && step % options.sampleEvery === 0) {
        lastSample = await writeSample(model, sampleZ, runDir, step);
        lastSampleStep = step;
      }
      if (
        options.checkpointEvery > 0 && step % options.checkpointEvery === 0 &&
        step < options.steps
      ) {
        lastCheckpoint = await checkpoint();
      }

      const now = performance.now();
      if (now - recent.time > 1000) {
        stepsPerSecond = (step - recent.step) / ((now - recent.time) / 1000);
        recent = { time: now, step };
      }
      hooks.onProgress?.({
        step,
        steps: options.steps,
        stepsPerSecond,
        metrics: lastMetrics,
      });
      // Let signal handlers and timers run a few times a second.
      if (now - lastYield > 200) {
        await new Promise((resolve) => setTimeout(resolve, 0));
        lastYield = performance.now();
      }
    }

    if (lastSampleStep !== step) {
      lastSample = await writeSample(model, sampleZ, runDir, step);
    }
    const latest = await listCheckpoints(runDir);
    if (latest[latest.length - 1] !== step) lastCheckpoint = await checkpoint();
    return {
      options,
      kernel,
      runDir,
      step,
      interrupted: step < options.steps,
      checkpoint: lastCheckpoint,
      sample: lastSample,
      metricsPath,
    };
  } finally {
    if (blasThreads !== undefined) setBlasThreads(blasThreads);
    disposeModel(model);
    classifier?.dispose();
    disposeOptimisers(optimisers);
    stats.dispose();
    sampleZ.dispose();
  }
}
