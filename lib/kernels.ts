/**
 * Faster matrix products for training on the tfjs wasm backend.
 *
 * Backpropagation through a dense layer multiplies by transposed matrices
 * (`dX = dY W^T`, `dW = X^T dY`). The wasm backend sends those to a slow
 * scalar loop, about 15x slower than its XNNPACK path for plain products
 * (measured by `deno task bench`). Two replacements of its `BatchMatMul`
 * kernel fix that, and results stay equal to the stock kernel within float
 * rounding (tested):
 *
 * - `wasm`: transposes the operand explicitly, then runs the stock kernel
 *   on the plain product. Pure tfjs; the default when no BLAS is found.
 * - `blas`: calls `cblas_sgemm` of a system OpenBLAS through Deno's FFI,
 *   directly on the wasm heap. Needs `--allow-ffi` and OpenBLAS installed
 *   (`apt-get install libopenblas0-pthread`).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { OptionError } from "./errors.ts";

/** Choices for the matrix product kernel. */
export const MATMUL_KERNELS = ["auto", "blas", "wasm", "tfjs"] as const;

/** One of {@linkcode MATMUL_KERNELS}: `tfjs` is the stock kernel. */
export type MatMulKernel = typeof MATMUL_KERNELS[number];

/** Libraries tried, in order, for the `blas` kernel. */
export const BLAS_LIBRARIES = [
  "libopenblas.so.0",
  "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
  "libopenblas.dylib",
];

const BLAS_SYMBOLS = {
  cblas_sgemm: {
    parameters: [
      "i32", // layout
      "i32", // transA
      "i32", // transB
      "i32", // m
      "i32", // n
      "i32", // k
      "f32", // alpha
      "buffer", // a
      "i32", // lda
      "buffer", // b
      "i32", // ldb
      "f32", // beta
      "buffer", // c
      "i32", // ldc
    ],
    result: "void",
  },
  cblas_sgemv: {
    parameters: [
      "i32", // layout
      "i32", // trans
      "i32", // m
      "i32", // n
      "f32", // alpha
      "buffer", // a
      "i32", // lda
      "buffer", // x
      "i32", // incx
      "f32", // beta
      "buffer", // y
      "i32", // incy
    ],
    result: "void",
  },
  openblas_get_config: { parameters: [], result: "pointer" },
  openblas_set_num_threads: { parameters: ["i32"], result: "void" },
  openblas_get_num_threads: { parameters: [], result: "i32" },
} as const;

/** CBLAS's row-major layout. */
export const ROW_MAJOR = 101;
/** CBLAS: use the operand as it is. */
export const NO_TRANS = 111;
/** CBLAS: use the operand transposed. */
export const TRANS = 112;

type Blas = Deno.DynamicLibrary<typeof BLAS_SYMBOLS>;

let blas: { library: Blas; path: string; config: string } | undefined;

/**
 * Opens OpenBLAS through FFI, or explains why it cannot. Returns the
 * library and its build configuration string.
 */
function openBlas(): { library: Blas; path: string; config: string } {
  if (blas) return blas;
  const reasons: string[] = [];
  for (const path of BLAS_LIBRARIES) {
    try {
      const library = Deno.dlopen(path, BLAS_SYMBOLS);
      const pointer = library.symbols.openblas_get_config();
      const config = pointer
        ? new Deno.UnsafePointerView(pointer).getCString()
        : "";
      blas = { library, path, config };
      return blas;
    } catch (err) {
      reasons.push(`${path}: ${(err as Error).message.split("\n")[0]}`);
    }
  }
  throw new Error(
    `Cannot use the blas kernel: OpenBLAS could not be opened (${
      reasons.join("; ")
    }); install it with "apt-get install libopenblas0-pthread" and allow FFI with --allow-ffi`,
  );
}

interface WasmTensorInfo {
  dataId: object;
  shape: number[];
  dtype: string;
}

interface WasmBackendLike {
  makeOutput(shape: number[], dtype: string): WasmTensorInfo;
  typedArrayFromHeap(t: WasmTensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
}

interface MatMulArgs {
  inputs: { a: WasmTensorInfo; b: WasmTensorInfo };
  backend: WasmBackendLike;
  attrs: { transposeA: boolean; transposeB: boolean };
}

type KernelFunc = (args: MatMulArgs) => WasmTensorInfo;

let stock: tf.KernelConfig | undefined;
let installed: Exclude<MatMulKernel, "auto"> = "tfjs";

function transpose2d(
  x: WasmTensorInfo,
  backend: WasmBackendLike,
): WasmTensorInfo {
  const kernel = tf.getKernel("Transpose", "wasm")!;
  return kernel.kernelFunc({
    inputs: { x } as unknown as tf.NamedTensorInfoMap,
    backend: backend as unknown as tf.KernelBackend,
    attrs: { perm: [1, 0] },
  }) as WasmTensorInfo;
}

/** The stock kernel on operands transposed beforehand. */
function explicitTransposeKernel(original: KernelFunc): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs;
    const { transposeA, transposeB } = args.attrs;
    if (a.shape.length !== 2 || b.shape.length !== 2) return original(args);
    if (!transposeA && !transposeB) return original(args);
    const backend = args.backend;
    const at = transposeA ? transpose2d(a, backend) : a;
    const bt = transposeB ? transpose2d(b, backend) : b;
    const out = original({
      inputs: { a: at, b: bt },
      backend,
      attrs: { transposeA: false, transposeB: false },
    });
    if (transposeA) backend.disposeData(at.dataId);
    if (transposeB) backend.disposeData(bt.dataId);
    return out;
  };
}

