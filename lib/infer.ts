/**
 * Paired inference with ONNX Runtime: the generators of an export run on
 * one latent `z` give one image per domain, a *pair*.
 *
 * {@linkcode openPairGenerator} opens an export (a folder made by
 * `deno task export`, or a lone `.onnx` file) in one ONNX Runtime session
 * that is reused for every batch; {@linkcode runInference} streams any
 * number of pairs into `.npy` files and a PNG grid in constant memory.
 *
 * Library code: it prints nothing; progress comes through a callback.
 *
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import * as ort from "onnxruntime-node";
import { ModelProtoSchema } from "onnx-buf";
import { InputError, OptionError } from "./errors.ts";
import {
  EXPORT_FORMAT,
  EXPORT_VERSION,
  LATENT_INPUT,
  METADATA_PREFIX,
  PAIR_FILE,
} from "./export_format.ts";
import { sha256Hex } from "./files.ts";
import { NpyWriter, readNpy } from "./npy.ts";
import { encodePng, pairGrid } from "./png.ts";
import { Rng } from "./rng.ts";

/** Values `--ep` accepts: `auto` tries CUDA, then falls back to CPU. */
export const EXECUTION_PROVIDERS = ["auto", "cpu", "cuda"] as const;

/** One of {@linkcode EXECUTION_PROVIDERS}. */
export type ExecutionProviderChoice = typeof EXECUTION_PROVIDERS[number];

/** An execution provider a session actually runs on. */
export type ExecutionProvider = Exclude<ExecutionProviderChoice, "auto">;

/** The onnxruntime-node version pinned in deno.json. */
const ORT_PACKAGE = "npm:onnxruntime-node@1.30.0";

/** How to get CUDA, for the messages of a failed `--ep cuda`. */
const CUDA_HOWTO =
  `To use CUDA, install CUDA 12 and cuDNN 9, then approve onnxruntime-node's install script, which fetches its CUDA provider: deno install --allow-scripts=${ORT_PACKAGE}`;

/** What an export says about its generators. */
export interface ModelDescription {
  /** The `.onnx` file a session loads. */
  onnxPath: string;
  /** Every domain the model outputs, in order. */
  domains: string[];
  /** Size of `z`. */
  latentDim: number;
  /** Shape of one image: [1, 28, 28]. */
  imageShape: number[];
  /** The export's `manifest.json`, when the model came from a folder. */
  manifest?: Record<string, unknown>;
}

/** Options of {@linkcode openPairGenerator}. */
export interface PairGeneratorOptions {
  /** Execution provider; `auto` (the default) is CUDA if it loads, else CPU. */
  ep?: ExecutionProviderChoice;
  /** Intra-op threads of the CPU provider; default: ONNX Runtime's (all cores). */
  threads?: number;
  /** Domains to fetch, a subset of the model's; default: all of them. */
  domains?: string[];
}

/** Generators of one export in one ONNX Runtime session. */
export interface PairGenerator {
  /** The `.onnx` file the session runs. */
  readonly modelPath: string;
  /** Domains {@linkcode PairGenerator.generate} returns, in model order. */
  readonly domains: string[];
  /** Every domain the model outputs. */
  readonly modelDomains: string[];
  readonly latentDim: number;
  /** Shape of one image: [1, 28, 28]. */
  readonly imageShape: number[];
  /** The provider the session runs on. */
  readonly executionProvider: ExecutionProvider;
  /** Why `auto` fell back to CPU; absent otherwise. */
  readonly fallbackReason?: string;
  /**
   * The images of `count` pairs from `z` ([count, latentDim], row-major):
   * per domain, `count * 784` floats in [0, 1] ([count, 1, 28, 28]).
   */
  generate(
    z: Float32Array,
    count: number,
  ): Promise<Record<string, Float32Array>>;
  /** Releases the session. */
  dispose(): Promise<void>;
}

function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

async function readModelFile(path: string, what: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new InputError(`Cannot open model "${what}": ${path} is missing`);
    }
    throw err;
  }
}

