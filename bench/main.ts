/**
 * `deno task bench`: training speed against PyTorch, memory over a long
 * run, and inference speed, each measured side by side in one run.
 *
 * Flags: --quick (short rounds, for a smoke test), --rounds N, --seconds S,
 * --memory-steps N, --no-torch, --no-infer.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { DEFAULT_ARCH, getArch } from "../lib/arch.ts";
import { useBackend } from "../lib/backend.ts";
import { saveCheckpoint } from "../lib/checkpoint.ts";
import { intFlag, numberFlag, parseFlags, runMain } from "../lib/cli.ts";
import { domainInfos, makeDomains } from "../lib/data.ts";
import { exportRun } from "../lib/export.ts";
import { benchAgainstTorch, benchInference } from "../lib/infer_bench.ts";
import { blasAvailable, blasInfo } from "../lib/kernels.ts";
import { loadMnist } from "../lib/mnist.ts";
import { createModel, disposeModel } from "../lib/model.ts";
import { resolveTrainOptions } from "../lib/options.ts";
import { train } from "../lib/train.ts";
import {
  measureSharedPeer,
  measureSteps,
  measureTorch,
  median,
  STEP_VARIANTS,
} from "./train_bench.ts";

const HELP = `Usage: deno task bench [flags]

Measures, side by side in one run: training steps/s of the tape step and the
fast step on each matmul kernel against the PyTorch peer (bench/torch_peer.py,
when /usr/bin/python3 has torch), memory over a long run, and ONNX Runtime
inference pairs/s.

Flags:
  --quick             short rounds: a smoke test, not a measurement
  --rounds N          rounds per training figure, median kept (default: 3)
  --seconds S         seconds per round (default: 4)
  --memory-steps N    steps of the memory run (default: 3000)
  --no-torch          skip PyTorch
  --no-infer          skip inference
  -h, --help          show this help
`;

const FLAGS = {
  help: { type: "boolean", short: "h" },
  quick: { type: "boolean" },
  rounds: { type: "string" },
  seconds: { type: "string" },
  "memory-steps": { type: "string" },
  "no-torch": { type: "boolean" },
  "no-infer": { type: "boolean" },
} as const;

const CONFIGS = [
  { arch: "seed", batch: 32 },
  { arch: "seed", batch: 256 },
  { arch: DEFAULT_ARCH, batch: 32 },
  { arch: DEFAULT_ARCH, batch: 256 },
];

function cell(x: number | string): string {
  return (typeof x === "number" ? x.toFixed(1) : "n/a").padStart(12);
}

/** The seed algorithm's own PyTorch script, beside the project. */
const SHARED_PEER = fileURLToPath(
  new URL("../../shared/bench/peer_torch.py", import.meta.url),
);

async function trainingSpeed(
  rounds: number,
  seconds: number,
  torch: boolean,
): Promise<void> {
  const mnist = await loadMnist("train");
  const domains = makeDomains(mnist, "rot90");
  const variants = STEP_VARIANTS.filter((v) =>
    v.kernel !== "blas" || blasAvailable()
  );
  const cores = navigator.hardwareConcurrency;
  // PyTorch on small matrices can be faster on one thread than on all.
  const torchThreads = cores > 1 ? [1, cores] : [1];
  console.log(
    `\n## Training steps/s (median of ${rounds} rounds of ${seconds}s; pytorch: bench/torch_peer.py, the same step, best of ${
      torchThreads.join(" and ")
    } threads; ${
      blasInfo() ? `OpenBLAS ${blasInfo()!.config}` : "no OpenBLAS"
    })\n`,
  );
  console.log(
    ["config".padEnd(14), ...variants.map((v) => v.name.padStart(12))]
      .join("") + (torch ? "     pytorch   best/torch" : ""),
  );
  for (const { arch: name, batch } of CONFIGS) {
    const arch = getArch(name);
    const ours = variants.map(() => [] as number[]);
    const theirs = torchThreads.map(() => [] as number[]);
    let torchError = "";
    for (let r = 0; r < rounds; r++) {
      variants.forEach((v, i) =>
        ours[i].push(measureSteps(arch, batch, v, domains, seconds))
      );
      if (!torch) continue;
      for (const [i, threads] of torchThreads.entries()) {
        const t = await measureTorch(arch, batch, seconds, threads);
        if (typeof t === "number") theirs[i].push(t);
        else torchError = t;
      }
    }
    const medians = ours.map(median);
    const best = Math.max(...medians);
    const torchBest = theirs.every((t) => t.length)
      ? Math.max(...theirs.map(median))
      : torchError;
    console.log(
      `${name} b${batch}`.padEnd(14) + medians.map(cell).join("") +
        (torch
          ? cell(torchBest) +
            (typeof torchBest === "number"
              ? `${(best / torchBest).toFixed(2)}x`.padStart(13)
              : `  (${torchError})`)
          : ""),
    );
  }
  if (!torch) return;
  // The seed algorithm's original PyTorch script: it also backpropagates
  // the discriminator loss into the generators (then discards it), so it
  // does more work per step than ours or bench/torch_peer.py.
  const steps = Math.max(50, Math.round(seconds * 50));
  for (const batch of [32, 256]) {
    const peer = await measureSharedPeer(batch, steps, SHARED_PEER);
    console.log(
      `../shared/bench/peer_torch.py, seed b${batch}, ${steps} steps: ${
        typeof peer === "number" ? `${peer.toFixed(1)} steps/s` : peer
      }`,
    );
  }
}

