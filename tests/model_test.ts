import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { Adam } from "../lib/adam.ts";
import { type ArchSpec, unshared } from "../lib/arch.ts";
import { useBackend } from "../lib/backend.ts";
import { useMatMulKernel } from "../lib/kernels.ts";
import {
  type BatchStats,
  type CoupledModel,
  createModel,
  disposeModel,
  generate,
  runStack,
  updateMovingStats,
} from "../lib/model.ts";
import { Rng } from "../lib/rng.ts";
import {
  createOptimisers,
  discriminatorGrads,
  disposeOptimisers,
  generatorGrads,
  trainStep,
} from "../lib/step.ts";

await useBackend("wasm");

/** A tiny coupled MLP: 784-pixel images, small layers. */
const TINY: ArchSpec = {
  name: "tiny",
  summary: "test network",
  latentDim: 4,
  generatorShared: [{ units: 6, activation: "relu" }],
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

function batches(seed: number, batch: number, width: number): tf.Tensor2D[] {
  const rng = new Rng(seed);
  return [0, 1].map(() =>
    tf.tensor2d(
      Float32Array.from({ length: batch * width }, () => rng.nextFloat()),
      [batch, width],
    )
  );
}

function maxDiff(a: tf.Tensor, b: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]);
}

Deno.test("createModel() shares one set of variables between domains", () => {
  const model = createModel(TINY, ["a", "b"], 0);
  try {
    // Both domains' generator paths start with the very same layer objects.
    const shared = model.generatorShared[0];
    assert.equal(
      model.parameters.get("generator/shared/0/kernel"),
      shared.kernel,
    );
    assert.equal(model.generatorPrivate.length, 2);
    assert.notEqual(
      model.generatorPrivate[0][0].kernel,
      model.generatorPrivate[1][0].kernel,
    );
    const names = [...model.parameters.keys()];
    assert.equal(names.filter((n) => n.includes("/shared/")).length, 6);
    assert.deepEqual(model.parameters.get("generator/a/0/kernel")!.shape, [
      6,
      784,
    ]);
  } finally {
    disposeModel(model);
  }
});

Deno.test("generate() equals each domain's path computed separately", () => {
  const model = createModel(TINY, ["a", "b"], 1);
  try {
    tf.tidy(() => {
      const [z] = batches(2, 5, 4);
      const [a, b] = generate(model, z);
      const h = runStack(model.generatorShared, z);
      assert.equal(maxDiff(a, runStack(model.generatorPrivate[0], h)), 0);
      assert.equal(maxDiff(b, runStack(model.generatorPrivate[1], h)), 0);
    });
  } finally {
    disposeModel(model);
  }
});

/**
 * Discriminator loss of one domain written out with plain tfjs ops on
 * given weights: an independent forward pass.
 */
function plainDiscriminatorLoss(
  w: Record<string, tf.Tensor>,
  domain: string,
  real: tf.Tensor2D,
  fake: tf.Tensor2D,
): tf.Scalar {
  const logits = (x: tf.Tensor2D) => {
    const h0 = tf.leakyRelu(
      tf.add(
        tf.matMul(x, w[`discriminator/${domain}/0/kernel`] as tf.Tensor2D),
        w[`discriminator/${domain}/0/bias`],
      ),
      0.2,
    ) as tf.Tensor2D;
    const h1 = tf.tanh(
      tf.add(
        tf.matMul(h0, w["discriminator/shared/0/kernel"] as tf.Tensor2D),
        w["discriminator/shared/0/bias"],
      ),
    ) as tf.Tensor2D;
    return tf.add(
      tf.matMul(h1, w["discriminator/shared/1/kernel"] as tf.Tensor2D),
      w["discriminator/shared/1/bias"],
    );
  };
  // -log(sigmoid(l)) on real, -log(1 - sigmoid(l)) on fake.
  return tf.add(
    tf.neg(tf.mean(tf.log(tf.sigmoid(logits(real))))),
    tf.neg(tf.mean(tf.log(tf.sub(1, tf.sigmoid(logits(fake)))))),
  ) as tf.Scalar;
}