/** Domain names from `manifest.domains` or `cogan.domains` metadata. */
function domainNames(value: unknown): string[] | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  const names = value.map((d) =>
    typeof d === "string" ? d : (d as { name?: unknown })?.name
  );
  return names.every((n) => typeof n === "string" && n !== "")
    ? names as string[]
    : undefined;
}

function isShape(value: unknown): value is number[] {
  return Array.isArray(value) &&
    value.every((n) => Number.isSafeInteger(n) && n > 0);
}

async function describeFolder(
  folder: string,
): Promise<{ description: ModelDescription; bytes: Uint8Array }> {
  const fail = (problem: string) =>
    new InputError(`Cannot open model "${folder}": ${problem}`);
  let manifest: Record<string, unknown>;
  try {
    manifest = JSON.parse(
      await Deno.readTextFile(join(folder, "manifest.json")),
    );
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw fail(
        "manifest.json is missing; pass an export folder made by deno task export, or a .onnx file",
      );
    }
    throw fail(`manifest.json is not valid JSON (${(err as Error).message})`);
  }
  if (manifest?.format !== EXPORT_FORMAT) {
    throw fail(`manifest.json is not a ${EXPORT_FORMAT} manifest`);
  }
  if (manifest.version !== EXPORT_VERSION) {
    throw fail(
      `format version must be ${EXPORT_VERSION}: current value is ${manifest.version}`,
    );
  }
  const domains = domainNames(manifest.domains);
  const latentDim = manifest.latentDim;
  const imageShape = manifest.imageShape;
  if (!domains || !Number.isSafeInteger(latentDim) || !isShape(imageShape)) {
    throw fail(
      "manifest.json must give domains, latentDim and imageShape",
    );
  }

  const onnxPath = join(folder, PAIR_FILE);
  const bytes = await readModelFile(onnxPath, folder);
  const entry = (manifest.files as Record<string, unknown> | undefined)
    ?.[PAIR_FILE] as { bytes?: number; sha256?: string } | undefined;
  if (entry?.bytes !== undefined && entry.bytes !== bytes.length) {
    throw fail(
      `${PAIR_FILE} must have ${entry.bytes} bytes: current size is ${bytes.length} (truncated?)`,
    );
  }
  if (
    entry?.sha256 !== undefined &&
    entry.sha256 !== await sha256Hex(new Uint8Array(bytes))
  ) {
    throw fail(
      `${PAIR_FILE} does not match the SHA-256 in manifest.json (corrupt?)`,
    );
  }
  return {
    description: {
      onnxPath,
      domains,
      latentDim: latentDim as number,
      imageShape,
      manifest,
    },
    bytes,
  };
}

async function describeFile(
  path: string,
): Promise<{ description: ModelDescription; bytes: Uint8Array }> {
  const fail = (problem: string) =>
    new InputError(`Cannot open model "${path}": ${problem}`);
  const bytes = await readModelFile(path, path);
  let metadata: Map<string, string>;
  try {
    const model = fromBinary(ModelProtoSchema, bytes);
    if (!model.graph) throw new Error("it has no graph");
    metadata = new Map(model.metadataProps.map((p) => [p.key, p.value]));
  } catch (err) {
    throw fail(
      `it is not an ONNX model (${
        (err as Error).message
      }); truncated, or another kind of file?`,
    );
  }
  const json = (key: string) => {
    try {
      return JSON.parse(metadata.get(key) ?? "null");
    } catch {
      return null;
    }
  };
  // A per-domain file outputs one domain of the run's; cogan.outputs says
  // which, cogan.domains lists them all.
  const domains = domainNames(json(`${METADATA_PREFIX}outputs`)) ??
    domainNames(json(`${METADATA_PREFIX}domains`));
  const latentDim = Number(metadata.get(`${METADATA_PREFIX}latentDim`));
  const imageShape = json(`${METADATA_PREFIX}imageShape`) ?? [1, 28, 28];
  if (!domains || !Number.isSafeInteger(latentDim) || !isShape(imageShape)) {
    throw fail(
      "its metadata_props lack cogan.domains and cogan.latentDim; was it made by deno task export?",
    );
  }
  return {
    description: { onnxPath: path, domains, latentDim, imageShape },
    bytes,
  };
}

