/**
 * `deno task train`: trains coupled generators on MNIST and a transformed
 * MNIST, writing a run folder.
 *
 * @module
 */

import { ARCHS, DEFAULT_ARCH } from "./lib/arch.ts";
import {
  choiceFlag,
  formatDuration,
  intFlag,
  numberFlag,
  parseFlags,
  ProgressLine,
  runMain,
} from "./lib/cli.ts";
import { MATMUL_KERNELS } from "./lib/kernels.ts";
import { BACKENDS } from "./lib/options.ts";
import { type MetricsRecord, train } from "./lib/train.ts";
import { STEP_METHODS } from "./lib/step.ts";
import { TRANSFORMS } from "./lib/transforms.ts";

const HELP = `Usage: deno task train [flags]

Trains a Coupled GAN on MNIST (domain A) against MNIST under a transform
(domain B), each drawn from its own half of the training set.

Flags:
  --out DIR              run folder (default: runs/<UTC timestamp>)
  --steps N              total steps to reach (default: 20000)
  --arch NAME            ${
  Object.keys(ARCHS).join(" | ")
} (default: ${DEFAULT_ARCH})
${
  Object.values(ARCHS).map((a) =>
    `                           ${a.name}: ${a.summary}`
  )
    .join("\n")
}
  --no-share             give each domain its own copy of the shared layers
                         (an ablation: pairs should stop corresponding)
  --transform NAME       ${TRANSFORMS.join(" | ")} (default: rot90)
  --batch-size N         images per domain per step (default: the arch's)
  --lr X                 Adam learning rate (default: the arch's)
  --seed N               seed of weights, batches and latents (default: 0)
  --log-every N          steps per metrics.jsonl line (default: 100)
  --sample-every N       steps per sample grid, 0 = end only (default: 1000)
  --checkpoint-every N   steps per checkpoint, 0 = end only (default: 1000)
  --keep-checkpoints N   newest checkpoints kept, 0 = all (default: 5)
  --eval-every N         steps per correspondence check, 0 = off (default: 1000;
                         the first trains the eval classifier if not cached)
  --backend NAME         tfjs backend: ${BACKENDS.join(" | ")} (default: wasm)
  --kernel NAME          matmul kernel: ${
  MATMUL_KERNELS.join(" | ")
} (default: auto,
                         OpenBLAS through FFI where installed, else pure wasm)
  --blas-threads N       OpenBLAS threads, 0 = its own choice, every core
                         unless OPENBLAS_NUM_THREADS says (default: 0; 1 is
                         faster when other work keeps the cores busy)
  --step NAME            ${STEP_METHODS.join(" | ")} (default: fast; tape is
                         tfjs's gradient tape, the reference fast is tested on)
  --resume               continue the run in --out from its newest checkpoint
  -h, --help             show this help

Ctrl-C writes a checkpoint and exits 0; --resume carries on from it.
`;

const FLAGS = {
  out: { type: "string" },
  steps: { type: "string" },
  arch: { type: "string" },
  transform: { type: "string" },
  "batch-size": { type: "string" },
  lr: { type: "string" },
  seed: { type: "string" },
  "log-every": { type: "string" },
  "sample-every": { type: "string" },
  "checkpoint-every": { type: "string" },
  "keep-checkpoints": { type: "string" },
  "eval-every": { type: "string" },
  backend: { type: "string" },
  kernel: { type: "string" },
  "blas-threads": { type: "string" },
  step: { type: "string" },
  resume: { type: "boolean" },
  "no-share": { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

function describe(m: MetricsRecord): string {
  const f = (r: Record<string, number>) =>
    Object.values(r).map((v) => v.toFixed(3)).join("/");
  return `d ${f(m.dLoss)} g ${f(m.gLoss)}`;
}

async function main(): Promise<number> {
  const flags = parseFlags(Deno.args, FLAGS);
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const input = {
    out: flags.out,
    steps: intFlag("steps", flags.steps, 1),
    arch: choiceFlag("arch", flags.arch, Object.keys(ARCHS)),
    share: flags["no-share"] ? false : undefined,
    transform: choiceFlag("transform", flags.transform, TRANSFORMS),
    batchSize: intFlag("batch-size", flags["batch-size"], 1),
    learningRate: numberFlag("lr", flags.lr),
    seed: intFlag("seed", flags.seed, 0),
    logEvery: intFlag("log-every", flags["log-every"], 1),
    sampleEvery: intFlag("sample-every", flags["sample-every"], 0),
    checkpointEvery: intFlag("checkpoint-every", flags["checkpoint-every"], 0),
    keepCheckpoints: intFlag("keep-checkpoints", flags["keep-checkpoints"], 0),
    evalEvery: intFlag("eval-every", flags["eval-every"], 0),
    backend: choiceFlag("backend", flags.backend, BACKENDS),
    kernel: choiceFlag("kernel", flags.kernel, MATMUL_KERNELS),
    blasThreads: intFlag("blas-threads", flags["blas-threads"], 0),
    step: choiceFlag("step", flags.step, STEP_METHODS),
  };

  const controller = new AbortController();
  const onInterrupt = () => controller.abort();
  Deno.addSignalListener("SIGINT", onInterrupt);
  const progress = new ProgressLine();
  const started = performance.now();
  try {
    const result = await train(input, {
      resume: flags.resume,
      signal: controller.signal,
      onStatus: (message) => progress.update(message, true),
      onProgress: (p) => {
        const eta = (p.steps - p.step) / p.stepsPerSecond;
        progress.update(
          `step ${p.step}/${p.steps}  ${
            p.stepsPerSecond.toFixed(1)
          } steps/s  ETA ${formatDuration(eta)}${
            p.metrics ? "  " + describe(p.metrics) : ""
          }`,
        );
      },
    });
    progress.update(`step ${result.step}/${result.options.steps}`, true);
    progress.done();
    const elapsed = formatDuration((performance.now() - started) / 1000);
    console.log(
      `${
        result.interrupted ? "interrupted" : "trained"
      } ${result.step} steps in ${elapsed} (${result.options.backend}, ${result.kernel} matmul): run ${result.runDir}, checkpoint ${result.checkpoint}, samples ${result.sample}, metrics ${result.metricsPath}`,
    );
    return 0;
  } finally {
    Deno.removeSignalListener("SIGINT", onInterrupt);
  }
}

if (import.meta.main) await runMain("train", main);