function snapshot(model: CoupledModel): Record<string, tf.Tensor> {
  return Object.fromEntries(
    [...model.parameters].map(([n, v]) => [n, tf.clone(v)]),
  );
}

Deno.test("discriminatorGrads() averages the shared gradient over domains", () => {
  const model = createModel(TINY, ["a", "b"], 3);
  try {
    tf.tidy(() => {
      const reals = batches(4, 3, 784);
      const fakes = batches(5, 3, 784);
      const d = discriminatorGrads(model, reals, fakes);
      const w = snapshot(model);
      const names = Object.keys(w).filter((n) =>
        n.startsWith("discriminator/")
      );
      // Each domain's loss reaches its own private layers and the shared.
      const perDomain = ["a", "b"].map((domain, i) => {
        const own = names.filter((n) => !n.includes(`/${i ? "a" : "b"}/`));
        const f = (...values: tf.Tensor[]) => {
          const v = Object.fromEntries(own.map((n, j) => [n, values[j]]));
          return plainDiscriminatorLoss(
            { ...w, ...v },
            domain,
            reals[i],
            fakes[i],
          );
        };
        const grads = tf.grads(f)(own.map((n) => w[n]));
        return Object.fromEntries(own.map((n, j) => [n, grads[j]]));
      });
      for (const name of names) {
        const expected = name.includes("/shared/")
          ? tf.div(tf.add(perDomain[0][name], perDomain[1][name]), 2)
          : perDomain[name.includes("/a/") ? 0 : 1][name];
        assert.ok(
          maxDiff(d.grads[name], expected) < 1e-6,
          `${name}: ${maxDiff(d.grads[name], expected)}`,
        );
      }
      tf.dispose([...d.losses, ...d.dReal, ...d.dFake]);
    });
  } finally {
    disposeModel(model);
  }
});

Deno.test("generatorGrads() averages the shared gradient over domains", () => {
  const model = createModel(TINY, ["a", "b"], 6);
  try {
    tf.tidy(() => {
      const [z] = batches(7, 3, 4);
      const both = generatorGrads(model, z);
      // With one domain's loss alone (the other head's loss has no path to
      // it), the private gradient is that domain's full gradient.
      const single = (i: number) =>
        tf.variableGrads(
          () => {
            const images = generate(model, z);
            const logits = runStack(
              model.discriminatorShared,
              runStack(model.discriminatorPrivate[i], images[i]),
            );
            return tf.mean(tf.softplus(tf.neg(logits))) as tf.Scalar;
          },
          [...model.parameters].filter(([n]) => n.startsWith("generator/")).map(
            ([, v]) => v,
          ),
        ).grads;
      const [ga, gb] = [single(0), single(1)];
      const shared = "generator/shared/0/kernel";
      const mean = tf.div(tf.add(ga[shared], gb[shared]), 2);
      assert.ok(maxDiff(both.grads[shared], mean) < 1e-6);
      assert.ok(
        maxDiff(
          both.grads["generator/a/0/kernel"],
          ga["generator/a/0/kernel"],
        ) < 1e-6,
      );
      assert.ok(
        maxDiff(both.grads["generator/b/0/bias"], gb["generator/b/0/bias"]) <
          1e-6,
      );
      tf.dispose(both.losses);
    });
  } finally {
    disposeModel(model);
  }
});

Deno.test("trainStep() keeps the tensor count constant across steps", () => {
  const model = createModel(TINY, ["a", "b"], 8);
  const optimisers = createOptimisers(model, TINY);
  const stats = tf.variable(tf.zeros([8]));
  const reals = batches(9, 3, 784);
  const [z] = batches(10, 3, 4);
  try {
    trainStep(model, optimisers, reals, z, stats);
    const before = tf.memory().numTensors;
    for (let i = 0; i < 5; i++) trainStep(model, optimisers, reals, z, stats);
    assert.equal(tf.memory().numTensors, before);
    assert.ok(stats.dataSync().every(Number.isFinite));
  } finally {
    disposeModel(model);
    disposeOptimisers(optimisers);
    tf.dispose([stats, ...reals, z]);
  }
});