/**
 * Reads what an export folder's `manifest.json`, or a lone `.onnx` file's
 * `metadata_props`, say about its generators, with the model's bytes.
 * Problems throw an {@linkcode InputError} naming the path.
 */
export async function readModel(
  path: string,
): Promise<{ description: ModelDescription; bytes: Uint8Array }> {
  let info: Deno.FileInfo;
  try {
    info = await Deno.stat(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new InputError(`Cannot open model "${path}": the path is missing`);
    }
    throw err;
  }
  return info.isDirectory ? describeFolder(path) : describeFile(path);
}

/** Where onnxruntime-node keeps its native libraries. */
function ortLibraryDir(): string | undefined {
  try {
    const index = createRequire(import.meta.url).resolve("onnxruntime-node");
    const arch = Deno.build.arch === "x86_64" ? "x64" : "arm64";
    return join(dirname(index), "..", "bin", "napi-v6", Deno.build.os, arch);
  } catch {
    return undefined;
  }
}

/**
 * Why CUDA cannot be used before even trying, or `undefined` when its
 * provider library is in place. Without it, ONNX Runtime would print a
 * native error to stderr on every attempt.
 */
function missingCudaProvider(): string | undefined {
  const dir = ortLibraryDir();
  if (!dir) return undefined;
  const lib = Deno.build.os === "windows"
    ? "onnxruntime_providers_cuda.dll"
    : "libonnxruntime_providers_cuda.so";
  try {
    Deno.statSync(join(dir, lib));
    return undefined;
  } catch {
    return `onnxruntime-node's CUDA provider (${lib}) is not installed, as Deno skips npm install scripts by default`;
  }
}

async function createSession(
  bytes: Uint8Array,
  provider: ExecutionProvider,
  threads: number | undefined,
): Promise<ort.InferenceSession> {
  return await ort.InferenceSession.create(bytes, {
    executionProviders: [provider],
    graphOptimizationLevel: "all",
    // Idle intra-op threads would otherwise spin between runs, taking the
    // cores this thread needs to draw the next latents and write files.
    extra: { session: { intra_op: { allow_spinning: "0" } } },
    ...(threads !== undefined ? { intraOpNumThreads: threads } : {}),
  });
}

/** Checks the session's input and outputs against the description. */
function checkSession(
  session: ort.InferenceSession,
  description: ModelDescription,
  source: string,
): void {
  const fail = (problem: string) =>
    new InputError(`Cannot use model "${source}": ${problem}`);
  const input = session.inputMetadata.find((m) => m.name === LATENT_INPUT);
  if (!input || !input.isTensor) {
    throw fail(
      `it must take a float32 input "${LATENT_INPUT}" [batch, ${description.latentDim}]: its inputs are ${
        session.inputNames.map((n) => `"${n}"`).join(", ") || "none"
      }`,
    );
  }
  if (session.inputNames.length !== 1) {
    throw fail(
      `it must take only "${LATENT_INPUT}": its inputs are ${
        session.inputNames.map((n) => `"${n}"`).join(", ")
      }`,
    );
  }
  const width = input.shape[1];
  if (
    input.type !== "float32" || input.shape.length !== 2 ||
    (typeof width === "number" && width !== description.latentDim)
  ) {
    throw fail(
      `input "${LATENT_INPUT}" must be float32 [batch, ${description.latentDim}]: it is ${input.type} [${
        input.shape.join(", ")
      }]`,
    );
  }
  const missing = description.domains.filter((d) =>
    !session.outputNames.includes(d)
  );
  if (missing.length > 0) {
    throw fail(
      `it must output one image per domain (${
        description.domains.join(", ")
      }): ${missing.join(", ")} missing from its outputs ${
        session.outputNames.join(", ")
      }`,
    );
  }
}

/** Checks the `domains` option against the model's. */
function chooseDomains(all: string[], wanted: string[] | undefined): string[] {
  if (wanted === undefined) return all;
  if (wanted.length === 0) {
    throw new OptionError("Cannot choose domains: the list is empty");
  }
  const unknown = wanted.filter((d) => !all.includes(d));
  if (unknown.length > 0) {
    throw new OptionError(
      `Unsupported domain: "${unknown[0]}". Should be one of: ${
        all.join(", ")
      }`,
    );
  }
  // Model order, once each: the npy files and grid rows follow it.
  return all.filter((d) => wanted.includes(d));
}

