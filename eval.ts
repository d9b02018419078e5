/**
 * `deno task eval`: measures whether a model's pairs correspond, from a
 * run's checkpoint (tfjs) or from an export (ONNX Runtime).
 *
 * @module
 */

import { useBackend } from "./lib/backend.ts";
import { findCheckpoint, loadCheckpoint } from "./lib/checkpoint.ts";
import {
  type ClassifierEvent,
  loadOrTrainClassifier,
} from "./lib/classifier.ts";
import {
  choiceFlag,
  formatDuration,
  intFlag,
  parseFlags,
  ProgressLine,
  runMain,
} from "./lib/cli.ts";
import { InputError, OptionError } from "./lib/errors.ts";
import type { ExecutionProviderChoice } from "./lib/infer.ts";
import { drawLatents, generatePairs } from "./lib/evaluate.ts";
import { useMatMulKernel } from "./lib/kernels.ts";
import { type EvalReport, evaluatePairs } from "./lib/metrics.ts";
import { disposeModel, modelFromCheckpoint } from "./lib/model.ts";
import { Rng } from "./lib/rng.ts";
import {
  checkTransform,
  type TransformName,
  TRANSFORMS,
} from "./lib/transforms.ts";

/**
 * Execution providers of `--ep`, as `EXECUTION_PROVIDERS` of
 * `lib/infer.ts`, which is imported only for `--model`.
 */
const EPS: readonly ExecutionProviderChoice[] = ["auto", "cpu", "cuda"];

/** Where the classifier is cached; `deno task eval` may write only here. */
const CACHE_DIR = ".cache/classifier";

const HELP =
  `Usage: deno task eval (--run DIR [--step N] | --model PATH) [flags]

Generates pairs from seeded latents and measures whether they correspond:
a digit classifier (trained on MNIST and cached in ${CACHE_DIR} on first
use) labels each pair's images, and the domain-B image is compared with the
transformed domain-A image pixel by pixel. Prints one JSON line, then a
table.

Flags:
  --run DIR       run folder: generate with tfjs from its checkpoint
  --step N        checkpoint step of --run (default: the newest)
  --model PATH    export folder or .onnx file: generate with ONNX Runtime
  --ep NAME       ${EPS.join(" | ")}, for --model (default: auto)
  --count N       pairs to generate (default: 2000)
  --seed N        seed of the latents and of the random re-pairing behind
                  the chance baselines (default: 0)
  -h, --help      show this help

The same --seed gives a run's checkpoint and its export the same latents.
`;

