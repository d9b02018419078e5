/**
 * Exporting a run's generators to ONNX: `pair.onnx` (every domain from one
 * shared pass), one `<domain>.onnx` per domain, and `manifest.json`.
 *
 * The files are built in a temporary folder beside the destination, loaded
 * back with ONNX Runtime and compared with the tfjs generators on a fixed
 * batch of latents; only when they agree is the folder renamed into place,
 * so a failed export leaves nothing at the destination.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import * as ort from "onnxruntime-node";
import { basename, dirname, join, relative, resolve } from "node:path";
import type { ArchSpec } from "./arch.ts";
import { useBackend, versions } from "./backend.ts";
import { findCheckpoint, loadCheckpoint } from "./checkpoint.ts";
import type { DomainInfo } from "./data.ts";
import { InputError, OptionError } from "./errors.ts";
import {
  EXPORT_FORMAT,
  EXPORT_MANIFEST_FILE,
  EXPORT_VERSION,
  METADATA_PREFIX,
  PAIR_FILE,
} from "./export_format.ts";

export {
  EXPORT_FORMAT,
  EXPORT_MANIFEST_FILE,
  EXPORT_VERSION,
  METADATA_PREFIX,
  PAIR_FILE,
};
import { replaceDir, sha256Hex, writeSynced } from "./files.ts";
import { disposeModel, generate, modelFromCheckpoint } from "./model.ts";
import {
  encodeModel,
  generatorModel,
  generatorWeights,
  IMAGE_SHAPE,
  LATENT_INPUT,
  ONNX_IR_VERSION,
  ONNX_OPSET,
} from "./onnx.ts";
import type { BackendName, TrainOptions } from "./options.ts";
import { Rng } from "./rng.ts";

/** Largest difference allowed between ONNX Runtime and tfjs outputs. */
export const EXPORT_TOLERANCE = 1e-5;

/** File of one domain's generator: `mnist-rot90.onnx`. */
export function domainFile(domain: string): string {
  return `${domain}.onnx`;
}

/** Size and hash of one exported file. */
export interface ExportFile {
  /** Hex SHA-256 of the file. */
  sha256: string;
  bytes: number;
}

/** How the exported files were checked against tfjs. */
export interface ExportCheck {
  /** Rows of the latent batch. */
  batch: number;
  /** Seed of the latent batch (standard normal, `Rng.fillNormal`). */
  seed: number;
  /** Largest absolute difference over every file, domain and pixel. */
  maxAbsDiff: number;
  /** Largest difference allowed. */
  tolerance: number;
  /** tfjs backend of the reference. */
  backend: BackendName;
}

/** Contents of an export's `manifest.json`. */
export interface ExportManifest {
  format: typeof EXPORT_FORMAT;
  version: number;
  /** Domains in output order of `pair.onnx`. */
  domains: DomainInfo[];
  latentDim: number;
  /** Shape of one image: [1, 28, 28]. */
  imageShape: number[];
  /** Step of the exported checkpoint. */
  step: number;
  /** The run's resolved training options. */
  options: TrainOptions;
  arch: ArchSpec;
  /** Folder of the exported checkpoint. */
  sourceCheckpoint: string;
  /** Every `.onnx` file by name. */
  files: Record<string, ExportFile>;
  /** Library and format versions of the export. */
  versions: Record<string, string>;
  createdAt: string;
  check: ExportCheck;
}

/** What to export, and where. */
export interface ExportOptions {
  /** Run folder. Required. */
  run: string;
  /** Step of the checkpoint to export. Default: the newest. */
  step?: number;
  /** Destination folder. Required. */
  out: string;
  /** Replace a non-empty `out`. Default: false. */
  force?: boolean;
  /** tfjs backend of the reference outputs. Default: `wasm`. */
  backend?: BackendName;
  /** Rows of the latent batch the files are checked on. Default: 64. */
  checkBatch?: number;
  /** Seed of that batch. Default: 0. */
  checkSeed?: number;
}

/** What an export wrote. */
export interface ExportResult {
  /** Destination folder. */
  out: string;
  /** Checkpoint folder exported. */
  checkpoint: string;
  step: number;
  /** Paths of the written files, manifest last. */
  paths: string[];
  manifest: ExportManifest;
  /** Same as `manifest.check.maxAbsDiff`. */
  maxAbsDiff: number;
}

/**
 * ONNX Runtime's outputs differ from the tfjs generators' by more than
 * {@linkcode EXPORT_TOLERANCE}, or have the wrong shape: a bug in the
 * export, not in the user's files.
 */
export class ExportCheckError extends Error {
  override name = "ExportCheckError";
}