/**
 * Opens the generators of an export folder (or a `pair.onnx`-like file) in
 * one ONNX Runtime session.
 *
 * With `ep: "auto"`, a CUDA session is tried and CPU used when it cannot be
 * made; `fallbackReason` says why. With `ep: "cuda"`, that failure throws an
 * {@linkcode InputError} that says why and how to get CUDA.
 */
export async function openPairGenerator(
  modelPath: string,
  options: PairGeneratorOptions = {},
): Promise<PairGenerator> {
  const ep = options.ep ?? "auto";
  if (!(EXECUTION_PROVIDERS as readonly string[]).includes(ep)) {
    throw new OptionError(
      `Unsupported execution provider: "${ep}". Should be one of: ${
        EXECUTION_PROVIDERS.join(", ")
      }`,
    );
  }
  const threads = options.threads;
  if (
    threads !== undefined && (!Number.isSafeInteger(threads) || threads < 1)
  ) {
    throw new OptionError(
      `Cannot use ${threads} threads: the number must be an integer >= 1`,
    );
  }
  const { description, bytes } = await readModel(modelPath);
  const domains = chooseDomains(description.domains, options.domains);

  let session: ort.InferenceSession | undefined;
  let provider: ExecutionProvider = "cpu";
  let fallbackReason: string | undefined;
  if (ep !== "cpu") {
    let reason = missingCudaProvider();
    if (reason === undefined) {
      try {
        session = await createSession(bytes, "cuda", threads);
        provider = "cuda";
      } catch (err) {
        reason = `ONNX Runtime could not start it (${(err as Error).message})`;
      }
    }
    if (reason !== undefined && ep === "cuda") {
      throw new InputError(
        `Cannot use execution provider "cuda": ${reason}. ${CUDA_HOWTO}`,
      );
    }
    fallbackReason = reason;
  }
  if (!session) {
    try {
      session = await createSession(bytes, "cpu", threads);
    } catch (err) {
      throw new InputError(
        `Cannot open model "${modelPath}": ONNX Runtime cannot load ${
          basename(description.onnxPath)
        } (${(err as Error).message}); truncated, or another kind of file?`,
      );
    }
  }
  try {
    checkSession(session, description, modelPath);
  } catch (err) {
    await session.release();
    throw err;
  }

  const live = session;
  const { latentDim } = description;
  const pixels = sizeOf(description.imageShape);
  return {
    modelPath: description.onnxPath,
    domains,
    modelDomains: description.domains,
    latentDim,
    imageShape: description.imageShape,
    executionProvider: provider,
    ...(fallbackReason !== undefined ? { fallbackReason } : {}),
    async generate(z, count) {
      if (!Number.isSafeInteger(count) || count < 1) {
        throw new RangeError(
          `Cannot generate ${count} pairs: the count must be an integer >= 1`,
        );
      }
      if (z.length !== count * latentDim) {
        throw new RangeError(
          `Cannot generate ${count} pairs as z must hold count * ${latentDim} = ${
            count * latentDim
          } floats: current length is ${z.length}`,
        );
      }
      const feeds = {
        [LATENT_INPUT]: new ort.Tensor("float32", z, [count, latentDim]),
      };
      const results = await live.run(feeds, domains);
      const out: Record<string, Float32Array> = {};
      for (const d of domains) {
        const data = results[d].data as Float32Array;
        if (data.length !== count * pixels) {
          throw new InputError(
            `Cannot use model "${modelPath}": output "${d}" has ${data.length} values for ${count} pairs, not ${
              count * pixels
            }`,
          );
        }
        out[d] = data;
      }
      return out;
    },
    async dispose() {
      await live.release();
    },
  };
}

/**
 * Standard normal latents from a seed, row by row: each row of `latentDim`
 * numbers is drawn on its own, so the rows do not depend on how they are
 * batched.
 */
