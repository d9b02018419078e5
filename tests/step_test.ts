import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { type ArchSpec, DEEP_ARCH, SEED_ARCH, unshared } from "../lib/arch.ts";
import { useBackend } from "../lib/backend.ts";
import { type DenseOps, OPS_DENSE } from "../lib/dense_grad.ts";
import { denseOps, FUSED_DENSE } from "../lib/dense_kernels.ts";
import { fastTrainStep } from "../lib/fast_step.ts";
import {
  blasAvailable,
  type MatMulKernel,
  useMatMulKernel,
} from "../lib/kernels.ts";
import { type CoupledModel, createModel, disposeModel } from "../lib/model.ts";
import { Rng } from "../lib/rng.ts";
import {
  createOptimisers,
  disposeOptimisers,
  type Optimisers,
  trainStep,
} from "../lib/step.ts";

await useBackend("wasm");

/** Every activation, and batch normalisation in the shared generator. */
const TINY: ArchSpec = {
  name: "tiny",
  summary: "test network",
  latentDim: 4,
  generatorShared: [{ units: 6, activation: "relu", batchNorm: true }],
  generatorPrivate: [{ units: 784, activation: "sigmoid" }],
  discriminatorPrivate: [{ units: 5, activation: "leaky_relu" }],
  discriminatorShared: [
    { units: 3, activation: "tanh" },
    { units: 1, activation: "linear" },
  ],
  learningRate: 1e-3,
  beta1: 0.5,
  beta2: 0.999,
  batchSize: 3,
};

const ARCHS = [TINY, SEED_ARCH, DEEP_ARCH, unshared(DEEP_ARCH)];

/**
 * The passes under test with the matmul kernel both steps run on: plain ops
 * on the stock and on our wasm kernel, fused ones where OpenBLAS opens.
 */
const OPS: [string, DenseOps, Exclude<MatMulKernel, "auto">][] = [
  ["ops, tfjs kernel", OPS_DENSE, "tfjs"],
  ["ops, wasm kernel", OPS_DENSE, "wasm"],
  ...(blasAvailable()
    ? [["fused", FUSED_DENSE, "blas"] as [string, DenseOps, "blas"]]
    : []),
];

/** Runs `f` with `kernel` installed, then puts the stock kernel back. */
function withKernel(kernel: Exclude<MatMulKernel, "auto">, f: () => void) {
  useMatMulKernel(kernel);
  try {
    f();
  } finally {
    useMatMulKernel("tfjs");
  }
}

type Step = (
  model: CoupledModel,
  optimisers: Optimisers,
  reals: tf.Tensor2D[],
  z: tf.Tensor2D,
  stats: tf.Variable,
) => void;

const tape: Step = (...args) => trainStep(...args, "tape");
const fast = (ops: DenseOps): Step => (...args) => fastTrainStep(...args, ops);

/** Seeded [batch, 784] images per domain and latents [batch, latentDim]. */
function inputs(arch: ArchSpec, seed: number, batch = 8) {
  const rng = new Rng(seed);
  const reals = [0, 1].map(() =>
    tf.tensor2d(
      Float32Array.from({ length: batch * 784 }, () => rng.nextFloat()),
      [batch, 784],
    )
  );
  const z = tf.tensor2d(
    rng.fillNormal(new Float32Array(batch * arch.latentDim)),
    [batch, arch.latentDim],
  );
  return { reals, z };
}

/** Optimisers that record the gradients they get and change nothing. */
function recorders(seen: Map<string, Float32Array>): Optimisers {
  const record = {
    apply: (grads: Record<string, tf.Tensor>) => {
      for (const [name, g] of Object.entries(grads)) {
        seen.set(name, g.dataSync() as Float32Array);
      }
    },
  };
  return { discriminator: record, generator: record } as unknown as Optimisers;
}

/** Gradients, moving averages and statistics of one step from seed 3. */
function oneStep(arch: ArchSpec, step: Step) {
  const model = createModel(arch, ["a", "b"], 3);
  const grads = new Map<string, Float32Array>();
  const stats = tf.variable(tf.zeros([8]));
  const { reals, z } = inputs(arch, 5);
  try {
    step(model, recorders(grads), reals, z, stats);
    const moving = [...model.statistics].map(([n, v]) =>
      [n, v.dataSync()] as const
    );
    return { grads, moving, stats: stats.dataSync() };
  } finally {
    disposeModel(model);
    tf.dispose([stats, ...reals, z]);
  }
}