/** Whether `path` is `dir` or lies inside it. */
function isWithin(path: string, dir: string): boolean {
  const rel = relative(resolve(dir), resolve(path));
  return rel === "" || (!rel.startsWith("..") && !rel.startsWith("/"));
}

async function checkDestination(
  out: string,
  run: string,
  force: boolean,
): Promise<void> {
  if (isWithin(run, out)) {
    throw new OptionError(
      `Cannot export to "${out}": it would replace the run "${run}"; choose another --out`,
    );
  }
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(out);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return;
    throw err;
  }
  if (!info.isDirectory) {
    throw new InputError(`Cannot export to "${out}": it is not a folder`);
  }
  if (force) return;
  for await (const _ of Deno.readDir(out)) {
    throw new InputError(
      `Cannot export to "${out}": the folder is not empty; pass --force to replace it`,
    );
  }
}

/**
 * Runs each ONNX file on `z` ([batch, latentDim]) and returns the largest
 * absolute difference from `expected` (per domain, [batch * 784]).
 */
async function compareWithOnnx(
  files: { path: string; domains: string[] }[],
  z: Float32Array,
  latentDim: number,
  expected: Map<string, Float32Array>,
): Promise<number> {
  const batch = z.length / latentDim;
  const shape = [batch, ...IMAGE_SHAPE];
  let maxDiff = 0;
  for (const file of files) {
    const session = await ort.InferenceSession.create(file.path, {
      executionProviders: ["cpu"],
    });
    try {
      const outputs = await session.run({
        [LATENT_INPUT]: new ort.Tensor("float32", z, [batch, latentDim]),
      });
      for (const domain of file.domains) {
        const got = outputs[domain];
        if (!got || got.dims.join(",") !== shape.join(",")) {
          throw new ExportCheckError(
            `Exported "${file.path}" output "${domain}" must have shape [${shape}]: it has ${
              got ? `[${got.dims}]` : "no such output"
            }`,
          );
        }
        const values = got.data as Float32Array;
        const want = expected.get(domain)!;
        for (let i = 0; i < want.length; i++) {
          const diff = Math.abs(values[i] - want[i]);
          // A NaN on either side fails the check: report it as such.
          if (Number.isNaN(diff)) return NaN;
          if (diff > maxDiff) maxDiff = diff;
        }
      }
    } finally {
      await session.release();
    }
  }
  return maxDiff;
}

/**
 * Exports a run's generators: finds and verifies the checkpoint, writes
 * `pair.onnx`, one `<domain>.onnx` per domain and `manifest.json`, checks
 * each file with ONNX Runtime against tfjs, and moves them into `out`.
 *
 * Throws an {@linkcode OptionError} for bad options, an
 * {@linkcode InputError} for a missing run, a missing, corrupt or truncated
 * checkpoint or a non-empty `out` without `force`, and an
 * {@linkcode ExportCheckError} when ONNX Runtime disagrees with tfjs. On
 * any failure nothing is left at `out`.
 */