const FLAGS = {
  run: { type: "string" },
  step: { type: "string" },
  model: { type: "string" },
  ep: { type: "string" },
  count: { type: "string" },
  seed: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

/** The transform of a two-domain model named `mnist`, `mnist-<T>`. */
function transformOf(domains: string[], source: string): TransformName {
  const match = /^mnist-(.+)$/.exec(domains[1] ?? "");
  if (
    domains.length !== 2 || domains[0] !== "mnist" || !match ||
    !(TRANSFORMS as readonly string[]).includes(match[1])
  ) {
    throw new InputError(
      `Cannot evaluate "${source}": its domains must be "mnist" and "mnist-<transform>" with a transform of ${
        TRANSFORMS.join(", ")
      }: current domains are ${JSON.stringify(domains)}`,
    );
  }
  return checkTransform(match[1]);
}

/** Where pairs come from: a checkpoint in tfjs or an export in ORT. */
interface PairSource {
  transform: TransformName;
  latentDim: number;
  /** Per domain, `count * 784` floats from latents `z`. */
  generate(z: Float32Array, count: number): Promise<Float32Array[]>;
  /** What the JSON line says about the source. */
  describe: Record<string, unknown>;
  dispose(): Promise<void>;
}

/** A run's checkpoint, generating with tfjs. */
async function openRun(
  run: string,
  step: number | undefined,
): Promise<PairSource> {
  const checkpoint = await loadCheckpoint(await findCheckpoint(run, step));
  const transform = transformOf(
    checkpoint.manifest.domains.map((d) => d.name),
    checkpoint.path,
  );
  const model = modelFromCheckpoint(checkpoint);
  return {
    transform,
    latentDim: model.arch.latentDim,
    generate: (z, count) => generatePairs(model, z, count),
    describe: { run, step: checkpoint.manifest.step },
    dispose: () => Promise.resolve(disposeModel(model)),
  };
}

/** An export, generating with ONNX Runtime. */
async function openExport(
  path: string,
  ep: ExecutionProviderChoice | undefined,
): Promise<PairSource> {
  // Imported here so that --run works without ONNX Runtime.
  const { openPairGenerator } = await import("./lib/infer.ts");
  const generator = await openPairGenerator(path, { ep });
  let transform: TransformName;
  try {
    transform = transformOf(generator.domains, path);
  } catch (err) {
    await generator.dispose();
    throw err;
  }
  return {
    transform,
    latentDim: generator.latentDim,
    generate: async (z, count) => {
      const out = await generator.generate(z, count);
      return generator.domains.map((d) => out[d]);
    },
    describe: {
      model: path,
      ep: generator.executionProvider,
      ...(generator.fallbackReason !== undefined
        ? { ep_fallback: generator.fallbackReason }
        : {}),
    },
    dispose: () => generator.dispose(),
  };
}

function table(report: EvalReport, classifierLine: string): string {
  const f = (x: number | null) => x === null ? "n/a" : x.toFixed(3);
  const rows = [
    ["measure", "value", "chance"],
    [
      "label agreement",
      f(report.label_agreement),
      f(report.label_agreement_chance),
    ],
    [
      "pixel agreement",
      f(report.pixel_agreement),
      f(report.pixel_agreement_chance),
    ],
    ["confident A (p > 0.9)", f(report.confident_a), ""],
    ["confident B (p > 0.9)", f(report.confident_b), ""],
    [
      "classes covered (>= 2%)",
      `${report.classes.length}`,
      `[${report.classes.join(" ")}]`,
    ],
  ];
  const lines = rows.map(([a, b, c]) =>
    `${a.padEnd(24)}${b.padStart(7)}  ${c}`.trimEnd()
  );
  return [
    `${report.count} pairs, transform ${report.transform}`,
    ...lines,
    classifierLine,
    ...report.notes.map((n) => `note: ${n}`),
  ].join("\n");
}

async function main(): Promise<number> {
  const flags = parseFlags(Deno.args, FLAGS);
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  if ((flags.run === undefined) === (flags.model === undefined)) {
    throw new OptionError("exactly one of --run and --model is required");
  }
  if (flags.step !== undefined && flags.run === undefined) {
    throw new OptionError("--step needs --run");
  }
  if (flags.ep !== undefined && flags.model === undefined) {
    throw new OptionError("--ep needs --model");
  }
  const step = intFlag("step", flags.step, 0);
  const ep = choiceFlag("ep", flags.ep, EPS);
  const count = intFlag("count", flags.count, 2) ?? 2000;
  const seed = intFlag("seed", flags.seed, 0) ?? 0;

  await useBackend("wasm");
  useMatMulKernel("auto");
  // The model is opened first, so a bad path fails before any training.
  const source = flags.run !== undefined
    ? await openRun(flags.run, step)
    : await openExport(flags.model!, ep);
  try {
    const progress = new ProgressLine();
    const loaded = await loadOrTrainClassifier({
      cacheDir: CACHE_DIR,
      onProgress: (e: ClassifierEvent) => {
        if (e.kind === "cache-rejected") {
          console.error(`eval: ${e.reason}; training a new one`);
        } else if (e.kind === "epoch") {
          progress.update(
            `classifier epoch ${e.epoch}/${e.epochs}  loss ${
              e.loss.toFixed(4)
            }  ${formatDuration(e.seconds)}`,
            true,
          );
        }
      },
    });
    const { classifier } = loaded;
    try {
      const accuracy = classifier.testAccuracy.toFixed(4);
      let classifierLine =
        `classifier: MNIST test accuracy ${accuracy} (from ${CACHE_DIR})`;
      if (loaded.source === "trained") {
        progress.done();
        classifierLine = `classifier: trained in ${
          formatDuration(loaded.trainSeconds!)
        }, MNIST test accuracy ${accuracy}, cached in ${CACHE_DIR}`;
        console.error(`eval: ${classifierLine}`);
      }

      const rng = new Rng(seed);
      const z = drawLatents(rng, count, source.latentDim);
      const images = await source.generate(z, count);
      const report = evaluatePairs(
        images,
        count,
        source.transform,
        classifier,
        rng,
      );

      console.log(JSON.stringify({
        ...source.describe,
        seed,
        ...report,
        classifier: {
          test_accuracy: classifier.testAccuracy,
          source: loaded.source,
          ...(loaded.trainSeconds !== undefined
            ? { train_seconds: Math.round(loaded.trainSeconds) }
            : {}),
          ...(loaded.rejectedCache !== undefined
            ? { rejected_cache: loaded.rejectedCache }
            : {}),
        },
      }));
      console.log(table(report, classifierLine));
      return 0;
    } finally {
      classifier.dispose();
    }
  } finally {
    await source.dispose();
  }
}

if (import.meta.main) await runMain("eval", main);
