/**
 * Inference benchmarks: pairs per second of the ONNX Runtime generators at
 * several batch sizes and thread counts, and the same end-to-end figure
 * (latents, forward pass, `.npy` writing) against a plain PyTorch forward
 * pass of the same weights (`bench/torch_infer.py`), measured in one run.
 *
 * Library code: it prints nothing and returns rows for the caller to show.
 *
 * @module
 */

import { join } from "node:path";
import { InputError } from "./errors.ts";
import {
  type ExecutionProviderChoice,
  openPairGenerator,
  runInference,
  seededLatents,
} from "./infer.ts";
import { readNpy, writeNpy } from "./npy.ts";

/** One measurement of {@linkcode benchInference}. */
export interface InferBenchRow {
  batchSize: number;
  threads: number;
  executionProvider: string;
  /** Session runs timed. */
  runs: number;
  seconds: number;
  pairsPerSecond: number;
}

/** Options of {@linkcode benchInference}; each default is documented. */
export interface InferBenchOptions {
  /** Default: [1, 256, 4096]. */
  batchSizes?: number[];
  /** Default: [1, every core] (one entry on a one-core machine). */
  threads?: number[];
  /** Least time timed per row, after one warm-up run. Default: 1 second. */
  minSeconds?: number;
  /** Default: `cpu`, so rows are comparable between machines. */
  ep?: ExecutionProviderChoice;
}

/**
 * Times `generate()` alone (no latents drawn, nothing written) at each
 * batch size and thread count: one session per thread count, reused, as
 * `deno task infer` does.
 */
export async function benchInference(
  modelPath: string,
  options: InferBenchOptions = {},
): Promise<InferBenchRow[]> {
  const batchSizes = options.batchSizes ?? [1, 256, 4096];
  const cores = navigator.hardwareConcurrency;
  const threads = options.threads ?? (cores > 1 ? [1, cores] : [1]);
  const minSeconds = options.minSeconds ?? 1;
  const rows: InferBenchRow[] = [];
  for (const t of threads) {
    const generator = await openPairGenerator(modelPath, {
      ep: options.ep ?? "cpu",
      threads: t,
    });
    try {
      for (const batchSize of batchSizes) {
        const z = seededLatents(0, batchSize, generator.latentDim);
        await generator.generate(z, batchSize); // warm-up
        let runs = 0;
        const started = performance.now();
        let elapsed = 0;
        while (elapsed < minSeconds * 1000) {
          await generator.generate(z, batchSize);
          runs++;
          elapsed = performance.now() - started;
        }
        rows.push({
          batchSize,
          threads: t,
          executionProvider: generator.executionProvider,
          runs,
          seconds: elapsed / 1000,
          pairsPerSecond: (runs * batchSize) / (elapsed / 1000),
        });
      }
    } finally {
      await generator.dispose();
    }
  }
  return rows;
}

/** Options of {@linkcode benchAgainstTorch}; each default is documented. */
export interface TorchBenchOptions {
  /** Pairs each side makes. Default: 20000. */
  count?: number;
  /** Default: 1024, `deno task infer`'s. */
  batchSize?: number;
  /** Threads of both. Default: every core. */
  threads?: number;
  /**
   * Runs of each side, taking turns; the best of each is reported, as the
   * least disturbed by other work on the machine. Default: 3.
   */
  repeats?: number;
  /** Python with torch, numpy and onnx. Default: `/usr/bin/python3`. */
  python?: string;
}

/** Both end-to-end figures, measured one after the other. */
export interface TorchBenchResult {
  count: number;
  batchSize: number;
  threads: number;
  /** `runInference` to `.npy` (latents, ONNX Runtime, writing): best run. */
  onnxPairsPerSecond: number;
  /** `bench/torch_infer.py` (torch.randn, forward, np.save): best run. */
  torchPairsPerSecond: number;
  /** Every run's figure, in order. */
  onnxRuns: number[];
  torchRuns: number[];
  torchVersion: string;
  /** Largest difference between the two on the same 64 latents. */
  maxAbsDiff: number;
}

async function runTorch(
  python: string,
  args: string[],
): Promise<Record<string, unknown>> {
  const script = new URL("../bench/torch_infer.py", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(python, {
    args: [script, ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) {
    throw new InputError(
      `Cannot run the PyTorch baseline (${python} ${script}): ${
        new TextDecoder().decode(stderr).trim().split("\n").at(-1)
      }; it needs python3-torch, python3-numpy and python3-onnx`,
    );
  }
  return JSON.parse(new TextDecoder().decode(stdout));
}

/**
 * Makes `count` pairs into `.npy` files with `runInference` and with the
 * PyTorch baseline, on the same weights and thread count, and checks on 64
 * shared latents that both compute the same images.
 */
export async function benchAgainstTorch(
  modelPath: string,
  options: TorchBenchOptions = {},
): Promise<TorchBenchResult> {
  const count = options.count ?? 20000;
  const batchSize = options.batchSize ?? 1024;
  const repeats = options.repeats ?? 3;
  const threads = options.threads ?? navigator.hardwareConcurrency;
  const python = options.python ?? "/usr/bin/python3";
  // Both sides write their .npy files here; it is deleted afterwards.
  const scratch = await Deno.makeTempDir({ prefix: "infer_bench_" });
  try {
    const onnxRuns: number[] = [];
    const torchRuns: number[] = [];
    let torchVersion = "";
    for (let i = 0; i < repeats; i++) {
      const onnx = await runInference({
        model: modelPath,
        out: join(scratch, "onnx"),
        count,
        batchSize,
        threads,
        format: "npy",
        ep: "cpu",
      });
      onnxRuns.push(onnx.pairsPerSecond);
      const torch = await runTorch(python, [
        "--model",
        modelPath,
        "--count",
        String(count),
        "--batch-size",
        String(batchSize),
        "--threads",
        String(threads),
        "--out",
        join(scratch, "torch"),
      ]);
      torchRuns.push(torch.pairsPerSecond as number);
      torchVersion = torch.torch as string;
    }

    const generator = await openPairGenerator(modelPath, { ep: "cpu" });
    let maxAbsDiff = 0;
    try {
      const z = seededLatents(1, 64, generator.latentDim);
      await writeNpy(join(scratch, "z.npy"), [64, generator.latentDim], z);
      const ours = await generator.generate(z, 64);
      await runTorch(python, [
        "--model",
        modelPath,
        "--z",
        join(scratch, "z.npy"),
        "--out",
        join(scratch, "same"),
      ]);
      for (const d of generator.domains) {
        const theirs = await readNpy(join(scratch, "same", `${d}.npy`));
        for (let i = 0; i < theirs.data.length; i++) {
          maxAbsDiff = Math.max(
            maxAbsDiff,
            Math.abs(theirs.data[i] - ours[d][i]),
          );
        }
      }
    } finally {
      await generator.dispose();
    }
    return {
      count,
      batchSize,
      threads,
      onnxPairsPerSecond: Math.max(...onnxRuns),
      torchPairsPerSecond: Math.max(...torchRuns),
      onnxRuns,
      torchRuns,
      torchVersion,
      maxAbsDiff,
    };
  } finally {
    await Deno.remove(scratch, { recursive: true });
  }
}