Deno.test("matmul kernels agree with the stock kernel", () => {
  const rng = new Rng(11);
  const t = (r: number, c: number) =>
    tf.tensor2d(
      Float32Array.from({ length: r * c }, () => rng.nextFloat() - 0.5),
      [r, c],
    );
  const a = t(7, 13);
  const b = t(13, 5);
  const at = t(13, 7);
  const bt = t(5, 13);
  const cases = () => [
    tf.matMul(a, b),
    tf.matMul(a, bt, false, true),
    tf.matMul(at, b, true, false),
    tf.matMul(at, bt, true, true),
  ];
  useMatMulKernel("tfjs");
  const expected = cases();
  try {
    for (const kernel of ["wasm", "blas"] as const) {
      let ran: string;
      try {
        ran = useMatMulKernel(kernel);
      } catch (err) {
        // OpenBLAS is optional; its absence must be reported clearly.
        assert.equal(kernel, "blas");
        assert.match(
          (err as Error).message,
          /apt-get install libopenblas0-pthread/,
        );
        continue;
      }
      assert.equal(ran, kernel);
      const got = cases();
      got.forEach((g, i) =>
        assert.ok(maxDiff(g, expected[i]) < 1e-5, `${kernel} case ${i}`)
      );
      tf.dispose(got);
    }
  } finally {
    useMatMulKernel("tfjs");
    tf.dispose([a, b, at, bt, ...expected]);
  }
});

Deno.test("Adam's fused wasm update equals its tfjs-op update", () => {
  const rng = new Rng(12);
  const values = () =>
    Float32Array.from({ length: 50 }, () => rng.nextFloat() - 0.5);
  const start = values();
  const gradients = Array.from({ length: 5 }, () => tf.tensor1d(values()));
  // A gradient that is zero throughout, as for MNIST's blank borders.
  gradients.push(tf.zeros([50]));
  const run = (fused: boolean) => {
    const p = tf.variable(tf.tensor1d(start));
    const adam = new Adam(new Map([["p", p]]), {
      learningRate: 0.01,
      beta1: 0.5,
      beta2: 0.999,
      fused,
    });
    for (const g of gradients) adam.apply({ p: g });
    const out = [p, ...adam.state().values()].map((t) => t.dataSync());
    adam.dispose();
    p.dispose();
    return out;
  };
  const fused = run(true);
  const ops = run(false);
  assert.notDeepEqual(fused[0], start);
  fused.forEach((f, i) =>
    f.forEach((x, j) =>
      assert.ok(
        Math.abs(x - ops[i][j]) <= 1e-6 * Math.max(1, Math.abs(x)),
        `tensor ${i}[${j}]: ${x} vs ${ops[i][j]}`,
      )
    )
  );
  tf.dispose(gradients);
});

Deno.test("unshared() gives each domain its own copy of the shared layers", () => {
  const model = createModel(unshared(TINY), ["a", "b"], 0);
  try {
    const names = [...model.parameters.keys()];
    assert.equal(names.filter((n) => n.includes("/shared/")).length, 0);
    assert.deepEqual(
      names.filter((n) => n.startsWith("generator/a/")),
      [
        "generator/a/0/kernel",
        "generator/a/0/bias",
        "generator/a/1/kernel",
        "generator/a/1/bias",
      ],
    );
    tf.tidy(() => {
      const [z] = batches(13, 2, 4);
      assert.deepEqual(generate(model, z).map((x) => x.shape), [[2, 784], [
        2,
        784,
      ]]);
    });
  } finally {
    disposeModel(model);
  }
});

