/**
 * Training speed of cogan-deno against PyTorch, measured side by side.
 *
 * Each variant of our step (the tape step and the fast step, each on pure
 * tfjs kernels or on OpenBLAS through FFI) and the PyTorch peer
 * (`bench/torch_peer.py`) run in turns, several rounds each, so that a
 * noisy machine slows them alike; each figure is the median of its rounds.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import type { ArchSpec } from "../lib/arch.ts";
import { Batcher, type Domain } from "../lib/data.ts";
import {
  type MatMulKernel,
  setBlasThreads,
  useMatMulKernel,
} from "../lib/kernels.ts";
import { mnistDataDir } from "../lib/mnist.ts";
import { createModel, disposeModel } from "../lib/model.ts";
import { Rng } from "../lib/rng.ts";
import {
  createOptimisers,
  disposeOptimisers,
  type StepMethod,
  trainStep,
} from "../lib/step.ts";

/** One way of running our training step. */
export interface StepVariant {
  name: string;
  method: StepMethod;
  kernel: Exclude<MatMulKernel, "auto">;
  fusedAdam: boolean;
  /** OpenBLAS threads; default: every core. */
  blasThreads?: number;
}

/**
 * The variants, from stock tfjs to the fastest path: the tape step (the
 * reference) on the stock kernels and on OpenBLAS, then the fast step on
 * pure tfjs (our wasm matmul kernel) and on OpenBLAS on every core
 * (`deno task train`'s default) and on one (`--blas-threads 1`).
 */
export const STEP_VARIANTS: StepVariant[] = [
  { name: "tape stock", method: "tape", kernel: "tfjs", fusedAdam: false },
  { name: "tape blas", method: "tape", kernel: "blas", fusedAdam: true },
  { name: "fast wasm", method: "fast", kernel: "wasm", fusedAdam: true },
  { name: "fast blasN", method: "fast", kernel: "blas", fusedAdam: true },
  {
    name: "fast blas1",
    method: "fast",
    kernel: "blas",
    fusedAdam: true,
    blasThreads: 1,
  },
];

/** Steps per second of one variant for `seconds`, after a warm-up. */
export function measureSteps(
  arch: ArchSpec,
  batch: number,
  variant: StepVariant,
  domains: Domain[],
  seconds: number,
): number {
  useMatMulKernel(variant.kernel);
  const threads = variant.kernel === "blas"
    ? setBlasThreads(variant.blasThreads ?? navigator.hardwareConcurrency)
    : undefined;
  const model = createModel(arch, domains.map((d) => d.name), 0);
  const optimisers = createOptimisers(model, {
    ...arch,
    fused: variant.fusedAdam,
  });
  // tidy frees the zeros; the variable keeps their buffer.
  const stats = tf.tidy(() => tf.variable(tf.zeros([domains.length * 4])));
  const batchers = domains.map((d, i) => new Batcher(d, i));
  const rng = new Rng(1);
  const buffers = domains.map(() => new Float32Array(batch * 784));
  const z = new Float32Array(batch * arch.latentDim);
  const step = () =>
    tf.tidy(() => {
      const reals = batchers.map((b, i) =>
        tf.tensor2d(b.next(buffers[i]), [batch, 784])
      );
      const latents = tf.tensor2d(rng.fillNormal(z), [batch, arch.latentDim]);
      trainStep(model, optimisers, reals, latents, stats, variant.method);
    });
  try {
    for (let i = 0; i < 3; i++) step();
    stats.dataSync();
    let steps = 0;
    const start = performance.now();
    while (performance.now() - start < seconds * 1000) {
      step();
      steps++;
    }
    stats.dataSync();
    return steps / ((performance.now() - start) / 1000);
  } finally {
    disposeModel(model);
    disposeOptimisers(optimisers);
    stats.dispose();
    if (threads !== undefined) setBlasThreads(threads);
  }
}

/** Steps per second of the PyTorch peer, or an error string. */
export async function measureTorch(
  arch: ArchSpec,
  batch: number,
  seconds: number,
  threads: number,
): Promise<number | string> {
  const archFile = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(archFile, JSON.stringify(arch));
    const script = join(
      dirname(fileURLToPath(import.meta.url)),
      "torch_peer.py",
    );
    const { code, stdout, stderr } = await new Deno.Command(
      "/usr/bin/python3",
      {
        args: [
          script,
          "--arch-json",
          archFile,
          "--batch",
          String(batch),
          "--seconds",
          String(seconds),
          "--threads",
          String(threads),
        ],
        env: { MNIST_DIR: mnistDataDir() },
        stdout: "piped",
        stderr: "piped",
      },
    ).output();
    if (code !== 0) {
      const lines = new TextDecoder().decode(stderr).trim().split("\n");
      return `torch failed: ${lines[lines.length - 1]}`;
    }
    return JSON.parse(new TextDecoder().decode(stdout)).steps_per_s;
  } catch (err) {
    return `torch unavailable: ${(err as Error).message}`;
  } finally {
    await Deno.remove(archFile);
  }
}

/**
 * Steps per second of `../shared/bench/peer_torch.py` (the seed algorithm
 * as first written in PyTorch) for the seed network, or an error string.
 */
export async function measureSharedPeer(
  batch: number,
  steps: number,
  script: string,
): Promise<number | string> {
  const out = await Deno.makeTempDir({ prefix: "cogan-peer-" });
  try {
    const { code, stdout, stderr } = await new Deno.Command(
      "/usr/bin/python3",
      {
        args: [
          script,
          "--steps",
          String(steps),
          "--batch",
          String(batch),
          "--out",
          out,
        ],
        env: { MNIST_DIR: mnistDataDir() },
        stdout: "piped",
        stderr: "piped",
      },
    ).output();
    const text = new TextDecoder().decode(stdout);
    const match = /([\d.]+) steps\/s/.exec(text);
    if (code !== 0 || !match) {
      const lines = new TextDecoder().decode(stderr).trim().split("\n");
      return `peer failed: ${lines[lines.length - 1]}`;
    }
    return Number(match[1]);
  } catch (err) {
    return `peer unavailable: ${(err as Error).message}`;
  } finally {
    await Deno.remove(out, { recursive: true });
  }
}

/** Median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}