export class LatentStream {
  readonly latentDim: number;
  readonly #rng: Rng;

  constructor(seed: number, latentDim: number) {
    this.latentDim = latentDim;
    this.#rng = new Rng(seed);
  }

  /** The next `count` rows: [count, latentDim]. */
  next(count: number): Float32Array {
    const L = this.latentDim;
    const out = new Float32Array(count * L);
    for (let r = 0; r < count; r++) {
      this.#rng.fillNormal(out.subarray(r * L, (r + 1) * L));
    }
    return out;
  }
}

/** `count` seeded latents, [count, latentDim]. */
export function seededLatents(
  seed: number,
  count: number,
  latentDim: number,
): Float32Array {
  return new LatentStream(seed, latentDim).next(count);
}

/**
 * Spherical interpolation between latents `a` and `b` at `t` in [0, 1]:
 * along the great circle, which keeps the norm typical of a normal sample
 * where a straight line would pass near the origin. Nearly parallel
 * vectors fall back to a straight line.
 */
export function slerp(
  a: Float32Array,
  b: Float32Array,
  t: number,
): Float32Array {
  if (a.length !== b.length) {
    throw new RangeError(
      `Cannot interpolate as both latents must have one length: ${a.length} and ${b.length}`,
    );
  }
  let dot = 0, na = 0, nb = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  const cos = Math.min(1, Math.max(-1, dot / Math.sqrt(na * nb)));
  const omega = Math.acos(cos);
  const sin = Math.sin(omega);
  const [wa, wb] = !(sin > 1e-6)
    ? [1 - t, t]
    : [Math.sin((1 - t) * omega) / sin, Math.sin(t * omega) / sin];
  return a.map((v, i) => wa * v + wb * b[i]);
}

/**
 * `steps` latents (>= 2) on the spherical path from `a` to `b`, both ends
 * included: [steps, latentDim].
 */
export function interpolateLatents(
  a: Float32Array,
  b: Float32Array,
  steps: number,
): Float32Array {
  if (!Number.isSafeInteger(steps) || steps < 2) {
    throw new RangeError(
      `Cannot interpolate in ${steps} steps: the number must be an integer >= 2`,
    );
  }
  const out = new Float32Array(steps * a.length);
  for (let k = 0; k < steps; k++) {
    out.set(slerp(a, b, k / (steps - 1)), k * a.length);
  }
  return out;
}

/** Values `--format` accepts. */
export const OUTPUT_FORMATS = ["png", "npy", "both"] as const;

/** One of {@linkcode OUTPUT_FORMATS}. */
export type OutputFormat = typeof OUTPUT_FORMATS[number];

/** Most pairs a `pairs.png` grid holds. */
export const PNG_MAX_PAIRS = 1000;

/** Options of {@linkcode runInference}; each default is documented. */
export interface InferOptions {
  /** Export folder or `.onnx` file. Required. */
  model: string;
  /** Output folder, created if needed. Required. */
  out: string;
  /**
   * Pairs to make. Default: 64 from seeded latents; with `z`, every row of
   * the file (a smaller count takes the first rows).
   */
  count?: number;
  /** Pairs per session run. Default: 1024. */
  batchSize?: number;
  /** Seed of the latents (and of the interpolation's ends). Default: 0. */
  seed?: number;
  /** A float32 `.npy` file of latents [N, latentDim] to use instead. */
  z?: string;
  /** Domains to output, a subset of the model's. Default: all. */
  domains?: string[];
  /** Pairs along a spherical path between two seeded latents (>= 2). */
  interpolate?: number;
  /** Default: `both` up to {@linkcode PNG_MAX_PAIRS} pairs, `npy` above. */
  format?: OutputFormat;
  /** Default: `auto`. */
  ep?: ExecutionProviderChoice;
  /** CPU threads. Default: ONNX Runtime's (all cores). */
  threads?: number;
}

/** Progress of {@linkcode runInference}, after each batch. */
export interface InferProgress {
  done: number;
  total: number;
  pairsPerSecond: number;
}

