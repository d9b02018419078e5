/**
 * Checkpoints: every tensor of a run (weights and Adam moments) in one
 * little-endian float32 file, described by a JSON manifest with the step,
 * the resolved options and the random generators' state.
 *
 * A checkpoint is written under a temporary name and renamed into place, so
 * a folder named `step-NNNNNN` is always whole.
 *
 * @module
 */

import { join } from "node:path";
import type { ArchSpec } from "./arch.ts";
import type { BatcherState, DomainInfo } from "./data.ts";
import { InputError } from "./errors.ts";
import {
  float32FromBytes,
  float32ToBytes,
  replaceDir,
  sha256Hex,
  verifyWeights,
  writeSynced,
} from "./files.ts";
import type { TrainOptions } from "./options.ts";
import type { RngState } from "./rng.ts";

export { sha256Hex };

/** Format tag of `manifest.json`. */
export const CHECKPOINT_FORMAT = "cogan-checkpoint";
/** Version of the checkpoint format this code writes and reads. */
export const CHECKPOINT_VERSION = 1;

/** Where one tensor lies in `weights.bin`. */
export interface TensorEntry {
  name: string;
  shape: number[];
  /** Offset in floats from the start of `weights.bin`. */
  offset: number;
}

/** Everything besides tensors that a resumed run needs. */
export interface TrainState {
  /** Steps completed. */
  step: number;
  /** Generator drawing each step's latents. */
  latentRng: RngState;
  /** One per domain. */
  batchers: BatcherState[];
  /** Updates each optimiser has applied. */
  optimiserUpdates: { discriminator: number; generator: number };
}

/** Contents of a checkpoint's `manifest.json`. */
export interface CheckpointManifest {
  format: typeof CHECKPOINT_FORMAT;
  version: number;
  step: number;
  options: TrainOptions;
  arch: ArchSpec;
  domains: DomainInfo[];
  state: TrainState;
  tensors: TensorEntry[];
  /** Size of `weights.bin` in bytes. */
  weightsBytes: number;
  /** Hex SHA-256 of `weights.bin`. */
  weightsSha256: string;
  /** Library versions the run used. */
  versions: Record<string, string>;
  createdAt: string;
}

/** A loaded checkpoint. */
export interface Checkpoint {
  /** Folder it was read from. */
  path: string;
  manifest: CheckpointManifest;
  /** Every tensor by name, as float32 values. */
  tensors: Map<string, Float32Array>;
}

/** Folder name of the checkpoint for `step`: `step-000500`. */
export function checkpointName(step: number): string {
  return `step-${String(step).padStart(6, "0")}`;
}

/** What {@linkcode saveCheckpoint} needs besides the tensors. */
export type CheckpointInfo = Omit<
  CheckpointManifest,
  | "format"
  | "version"
  | "tensors"
  | "weightsBytes"
  | "weightsSha256"
  | "createdAt"
>;

/**
 * Writes a checkpoint to `<checkpointsDir>/step-NNNNNN` and returns its
 * path. Tensors are written in the order given.
 */
export async function saveCheckpoint(
  checkpointsDir: string,
  info: CheckpointInfo,
  tensors: Map<string, { shape: number[]; values: Float32Array }>,
): Promise<string> {
  const entries: TensorEntry[] = [];
  let floats = 0;
  for (const [name, t] of tensors) {
    entries.push({ name, shape: t.shape, offset: floats });
    floats += t.values.length;
  }
  const weights = new Float32Array(floats);
  for (const entry of entries) {
    weights.set(tensors.get(entry.name)!.values, entry.offset);
  }
  const bytes = float32ToBytes(weights);
  const manifest: CheckpointManifest = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    ...info,
    tensors: entries,
    weightsBytes: bytes.length,
    weightsSha256: await sha256Hex(bytes),
    createdAt: new Date().toISOString(),
  };

  await Deno.mkdir(checkpointsDir, { recursive: true });
  const final = join(checkpointsDir, checkpointName(info.step));
  const tmp = join(
    checkpointsDir,
    `.tmp-${checkpointName(info.step)}-${crypto.randomUUID()}`,
  );
  await Deno.mkdir(tmp);
  try {
    await writeSynced(join(tmp, "weights.bin"), bytes);
    await writeSynced(
      join(tmp, "manifest.json"),
      new TextEncoder().encode(JSON.stringify(manifest, null, 1) + "\n"),
    );
    await replaceDir(tmp, final);
  } catch (err) {
    await Deno.remove(tmp, { recursive: true }).catch(() => {});
    throw err;
  }
  return final;
}

