import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { type ArchSpec, IMAGE_SIZE } from "../lib/arch.ts";
import { useBackend } from "../lib/backend.ts";
import {
  type Checkpoint,
  loadCheckpoint,
  saveCheckpoint,
} from "../lib/checkpoint.ts";
import { domainInfos } from "../lib/data.ts";
import { InputError } from "../lib/errors.ts";
import {
  EXPORT_FORMAT,
  EXPORT_MANIFEST_FILE,
  type ExportManifest,
  exportRun,
  PAIR_FILE,
} from "../lib/export.ts";
import {
  createModel,
  disposeModel,
  generate,
  modelFromCheckpoint,
} from "../lib/model.ts";
import { decodeModel, modelMetadata } from "../lib/onnx.ts";
import { resolveTrainOptions } from "../lib/options.ts";
import { Rng } from "../lib/rng.ts";

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
const PIXELS = IMAGE_SIZE * IMAGE_SIZE;
/** The permission flags of `deno task export`, read from deno.json. */
const TASK_PERMISSIONS: string[] = JSON.parse(
  await Deno.readTextFile(join(ROOT, "deno.json")),
).tasks.export.split(" ").filter((a: string) => a.startsWith("--allow-"));

/** Tiny, with every activation, two shared layers and batch norm. */
const TINY: ArchSpec = {
  name: "tiny",
  summary: "test network",
  latentDim: 6,
  generatorShared: [
    { units: 9, activation: "leaky_relu", batchNorm: true },
    { units: 7, activation: "tanh" },
  ],
  generatorPrivate: [
    { units: 5, activation: "relu", batchNorm: true },
    { units: 4, activation: "linear" },
    { units: PIXELS, activation: "sigmoid" },
  ],
  discriminatorPrivate: [{ units: 3, activation: "relu" }],
  discriminatorShared: [{ units: 1, activation: "linear" }],
  learningRate: 1e-3,
  beta1: 0.9,
  beta2: 0.999,
  batchSize: 4,
};
const DOMAINS = domainInfos("rot90");
const NAMES = DOMAINS.map((d) => d.name);

/** Saves a checkpoint of freshly initialised networks into a run folder. */
async function saveTinyCheckpoint(
  runDir: string,
  step: number,
  seed: number,
  edit?: (tensors: Map<string, Float32Array>) => void,
): Promise<string> {
  await useBackend("wasm");
  const model = createModel(TINY, NAMES, seed);
  try {
    const tensors = new Map<
      string,
      { shape: number[]; values: Float32Array }
    >();
    // Batch norm starts as the identity; give it values that show.
    const rng = new Rng(seed + 100);
    for (const [name, v] of [...model.parameters, ...model.statistics]) {
      const values = v.dataSync<"float32">().slice();
      if (/\/(gamma|moving_variance)$/.test(name)) {
        values.forEach((_, i) => values[i] = 0.5 + rng.nextFloat());
      } else if (/\/(beta|moving_mean)$/.test(name)) {
        values.forEach((_, i) => values[i] = rng.nextFloat() - 0.5);
      }
      tensors.set(name, { shape: v.shape, values });
    }
    edit?.(new Map([...tensors].map(([name, t]) => [name, t.values])));
    return await saveCheckpoint(join(runDir, "checkpoints"), {
      step,
      options: { ...resolveTrainOptions({ out: runDir }), arch: TINY.name },
      arch: TINY,
      domains: DOMAINS,
      state: {
        step,
        latentRng: new Rng(seed).state(),
        batchers: [],
        optimiserUpdates: { discriminator: step, generator: step },
      },
      versions: { test: "export_test" },
    }, tensors);
  } finally {
    disposeModel(model);
  }
}

/** A temp folder with a run holding checkpoints at steps 10 and 20. */
async function makeRun(): Promise<{ dir: string; run: string }> {
  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  const run = join(dir, "run");
  await saveTinyCheckpoint(run, 10, 1);
  await saveTinyCheckpoint(run, 20, 2);
  return { dir, run };
}

async function listDir(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) names.push(e.name);
  return names.sort();
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return false;
    throw err;
  }
}

/**
 * The generators in plain TypeScript with float64 sums, straight from the
 * checkpoint's tensors: one image [784] per domain for one latent row.
 */
