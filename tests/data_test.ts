import assert from "node:assert/strict";
import { Batcher, makeDomains } from "../lib/data.ts";
import { InputError } from "../lib/errors.ts";
import {
  loadMnist,
  type MnistSplit,
  parseIdxImages,
  parseIdxLabels,
} from "../lib/mnist.ts";
import { Rng } from "../lib/rng.ts";
import {
  applyTransform,
  checkTransform,
  edge,
  invertTransform,
  negative,
  rot90,
} from "../lib/transforms.ts";

function idxBytes(magic: number, dims: number[], body: number): Uint8Array {
  const bytes = new Uint8Array(4 + 4 * dims.length + body);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, magic);
  dims.forEach((d, i) => view.setUint32(4 + 4 * i, d));
  return bytes;
}

Deno.test("loadMnist() reads the real idx files with their sizes", async () => {
  const train = await loadMnist("train");
  assert.equal(train.count, 60000);
  assert.equal(train.rows, 28);
  assert.equal(train.cols, 28);
  assert.equal(train.labels.length, 60000);
  // The first training digit of MNIST is a 5, the first test digit a 7.
  assert.equal(train.labels[0], 5);
  const test = await loadMnist("test");
  assert.equal(test.count, 10000);
  assert.equal(test.labels[0], 7);
});

Deno.test("parseIdxImages() rejects a wrong magic number", () => {
  const bytes = idxBytes(0x00000801, [1, 2, 2], 4);
  assert.throws(
    () => parseIdxImages(bytes, "x.idx"),
    new InputError(
      'Cannot parse idx file "x.idx": magic number must be 0x00000803: current value is 0x00000801',
    ),
  );
});

Deno.test("parseIdxImages() rejects a truncated file", () => {
  const bytes = idxBytes(0x00000803, [2, 2, 2], 7);
  assert.throws(
    () => parseIdxImages(bytes, "x.idx"),
    new InputError(
      'Cannot parse idx file "x.idx": its header promises 24 bytes: current size is 23',
    ),
  );
  assert.throws(
    () => parseIdxImages(new Uint8Array(5), "y.idx"),
    new InputError(
      'Cannot parse idx file "y.idx": it has 5 bytes, fewer than its 16-byte header',
    ),
  );
});

Deno.test("parseIdxLabels() rejects labels that are not digits", () => {
  const bytes = idxBytes(0x00000801, [3], 3);
  bytes.set([1, 12, 3], 8);
  assert.throws(
    () => parseIdxLabels(bytes, "l.idx"),
    new InputError(
      'Cannot parse idx file "l.idx": label 1 must be a digit 0-9: current value is 12',
    ),
  );
  bytes[9] = 2;
  assert.deepEqual([...parseIdxLabels(bytes, "l.idx")], [1, 2, 3]);
});

function randomImage(rng: Rng, size: number): Float32Array {
  return Float32Array.from({ length: size * size }, () => rng.nextFloat());
}

Deno.test("rot90() four times is the identity, and turns counter-clockwise", () => {
  const rng = new Rng(1);
  const image = randomImage(rng, 5);
  let x = image;
  for (let i = 0; i < 4; i++) x = rot90(x, 5);
  assert.deepEqual(x, image);
  // [[1, 2], [3, 4]] turned counter-clockwise is [[2, 4], [1, 3]].
  assert.deepEqual(
    [...rot90(Float32Array.from([1, 2, 3, 4]), 2)],
    [2, 4, 1, 3],
  );
  assert.deepEqual(invertTransform("rot90", rot90(image, 5), 5), image);
});

Deno.test("negative() twice is the identity", () => {
  const image = Float32Array.from([0, 0.25, 0.5, 1]);
  assert.deepEqual([...negative(image)], [1, 0.75, 0.5, 0]);
  assert.deepEqual(negative(negative(image)), image);
});

Deno.test("edge() is the 3x3 dilation minus the image", () => {
  // A single ink pixel in a 4x4 image: its 8 neighbours become edge,
  // the pixel itself and everything farther away stay 0.
  const image = new Float32Array(16);
  image[1 * 4 + 1] = 1;
  assert.deepEqual(
    [...edge(image, 4)],
    [
      1,
      1,
      1,
      0,
      1,
      0,
      1,
      0,
      1,
      1,
      1,
      0,
      0,
      0,
      0,
      0,
    ],
  );
  // Grey levels: the dilation takes the largest neighbour.
  const grey = Float32Array.from([0.5, 0, 0, 0.25]);
  assert.deepEqual([...edge(grey, 2)], [0, 0.5, 0.5, 0.25]);
  assert.equal(invertTransform("edge", grey, 2), undefined);
});

Deno.test("checkTransform() lists the valid transforms", () => {
  assert.throws(
    () => checkTransform("spin"),
    {
      message:
        'Unsupported transform: "spin". Should be one of: rot90, negative, edge',
    },
  );
});

function tinyMnist(count: number): MnistSplit {
  const pixels = new Uint8Array(count * 784);
  for (let i = 0; i < count; i++) pixels[i * 784] = i; // tag each image
  return {
    count,
    rows: 28,
    cols: 28,
    pixels,
    labels: new Uint8Array(count),
  };
}

Deno.test("makeDomains() draws the domains from disjoint halves", async () => {
  const mnist = await loadMnist("train");
  const [a, b] = makeDomains(mnist, "rot90");
  assert.equal(a.name, "mnist");
  assert.equal(b.name, "mnist-rot90");
  assert.equal(a.count + b.count, 60000);
  const seen = new Set(a.sourceIndices);
  assert.equal(seen.size, 30000);
  assert.ok([...b.sourceIndices].every((i) => !seen.has(i)));
  // Domain B holds the transformed images of its own half.
  const src = b.sourceIndices[7];
  const original = Float32Array.from(
    mnist.pixels.subarray(src * 784, (src + 1) * 784),
    (p) => p / 255,
  );
  assert.deepEqual(
    b.images.subarray(7 * 784, 8 * 784),
    applyTransform("rot90", original, 28),
  );
});

Deno.test("Batcher shuffles each epoch and restores from its state", () => {
  const [domain] = makeDomains(tinyMnist(20), "negative");
  const first = (out: Float32Array) =>
    Array.from(
      { length: out.length / 784 },
      (_, i) => Math.round(out[i * 784] * 255),
    );
  const batcher = new Batcher(domain, 3);
  const epoch1 = [
    ...first(batcher.next(new Float32Array(4 * 784))),
    ...first(batcher.next(new Float32Array(6 * 784))),
  ];
  // One epoch visits every image once, not in storage order.
  assert.deepEqual([...epoch1].sort((x, y) => x - y), [...Array(10).keys()]);
  assert.notDeepEqual(epoch1, [...Array(10).keys()]);
  const state = batcher.state();
  const restored = new Batcher(domain, 999, state);
  const next = first(batcher.next(new Float32Array(7 * 784)));
  assert.deepEqual(first(restored.next(new Float32Array(7 * 784))), next);
  // The next epoch is a different order.
  assert.notDeepEqual(next, epoch1.slice(0, 7));
});