/** Steps of the whole checkpoints in a run folder, ascending. */
export async function listCheckpoints(runDir: string): Promise<number[]> {
  const steps: number[] = [];
  try {
    for await (const entry of Deno.readDir(join(runDir, "checkpoints"))) {
      const match = /^step-(\d{6,})$/.exec(entry.name);
      if (entry.isDirectory && match) steps.push(Number(match[1]));
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return steps.sort((a, b) => a - b);
}

/**
 * The path of a run's checkpoint at `step`, or its newest one. Throws an
 * {@linkcode InputError} when the run or the checkpoint does not exist.
 */
export async function findCheckpoint(
  runDir: string,
  step?: number,
): Promise<string> {
  try {
    if (!(await Deno.stat(runDir)).isDirectory) {
      throw new InputError(`Cannot open run "${runDir}": it is not a folder`);
    }
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new InputError(
        `Cannot open run "${runDir}": the folder is missing`,
      );
    }
    throw err;
  }
  const steps = await listCheckpoints(runDir);
  if (steps.length === 0) {
    throw new InputError(
      `Cannot open run "${runDir}": it has no checkpoint under checkpoints/`,
    );
  }
  const chosen = step ?? steps[steps.length - 1];
  if (!steps.includes(chosen)) {
    throw new InputError(
      `Cannot open run "${runDir}": it has no checkpoint at step ${chosen}; it has steps ${
        steps.join(", ")
      }`,
    );
  }
  return join(runDir, "checkpoints", checkpointName(chosen));
}

/** Deletes all but the newest `keep` checkpoints of a run (0: keep all). */
export async function pruneCheckpoints(
  runDir: string,
  keep: number,
): Promise<void> {
  if (keep <= 0) return;
  const steps = await listCheckpoints(runDir);
  for (const step of steps.slice(0, Math.max(0, steps.length - keep))) {
    await Deno.remove(join(runDir, "checkpoints", checkpointName(step)), {
      recursive: true,
    });
  }
}

/**
 * Reads and verifies a checkpoint folder. Any problem (missing or
 * unparsable manifest, wrong format, weights of the wrong size or hash)
 * throws an {@linkcode InputError} naming the folder and the problem.
 */
export async function loadCheckpoint(path: string): Promise<Checkpoint> {
  const fail = (problem: string) =>
    new InputError(`Cannot load checkpoint "${path}": ${problem}`);
  const read = async (file: string) => {
    try {
      return await Deno.readFile(join(path, file));
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) throw fail(`${file} is missing`);
      throw err;
    }
  };

  let manifest: CheckpointManifest;
  try {
    manifest = JSON.parse(
      new TextDecoder().decode(await read("manifest.json")),
    );
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw fail(`manifest.json is not valid JSON (${(err as Error).message})`);
  }
  if (manifest?.format !== CHECKPOINT_FORMAT) {
    throw fail(`manifest.json is not a ${CHECKPOINT_FORMAT} manifest`);
  }
  if (manifest.version !== CHECKPOINT_VERSION) {
    throw fail(
      `format version must be ${CHECKPOINT_VERSION}: current value is ${manifest.version}`,
    );
  }

  const bytes = await read("weights.bin");
  await verifyWeights(bytes, manifest, fail);

  const all = float32FromBytes(bytes);
  const tensors = new Map<string, Float32Array>();
  for (const entry of manifest.tensors) {
    const size = entry.shape.reduce((a, b) => a * b, 1);
    if (entry.offset < 0 || entry.offset + size > all.length) {
      throw fail(`tensor "${entry.name}" lies outside weights.bin`);
    }
    tensors.set(entry.name, all.slice(entry.offset, entry.offset + size));
  }
  return { path, manifest, tensors };
}