/** `cblas_sgemm` on the wasm heap; other ranks go to the stock kernel. */
function blasKernel(original: KernelFunc, library: Blas): KernelFunc {
  return (args) => {
    const { a, b } = args.inputs;
    const { transposeA, transposeB } = args.attrs;
    if (
      a.shape.length !== 2 || b.shape.length !== 2 || a.dtype !== "float32" ||
      b.dtype !== "float32"
    ) {
      return original(args);
    }
    const [aRows, aCols] = a.shape;
    const [bRows, bCols] = b.shape;
    const m = transposeA ? aCols : aRows;
    const k = transposeA ? aRows : aCols;
    const n = transposeB ? bRows : bCols;
    if ((transposeB ? bCols : bRows) !== k) {
      throw new Error(
        `Error in matMul: inner shapes (${k}) and (${
          transposeB ? bCols : bRows
        }) of Tensors with shapes ${a.shape} and ${b.shape} and transposeA=${transposeA} and transposeB=${transposeB} must match.`,
      );
    }
    const out = args.backend.makeOutput([m, n], "float32");
    // Views are taken after the allocation, which may grow the heap.
    const aView = args.backend.typedArrayFromHeap(a);
    const bView = args.backend.typedArrayFromHeap(b);
    const outView = args.backend.typedArrayFromHeap(out);
    library.symbols.cblas_sgemm(
      ROW_MAJOR,
      transposeA ? TRANS : NO_TRANS,
      transposeB ? TRANS : NO_TRANS,
      m,
      n,
      k,
      1,
      aView,
      aCols,
      bView,
      bCols,
      0,
      outView,
      n,
    );
    return out;
  };
}

/** The matmul kernel {@linkcode useMatMulKernel} last installed. */
export function installedMatMulKernel(): Exclude<MatMulKernel, "auto"> {
  return installed;
}

/** `cblas_sgemm` of OpenBLAS; throws with the reason when it cannot open. */
export function blasSgemm(): Blas["symbols"]["cblas_sgemm"] {
  return openBlas().library.symbols.cblas_sgemm;
}

/** `cblas_sgemv` of OpenBLAS; throws with the reason when it cannot open. */
export function blasSgemv(): Blas["symbols"]["cblas_sgemv"] {
  return openBlas().library.symbols.cblas_sgemv;
}

/**
 * Threads OpenBLAS uses from now on (its default: `OPENBLAS_NUM_THREADS`,
 * else every core). Returns the number in use before.
 */
export function setBlasThreads(threads: number): number {
  const symbols = openBlas().library.symbols;
  const before = symbols.openblas_get_num_threads();
  symbols.openblas_set_num_threads(threads);
  return before;
}

/** Whether OpenBLAS can be opened here (needs `--allow-ffi`). */
export function blasAvailable(): boolean {
  try {
    openBlas();
    return true;
  } catch {
    return false;
  }
}

/** Path and build string of the OpenBLAS in use, if any. */
export function blasInfo(): { path: string; config: string } | undefined {
  return blas ? { path: blas.path, config: blas.config } : undefined;
}

/**
 * Installs the chosen `BatchMatMul` kernel on the wasm backend (call after
 * `useBackend("wasm")`) and returns the one that runs: `auto` picks `blas`
 * where OpenBLAS opens, else `wasm`. An explicit `blas` that cannot open
 * throws with the reason.
 */
export function useMatMulKernel(
  choice: MatMulKernel,
): Exclude<MatMulKernel, "auto"> {
  if (!(MATMUL_KERNELS as readonly string[]).includes(choice)) {
    throw new OptionError(
      `Unsupported matmul kernel: "${choice}". Should be one of: ${
        MATMUL_KERNELS.join(", ")
      }`,
    );
  }
  const resolved = choice === "auto"
    ? (blasAvailable() ? "blas" : "wasm")
    : choice;
  if (resolved === installed) return installed;
  stock ??= tf.getKernel("BatchMatMul", "wasm");
  if (!stock) {
    throw new Error(
      "Cannot replace the matmul kernel: the wasm backend is not registered",
    );
  }
  const original = stock.kernelFunc as unknown as KernelFunc;
  let kernelFunc: KernelFunc = original;
  if (resolved === "wasm") kernelFunc = explicitTransposeKernel(original);
  if (resolved === "blas") {
    kernelFunc = blasKernel(original, openBlas().library);
  }
  tf.unregisterKernel("BatchMatMul", "wasm");
  tf.registerKernel({
    ...stock,
    kernelFunc: kernelFunc as unknown as tf.KernelFunc,
  });
  installed = resolved;
  return installed;
}