/** What {@linkcode runInference} made. */
export interface InferResult {
  count: number;
  domains: string[];
  executionProvider: ExecutionProvider;
  fallbackReason?: string;
  /** Seconds from the first batch to the last file closed. */
  seconds: number;
  /** Pairs per second over `seconds`, writing included. */
  pairsPerSecond: number;
  /** Paths of the files written. */
  files: string[];
}

const DEFAULT_COUNT = 64;
const DEFAULT_BATCH_SIZE = 1024;

function checkInt(name: string, value: number | undefined, min: number) {
  if (value !== undefined && (!Number.isSafeInteger(value) || value < min)) {
    throw new OptionError(
      `Invalid value for ${name}: ${value}. Should be an integer >= ${min}`,
    );
  }
}

/** Checks the options that need no file. */
function checkInferOptions(options: InferOptions): void {
  checkInt("count", options.count, 1);
  checkInt("batchSize", options.batchSize, 1);
  checkInt("seed", options.seed, 0);
  checkInt("interpolate", options.interpolate, 2);
  checkInt("threads", options.threads, 1);
  if (options.interpolate !== undefined && options.z !== undefined) {
    throw new OptionError(
      "Cannot use --interpolate with --z: the path's ends are seeded latents",
    );
  }
  if (options.interpolate !== undefined && options.count !== undefined) {
    throw new OptionError(
      "Cannot use --interpolate with --count: --interpolate K makes K pairs",
    );
  }
  if (
    options.format !== undefined &&
    !(OUTPUT_FORMATS as readonly string[]).includes(options.format)
  ) {
    throw new OptionError(
      `Unsupported format: "${options.format}". Should be one of: ${
        OUTPUT_FORMATS.join(", ")
      }`,
    );
  }
}

function pngRefusal(count: number): OptionError {
  return new OptionError(
    `Cannot draw ${count} pairs in pairs.png: a grid holds at most ${PNG_MAX_PAIRS}; use --format npy, or --count ${PNG_MAX_PAIRS} or fewer`,
  );
}

/** Where the latents come from: `next(n)` gives the next n rows. */
interface LatentSource {
  count: number;
  next(n: number): Float32Array;
}

async function latentSource(
  options: InferOptions,
  latentDim: number,
): Promise<LatentSource> {
  const seed = options.seed ?? 0;
  if (options.interpolate !== undefined) {
    const ends = seededLatents(seed, 2, latentDim);
    const path = interpolateLatents(
      ends.subarray(0, latentDim),
      ends.subarray(latentDim),
      options.interpolate,
    );
    let at = 0;
    return {
      count: options.interpolate,
      next(n) {
        at += n;
        return path.subarray((at - n) * latentDim, at * latentDim);
      },
    };
  }
  if (options.z !== undefined) {
    const { shape, data } = await readNpy(options.z);
    if (shape.length !== 2 || shape[1] !== latentDim || shape[0] < 1) {
      throw new InputError(
        `Cannot use latents "${options.z}": shape must be [N, ${latentDim}] with N >= 1 to match the model: current shape is [${
          shape.join(", ")
        }]`,
      );
    }
    const count = options.count ?? shape[0];
    if (count > shape[0]) {
      throw new OptionError(
        `Cannot make ${count} pairs from "${options.z}": it holds ${
          shape[0]
        } latents`,
      );
    }
    let at = 0;
    return {
      count,
      next(n) {
        at += n;
        return data.subarray((at - n) * latentDim, at * latentDim);
      },
    };
  }
  const stream = new LatentStream(seed, latentDim);
  return { count: options.count ?? DEFAULT_COUNT, next: (n) => stream.next(n) };
}

/**
 * Makes pairs with ONNX Runtime and writes, into `out`, `<domain>.npy`
 * (float32 [N, 28, 28] in [0, 1]) per domain and, for at most
 * {@linkcode PNG_MAX_PAIRS} pairs, `pairs.png`.
 *
 * One session runs every batch; each batch is written as soon as it is
 * made (while the next one is computed), so memory does not grow with the
 * count. Files are written into a temporary folder inside `out` and renamed
 * into place at the end: after an error, nothing half-written is left.
 */
