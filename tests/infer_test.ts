import * as tf from "@tensorflow/tfjs";
import { create, toBinary } from "@bufbuild/protobuf";
import assert from "node:assert/strict";
import { join } from "node:path";
import { inflateSync } from "node:zlib";
import { ModelProtoSchema } from "onnx-buf";
import type { ArchSpec, LayerSpec } from "../lib/arch.ts";
import { useBackend } from "../lib/backend.ts";
import { saveCheckpoint, sha256Hex } from "../lib/checkpoint.ts";
import { domainInfos } from "../lib/data.ts";
import { InputError, OptionError } from "../lib/errors.ts";
import * as exporter from "../lib/export.ts";
import {
  interpolateLatents,
  LatentStream,
  openPairGenerator,
  runInference,
  seededLatents,
  slerp,
} from "../lib/infer.ts";
import { benchInference } from "../lib/infer_bench.ts";
import {
  type CoupledModel,
  createModel,
  disposeModel,
  generate,
} from "../lib/model.ts";
import { npyHeader, parseNpy, readNpy, writeNpy } from "../lib/npy.ts";
import { resolveTrainOptions } from "../lib/options.ts";
import { pairGrid } from "../lib/png.ts";
import { Rng } from "../lib/rng.ts";

const ROOT = new URL("..", import.meta.url).pathname;
const DOMAINS = ["mnist", "mnist-rot90"];

/** A tiny coupled architecture: z of 6, one shared layer of 8. */
const TINY: ArchSpec = {
  name: "tiny",
  summary: "test",
  latentDim: 6,
  generatorShared: [{ units: 8, activation: "leaky_relu" }],
  generatorPrivate: [{ units: 784, activation: "sigmoid" }],
  discriminatorPrivate: [{ units: 4, activation: "relu" }],
  discriminatorShared: [{ units: 1, activation: "linear" }],
  learningRate: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  batchSize: 4,
};

// ---------------------------------------------------------------------------
// A test export, built here from a tfjs model's weights with MatMul + Add
// nodes, independently of lib/export.ts.

type Node = { opType: string; input: string[]; output: string[] };

function floatInit(name: string, dims: number[], values: Float32Array) {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setFloat32(4 * i, v, true));
  return { name, dims: dims.map(BigInt), dataType: 1, rawData: raw };
}

function valueInfo(name: string, dims: (number | string)[]) {
  return {
    name,
    type: {
      value: {
        case: "tensorType" as const,
        value: {
          elemType: 1,
          shape: {
            dim: dims.map((d) => ({
              value: typeof d === "string"
                ? { case: "dimParam" as const, value: d }
                : { case: "dimValue" as const, value: BigInt(d) },
            })),
          },
        },
      },
    },
  };
}

function denseNodes(
  prefix: string,
  input: string,
  layers: { spec: LayerSpec; kernel: tf.Variable; bias: tf.Variable }[],
  nodes: (Node & { attribute?: unknown[] })[],
  inits: ReturnType<typeof floatInit>[],
): string {
  let x = input;
  layers.forEach((layer, i) => {
    const name = `${prefix}/${i}`;
    inits.push(
      floatInit(
        `${name}/W`,
        layer.kernel.shape,
        layer.kernel.dataSync() as Float32Array,
      ),
      floatInit(
        `${name}/b`,
        layer.bias.shape,
        layer.bias.dataSync() as Float32Array,
      ),
    );
    nodes.push(
      { opType: "MatMul", input: [x, `${name}/W`], output: [`${name}/mm`] },
      {
        opType: "Add",
        input: [`${name}/mm`, `${name}/b`],
        output: [`${name}/lin`],
      },
    );
    const op = {
      relu: "Relu",
      leaky_relu: "LeakyRelu",
      tanh: "Tanh",
      sigmoid: "Sigmoid",
      linear: "Identity",
    }[layer.spec.activation];
    nodes.push({
      opType: op,
      input: [`${name}/lin`],
      output: [`${name}/out`],
      ...(op === "LeakyRelu"
        ? { attribute: [{ name: "alpha", type: 1, f: 0.2 }] }
        : {}),
    });
    x = `${name}/out`;
  });
  return x;
}

