import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { LEAKY_SLOPE } from "../lib/arch.ts";
import { useBackend } from "../lib/backend.ts";
import { Rng } from "../lib/rng.ts";
import { activateSimd, activationGradSimd } from "../lib/simd.ts";

await useBackend("wasm");

interface Heap {
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  wasm: { asm: { memory: WebAssembly.Memory } };
}

const heap = () => tf.backend() as unknown as Heap;
const at = (t: tf.Tensor) => heap().dataIdMap.get(t.dataId).memoryOffset;
const memory = () => heap().wasm.asm.memory;

/** 4k + 3 values in [-1, 1], some exactly 0. */
function values(seed: number): tf.Tensor1D {
  const rng = new Rng(seed);
  const x = Float32Array.from({ length: 43 }, () => 2 * rng.nextFloat() - 1);
  x[5] = 0;
  return tf.tensor1d(x);
}

Deno.test("activateSimd() equals tfjs's relu and leakyRelu on the SIMD lanes", () => {
  for (const activation of ["relu", "leaky_relu"] as const) {
    tf.tidy(() => {
      const x = values(1);
      const want = activation === "relu"
        ? tf.relu(x).dataSync()
        : tf.leakyRelu(x, LEAKY_SLOPE).dataSync();
      const y = tf.add(x, 0);
      activateSimd(memory(), activation, at(y), 40);
      const got = y.dataSync();
      assert.deepEqual([...got.subarray(0, 40)], [...want.subarray(0, 40)]);
      // The last three are the caller's: untouched.
      assert.deepEqual([...got.subarray(40)], [...x.dataSync().subarray(40)]);
    });
  }
});

Deno.test("activationGradSimd() equals dA * act' in tfjs ops on the SIMD lanes", () => {
  const cases = {
    relu: (dA: tf.Tensor, a: tf.Tensor) => tf.mul(dA, tf.step(a)),
    leaky_relu: (dA: tf.Tensor, a: tf.Tensor) =>
      tf.where(tf.greater(a, 0), dA, tf.mul(dA, LEAKY_SLOPE)),
    sigmoid: (dA: tf.Tensor, a: tf.Tensor) =>
      tf.mul(tf.mul(dA, a), tf.sub(1, a)),
    tanh: (dA: tf.Tensor, a: tf.Tensor) => tf.mul(dA, tf.sub(1, tf.mul(a, a))),
  };
  for (const [activation, grad] of Object.entries(cases)) {
    tf.tidy(() => {
      const dA = values(2);
      const a = values(3);
      const out = tf.zeros([43]);
      activationGradSimd(
        memory(),
        activation as keyof typeof cases,
        at(dA),
        at(a),
        at(out),
        40,
      );
      const want = grad(dA, a).dataSync().subarray(0, 40);
      const got = out.dataSync();
      // -0 and 0 compare equal here: only the numbers matter.
      want.forEach((w, i) => assert.ok(got[i] === w, `${activation} [${i}]`));
      assert.deepEqual([...got.subarray(40)], [0, 0, 0]);
    });
  }
});
