import assert from "node:assert/strict";
import * as tf from "@tensorflow/tfjs";
import { join } from "node:path";
import {
  findCheckpoint,
  listCheckpoints,
  loadCheckpoint,
} from "../lib/checkpoint.ts";
import { resolveClassifierConfig, trainClassifier } from "../lib/classifier.ts";
import { useBackend } from "../lib/backend.ts";
import { OptionError } from "../lib/errors.ts";
import { resolveTrainOptions } from "../lib/options.ts";
import type { StepMethod } from "../lib/step.ts";
import { type MetricsRecord, train } from "../lib/train.ts";

/** Small, fast settings: the seed network at batch 8 on the cpu-free path. */
const TINY_RUN = {
  arch: "seed",
  batchSize: 8,
  logEvery: 5,
  sampleEvery: 10,
  checkpointEvery: 10,
  kernel: "wasm",
} as const;

const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

Deno.test("train() writes config, metrics, samples and checkpoints", async () => {
  const out = await Deno.makeTempDir();
  const seen: MetricsRecord[] = [];
  const result = await train(
    { ...TINY_RUN, steps: 20, out },
    { onMetrics: (m) => seen.push(m) },
  );
  assert.equal(result.step, 20);
  assert.equal(result.interrupted, false);

  const config = JSON.parse(await Deno.readTextFile(join(out, "config.json")));
  assert.equal(config.options.steps, 20);
  assert.equal(config.options.arch, "seed");
  assert.deepEqual(config.domains.map((d: { name: string }) => d.name), [
    "mnist",
    "mnist-rot90",
  ]);

  const lines: MetricsRecord[] = (
    await Deno.readTextFile(join(out, "metrics.jsonl"))
  )
    .trim().split("\n").map((l) => JSON.parse(l));
  assert.deepEqual(lines.map((l) => l.step), [5, 10, 15, 20]);
  assert.deepEqual(lines, seen);
  for (const key of ["dLoss", "gLoss", "dReal", "dFake"] as const) {
    assert.deepEqual(Object.keys(lines[3][key]), ["mnist", "mnist-rot90"]);
  }
  assert.ok(lines[3].msPerStep > 0);

  for (const step of ["000010", "000020"]) {
    const png = await Deno.readFile(join(out, "samples", `step-${step}.png`));
    assert.deepEqual([...png.subarray(0, 8)], PNG_SIGNATURE);
  }
  assert.deepEqual(await listCheckpoints(out), [10, 20]);
  const checkpoint = await loadCheckpoint(await findCheckpoint(out));
  assert.equal(checkpoint.manifest.step, 20);
  assert.ok(checkpoint.tensors.has("generator/shared/0/kernel"));
  assert.ok(checkpoint.tensors.has("adam/v/discriminator/shared/0/bias"));
  await Deno.remove(out, { recursive: true });
});

Deno.test("a resumed run ends with the weights of an uninterrupted one", async () => {
  const whole = await Deno.makeTempDir();
  const split = await Deno.makeTempDir();
  await train({ ...TINY_RUN, steps: 20, out: whole });
  await train({ ...TINY_RUN, steps: 10, out: split });
  // A half-written checkpoint left by a kill -9 is not taken for one.
  await Deno.mkdir(join(split, "checkpoints", ".tmp-step-000015-x"));
  const resumed = await train({ steps: 20, out: split }, { resume: true });
  assert.equal(resumed.step, 20);

  const a = await loadCheckpoint(await findCheckpoint(whole));
  const b = await loadCheckpoint(await findCheckpoint(split));
  assert.deepEqual([...a.tensors.keys()], [...b.tensors.keys()]);
  for (const [name, values] of a.tensors) {
    assert.deepEqual(b.tensors.get(name), values, name);
  }
  assert.deepEqual(a.manifest.state, b.manifest.state);
  await Deno.remove(whole, { recursive: true });
  await Deno.remove(split, { recursive: true });
});

Deno.test("train() refuses to start over an existing run or change its network", async () => {
  const out = await Deno.makeTempDir();
  await train({ ...TINY_RUN, steps: 10, out });
  await assert.rejects(
    () => train({ ...TINY_RUN, steps: 20, out }),
    new OptionError(
      `Cannot start a run in "${out}": it already holds checkpoints; pass --resume to continue it or choose another --out`,
    ),
  );
  await assert.rejects(
    () => train({ steps: 20, out, arch: "deep" }, { resume: true }),
    new OptionError(
      `Cannot resume run "${out}" as 'arch' must stay "seed": current value is "deep"`,
    ),
  );
  await Deno.remove(out, { recursive: true });
});

Deno.test("resolveTrainOptions checks the step method and OpenBLAS threads", () => {
  assert.equal(resolveTrainOptions({}).step, "fast");
  assert.equal(resolveTrainOptions({}).blasThreads, 0);
  assert.throws(
    () => resolveTrainOptions({ step: "sideways" as StepMethod }),
    new OptionError(
      'Unsupported step: "sideways". Should be one of: fast, tape',
    ),
  );
  assert.throws(
    () => resolveTrainOptions({ blasThreads: 1.5 }),
    new OptionError(
      "Cannot train as 'blasThreads' must be an integer >= 0: current value is 1.5",
    ),
  );
});

Deno.test("a run may resume on the other step method", async () => {
  const out = await Deno.makeTempDir();
  await train({ ...TINY_RUN, steps: 5, out });
  const resumed = await train({ steps: 10, out, step: "tape" }, {
    resume: true,
  });
  assert.equal(resumed.step, 10);
  assert.equal(resumed.options.step, "tape");
  await Deno.remove(out, { recursive: true });
});