export async function exportRun(options: ExportOptions): Promise<ExportResult> {
  const { run, out, step } = options;
  const force = options.force ?? false;
  const backend = options.backend ?? "wasm";
  const checkBatch = options.checkBatch ?? 64;
  const checkSeed = options.checkSeed ?? 0;
  if (!run || run.trim() === "") {
    throw new OptionError("Cannot export as 'run' must be a run folder");
  }
  if (!out || out.trim() === "") {
    throw new OptionError("Cannot export as 'out' must be a folder path");
  }
  if (step !== undefined && (!Number.isSafeInteger(step) || step < 0)) {
    throw new OptionError(
      `Cannot export as 'step' must be an integer >= 0: current value is ${step}`,
    );
  }
  if (!Number.isSafeInteger(checkBatch) || checkBatch < 1) {
    throw new OptionError(
      `Cannot export as 'checkBatch' must be an integer >= 1: current value is ${checkBatch}`,
    );
  }
  await checkDestination(out, run, force);

  const checkpointPath = await findCheckpoint(run, step);
  const checkpoint = await loadCheckpoint(checkpointPath);
  const { manifest: source } = checkpoint;
  const weights = generatorWeights(checkpoint);
  const domains = source.domains.map((d) => d.name);

  // The reference: the tfjs generators on a fixed batch of latents.
  await useBackend(backend);
  const z = new Rng(checkSeed).fillNormal(
    new Float32Array(checkBatch * weights.latentDim),
  );
  const model = modelFromCheckpoint(checkpoint);
  const expected = new Map<string, Float32Array>();
  try {
    const images = tf.tidy(() =>
      generate(model, tf.tensor2d(z, [checkBatch, weights.latentDim]))
    );
    images.forEach((t, i) =>
      expected.set(domains[i], t.dataSync<"float32">().slice())
    );
    tf.dispose(images);
  } finally {
    disposeModel(model);
  }

  const createdAt = new Date().toISOString();
  const exportVersions = {
    ...versions(),
    onnxruntime: ort.env.versions.node ?? "unknown",
    onnxIrVersion: String(ONNX_IR_VERSION),
    onnxOpset: String(ONNX_OPSET),
  };
  const metadata = (role: string, outputs: string[]) => ({
    [`${METADATA_PREFIX}format`]: EXPORT_FORMAT,
    [`${METADATA_PREFIX}version`]: String(EXPORT_VERSION),
    [`${METADATA_PREFIX}model`]: role,
    [`${METADATA_PREFIX}outputs`]: JSON.stringify(outputs),
    [`${METADATA_PREFIX}domains`]: JSON.stringify(source.domains),
    [`${METADATA_PREFIX}latentDim`]: String(weights.latentDim),
    [`${METADATA_PREFIX}imageShape`]: JSON.stringify(IMAGE_SHAPE),
    [`${METADATA_PREFIX}step`]: String(source.step),
    [`${METADATA_PREFIX}options`]: JSON.stringify(source.options),
    [`${METADATA_PREFIX}arch`]: JSON.stringify(source.arch),
    [`${METADATA_PREFIX}sourceCheckpoint`]: checkpointPath,
    [`${METADATA_PREFIX}versions`]: JSON.stringify(exportVersions),
    [`${METADATA_PREFIX}createdAt`]: createdAt,
  });
  const models = [
    {
      file: PAIR_FILE,
      domains,
      proto: generatorModel(weights, {
        graphName: "cogan-pair",
        docString: `CoGAN generators of ${
          domains.join(", ")
        } at step ${source.step}: z [batch, ${weights.latentDim}] -> one [batch, 1, 28, 28] image per domain`,
        domains,
        metadata: metadata("pair", domains),
      }),
    },
    ...domains.map((domain) => ({
      file: domainFile(domain),
      domains: [domain],
      proto: generatorModel(weights, {
        graphName: `cogan-${domain}`,
        docString:
          `CoGAN generator of ${domain} at step ${source.step}: z [batch, ${weights.latentDim}] -> [batch, 1, 28, 28]`,
        domains: [domain],
        metadata: metadata(domain, [domain]),
      }),
    })),
  ];

  await Deno.mkdir(dirname(out), { recursive: true });
  const tmp = join(
    dirname(out),
    `.${basename(out)}.tmp-${crypto.randomUUID()}`,
  );
  await Deno.mkdir(tmp);
  try {
    const files: Record<string, ExportFile> = {};
    for (const m of models) {
      const bytes = encodeModel(m.proto);
      await writeSynced(join(tmp, m.file), bytes);
      files[m.file] = { sha256: await sha256Hex(bytes), bytes: bytes.length };
    }

    const maxAbsDiff = await compareWithOnnx(
      models.map((m) => ({ path: join(tmp, m.file), domains: m.domains })),
      z,
      weights.latentDim,
      expected,
    );
    if (!(maxAbsDiff <= EXPORT_TOLERANCE)) {
      throw new ExportCheckError(
        `Cannot export "${checkpointPath}": ONNX Runtime differs from tfjs by ${
          maxAbsDiff.toExponential(2)
        }, more than ${
          EXPORT_TOLERANCE.toExponential(0)
        }; nothing was written to "${out}"`,
      );
    }

    const manifest: ExportManifest = {
      format: EXPORT_FORMAT,
      version: EXPORT_VERSION,
      domains: source.domains,
      latentDim: weights.latentDim,
      imageShape: [...IMAGE_SHAPE],
      step: source.step,
      options: source.options,
      arch: source.arch,
      sourceCheckpoint: checkpointPath,
      files,
      versions: exportVersions,
      createdAt,
      check: {
        batch: checkBatch,
        seed: checkSeed,
        maxAbsDiff,
        tolerance: EXPORT_TOLERANCE,
        backend,
      },
    };
    await writeSynced(
      join(tmp, EXPORT_MANIFEST_FILE),
      new TextEncoder().encode(JSON.stringify(manifest, null, 1) + "\n"),
    );
    await replaceDir(tmp, out);
    return {
      out,
      checkpoint: checkpointPath,
      step: source.step,
      paths: [...models.map((m) => m.file), EXPORT_MANIFEST_FILE].map((f) =>
        join(out, f)
      ),
      manifest,
      maxAbsDiff,
    };
  } catch (err) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw err;
  }
}
