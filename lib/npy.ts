/**
 * NumPy `.npy` files (format version 1.0) of little-endian float32, the
 * only kind this toolkit writes or reads.
 *
 * {@linkcode NpyWriter} streams: the header, with the final shape, goes
 * first, then rows are appended as they are made, so a file of any size is
 * written in constant memory. {@linkcode readNpy} reads a whole file and
 * checks its header.
 *
 * @module
 */

import { InputError } from "./errors.ts";

/** The magic string every `.npy` file starts with. */
const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"

/** numpy pads headers so the data starts on a multiple of this. */
const ALIGN = 64;

const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Elements in an array of `shape`. */
function sizeOf(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checkShape(shape: readonly number[]): void {
  if (!shape.every((n) => Number.isSafeInteger(n) && n >= 0)) {
    throw new RangeError(
      `Cannot write .npy as the shape must hold non-negative integers: current value is ${
        JSON.stringify(shape)
      }`,
    );
  }
}

/**
 * The header of a version 1.0 `.npy` file of float32 in C order: magic,
 * version, header length, then the header dict padded with spaces and a
 * newline to a multiple of 64 bytes.
 */
export function npyHeader(shape: readonly number[]): Uint8Array {
  checkShape(shape);
  // A one-element tuple needs its trailing comma: (5,).
  const tuple = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': ${tuple}, }`;
  const unpadded = MAGIC.length + 4 + dict.length + 1;
  const total = Math.ceil(unpadded / ALIGN) * ALIGN;
  const text = dict + " ".repeat(total - unpadded) + "\n";
  if (text.length > 0xffff) {
    throw new RangeError(
      `Cannot write .npy as its header must fit in 65535 bytes: shape ${
        JSON.stringify(shape)
      } needs ${text.length}`,
    );
  }
  const out = new Uint8Array(total);
  out.set(MAGIC, 0);
  out[6] = 1; // major version
  out[7] = 0; // minor version
  new DataView(out.buffer).setUint16(8, text.length, true);
  out.set(new TextEncoder().encode(text), 10);
  return out;
}

/** `values` as little-endian bytes, without a copy on little-endian hosts. */
function littleEndianBytes(values: Float32Array): Uint8Array {
  if (LITTLE_ENDIAN) {
    return new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  }
  const out = new Uint8Array(values.length * 4);
  const view = new DataView(out.buffer);
  for (let i = 0; i < values.length; i++) {
    view.setFloat32(4 * i, values[i], true);
  }
  return out;
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let written = 0;
  while (written < bytes.length) {
    written += await file.write(bytes.subarray(written));
  }
}

/**
 * Writes a float32 `.npy` file of a shape known up front, in pieces.
 *
 * ```ts
 * const npy = await NpyWriter.create("a.npy", [n, 28, 28]);
 * for (const batch of batches) await npy.append(batch);
 * await npy.close(); // throws unless exactly n * 784 values came
 * ```
 */
export class NpyWriter {
  readonly path: string;
  readonly shape: readonly number[];
  #file: Deno.FsFile | undefined;
  #written = 0;
  readonly #expected: number;

  private constructor(path: string, shape: number[], file: Deno.FsFile) {
    this.path = path;
    this.shape = shape;
    this.#file = file;
    this.#expected = sizeOf(shape);
  }

  /** Creates (or truncates) `path` and writes the header for `shape`. */
  static async create(path: string, shape: number[]): Promise<NpyWriter> {
    const header = npyHeader(shape);
    const file = await Deno.open(path, {
      write: true,
      create: true,
      truncate: true,
    });
    try {
      await writeAll(file, header);
    } catch (err) {
      file.close();
      throw err;
    }
    return new NpyWriter(path, [...shape], file);
  }

  /** Values written so far. */
  get written(): number {
    return this.#written;
  }

  /** Appends values in C order; throws past the size the shape allows. */
  async append(values: Float32Array): Promise<void> {
    if (!this.#file) {
      throw new Error(`Cannot append to "${this.path}": it is closed`);
    }
    if (this.#written + values.length > this.#expected) {
      throw new RangeError(
        `Cannot append ${values.length} values to "${this.path}": shape ${
          JSON.stringify(this.shape)
        } holds ${this.#expected}, ${this.#written} are written`,
      );
    }
    await writeAll(this.#file, littleEndianBytes(values));
    this.#written += values.length;
  }

  /**
   * Flushes to disk and closes. Throws when fewer values were appended than
   * the header's shape promises (the file would not load).
   */
  async close(): Promise<void> {
    const file = this.#file;
    if (!file) return;
    this.#file = undefined;
    try {
      if (this.#written !== this.#expected) {
        throw new RangeError(
          `Cannot close "${this.path}": shape ${
            JSON.stringify(this.shape)
          } needs ${this.#expected} values, ${this.#written} were written`,
        );
      }
      await file.sync();
    } finally {
      file.close();
    }
  }

  /** Closes without checking, for clean-up after an error. */
  abort(): void {
    this.#file?.close();
    this.#file = undefined;
  }
}

/** Writes a whole float32 array as `.npy` in one go. */
export async function writeNpy(
  path: string,
  shape: number[],
  values: Float32Array,
): Promise<void> {
  const npy = await NpyWriter.create(path, shape);
  try {
    await npy.append(values);
    await npy.close();
  } catch (err) {
    npy.abort();
    throw err;
  }
}

/** A float32 array read from a `.npy` file. */
export interface NpyArray {
  shape: number[];
  data: Float32Array;
}

/**
 * Parses the bytes of a `.npy` file (format 1.0, 2.0 or 3.0) holding
 * little-endian float32 in C order. Anything else throws an
 * {@linkcode InputError} that names `source` and what is wrong.
 */
export function parseNpy(bytes: Uint8Array, source: string): NpyArray {
  const fail = (problem: string) =>
    new InputError(`Cannot read "${source}" as .npy: ${problem}`);
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) {
    throw fail("it does not start with the .npy magic string");
  }
  const major = bytes[6];
  if (major < 1 || major > 3) {
    throw fail(`format version must be 1, 2 or 3: current value is ${major}`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const lengthBytes = major === 1 ? 2 : 4;
  if (bytes.length < 8 + lengthBytes) throw fail("the header is truncated");
  const headerLength = major === 1
    ? view.getUint16(8, true)
    : view.getUint32(8, true);
  const dataStart = 8 + lengthBytes + headerLength;
  if (dataStart > bytes.length) throw fail("the header is truncated");
  const header = new TextDecoder(major === 3 ? "utf-8" : "latin1").decode(
    bytes.subarray(8 + lengthBytes, dataStart),
  );

  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) {
    throw fail(`its header is not a .npy header dict: ${header.trim()}`);
  }
  if (descr !== "<f4") {
    throw fail(
      `dtype must be '<f4' (little-endian float32): current value is '${descr}'; convert with arr.astype('<f4')`,
    );
  }
  if (fortran !== "False") {
    throw fail(
      "fortran_order must be False (C order); save np.ascontiguousarray(arr)",
    );
  }
  const dims = shapeText.split(",").map((s) => s.trim()).filter((s) =>
    s !== ""
  );
  if (!dims.every((d) => /^\d+$/.test(d))) {
    throw fail(
      `shape must be a tuple of integers: current value is (${shapeText})`,
    );
  }
  const shape = dims.map(Number);

  const expected = sizeOf(shape) * 4;
  const available = bytes.length - dataStart;
  if (available !== expected) {
    throw fail(
      `shape ${
        JSON.stringify(shape)
      } needs ${expected} bytes of data: the file has ${available}${
        available < expected ? " (truncated?)" : ""
      }`,
    );
  }
  const body = bytes.subarray(dataStart);
  const data = new Float32Array(sizeOf(shape));
  if (LITTLE_ENDIAN) {
    new Uint8Array(data.buffer).set(body);
  } else {
    const bodyView = new DataView(body.buffer, body.byteOffset, body.length);
    for (let i = 0; i < data.length; i++) {
      data[i] = bodyView.getFloat32(4 * i, true);
    }
  }
  return { shape, data };
}

/** Reads a float32 `.npy` file; see {@linkcode parseNpy}. */
export async function readNpy(path: string): Promise<NpyArray> {
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) {
      throw new InputError(
        `Cannot read "${path}" as .npy: the file is missing`,
      );
    }
    throw err;
  }
  return parseNpy(bytes, path);
}