Deno.test("train() stops on its signal with a checkpoint", async () => {
  const out = await Deno.makeTempDir();
  const controller = new AbortController();
  const result = await train({ ...TINY_RUN, steps: 1000, out }, {
    signal: controller.signal,
    onProgress: (p) => {
      if (p.step === 7) controller.abort();
    },
  });
  assert.equal(result.interrupted, true);
  assert.equal(result.step, 7);
  assert.deepEqual(await listCheckpoints(out), [7]);
  await Deno.remove(out, { recursive: true });
});

const TASK_PERMISSIONS: string[] = JSON.parse(
  await Deno.readTextFile(new URL("../deno.json", import.meta.url)),
).tasks.train.split(" ").filter((a: string) => a.startsWith("--allow-"));

async function runScript(args: string[], signalAfterMs?: number) {
  const command = new Deno.Command(Deno.execPath(), {
    // The permissions of the task in deno.json, so a task that needs more
    // fails here.
    args: ["run", ...TASK_PERMISSIONS, "train.ts", ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  });
  const child = command.spawn();
  if (signalAfterMs !== undefined) {
    setTimeout(() => child.kill("SIGINT"), signalAfterMs);
  }
  const { code, stdout, stderr } = await child.output();
  const decoder = new TextDecoder();
  return {
    code,
    stdout: decoder.decode(stdout),
    stderr: decoder.decode(stderr),
  };
}

Deno.test("train.ts rejects bad flags with one line and exit code 2", async () => {
  const cases: [string[], string][] = [
    [
      ["--steps", "-5"],
      'Invalid value for --steps: "-5". Should be an integer >= 1',
    ],
    [
      ["--batch-size", "0"],
      'Invalid value for --batch-size: "0". Should be an integer >= 1',
    ],
    [
      ["--transform", "spin"],
      'Invalid value for --transform: "spin". Should be one of: rot90, negative, edge',
    ],
    [
      ["--step", "sideways"],
      'Invalid value for --step: "sideways". Should be one of: fast, tape',
    ],
    [
      ["--blas-threads", "-1"],
      'Invalid value for --blas-threads: "-1". Should be an integer >= 0',
    ],
    [["--bogus"], "Unknown option '--bogus'"],
  ];
  for (const [args, message] of cases) {
    const { code, stderr } = await runScript(args);
    assert.equal(code, 2, args.join(" "));
    const lines = stderr.trim().split("\n");
    assert.equal(lines.length, 1, stderr);
    assert.ok(lines[0].startsWith("train: "), stderr);
    assert.ok(lines[0].includes(message), `${stderr} lacks ${message}`);
  }
});

Deno.test("train.ts --help lists every flag", async () => {
  const { code, stdout } = await runScript(["--help"]);
  assert.equal(code, 0);
  for (
    const flag of [
      "--out",
      "--steps",
      "--arch",
      "--transform",
      "--batch-size",
      "--lr",
      "--seed",
      "--resume",
      "--kernel",
      "--blas-threads",
      "--step",
      "--eval-every",
    ]
  ) {
    assert.ok(stdout.includes(flag), flag);
  }
});

Deno.test("train.ts writes a checkpoint and exits 0 on Ctrl-C", async () => {
  const out = await Deno.makeTempDir();
  const { code, stdout } = await runScript(
    [
      "--arch",
      "seed",
      "--steps",
      "100000",
      "--out",
      out,
      "--kernel",
      "wasm",
      "--eval-every",
      "0",
    ],
    6000,
  );
  assert.equal(code, 0, stdout);
  assert.match(stdout, /^interrupted \d+ steps/);
  const steps = await listCheckpoints(out);
  assert.equal(steps.length, 1);
  assert.ok(steps[0] > 0);
  await Deno.remove(out, { recursive: true });
});

Deno.test("train() logs correspondence metrics every evalEvery steps", async () => {
  const out = await Deno.makeTempDir();
  await useBackend("wasm");
  const { classifier } = await trainClassifier(resolveClassifierConfig({
    hidden: [16],
    trainImages: 300,
    epochs: 1,
    batchSize: 50,
    minTestAccuracy: 0,
  }));
  try {
    await train(
      { ...TINY_RUN, steps: 10, out, logEvery: 10, evalEvery: 4 },
      { classifier },
    );
  } finally {
    classifier.dispose();
  }
  const lines: MetricsRecord[] = (
    await Deno.readTextFile(join(out, "metrics.jsonl"))
  ).trim().split("\n").map((l) => JSON.parse(l));
  // Steps 4 and 8 get a line of their own; step 10 is a log step only.
  assert.deepEqual(lines.map((l) => [l.step, l.eval !== undefined]), [
    [4, true],
    [8, true],
    [10, false],
  ]);
  const report = lines[0].eval!;
  assert.equal(report.count, 1000);
  assert.equal(report.transform, "rot90");
  assert.ok(report.label_agreement! >= 0 && report.label_agreement! <= 1);
  await Deno.remove(out, { recursive: true });
});

Deno.test("train() leaves no tensors behind", async () => {
  const out = await Deno.makeTempDir();
  await useBackend("wasm");
  const before = tf.memory().numTensors;
  await train({ ...TINY_RUN, arch: "deep", batchSize: 4, steps: 3, out });
  assert.equal(tf.memory().numTensors, before);
  await Deno.remove(out, { recursive: true });
});