function testOnnx(
  model: CoupledModel,
  opts: { input?: string; metadata?: boolean } = {},
): Uint8Array {
  const input = opts.input ?? "z";
  const nodes: (Node & { attribute?: unknown[] })[] = [];
  const inits: ReturnType<typeof floatInit>[] = [];
  const h = denseNodes("shared", input, model.generatorShared, nodes, inits);
  const raw = new Uint8Array(32);
  [-1, 1, 28, 28].forEach((v, i) =>
    new DataView(raw.buffer).setBigInt64(8 * i, BigInt(v), true)
  );
  inits.push({ name: "shape", dims: [4n], dataType: 7, rawData: raw });
  model.domains.forEach((d, k) => {
    const flat = denseNodes(d, h, model.generatorPrivate[k], nodes, inits);
    nodes.push({ opType: "Reshape", input: [flat, "shape"], output: [d] });
  });
  const proto = create(ModelProtoSchema, {
    irVersion: 8n,
    opsetImport: [{ domain: "", version: 17n }],
    producerName: "infer_test",
    metadataProps: opts.metadata === false ? [] : [
      { key: "cogan.domains", value: JSON.stringify(model.domains) },
      { key: "cogan.latentDim", value: String(model.arch.latentDim) },
    ],
    graph: {
      name: "test-pair",
      // deno-lint-ignore no-explicit-any
      node: nodes as any,
      initializer: inits,
      input: [valueInfo(input, ["batch", model.arch.latentDim])],
      output: model.domains.map((d) => valueInfo(d, ["batch", 1, 28, 28])),
    },
  });
  return toBinary(ModelProtoSchema, proto);
}

/** Writes an export folder (pair.onnx + manifest.json) for `model`. */
async function writeTestExport(
  dir: string,
  model: CoupledModel,
): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const bytes = testOnnx(model) as Uint8Array<ArrayBuffer>;
  await Deno.writeFile(join(dir, "pair.onnx"), bytes);
  await Deno.writeTextFile(
    join(dir, "manifest.json"),
    JSON.stringify({
      format: "cogan-export",
      version: 1,
      domains: model.domains.map((name) => ({ name, transform: "none" })),
      latentDim: model.arch.latentDim,
      imageShape: [1, 28, 28],
      files: {
        "pair.onnx": { sha256: await sha256Hex(bytes), bytes: bytes.length },
      },
    }),
  );
}

