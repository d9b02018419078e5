import assert from "node:assert/strict";
import { join } from "node:path";
import { IMAGE_SIZE } from "../lib/arch.ts";
import { useBackend } from "../lib/backend.ts";
import {
  type ClassifierConfig,
  type ClassifierEvent,
  type ClassifierManifest,
  loadOrTrainClassifier,
  mnistFloats,
  resolveClassifierConfig,
  trainClassifier,
} from "../lib/classifier.ts";
import { useMatMulKernel } from "../lib/kernels.ts";
import { loadMnist } from "../lib/mnist.ts";

const PIXELS = IMAGE_SIZE * IMAGE_SIZE;

await useBackend("wasm");
useMatMulKernel("auto");

/** A few seconds of training: enough to test the cache, not the accuracy. */
const TINY: Partial<ClassifierConfig> = {
  hidden: [16],
  trainImages: 300,
  epochs: 1,
  batchSize: 50,
  minTestAccuracy: 0,
};

async function readManifest(dir: string): Promise<ClassifierManifest> {
  return JSON.parse(await Deno.readTextFile(join(dir, "manifest.json")));
}

/** Loads (or trains) with events recorded. */
async function load(dir: string, config: Partial<ClassifierConfig> = TINY) {
  const events: ClassifierEvent[] = [];
  const loaded = await loadOrTrainClassifier({
    cacheDir: dir,
    config,
    onProgress: (e) => events.push(e),
  });
  return { ...loaded, events };
}

/** A plain TypeScript forward pass over the cached weights. */
function forward(
  weights: Float32Array,
  manifest: ClassifierManifest,
  image: Float32Array,
): number[] {
  let h = Array.from(image);
  const layers = manifest.tensors.length / 2;
  for (let l = 0; l < layers; l++) {
    const k = manifest.tensors.find((t) => t.name === `${l}/kernel`)!;
    const b = manifest.tensors.find((t) => t.name === `${l}/bias`)!;
    const [inputs, units] = k.shape;
    const out = new Array<number>(units).fill(0);
    for (let j = 0; j < units; j++) {
      let sum = weights[b.offset + j];
      for (let i = 0; i < inputs; i++) {
        sum += h[i] * weights[k.offset + i * units + j];
      }
      out[j] = l < layers - 1 ? Math.max(0, sum) : sum;
    }
    h = out;
  }
  const max = Math.max(...h);
  const exp = h.map((x) => Math.exp(x - max));
  const total = exp.reduce((a, b) => a + b, 0);
  return exp.map((e) => e / total);
}