function referenceForward(
  checkpoint: Checkpoint,
  z: Float32Array,
): Map<string, Float64Array> {
  const { arch } = checkpoint.manifest;
  const dense = (
    prefix: string,
    x: Float64Array,
    specs: ArchSpec["generatorShared"],
  ) => {
    for (const [i, spec] of specs.entries()) {
      const k = checkpoint.tensors.get(`${prefix}/${i}/kernel`)!;
      const b = checkpoint.tensors.get(`${prefix}/${i}/bias`)!;
      const t = (part: string) =>
        checkpoint.tensors.get(`${prefix}/${i}/${part}`)!;
      const y = new Float64Array(spec.units);
      for (let u = 0; u < spec.units; u++) {
        let s = b[u];
        for (let j = 0; j < x.length; j++) s += x[j] * k[j * spec.units + u];
        if (spec.batchNorm) {
          s = (s - t("moving_mean")[u]) /
              Math.sqrt(t("moving_variance")[u] + 1e-5) * t("gamma")[u] +
            t("beta")[u];
        }
        y[u] = spec.activation === "relu"
          ? Math.max(0, s)
          : spec.activation === "leaky_relu"
          ? (s < 0 ? 0.2 * s : s)
          : spec.activation === "tanh"
          ? Math.tanh(s)
          : spec.activation === "sigmoid"
          ? 1 / (1 + Math.exp(-s))
          : s;
      }
      x = y;
    }
    return x;
  };
  const h = dense(
    "generator/shared",
    Float64Array.from(z),
    arch.generatorShared,
  );
  return new Map(
    NAMES.map((d) => [d, dense(`generator/${d}`, h, arch.generatorPrivate)]),
  );
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let max = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i] - b[i]);
    if (!(d <= max)) max = d;
  }
  return max;
}