/** The tfjs generators' images for `z` ([count, latentDim]), per domain. */
function tfjsPairs(model: CoupledModel, z: Float32Array): Float32Array[] {
  return tf.tidy(() =>
    generate(
      model,
      tf.tensor2d(z, [z.length / model.arch.latentDim, model.arch.latentDim]),
    )
      .map((t) => t.dataSync() as Float32Array)
  );
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

/**
 * Saves the weights of createModel(TINY, DOMAINS, seed) as a run's
 * checkpoint and exports it with exportRun(). exportRun() builds its own
 * tfjs model with the same variable names, so ours is gone by then.
 */
async function exportWithExportRun(seed: number, dir: string): Promise<string> {
  const model = createModel(TINY, DOMAINS, seed);
  const tensors = new Map(
    [...model.parameters].map(([name, v]) => [
      name,
      { shape: v.shape, values: (v.dataSync() as Float32Array).slice() },
    ]),
  );
  disposeModel(model);
  const run = join(dir, "run");
  await saveCheckpoint(join(run, "checkpoints"), {
    step: 3,
    options: { ...resolveTrainOptions({ out: run }), arch: TINY.name },
    arch: TINY,
    domains: domainInfos("rot90"),
    state: {
      step: 3,
      latentRng: new Rng(seed).state(),
      batchers: [],
      optimiserUpdates: { discriminator: 3, generator: 3 },
    },
    versions: { test: "infer_test" },
  }, tensors);
  const out = join(dir, "exported");
  await exporter.exportRun({ run, out, backend: "cpu" });
  return out;
}

/** One model and its exports shared by the tests; tiny and fast. */
const fixture = await (async () => {
  await useBackend("cpu");
  const dir = await Deno.makeTempDir({ prefix: "infer_test_" });
  const exported = await exportWithExportRun(7, dir);
  // The same seed gives the same weights.
  const model = createModel(TINY, DOMAINS, 7);
  const exportDir = join(dir, "export");
  await writeTestExport(exportDir, model);
  return { model, dir, exportDir, exported };
})();

globalThis.addEventListener("unload", () => {
  disposeModel(fixture.model);
  Deno.removeSync(fixture.dir, { recursive: true });
});

// ---------------------------------------------------------------------------
// An independent PNG decoder (8-bit greyscale, any filter).

function decodePng(bytes: Uint8Array): {
  width: number;
  height: number;
  pixels: Uint8Array;
} {
  const signature = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
  assert.deepEqual([...bytes.subarray(0, 8)], signature);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = 8, width = 0, height = 0;
  const idat: Uint8Array[] = [];
  while (at < bytes.length) {
    const length = view.getUint32(at);
    const type = new TextDecoder().decode(bytes.subarray(at + 4, at + 8));
    const data = bytes.subarray(at + 8, at + 8 + length);
    if (type === "IHDR") {
      width = view.getUint32(at + 8);
      height = view.getUint32(at + 12);
      assert.deepEqual([data[8], data[9]], [8, 0], "8-bit greyscale");
    } else if (type === "IDAT") idat.push(data);
    at += 12 + length;
  }
  const raw = new Uint8Array(
    inflateSync(new Uint8Array(idat.flatMap((d) => [...d]))),
  );
  assert.equal(raw.length, height * (width + 1));
  const pixels = new Uint8Array(width * height);
  for (let y = 0; y < height; y++) {
    const filter = raw[y * (width + 1)];
    for (let x = 0; x < width; x++) {
      const v = raw[y * (width + 1) + 1 + x];
      const a = x > 0 ? pixels[y * width + x - 1] : 0;
      const b = y > 0 ? pixels[(y - 1) * width + x] : 0;
      const c = x > 0 && y > 0 ? pixels[(y - 1) * width + x - 1] : 0;
      const p = a + b - c;
      const paeth = Math.abs(p - a) <= Math.abs(p - b) &&
          Math.abs(p - a) <= Math.abs(p - c)
        ? a
        : Math.abs(p - b) <= Math.abs(p - c)
        ? b
        : c;
      const predictor = [0, a, b, (a + b) >> 1, paeth][filter];
      pixels[y * width + x] = (v + predictor) & 0xff;
    }
  }
  return { width, height, pixels };
}

// ---------------------------------------------------------------------------
// Running the script.

/** The permissions of the infer task in deno.json. */
const TASK_PERMISSIONS: string[] = JSON.parse(
  await Deno.readTextFile(join(ROOT, "deno.json")),
).tasks.infer.split(" ").filter((a: string) => a.startsWith("--allow-"));

async function infer(...args: string[]) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...TASK_PERMISSIONS, join(ROOT, "infer.ts"), ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  return {
    code,
    stdout: new TextDecoder().decode(stdout),
    stderr: new TextDecoder().decode(stderr),
  };
}