function maxAbs(values: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < values.length; i++) m = Math.max(m, Math.abs(values[i]));
  return m;
}

function maxDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

for (const [opsName, ops, kernel] of OPS) {
  Deno.test(`the fast step (${opsName}) gives the tape's gradients and statistics`, () =>
    withKernel(kernel, () => {
      for (const arch of ARCHS) {
        const want = oneStep(arch, tape);
        const got = oneStep(arch, fast(ops));
        assert.deepEqual(
          [...got.grads.keys()].sort(),
          [...want.grads.keys()].sort(),
        );
        for (const [name, g] of want.grads) {
          // A batch-normalised layer's bias has a zero gradient up to
          // rounding (the normalisation removes it): about 1e-10 here in
          // either method, so only its absolute size is compared.
          const noise = name.endsWith("/bias") &&
            maxAbs(g) < 1e-8;
          const limit = noise ? 1e-8 : 1e-4 * maxAbs(g);
          const diff = maxDiff(got.grads.get(name)!, g);
          assert.ok(diff <= limit, `${arch.name} ${name}: ${diff} > ${limit}`);
        }
        for (const [i, [name, v]] of want.moving.entries()) {
          assert.equal(got.moving[i][0], name);
          const diff = maxDiff(got.moving[i][1], v);
          assert.ok(diff < 1e-5 * Math.max(1, maxAbs(v)), `${name}: ${diff}`);
        }
        const diff = maxDiff(got.stats, want.stats);
        assert.ok(diff < 1e-5, `${arch.name} statistics: ${diff}`);
      }
    }));

  Deno.test(`the fast step (${opsName}) follows the tape over steps`, () =>
    withKernel(kernel, () => {
      for (const arch of [TINY, SEED_ARCH, unshared(SEED_ARCH), DEEP_ARCH]) {
        const run = (step: Step) => {
          const model = createModel(arch, ["a", "b"], 7);
          const optimisers = createOptimisers(model, arch);
          const stats = tf.variable(tf.zeros([8]));
          try {
            for (let s = 0; s < 4; s++) {
              tf.tidy(() => {
                const { reals, z } = inputs(arch, 10 + s);
                step(model, optimisers, reals, z, stats);
              });
            }
            return new Map(
              [...model.parameters, ...model.statistics].map(([n, v]) => [
                n,
                v.dataSync(),
              ]),
            );
          } finally {
            disposeModel(model);
            disposeOptimisers(optimisers);
            stats.dispose();
          }
        };
        const want = run(tape);
        const got = run(fast(ops));
        // Adam moves each parameter by about the learning rate per step
        // whatever the gradient's size, so parameters whose gradient is
        // rounding noise (biases before batch normalisation, and through them
        // a few weights) move differently in the two methods; without batch
        // normalisation the two stay within a fiftieth of one step.
        const norm = [...arch.generatorShared, ...arch.generatorPrivate].some(
          (l) => l.batchNorm,
        );
        const limit = arch.learningRate * (norm ? 0.5 : 0.02);
        for (const [name, v] of want) {
          const diff = maxDiff(got.get(name)!, v);
          assert.ok(diff < limit, `${arch.name} ${name}: ${diff} > ${limit}`);
        }
      }
    }));

  Deno.test(`the fast step (${opsName}) keeps the tensor count constant`, () => {
    const model = createModel(TINY, ["a", "b"], 8);
    const optimisers = createOptimisers(model, TINY);
    const stats = tf.variable(tf.zeros([8]));
    const { reals, z } = inputs(TINY, 9, 3);
    try {
      fastTrainStep(model, optimisers, reals, z, stats, ops);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 3; i++) {
        fastTrainStep(model, optimisers, reals, z, stats, ops);
      }
      assert.equal(tf.memory().numTensors, before);
    } finally {
      disposeModel(model);
      disposeOptimisers(optimisers);
      tf.dispose([stats, ...reals, z]);
    }
  });
}

Deno.test("denseOps() picks the fused kernels only with the blas kernel", () => {
  try {
    useMatMulKernel("wasm");
    assert.equal(denseOps(), OPS_DENSE);
    if (blasAvailable()) {
      useMatMulKernel("blas");
      assert.equal(denseOps(), FUSED_DENSE);
    }
  } finally {
    useMatMulKernel("tfjs");
  }
});