async function memory(steps: number): Promise<void> {
  const out = await Deno.makeTempDir({ prefix: "cogan-bench-" });
  const samples: { step: number; rss: number }[] = [];
  let peak = 0;
  try {
    await train(
      {
        out,
        steps,
        logEvery: 50,
        sampleEvery: 0,
        checkpointEvery: 0,
        evalEvery: 0,
      },
      {
        onProgress: (p) => {
          const rss = Deno.memoryUsage().rss;
          peak = Math.max(peak, rss);
          if (p.step % Math.max(1, Math.floor(steps / 10)) === 0) {
            samples.push({ step: p.step, rss });
          }
        },
      },
    );
  } finally {
    await Deno.remove(out, { recursive: true });
  }
  const mb = (b: number) => `${(b / 2 ** 20).toFixed(0)} MiB`;
  console.log(
    `\n## Memory over ${steps} steps of the default (${DEFAULT_ARCH})\n`,
  );
  console.log(samples.map((s) => `step ${s.step}: ${mb(s.rss)}`).join(", "));
  const first = samples[0]?.rss ?? 0;
  const last = samples[samples.length - 1]?.rss ?? 0;
  console.log(
    `peak RSS ${mb(peak)}; RSS at step ${samples[0]?.step} ${
      mb(first)
    }, at step ${samples[samples.length - 1]?.step} ${mb(last)} (${
      ((last / first - 1) * 100).toFixed(1)
    }% change); tfjs tensors ${tf.memory().numTensors}`,
  );
}

async function inference(quick: boolean, torch: boolean): Promise<void> {
  // Inference speed does not depend on the weights: export a freshly
  // initialised default network.
  const dir = await Deno.makeTempDir({ prefix: "cogan-bench-" });
  try {
    const options = resolveTrainOptions({ out: join(dir, "run"), steps: 1 });
    const arch = getArch(options.arch);
    const domains = domainInfos(options.transform);
    const model = createModel(arch, domains.map((d) => d.name), 0);
    const tensors = new Map(
      [...model.parameters, ...model.statistics].map((
        [name, v],
      ) => [name, { shape: v.shape, values: v.dataSync() as Float32Array }]),
    );
    disposeModel(model);
    await saveCheckpoint(join(options.out, "checkpoints"), {
      step: 0,
      options,
      arch,
      domains,
      state: {
        step: 0,
        latentRng: [1, 2, 3, 4],
        batchers: [],
        optimiserUpdates: { discriminator: 0, generator: 0 },
      },
      versions: {},
    }, tensors);
    const exported = await exportRun({
      run: options.out,
      out: join(dir, "model"),
    });
    console.log(
      `\n## Inference pairs/s (ONNX Runtime, ${DEFAULT_ARCH} network)\n`,
    );
    for (const row of await benchInference(exported.out)) {
      console.log(
        `${row.executionProvider} batch ${row.batchSize} threads ${row.threads}: ${
          Math.round(row.pairsPerSecond)
        } pairs/s`,
      );
    }
    if (!torch) return;
    const r = await benchAgainstTorch(exported.out, {
      count: quick ? 2000 : 20000,
      repeats: quick ? 1 : 3,
    });
    console.log(
      `end to end, ${r.count} pairs into .npy, batch ${r.batchSize}, ${r.threads} threads: onnxruntime ${
        Math.round(r.onnxPairsPerSecond)
      } pairs/s, pytorch ${Math.round(r.torchPairsPerSecond)} pairs/s: ${
        (r.onnxPairsPerSecond / r.torchPairsPerSecond).toFixed(2)
      }x (best of ${r.onnxRuns.length} turns each; images differ by at most ${
        r.maxAbsDiff.toExponential(1)
      })`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

async function main(): Promise<number> {
  const flags = parseFlags(Deno.args, FLAGS);
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  const quick = flags.quick ?? false;
  const rounds = intFlag("rounds", flags.rounds, 1) ?? (quick ? 1 : 3);
  const seconds = numberFlag("seconds", flags.seconds) ?? (quick ? 0.5 : 4);
  const memorySteps = intFlag("memory-steps", flags["memory-steps"], 1) ??
    (quick ? 20 : 3000);
  await useBackend("wasm");
  await trainingSpeed(rounds, seconds, !flags["no-torch"]);
  await memory(memorySteps);
  if (!flags["no-infer"]) await inference(quick, !flags["no-torch"]);
  return 0;
}

if (import.meta.main) await runMain("bench", main);