Deno.test("training with the fused Adam follows the op path (no stale weights)", () => {
  // XNNPACK caches its packing of a weight matrix per tensor, so weights
  // changed in place would go on multiplying with their old values.
  useMatMulKernel("wasm");
  const reals = batches(14, 3, 784);
  const [z] = batches(15, 3, 4);
  const stats = tf.variable(tf.zeros([8]));
  const run = (fused: boolean) => {
    const model = createModel(TINY, ["a", "b"], 16);
    const optimisers = createOptimisers(model, {
      ...TINY,
      learningRate: 0.05,
      fused,
    });
    for (let i = 0; i < 4; i++) trainStep(model, optimisers, reals, z, stats);
    const values = [...model.parameters.values()].map((v) => v.dataSync());
    disposeModel(model);
    disposeOptimisers(optimisers);
    return values;
  };
  try {
    const fused = run(true);
    const ops = run(false);
    fused.forEach((f, i) =>
      f.forEach((x, j) =>
        assert.ok(Math.abs(x - ops[i][j]) < 1e-5, `parameter ${i}[${j}]`)
      )
    );
  } finally {
    useMatMulKernel("tfjs");
    tf.dispose([stats, ...reals, z]);
  }
});

/** TINY with batch normalisation in the shared generator layer. */
const TINY_BN: ArchSpec = {
  ...TINY,
  generatorShared: [{ units: 6, activation: "relu", batchNorm: true }],
};

Deno.test("runStack() batch-normalises with batch statistics, then moving averages", () => {
  const model = createModel(TINY_BN, ["a", "b"], 17);
  try {
    tf.tidy(() => {
      const layer = model.generatorShared[0];
      const norm = layer.norm!;
      norm.gamma.assign(tf.tensor1d([1, 2, 0.5, 1, 3, 1]));
      norm.beta.assign(tf.tensor1d([0, 0.5, -0.5, 1, 0, 0.2]));
      const [z] = batches(18, 5, 4);
      const pre = tf.add(tf.matMul(z, layer.kernel as tf.Tensor2D), layer.bias);
      // Independent: biased batch variance, epsilon 1e-5, then ReLU.
      const { mean, variance } = tf.moments(pre, 0);
      const expectTrain = tf.relu(tf.add(
        tf.mul(
          tf.div(tf.sub(pre, mean), tf.sqrt(tf.add(variance, 1e-5))),
          norm.gamma,
        ),
        norm.beta,
      ));
      const stats: BatchStats[] = [];
      const train = runStack(model.generatorShared, z, stats);
      assert.ok(maxDiff(train, expectTrain) < 1e-5);
      assert.equal(stats.length, 1);

      updateMovingStats(stats);
      // Moving averages start at 0 and 1 and take 10% of the batch's mean
      // and unbiased variance (n / (n - 1) = 5 / 4).
      assert.ok(maxDiff(norm.movingMean, tf.mul(mean, 0.1)) < 1e-6);
      assert.ok(
        maxDiff(norm.movingVariance, tf.add(0.9, tf.mul(variance, 0.125))) <
          1e-6,
      );

      const generating = runStack(model.generatorShared, z);
      const expectEval = tf.relu(tf.add(
        tf.mul(
          tf.div(
            tf.sub(pre, norm.movingMean),
            tf.sqrt(tf.add(norm.movingVariance, 1e-5)),
          ),
          norm.gamma,
        ),
        norm.beta,
      ));
      assert.ok(maxDiff(generating, expectEval) < 1e-5);
    });
  } finally {
    disposeModel(model);
  }
});

Deno.test("trainStep() updates batch-norm statistics and keeps tensors constant", () => {
  const model = createModel(TINY_BN, ["a", "b"], 19);
  const optimisers = createOptimisers(model, TINY);
  const stats = tf.variable(tf.zeros([8]));
  const reals = batches(20, 3, 784);
  const [z] = batches(21, 3, 4);
  try {
    assert.deepEqual([...model.statistics.keys()], [
      "generator/shared/0/moving_mean",
      "generator/shared/0/moving_variance",
    ]);
    assert.ok(model.parameters.has("generator/shared/0/gamma"));
    trainStep(model, optimisers, reals, z, stats);
    const before = tf.memory().numTensors;
    trainStep(model, optimisers, reals, z, stats);
    assert.equal(tf.memory().numTensors, before);
    const mean = model.statistics.get("generator/shared/0/moving_mean")!;
    assert.ok(mean.dataSync().some((x) => x !== 0));
  } finally {
    disposeModel(model);
    disposeOptimisers(optimisers);
    tf.dispose([stats, ...reals, z]);
  }
});