export async function runInference(
  options: InferOptions,
  onProgress?: (p: InferProgress) => void,
): Promise<InferResult> {
  checkInferOptions(options);
  const impliedCount = options.interpolate ?? options.count;
  if (
    options.format === "png" || options.format === "both"
  ) {
    if (impliedCount !== undefined && impliedCount > PNG_MAX_PAIRS) {
      throw pngRefusal(impliedCount);
    }
  }

  const generator = await openPairGenerator(options.model, {
    ep: options.ep,
    threads: options.threads,
    domains: options.domains,
  });
  try {
    const source = await latentSource(options, generator.latentDim);
    const count = source.count;
    const format = options.format ??
      (count <= PNG_MAX_PAIRS ? "both" : "npy");
    if (format !== "npy" && count > PNG_MAX_PAIRS) throw pngRefusal(count);
    return await writePairs(
      generator,
      source,
      format,
      options,
      onProgress,
    );
  } finally {
    await generator.dispose();
  }
}

async function writePairs(
  generator: PairGenerator,
  source: LatentSource,
  format: OutputFormat,
  options: InferOptions,
  onProgress?: (p: InferProgress) => void,
): Promise<InferResult> {
  const { count } = source;
  const batchSize = options.batchSize ?? DEFAULT_BATCH_SIZE;
  const { domains } = generator;
  const [height, width] = generator.imageShape.slice(-2);
  const pixels = sizeOf(generator.imageShape);
  const started = performance.now();

  try {
    await Deno.mkdir(options.out, { recursive: true });
  } catch (err) {
    if (err instanceof Deno.errors.AlreadyExists) {
      throw new InputError(
        `Cannot write to "${options.out}": it exists and is not a folder`,
      );
    }
    throw err;
  }
  const tmp = await Deno.makeTempDir({
    dir: options.out,
    prefix: ".tmp-infer-",
  });
  const writers: NpyWriter[] = [];
  const names: string[] = [];
  let writing: Promise<unknown> = Promise.resolve();
  try {
    if (format !== "png") {
      for (const d of domains) {
        writers.push(
          await NpyWriter.create(join(tmp, `${d}.npy`), [count, height, width]),
        );
        names.push(`${d}.npy`);
      }
    }
    // Kept only for the grid, which is capped at PNG_MAX_PAIRS pairs.
    const grid = format === "npy"
      ? undefined
      : domains.map(() => new Float32Array(count * pixels));

    let done = 0;
    while (done < count) {
      const n = Math.min(batchSize, count - done);
      const images = await generator.generate(source.next(n), n);
      // ONNX Runtime computes on this thread; Deno writes on its own pool,
      // so batch k is written while batch k + 1 is computed.
      await writing;
      writing = Promise.all(
        writers.map((w, i) => w.append(images[domains[i]])),
      );
      grid?.forEach((g, i) => g.set(images[domains[i]], done * pixels));
      done += n;
      onProgress?.({
        done,
        total: count,
        pairsPerSecond: done / ((performance.now() - started) / 1000),
      });
    }
    await writing;
    for (const w of writers) await w.close();
    if (grid) {
      // A path reads best in one row; long ones wrap every 20 pairs.
      const columns = Math.min(count, options.interpolate ? 20 : 10);
      await Deno.writeFile(
        join(tmp, "pairs.png"),
        encodePng(pairGrid(grid, count, width, columns)),
      );
      names.push("pairs.png");
    }
    const seconds = (performance.now() - started) / 1000;

    const files = [];
    for (const name of names) {
      const target = join(options.out, name);
      await Deno.rename(join(tmp, name), target);
      files.push(target);
    }
    await Deno.remove(tmp, { recursive: true });
    return {
      count,
      domains,
      executionProvider: generator.executionProvider,
      ...(generator.fallbackReason !== undefined
        ? { fallbackReason: generator.fallbackReason }
        : {}),
      seconds,
      pairsPerSecond: count / seconds,
      files,
    };
  } catch (err) {
    // Let a write in flight finish before its file is closed under it.
    await writing.catch(() => {});
    for (const w of writers) w.abort();
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw err;
  }
}