Deno.test("exportRun() writes models whose ONNX Runtime outputs equal tfjs for batches of 1, 7 and 1024", async () => {
  const { dir, run } = await makeRun();
  try {
    const out = join(dir, "models", "tiny");
    const result = await exportRun({ run, out });
    assert.deepEqual(await listDir(out), [
      EXPORT_MANIFEST_FILE,
      "mnist-rot90.onnx",
      "mnist.onnx",
      PAIR_FILE,
    ]);
    assert.ok(result.maxAbsDiff <= 1e-5, `diff ${result.maxAbsDiff}`);
    assert.deepEqual(await listDir(join(dir, "models")), ["tiny"]);

    const checkpoint = await loadCheckpoint(result.checkpoint);
    const model = modelFromCheckpoint(checkpoint);
    const sessions = new Map<string, ort.InferenceSession>();
    for (const file of [PAIR_FILE, "mnist.onnx", "mnist-rot90.onnx"]) {
      sessions.set(
        file,
        await ort.InferenceSession.create(join(out, file), {
          executionProviders: ["cpu"],
        }),
      );
    }
    try {
      for (const batch of [1, 7, 1024]) {
        const z = new Rng(batch).fillNormal(
          new Float32Array(batch * TINY.latentDim),
        );
        const tfjs = tf.tidy(() =>
          generate(model, tf.tensor2d(z, [batch, TINY.latentDim])).map((t) =>
            t.dataSync<"float32">()
          )
        );
        const feeds = {
          z: new ort.Tensor("float32", z, [batch, TINY.latentDim]),
        };
        const pair = await sessions.get(PAIR_FILE)!.run(feeds);
        assert.deepEqual(Object.keys(pair).sort(), [...NAMES].sort());
        for (const [d, name] of NAMES.entries()) {
          const single = await sessions.get(`${name}.onnx`)!.run(feeds);
          assert.deepEqual(Object.keys(single), [name]);
          for (const got of [pair[name], single[name]]) {
            assert.equal(got.type, "float32");
            assert.deepEqual(got.dims, [batch, 1, IMAGE_SIZE, IMAGE_SIZE]);
            const values = got.data as Float32Array;
            assert.ok(maxAbsDiff(values, tfjs[d]) <= 1e-5, `batch ${batch}`);
            assert.ok(values.every((v) => v >= 0 && v <= 1));
          }
        }
        // Against an independent forward pass, on the first and last rows.
        for (const row of [0, batch - 1]) {
          const ref = referenceForward(
            checkpoint,
            z.subarray(row * TINY.latentDim, (row + 1) * TINY.latentDim),
          );
          for (const name of NAMES) {
            const got = (pair[name].data as Float32Array).subarray(
              row * PIXELS,
              (row + 1) * PIXELS,
            );
            assert.ok(maxAbsDiff(got, ref.get(name)!) <= 1e-5);
          }
        }
      }
    } finally {
      for (const s of sessions.values()) await s.release();
      disposeModel(model);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("pair.onnx runs each shared layer once and feeds its output to every private head", async () => {
  const { dir, run } = await makeRun();
  try {
    const out = join(dir, "out");
    await exportRun({ run, out });
    const model = decodeModel(
      await Deno.readFile(join(out, PAIR_FILE)),
      PAIR_FILE,
    );
    const graph = model.graph!;
    assert.equal(model.irVersion, 8n);
    assert.deepEqual(
      model.opsetImport.map((o) => [o.domain, o.version]),
      [["", 17n]],
    );
    const gemms = graph.node.filter((n) => n.opType === "Gemm");
    assert.equal(gemms.length, 2 + 2 * 3);
    for (const i of [0, 1]) {
      const users = graph.node.filter((n) =>
        n.input.includes(`generator/shared/${i}/kernel`)
      );
      assert.equal(users.length, 1);
    }
    assert.equal(
      graph.node.filter((n) => n.name.startsWith("generator/shared/")).length,
      4,
    );
    const firstHeadGemms = gemms.filter((n) =>
      n.input[1].endsWith("/0/kernel") && !n.input[1].includes("shared")
    );
    assert.deepEqual(firstHeadGemms.map((n) => n.input), [
      [
        "generator/shared/1/out",
        "generator/mnist/0/kernel",
        "generator/mnist/0/bias",
      ],
      [
        "generator/shared/1/out",
        "generator/mnist-rot90/0/kernel",
        "generator/mnist-rot90/0/bias",
      ],
    ]);
    assert.deepEqual(
      graph.node.filter((n) => n.opType === "LeakyRelu").map((n) =>
        n.attribute.map((a) => [a.name, a.f])
      ),
      [[["alpha", Math.fround(0.2)]]],
    );
    const names = graph.initializer.map((t) => t.name);
    assert.equal(new Set(names).size, names.length);
    assert.ok(graph.initializer.every((t) => t.rawData.length > 0));
    assert.deepEqual(
      graph.input.map((v) => {
        const t = v.type!.value.value as {
          shape: { dim: { value: unknown }[] };
        };
        return [v.name, t.shape.dim.map((d) => d.value)];
      }),
      [["z", [{ case: "dimParam", value: "batch" }, {
        case: "dimValue",
        value: 6n,
      }]]],
    );
    assert.deepEqual(graph.output.map((v) => v.name), NAMES);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exported models carry the manifest's facts in metadata_props", async () => {
  const { dir, run } = await makeRun();
  try {
    const out = join(dir, "out");
    const result = await exportRun({ run, out, step: 10 });
    const manifest: ExportManifest = JSON.parse(
      await Deno.readTextFile(join(out, EXPORT_MANIFEST_FILE)),
    );
    assert.deepEqual(manifest, result.manifest);
    assert.equal(manifest.format, EXPORT_FORMAT);
    assert.equal(manifest.version, 1);
    assert.equal(manifest.step, 10);
    assert.equal(
      manifest.sourceCheckpoint,
      join(run, "checkpoints", "step-000010"),
    );
    assert.deepEqual(manifest.domains, DOMAINS);
    assert.equal(manifest.latentDim, 6);
    assert.deepEqual(manifest.imageShape, [1, 28, 28]);
    assert.deepEqual(manifest.arch, TINY);
    assert.equal(manifest.options.arch, "tiny");
    assert.deepEqual(Object.keys(manifest.files), [
      PAIR_FILE,
      "mnist.onnx",
      "mnist-rot90.onnx",
    ]);

    for (const [file, info] of Object.entries(manifest.files)) {
      const bytes = await Deno.readFile(join(out, file));
      assert.equal(info.bytes, bytes.length);
      const digest = new Uint8Array(
        await crypto.subtle.digest("SHA-256", bytes),
      );
      assert.equal(
        info.sha256,
        Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join(""),
      );
      const meta = modelMetadata(decodeModel(bytes, file));
      const role = file === PAIR_FILE ? "pair" : file.replace(/\.onnx$/, "");
      assert.deepEqual(meta, {
        "cogan.format": "cogan-export",
        "cogan.version": "1",
        "cogan.model": role,
        "cogan.outputs": JSON.stringify(role === "pair" ? NAMES : [role]),
        "cogan.domains": JSON.stringify(DOMAINS),
        "cogan.latentDim": "6",
        "cogan.imageShape": "[1,28,28]",
        "cogan.step": "10",
        "cogan.options": JSON.stringify(manifest.options),
        "cogan.arch": JSON.stringify(TINY),
        "cogan.sourceCheckpoint": manifest.sourceCheckpoint,
        "cogan.versions": JSON.stringify(manifest.versions),
        "cogan.createdAt": manifest.createdAt,
      });
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exported models pass the ONNX checker with full_check", async () => {
  const { dir, run } = await makeRun();
  try {
    const out = join(dir, "out");
    await exportRun({ run, out });
    const files = [PAIR_FILE, "mnist.onnx", "mnist-rot90.onnx"];
    // /usr/bin/python3 is Debian's, which has python3-onnx; a missing
    // module fails this test rather than skipping it.
    const { code, stdout, stderr } = await new Deno.Command(
      "/usr/bin/python3",
      {
        args: [
          join(ROOT, "tests", "onnx_check.py"),
          ...files.map((f) => join(out, f)),
        ],
        stdout: "piped",
        stderr: "piped",
      },
    ).output();
    const text = new TextDecoder().decode(stdout);
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    assert.equal(text.split("\n").filter((l) => l.startsWith("ok ")).length, 3);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exportRun() exports the newest checkpoint unless given a step", async () => {
  const { dir, run } = await makeRun();
  try {
    const newest = await exportRun({ run, out: join(dir, "a") });
    const older = await exportRun({ run, step: 10, out: join(dir, "b") });
    assert.equal(newest.step, 20);
    assert.equal(newest.checkpoint, join(run, "checkpoints", "step-000020"));
    assert.equal(older.step, 10);
    assert.notEqual(
      newest.manifest.files[PAIR_FILE].sha256,
      older.manifest.files[PAIR_FILE].sha256,
    );
    await assert.rejects(
      exportRun({ run, step: 15, out: join(dir, "c") }),
      new InputError(
        `Cannot open run "${run}": it has no checkpoint at step 15; it has steps 10, 20`,
      ),
    );
    assert.equal(await exists(join(dir, "c")), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exportRun() refuses a non-empty out unless forced, then replaces it whole", async () => {
  const { dir, run } = await makeRun();
  try {
    const out = join(dir, "out");
    await Deno.mkdir(out);
    await Deno.writeTextFile(join(out, "keep.txt"), "mine");
    await assert.rejects(
      exportRun({ run, out }),
      new InputError(
        `Cannot export to "${out}": the folder is not empty; pass --force to replace it`,
      ),
    );
    assert.deepEqual(await listDir(out), ["keep.txt"]);

    await exportRun({ run, out, force: true });
    assert.deepEqual(await listDir(out), [
      EXPORT_MANIFEST_FILE,
      "mnist-rot90.onnx",
      "mnist.onnx",
      PAIR_FILE,
    ]);
    assert.deepEqual(await listDir(dir), ["out", "run"]);

    // An empty folder is not "non-empty": no --force needed.
    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    await exportRun({ run, out: empty });
    assert.equal((await listDir(empty)).length, 4);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

/** Breaks the newest checkpoint of a fresh run in one way each. */
const BREAKAGES: {
  name: string;
  breakIt: (checkpoint: string) => Promise<void>;
  message: (checkpoint: string) => string;
}[] = [
  {
    name: "a flipped byte in weights.bin",
    breakIt: async (c) => {
      const bytes = await Deno.readFile(join(c, "weights.bin"));
      bytes[100] ^= 0xff;
      await Deno.writeFile(join(c, "weights.bin"), bytes);
    },
    message: (c) =>
      `Cannot load checkpoint "${c}": weights.bin does not match the SHA-256 in manifest.json (corrupt?)`,
  },
  {
    name: "a truncated weights.bin",
    breakIt: async (c) => {
      await Deno.truncate(join(c, "weights.bin"), 40);
    },
    message: (c) => {
      const size = 4 * TINY_GENERATOR_AND_DISCRIMINATOR_FLOATS;
      return `Cannot load checkpoint "${c}": weights.bin must have ${size} bytes: current size is 40 (truncated?)`;
    },
  },
  {
    name: "a deleted manifest.json",
    breakIt: (c) => Deno.remove(join(c, "manifest.json")),
    message: (c) => `Cannot load checkpoint "${c}": manifest.json is missing`,
  },
];

/** Parameters of TINY with two domains, counted by hand. */
const TINY_GENERATOR_AND_DISCRIMINATOR_FLOATS =
  // generator shared: 6x9+9 with batch norm (4 x 9), 9x7+7
  (54 + 9 + 36 + 63 + 7) +
  // generator private, per domain: 7x5+5 with batch norm (4 x 5), 5x4+4,
  // 4x784+784
  2 * (35 + 5 + 20 + 20 + 4 + 3136 + 784) +
  // discriminator private, per domain: 784x3+3; shared: 3x1+1
  2 * (2352 + 3) + (3 + 1);

for (const { name, breakIt, message } of BREAKAGES) {
  Deno.test(`exportRun() reports ${name} in one InputError and writes nothing`, async () => {
    const { dir, run } = await makeRun();
    try {
      const checkpoint = join(run, "checkpoints", "step-000020");
      await breakIt(checkpoint);
      const out = join(dir, "models", "out");
      await assert.rejects(
        exportRun({ run, out }),
        new InputError(message(checkpoint)),
      );
      assert.equal(await exists(out), false);
      assert.deepEqual(
        await exists(join(dir, "models"))
          ? await listDir(join(dir, "models"))
          : [],
        [],
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("exportRun() reports a missing run and a run without checkpoints", async () => {
  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  try {
    const out = join(dir, "out");
    const missing = join(dir, "nope");
    await assert.rejects(
      exportRun({ run: missing, out }),
      new InputError(`Cannot open run "${missing}": the folder is missing`),
    );
    const empty = join(dir, "empty");
    await Deno.mkdir(empty);
    await assert.rejects(
      exportRun({ run: empty, out }),
      new InputError(
        `Cannot open run "${empty}": it has no checkpoint under checkpoints/`,
      ),
    );
    assert.deepEqual(await listDir(dir), ["empty"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("exportRun() refuses generator weights holding NaN", async () => {
  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  try {
    const run = join(dir, "run");
    const checkpoint = await saveTinyCheckpoint(run, 5, 1, (tensors) => {
      tensors.get("generator/mnist-rot90/1/bias")![2] = NaN;
    });
    const out = join(dir, "out");
    await assert.rejects(
      exportRun({ run, out }),
      new InputError(
        `Cannot export checkpoint "${checkpoint}": tensor "generator/mnist-rot90/1" holds NaN or infinite values (did training diverge?)`,
      ),
    );
    assert.deepEqual(await listDir(dir), ["run"]);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

async function runExportScript(
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", ...TASK_PERMISSIONS, join(ROOT, "export.ts"), ...args],
    cwd: ROOT,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), stderr: text.decode(stderr) };
}

Deno.test("export.ts exits 2 on a bad flag and 1 on a missing run, in one line each", async () => {
  const bad = await runExportScript(["--run", "x", "--out", "y", "--bogus"]);
  assert.equal(bad.code, 2);
  assert.equal(
    bad.stderr,
    "export: Unknown option '--bogus' (see --help)\n",
  );
  assert.equal(bad.stdout, "");

  const badStep = await runExportScript([
    "--run",
    "x",
    "--out",
    "y",
    "--step",
    "4k",
  ]);
  assert.equal(badStep.code, 2);
  assert.equal(
    badStep.stderr,
    'export: Invalid value for --step: "4k". Should be an integer >= 0 (see --help)\n',
  );

  const noOut = await runExportScript(["--run", "x"]);
  assert.equal(noOut.code, 2);
  assert.equal(noOut.stderr, "export: --out DIR is required (see --help)\n");

  const dir = await Deno.makeTempDir({ prefix: "export_test_" });
  try {
    const missing = join(dir, "nope");
    const out = join(dir, "out");
    const result = await runExportScript(["--run", missing, "--out", out]);
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      `export: Cannot open run "${missing}": the folder is missing\n`,
    );
    assert.equal(await exists(out), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("export.ts reports a corrupt checkpoint in one line and exports a good one", async () => {
  const { dir, run } = await makeRun();
  try {
    const out = join(dir, "out");
    const result = await runExportScript(["--run", run, "--out", out]);
    assert.equal(result.code, 0, result.stderr);
    assert.match(
      result.stdout,
      new RegExp(
        `^exported step 20 from ${run}/checkpoints/step-000020 to ${out}: pair\\.onnx, mnist\\.onnx, mnist-rot90\\.onnx, manifest\\.json; ONNX Runtime vs tfjs max abs diff \\d\\.\\d\\de[-+]\\d+ on 64 latents\\n$`,
      ),
    );

    const again = await runExportScript(["--run", run, "--out", out]);
    assert.equal(again.code, 1);
    assert.equal(
      again.stderr,
      `export: Cannot export to "${out}": the folder is not empty; pass --force to replace it\n`,
    );

    const checkpoint = join(run, "checkpoints", "step-000020");
    await Deno.truncate(join(checkpoint, "weights.bin"), 8);
    const other = join(dir, "other");
    const broken = await runExportScript(["--run", run, "--out", other]);
    assert.equal(broken.code, 1);
    assert.equal(
      broken.stderr,
      `export: Cannot load checkpoint "${checkpoint}": weights.bin must have ${
        4 * TINY_GENERATOR_AND_DISCRIMINATOR_FLOATS
      } bytes: current size is 8 (truncated?)\n`,
    );
    assert.equal(await exists(other), false);

    const help = await runExportScript(["--help"]);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--force +replace --out even if it is not empty/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
