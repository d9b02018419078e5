/**
 * File helpers shared by checkpoints, exports and the classifier cache:
 * durable writes, folder replacement by rename, float32 weights as
 * little-endian bytes with a SHA-256.
 *
 * @module
 */

import { basename, dirname, join } from "node:path";

/** Hex SHA-256 of some bytes. */
export async function sha256Hex(
  bytes: Uint8Array<ArrayBuffer>,
): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(
    new Uint8Array(digest),
    (b) => b.toString(16).padStart(2, "0"),
  ).join("");
}

/** Creates `path` (it must not exist) with `bytes`, flushed to disk. */
export async function writeSynced(
  path: string,
  bytes: Uint8Array,
): Promise<void> {
  using file = await Deno.open(path, { write: true, createNew: true });
  let written = 0;
  while (written < bytes.length) {
    written += await file.write(bytes.subarray(written));
  }
  await file.sync();
}

/** Writes `path` under a temporary name, then renames it into place. */
export async function writeFileAtomic(
  path: string,
  bytes: Uint8Array,
): Promise<void> {
  const tmp = `${path}.tmp-${crypto.randomUUID()}`;
  await Deno.writeFile(tmp, bytes);
  await Deno.rename(tmp, path);
}

/**
 * Renames folder `from` to `to`, replacing a folder already at `to`; if the
 * rename fails, the old folder is put back.
 */
export async function replaceDir(from: string, to: string): Promise<void> {
  const old = join(dirname(to), `.${basename(to)}.old-${crypto.randomUUID()}`);
  let hadOld = false;
  try {
    await Deno.rename(to, old);
    hadOld = true;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  try {
    await Deno.rename(from, to);
  } catch (err) {
    if (hadOld) await Deno.rename(old, to);
    throw err;
  }
  if (hadOld) await Deno.remove(old, { recursive: true });
}

/** float32 values as little-endian bytes. */
export function float32ToBytes(values: Float32Array): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(values.length * 4);
  const view = new DataView(bytes.buffer);
  for (let i = 0; i < values.length; i++) {
    view.setFloat32(4 * i, values[i], true);
  }
  return bytes;
}

/** Little-endian bytes as float32 values. */
export function float32FromBytes(bytes: Uint8Array): Float32Array {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const out = new Float32Array(bytes.length / 4);
  for (let i = 0; i < out.length; i++) out[i] = view.getFloat32(4 * i, true);
  return out;
}

/**
 * Checks weights against the size and SHA-256 their manifest recorded;
 * `fail` turns a problem into the caller's error.
 */
export async function verifyWeights(
  bytes: Uint8Array<ArrayBuffer>,
  expected: { weightsBytes: number; weightsSha256: string },
  fail: (problem: string) => Error,
): Promise<void> {
  if (bytes.length !== expected.weightsBytes) {
    throw fail(
      `weights.bin must have ${expected.weightsBytes} bytes: current size is ${bytes.length} (truncated?)`,
    );
  }
  if ((await sha256Hex(bytes)) !== expected.weightsSha256) {
    throw fail(
      "weights.bin does not match the SHA-256 in manifest.json (corrupt?)",
    );
  }
}