Deno.test("loadOrTrainClassifier() trains, caches, then loads the cache", async () => {
  const dir = await Deno.makeTempDir();
  try {
    const first = await load(dir);
    assert.equal(first.source, "trained");
    assert.equal(first.rejectedCache, undefined);
    assert.deepEqual(first.events.map((e) => e.kind), ["epoch", "trained"]);
    const manifest = await readManifest(dir);
    assert.equal(manifest.testAccuracy, first.classifier.testAccuracy);
    assert.deepEqual(manifest.config, resolveClassifierConfig(TINY));
    assert.equal(manifest.weightsBytes, 4 * (784 * 16 + 16 + 16 * 10 + 10));

    const second = await load(dir);
    assert.equal(second.source, "cache");
    assert.deepEqual(second.events, []);
    assert.equal(second.classifier.testAccuracy, manifest.testAccuracy);

    // The cached classifier matches the trained one and a plain forward
    // pass over the bytes on disk.
    const test = await loadMnist("test");
    const images = mnistFloats(test, 20);
    const a = first.classifier.classify(images, 20);
    const b = second.classifier.classify(images, 20);
    assert.deepEqual(b, a);
    const bytes = await Deno.readFile(join(dir, "weights.bin"));
    const weights = new Float32Array(bytes.buffer);
    for (let i = 0; i < 20; i++) {
      const probs = forward(
        weights,
        manifest,
        images.subarray(i * PIXELS, (i + 1) * PIXELS),
      );
      const best = probs.indexOf(Math.max(...probs));
      assert.equal(b.labels[i], best);
      assert.ok(Math.abs(b.confidence[i] - probs[best]) < 1e-5);
    }
    first.classifier.dispose();
    second.classifier.dispose();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Trains into a fresh cache, damages it, and loads again. */
async function afterDamage(
  damage: (dir: string, manifest: ClassifierManifest) => Promise<void>,
  config: Partial<ClassifierConfig> = TINY,
) {
  const dir = await Deno.makeTempDir();
  try {
    (await load(dir)).classifier.dispose();
    await damage(dir, await readManifest(dir));
    const reloaded = await load(dir, config);
    reloaded.classifier.dispose();
    // The retrained cache is whole again.
    const third = await load(dir, config);
    third.classifier.dispose();
    return { dir, reloaded, third };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function assertRejected(
  result: Awaited<ReturnType<typeof afterDamage>>,
  problem: string,
) {
  const reason = `Cannot use cached classifier "${result.dir}": ${problem}`;
  assert.equal(result.reloaded.source, "trained");
  assert.equal(result.reloaded.rejectedCache, reason);
  assert.deepEqual(result.reloaded.events[0], {
    kind: "cache-rejected",
    reason,
  });
  assert.equal(result.third.source, "cache");
}

Deno.test("loadOrTrainClassifier() rejects a flipped byte and retrains", async () => {
  const result = await afterDamage(async (dir) => {
    const path = join(dir, "weights.bin");
    const bytes = await Deno.readFile(path);
    bytes[1000] ^= 0x01;
    await Deno.writeFile(path, bytes);
  });
  assertRejected(
    result,
    "weights.bin does not match the SHA-256 in manifest.json (corrupt?)",
  );
});

Deno.test("loadOrTrainClassifier() rejects truncated weights and retrains", async () => {
  let size = 0;
  const result = await afterDamage(async (dir, manifest) => {
    size = manifest.weightsBytes;
    await Deno.truncate(join(dir, "weights.bin"), 100);
  });
  assertRejected(
    result,
    `weights.bin must have ${size} bytes: current size is 100 (truncated?)`,
  );
});

Deno.test("loadOrTrainClassifier() rejects a manifest that is not JSON", async () => {
  const result = await afterDamage(async (dir) => {
    await Deno.writeTextFile(join(dir, "manifest.json"), "{ not json");
  });
  assert.match(
    result.reloaded.rejectedCache!,
    /^Cannot use cached classifier ".*": manifest\.json is not valid JSON \(/,
  );
  assert.equal(result.third.source, "cache");
});

Deno.test("loadOrTrainClassifier() rejects a cache of another config", async () => {
  const other = { ...TINY, epochs: 2 };
  const result = await afterDamage(async () => {}, other);
  assertRejected(
    result,
    `it was trained with config ${
      JSON.stringify(resolveClassifierConfig(TINY))
    }, not the requested ${JSON.stringify(resolveClassifierConfig(other))}`,
  );
});

Deno.test("trainClassifier() refuses a classifier below minTestAccuracy", async () => {
  await assert.rejects(
    () =>
      trainClassifier(
        resolveClassifierConfig({ ...TINY, minTestAccuracy: 0.999 }),
      ),
    (err: Error) => {
      assert.match(
        err.message,
        /^Cannot use the trained classifier as its test accuracy must be at least 0\.999: current value is 0\.\d{4}; train longer or wider$/,
      );
      return true;
    },
  );
});

Deno.test("resolveClassifierConfig() names the bad field", () => {
  assert.throws(() => resolveClassifierConfig({ hidden: [16, 0] }), {
    name: "OptionError",
    message:
      "Cannot train the classifier as 'hidden' must be a list of positive integers: current value is [16,0]",
  });
  assert.throws(() => resolveClassifierConfig({ trainImages: 60001 }), {
    message:
      "Cannot train the classifier as 'trainImages' must be at most 60000: current value is 60001",
  });
});

Deno.test("Classifier.classify() checks the image count", async () => {
  const { classifier } = await trainClassifier(resolveClassifierConfig(TINY));
  try {
    assert.throws(() => classifier.classify(new Float32Array(PIXELS), 2), {
      message:
        "Cannot classify 2 images as they need 1568 floats: current length is 784",
    });
  } finally {
    classifier.dispose();
  }
});
