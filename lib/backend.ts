/**
 * Choosing the tfjs backend, and checking that the choice took: without
 * `--allow-read`, `tf.setBackend("wasm")` returns false and tfjs would
 * silently carry on with the 20x slower cpu backend.
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import "@tensorflow/tfjs-backend-wasm";
import { blasInfo } from "./kernels.ts";
import type { BackendName } from "./options.ts";

/** Switches tfjs to `name` and throws if it did not take. */
export async function useBackend(name: BackendName): Promise<void> {
  if (tf.getBackend() === name) return;
  let ok = false;
  try {
    ok = await tf.setBackend(name);
    await tf.ready();
  } catch (err) {
    throw new Error(
      `Cannot use tfjs backend "${name}": ${(err as Error).message}`,
    );
  }
  if (!ok || tf.getBackend() !== name) {
    throw new Error(
      `Cannot use tfjs backend "${name}": it failed to initialise (the wasm backend reads its binary from disk, so it needs --allow-read)`,
    );
  }
}

/** Versions recorded with every run and export. */
export function versions(): Record<string, string> {
  const blas = blasInfo();
  return {
    deno: Deno.version.deno,
    tfjs: tf.version_core,
    backend: tf.getBackend(),
    ...(blas ? { blas: `${blas.path} (${blas.config})` } : {}),
  };
}