async function numpyRead(...paths: string[]) {
  const { code, stdout, stderr } = await new Deno.Command("/usr/bin/python3", {
    args: [join(ROOT, "tests/npy_read.py"), ...paths],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(
    code,
    0,
    `tests/npy_read.py failed (numpy is required: apt-get install python3-numpy): ${
      new TextDecoder().decode(stderr)
    }`,
  );
  return new TextDecoder().decode(stdout).trim().split("\n").map((l) =>
    JSON.parse(l)
  );
}

async function listDir(dir: string): Promise<string[]> {
  const names = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

// ---------------------------------------------------------------------------

Deno.test("openPairGenerator() pairs equal the tfjs generators' for the same z", async () => {
  const gen = await openPairGenerator(fixture.exportDir, { ep: "cpu" });
  try {
    assert.deepEqual(gen.domains, DOMAINS);
    assert.equal(gen.latentDim, 6);
    assert.deepEqual(gen.imageShape, [1, 28, 28]);
    assert.equal(gen.executionProvider, "cpu");
    const z = seededLatents(3, 5, 6);
    const onnx = await gen.generate(z, 5);
    const expected = tfjsPairs(fixture.model, z);
    DOMAINS.forEach((d, i) => {
      assert.equal(onnx[d].length, 5 * 784);
      assert.ok(maxAbsDiff(onnx[d], expected[i]) <= 1e-5, d);
    });
  } finally {
    await gen.dispose();
  }
});

Deno.test("pairs from an exportRun() export equal the tfjs generators' for the same z", async () => {
  assert.deepEqual(domainInfos("rot90").map((d) => d.name), DOMAINS);
  const z = seededLatents(9, 33, 6);
  const expected = tfjsPairs(fixture.model, z);
  const pair = await openPairGenerator(fixture.exported, { ep: "cpu" });
  const rot = await openPairGenerator(
    join(fixture.exported, "mnist-rot90.onnx"),
    { ep: "cpu" },
  );
  try {
    assert.deepEqual(pair.domains, DOMAINS);
    assert.equal(pair.latentDim, 6);
    const images = await pair.generate(z, 33);
    DOMAINS.forEach((d, i) => {
      assert.ok(maxAbsDiff(images[d], expected[i]) <= 1e-5, d);
    });
    assert.deepEqual(rot.domains, ["mnist-rot90"]);
    const alone = await rot.generate(z, 33);
    assert.ok(maxAbsDiff(alone["mnist-rot90"], expected[1]) <= 1e-5);
  } finally {
    await pair.dispose();
    await rot.dispose();
  }
});

Deno.test("openPairGenerator() with domains fetches only those outputs", async () => {
  const gen = await openPairGenerator(fixture.exportDir, {
    ep: "cpu",
    domains: ["mnist-rot90"],
  });
  try {
    assert.deepEqual(gen.domains, ["mnist-rot90"]);
    assert.deepEqual(gen.modelDomains, DOMAINS);
    const z = seededLatents(1, 2, 6);
    const out = await gen.generate(z, 2);
    assert.deepEqual(Object.keys(out), ["mnist-rot90"]);
    assert.ok(
      maxAbsDiff(out["mnist-rot90"], tfjsPairs(fixture.model, z)[1]) <= 1e-5,
    );
  } finally {
    await gen.dispose();
  }
  await assert.rejects(
    openPairGenerator(fixture.exportDir, { ep: "cpu", domains: ["svhn"] }),
    new OptionError(
      'Unsupported domain: "svhn". Should be one of: mnist, mnist-rot90',
    ),
  );
});

Deno.test("openPairGenerator() reads a lone .onnx file's metadata_props", async () => {
  const gen = await openPairGenerator(join(fixture.exportDir, "pair.onnx"), {
    ep: "cpu",
    threads: 1,
  });
  try {
    assert.deepEqual(gen.domains, DOMAINS);
    assert.equal(gen.latentDim, 6);
  } finally {
    await gen.dispose();
  }
});

Deno.test("openPairGenerator() with ep auto falls back to cpu and says why", async () => {
  const gen = await openPairGenerator(fixture.exportDir);
  try {
    assert.equal(gen.executionProvider, "cpu");
    assert.equal(
      gen.fallbackReason,
      "onnxruntime-node's CUDA provider (libonnxruntime_providers_cuda.so) is not installed, as Deno skips npm install scripts by default",
    );
  } finally {
    await gen.dispose();
  }
});

Deno.test("openPairGenerator() with ep cuda fails here with why and how", async () => {
  await assert.rejects(
    openPairGenerator(fixture.exportDir, { ep: "cuda" }),
    new InputError(
      `Cannot use execution provider "cuda": onnxruntime-node's CUDA provider (libonnxruntime_providers_cuda.so) is not installed, as Deno skips npm install scripts by default. To use CUDA, install CUDA 12 and cuDNN 9, then approve onnxruntime-node's install script, which fetches its CUDA provider: deno install --allow-scripts=npm:onnxruntime-node@1.30.0`,
    ),
  );
});

Deno.test("LatentStream rows do not depend on the batching", () => {
  const stream = new LatentStream(5, 7); // odd width: Box-Muller leftovers
  const batched = [...stream.next(2), ...stream.next(1), ...stream.next(3)];
  assert.deepEqual(batched, [...seededLatents(5, 6, 7)]);
  assert.notDeepEqual([...seededLatents(6, 1, 7)], batched.slice(0, 7));
});

Deno.test("slerp() keeps the ends and follows the great circle", () => {
  const a = new Float32Array([2, 0, 0]);
  const b = new Float32Array([0, 2, 0]);
  assert.deepEqual([...slerp(a, b, 0)], [2, 0, 0]);
  const end = slerp(a, b, 1);
  assert.ok(Math.abs(end[0]) < 1e-6 && Math.abs(end[1] - 2) < 1e-6);
  const mid = slerp(a, b, 0.5);
  assert.ok(Math.abs(mid[0] - Math.SQRT2) < 1e-6);
  assert.ok(Math.abs(mid[1] - Math.SQRT2) < 1e-6);
  const path = interpolateLatents(a, b, 3);
  assert.equal(path.length, 9);
  assert.deepEqual([...path.subarray(3, 6)], [...mid]);
  // Parallel vectors: a straight line, no division by sin(0).
  assert.deepEqual([...slerp(a, new Float32Array([4, 0, 0]), 0.5)], [3, 0, 0]);
});

Deno.test("npyHeader() pads to a multiple of 64 bytes and numpy reads writeNpy() files", async () => {
  const header = npyHeader([3]);
  // 10 bytes of magic, version and length, 57 of dict, padding, newline.
  assert.equal(header.length, 128);
  assert.equal(new DataView(header.buffer).getUint16(8, true), 118);
  const text = new TextDecoder().decode(header.subarray(10));
  assert.equal(
    text,
    "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }" +
      " ".repeat(60) + "\n",
  );
  const path = join(fixture.dir, "small.npy");
  const values = new Float32Array([0.5, -1.25, 3, 7, 8, 9]);
  await writeNpy(path, [2, 3], values);
  const [info] = await numpyRead(path);
  assert.deepEqual(info.shape, [2, 3]);
  assert.equal(info.dtype, "<f4");
  assert.equal(info.sum, 26.25);
  assert.deepEqual(await readNpy(path), { shape: [2, 3], data: values });
});

/** A .npy file with a hand-written header dict. */
function npyWithHeader(dict: string, data: Uint8Array): Uint8Array {
  const text = dict + " ".repeat(63 - ((10 + dict.length) % 64)) + "\n";
  const out = new Uint8Array(10 + text.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, text.length, true);
  out.set(new TextEncoder().encode(text), 10);
  out.set(data, 10 + text.length);
  return out;
}

Deno.test("parseNpy() rejects another dtype, Fortran order, a short body and other files", () => {
  const eight = new Uint8Array(16);
  assert.throws(
    () =>
      parseNpy(
        npyWithHeader(
          "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), }",
          eight,
        ),
        "a.npy",
      ),
    new InputError(
      `Cannot read "a.npy" as .npy: dtype must be '<f4' (little-endian float32): current value is '<f8'; convert with arr.astype('<f4')`,
    ),
  );
  assert.throws(
    () =>
      parseNpy(
        npyWithHeader(
          "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }",
          eight,
        ),
        "b.npy",
      ),
    new InputError(
      `Cannot read "b.npy" as .npy: fortran_order must be False (C order); save np.ascontiguousarray(arr)`,
    ),
  );
  assert.throws(
    () =>
      parseNpy(
        npyWithHeader(
          "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
          eight,
        ),
        "c.npy",
      ),
    new InputError(
      `Cannot read "c.npy" as .npy: shape [2,3] needs 24 bytes of data: the file has 16 (truncated?)`,
    ),
  );
  assert.throws(
    () => parseNpy(new TextEncoder().encode("x,y\n1,2\n"), "d.csv"),
    new InputError(
      `Cannot read "d.csv" as .npy: it does not start with the .npy magic string`,
    ),
  );
});

Deno.test("infer writes npy files numpy reads back and a pairs.png grid", async () => {
  const out = join(fixture.dir, "gen");
  const r = await infer(
    "--model",
    fixture.exportDir,
    "--count",
    "12",
    "--batch-size",
    "5",
    "--seed",
    "4",
    "--out",
    out,
  );
  assert.equal(r.code, 0, r.stderr);
  assert.match(
    r.stdout,
    /^generated 12 pairs \(mnist, mnist-rot90\) on cpu in \d+\.\d\ds: \d+ pairs\/s; wrote /,
  );
  assert.match(r.stderr, /--ep auto uses cpu, as CUDA cannot be used/);
  assert.deepEqual(await listDir(out), [
    "mnist-rot90.npy",
    "mnist.npy",
    "pairs.png",
  ]);

  const expected = tfjsPairs(fixture.model, seededLatents(4, 12, 6));
  const infos = await numpyRead(
    join(out, "mnist.npy"),
    join(out, "mnist-rot90.npy"),
  );
  for (const [i, d] of DOMAINS.entries()) {
    const mine = await readNpy(join(out, `${d}.npy`));
    assert.deepEqual(mine.shape, [12, 28, 28]);
    assert.ok(maxAbsDiff(mine.data, expected[i]) <= 1e-5);
    const info = infos[i];
    assert.deepEqual(info.shape, [12, 28, 28]);
    assert.equal(info.dtype, "<f4");
    assert.equal(info.fortran_order, false);
    assert.equal(
      info.sha256,
      await sha256Hex(new Uint8Array(mine.data.slice().buffer)),
    );
    assert.ok(
      Math.abs(info.sum - mine.data.reduce((a, b) => a + b, 0)) < 1e-6 * 9408,
    );
    assert.ok(info.min >= 0 && info.max <= 1);
  }

  const png = decodePng(await Deno.readFile(join(out, "pairs.png")));
  const grid = pairGrid(
    await Promise.all(
      DOMAINS.map(async (d) => (await readNpy(join(out, `${d}.npy`))).data),
    ),
    12,
    28,
  );
  // 10 columns of 28 + 2, two bands of two 28-pixel rows + 2.
  assert.deepEqual([png.width, png.height], [302, 118]);
  assert.deepEqual([grid.width, grid.height], [302, 118]);
  assert.deepEqual(png.pixels, grid.pixels);
});

Deno.test("infer with the same seed gives the same pairs for any batch size", async () => {
  const a = join(fixture.dir, "seed-a");
  const b = join(fixture.dir, "seed-b");
  for (const [dir, batch] of [[a, "1"], [b, "64"]]) {
    const r = await infer(
      "--model",
      fixture.exportDir,
      "--count",
      "7",
      "--batch-size",
      batch,
      "--format",
      "npy",
      "--out",
      dir,
    );
    assert.equal(r.code, 0, r.stderr);
  }
  assert.deepEqual(await listDir(a), ["mnist-rot90.npy", "mnist.npy"]);
  assert.deepEqual(
    await Deno.readFile(join(a, "mnist.npy")),
    await Deno.readFile(join(b, "mnist.npy")),
  );
});

Deno.test("runInference() uses --z latents, --domains and --interpolate", async () => {
  const z = seededLatents(11, 4, 6);
  const zPath = join(fixture.dir, "latents.npy");
  await writeNpy(zPath, [4, 6], z);
  const expected = tfjsPairs(fixture.model, z);

  const own = await runInference({
    model: fixture.exportDir,
    out: join(fixture.dir, "own"),
    z: zPath,
    domains: ["mnist-rot90"],
    ep: "cpu",
  });
  assert.equal(own.count, 4);
  assert.deepEqual(await listDir(join(fixture.dir, "own")), [
    "mnist-rot90.npy",
    "pairs.png",
  ]);
  const rot = await readNpy(join(fixture.dir, "own", "mnist-rot90.npy"));
  assert.ok(maxAbsDiff(rot.data, expected[1]) <= 1e-5);

  const walk = await runInference({
    model: fixture.exportDir,
    out: join(fixture.dir, "walk"),
    interpolate: 5,
    seed: 2,
    format: "npy",
    ep: "cpu",
  });
  assert.equal(walk.count, 5);
  const ends = seededLatents(2, 2, 6);
  const path = interpolateLatents(ends.subarray(0, 6), ends.subarray(6), 5);
  const walked = await readNpy(join(fixture.dir, "walk", "mnist.npy"));
  assert.deepEqual(walked.shape, [5, 28, 28]);
  assert.ok(
    maxAbsDiff(walked.data, tfjsPairs(fixture.model, path)[0]) <= 1e-5,
  );
});

/** Runs infer on bad input; checks the one line, the code, and no output. */
async function assertRefused(
  args: string[],
  code: number,
  line: string,
): Promise<void> {
  const out = join(fixture.dir, `refused-${crypto.randomUUID()}`);
  const r = await infer(...args, "--out", out);
  assert.equal(r.stderr, line + "\n");
  assert.equal(r.code, code);
  assert.equal(r.stdout, "");
  let left: string[] = [];
  try {
    left = await listDir(out);
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  assert.deepEqual(left, [], "nothing half-written");
}

Deno.test("infer refuses a truncated .onnx file in one line", async () => {
  const bytes = await Deno.readFile(join(fixture.exportDir, "pair.onnx"));
  const path = join(fixture.dir, "truncated.onnx");
  await Deno.writeFile(path, bytes.subarray(0, bytes.length >> 1));
  const r = await infer("--model", path, "--out", join(fixture.dir, "t"));
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^infer: Cannot open model ".*truncated\.onnx": it is not an ONNX model \(.*\); truncated, or another kind of file\?\n$/,
  );
});

Deno.test("infer refuses an export whose pair.onnx was cut short", async () => {
  const dir = join(fixture.dir, "cut");
  await Deno.mkdir(dir);
  await Deno.copyFile(
    join(fixture.exportDir, "manifest.json"),
    join(dir, "manifest.json"),
  );
  const bytes = await Deno.readFile(join(fixture.exportDir, "pair.onnx"));
  await Deno.writeFile(join(dir, "pair.onnx"), bytes.subarray(0, 100));
  await assertRefused(
    ["--model", dir],
    1,
    `infer: Cannot open model "${dir}": pair.onnx must have ${bytes.length} bytes: current size is 100 (truncated?)`,
  );
});

Deno.test("infer refuses a foreign file and a folder that is not an export", async () => {
  const path = join(fixture.dir, "foreign.onnx");
  await Deno.writeTextFile(path, "<html>not a model</html>\n");
  const r = await infer("--model", path, "--out", join(fixture.dir, "f"));
  assert.equal(r.code, 1);
  assert.match(
    r.stderr,
    /^infer: Cannot open model ".*foreign\.onnx": it is not an ONNX model/,
  );
  assert.equal(r.stderr.split("\n").length, 2, "one line");
  await assertRefused(
    ["--model", fixture.dir],
    1,
    `infer: Cannot open model "${fixture.dir}": manifest.json is missing; pass an export folder made by deno task export, or a .onnx file`,
  );
});

Deno.test("infer refuses a model without the input z", async () => {
  const path = join(fixture.dir, "no-z.onnx");
  await Deno.writeFile(path, testOnnx(fixture.model, { input: "noise" }));
  await assertRefused(
    ["--model", path],
    1,
    `infer: Cannot use model "${path}": it must take a float32 input "z" [batch, 6]: its inputs are "noise"`,
  );
  const bare = join(fixture.dir, "bare.onnx");
  await Deno.writeFile(bare, testOnnx(fixture.model, { metadata: false }));
  await assertRefused(
    ["--model", bare],
    1,
    `infer: Cannot open model "${bare}": its metadata_props lack cogan.domains and cogan.latentDim; was it made by deno task export?`,
  );
});

Deno.test("infer refuses bad flags with exit 2", async () => {
  const model = ["--model", fixture.exportDir];
  await assertRefused(
    [...model, "--count", "0"],
    2,
    `infer: Invalid value for --count: "0". Should be an integer >= 1 (see --help)`,
  );
  await assertRefused(
    [...model, "--ep", "tpu"],
    2,
    `infer: Invalid value for --ep: "tpu". Should be one of: auto, cpu, cuda (see --help)`,
  );
  await assertRefused(
    [...model, "--count", "1001", "--format", "png"],
    2,
    `infer: Cannot draw 1001 pairs in pairs.png: a grid holds at most 1000; use --format npy, or --count 1000 or fewer (see --help)`,
  );
  await assertRefused(
    [...model, "--domains", "mnist,svhn"],
    2,
    `infer: Unsupported domain: "svhn". Should be one of: mnist, mnist-rot90 (see --help)`,
  );
});

Deno.test("infer refuses --z of the wrong width", async () => {
  const path = join(fixture.dir, "wide.npy");
  await writeNpy(path, [3, 7], new Float32Array(21));
  await assertRefused(
    ["--model", fixture.exportDir, "--z", path],
    1,
    `infer: Cannot use latents "${path}": shape must be [N, 6] with N >= 1 to match the model: current shape is [3, 7]`,
  );
});

Deno.test("infer with --ep cuda fails here with why and how", async () => {
  await assertRefused(
    ["--model", fixture.exportDir, "--ep", "cuda"],
    1,
    `infer: Cannot use execution provider "cuda": onnxruntime-node's CUDA provider (libonnxruntime_providers_cuda.so) is not installed, as Deno skips npm install scripts by default. To use CUDA, install CUDA 12 and cuDNN 9, then approve onnxruntime-node's install script, which fetches its CUDA provider: deno install --allow-scripts=npm:onnxruntime-node@1.30.0`,
  );
});

Deno.test("benchInference() times each batch size and thread count", async () => {
  const rows = await benchInference(fixture.exportDir, {
    batchSizes: [1, 3],
    threads: [1],
    minSeconds: 0.01,
  });
  assert.deepEqual(
    rows.map((r) => [r.batchSize, r.threads, r.executionProvider]),
    [[1, 1, "cpu"], [3, 1, "cpu"]],
  );
  for (const r of rows) {
    assert.ok(r.runs >= 1 && r.seconds >= 0.01);
    assert.equal(r.pairsPerSecond, (r.runs * r.batchSize) / r.seconds);
  }
});
