/**
 * A dense layer's training forward and backward passes as two registered
 * tfjs kernels on the wasm backend, `CoganDense` and `CoganDenseGrad`: the
 * matrix products and column sums go to OpenBLAS (`cblas_sgemm`,
 * `cblas_sgemv`) through Deno's FFI, the activations and their gradients to
 * WebAssembly SIMD loops (`lib/simd.ts`) or the backend's own kernels, batch
 * normalisation to loops over the wasm heap. A layer then costs one kernel
 * call each way instead of six to twenty.
 *
 * Used when the wasm backend runs with the `blas` matmul kernel; elsewhere
 * {@linkcode denseOps} returns the plain-ops passes of `lib/dense_grad.ts`,
 * which these equal within float rounding (tested).
 *
 * @module
 */

import * as tf from "@tensorflow/tfjs";
import { type Activation, BN_EPSILON, LEAKY_SLOPE } from "./arch.ts";
import { type DenseOps, type LayerTrace, OPS_DENSE } from "./dense_grad.ts";
import { activateSimd, activationGradSimd } from "./simd.ts";
import {
  blasSgemm,
  blasSgemv,
  installedMatMulKernel,
  NO_TRANS,
  ROW_MAJOR,
  TRANS,
} from "./kernels.ts";

/** The slice of tfjs's wasm backend these kernels use. */
interface HeapBackend {
  makeOutput(shape: number[], dtype: "float32"): tf.TensorInfo;
  typedArrayFromHeap(t: tf.TensorInfo): Float32Array;
  disposeData(dataId: object): boolean;
  dataIdMap: { get(dataId: object): { memoryOffset: number } };
  wasm: { asm: { memory: WebAssembly.Memory } };
}

function offset(backend: HeapBackend, t: tf.TensorInfo): number {
  return backend.dataIdMap.get(t.dataId).memoryOffset;
}

interface KernelArgs {
  inputs: Record<string, tf.TensorInfo>;
  backend: HeapBackend;
  attrs: Record<string, unknown>;
}

/**
 * Applies `activation` to `y`: in place for the piecewise-linear ones
 * (WebAssembly SIMD, `lib/simd.ts`); sigmoid and tanh go to the backend's
 * own kernels, as a loop over `Math.exp` in TypeScript is ten times slower.
 */
function activate(
  y: tf.TensorInfo,
  activation: Activation,
  backend: HeapBackend,
): tf.TensorInfo {
  if (activation === "linear") return y;
  if (activation === "sigmoid" || activation === "tanh") {
    const out = tf.getKernel(STOCK[activation], "wasm")!.kernelFunc({
      inputs: { x: y },
      backend: backend as unknown as tf.KernelBackend,
      attrs: {},
    }) as tf.TensorInfo;
    backend.disposeData(y.dataId);
    return out;
  }
  const v = backend.typedArrayFromHeap(y);
  const lanes = v.length - v.length % 4;
  activateSimd(backend.wasm.asm.memory, activation, offset(backend, y), lanes);
  for (let i = lanes; i < v.length; i++) {
    if (v[i] < 0) v[i] *= activation === "relu" ? 0 : LEAKY_SLOPE;
  }
  return y;
}

const STOCK = { sigmoid: "Sigmoid", tanh: "Tanh" } as const;

/**
 * Writes `dA * act'` into `out`, from the activation's output `a`; all
 * three are heap tensors of one size.
 */
function activationGrad(
  backend: HeapBackend,
  out: tf.TensorInfo,
  dA: tf.TensorInfo,
  a: tf.TensorInfo,
  activation: Activation,
): void {
  const o = backend.typedArrayFromHeap(out);
  const d = backend.typedArrayFromHeap(dA);
  if (activation === "linear") {
    o.set(d);
    return;
  }
  const lanes = o.length - o.length % 4;
  activationGradSimd(
    backend.wasm.asm.memory,
    activation,
    offset(backend, dA),
    offset(backend, a),
    offset(backend, out),
    lanes,
  );
  const y = backend.typedArrayFromHeap(a);
  for (let i = lanes; i < o.length; i++) {
    switch (activation) {
      case "relu":
        o[i] = y[i] > 0 ? d[i] : 0;
        break;
      case "leaky_relu":
        o[i] = y[i] > 0 ? d[i] : d[i] * LEAKY_SLOPE;
        break;
      case "tanh":
        o[i] = d[i] * (1 - y[i] * y[i]);
        break;
      case "sigmoid":
        o[i] = d[i] * y[i] * (1 - y[i]);
        break;
    }
  }
}

let ones = new Float32Array(0);

/** Column sums of `dZ` ([rows, units]) into `out` ([units]). */
function columnSums(
  dZ: Float32Array,
  rows: number,
  units: number,
  out: Float32Array,
): void {
  if (ones.length < rows) ones = new Float32Array(rows).fill(1);
  blasSgemv()(ROW_MAJOR, TRANS, rows, units, 1, dZ, units, ones, 1, 0, out, 1);
}

/**
 * Inputs `x` [n, inputs], `kernel`, `bias`, and with `batchNorm` `gamma`,
 * `beta`. Outputs `a` [n, units], and with `batchNorm` `xhat` [n, units],
 * `invStd`, batch `mean` and unbiased `variance` ([units] each).
 */
function denseForward({ inputs, backend, attrs }: KernelArgs): tf.TensorInfo[] {
  const { x, kernel, bias, gamma, beta } = inputs;
  const activation = attrs.activation as Activation;
  const norm = attrs.batchNorm as boolean;
  const [n, fanIn] = x.shape;
  const units = kernel.shape[1];
  const outputs = [backend.makeOutput([n, units], "float32")];
  if (norm) {
    outputs.push(
      backend.makeOutput([n, units], "float32"),
      ...[0, 1, 2].map(() => backend.makeOutput([units], "float32")),
    );
  }
  // Views are taken after the allocations, which may grow the heap.
  const [a, xhat, invStd, mean, variance] = outputs.map((t) =>
    backend.typedArrayFromHeap(t)
  );
  const b = backend.typedArrayFromHeap(bias);
  const z = norm ? xhat : a;
  for (let r = 0; r < n; r++) z.set(b, r * units);
  blasSgemm()(
    ROW_MAJOR,
    NO_TRANS,
    NO_TRANS,
    n,
    units,
    fanIn,
    1,
    backend.typedArrayFromHeap(x),
    fanIn,
    backend.typedArrayFromHeap(kernel),
    units,
    1,
    z,
    units,
  );
  if (norm) {
    const g = backend.typedArrayFromHeap(gamma);
    const bt = backend.typedArrayFromHeap(beta);
    const sum = new Float64Array(units);
    const squares = new Float64Array(units);
    for (let r = 0; r < n; r++) {
      for (let c = 0, i = r * units; c < units; c++, i++) sum[c] += z[i];
    }
    for (let c = 0; c < units; c++) mean[c] = sum[c] / n;
    for (let r = 0; r < n; r++) {
      for (let c = 0, i = r * units; c < units; c++, i++) {
        const d = z[i] - mean[c];
        squares[c] += d * d;
      }
    }
    for (let c = 0; c < units; c++) {
      invStd[c] = 1 / Math.sqrt(squares[c] / n + BN_EPSILON);
      variance[c] = squares[c] / Math.max(1, n - 1);
    }
    for (let r = 0; r < n; r++) {
      for (let c = 0, i = r * units; c < units; c++, i++) {
        xhat[i] = (z[i] - mean[c]) * invStd[c];
        a[i] = xhat[i] * g[c] + bt[c];
      }
    }
  }
  outputs[0] = activate(outputs[0], activation, backend);
  return outputs;
}

/**
 * Inputs `dA`, `a` (the layer's output), `x`, `kernel`, and with
 * `batchNorm` `xhat`, `invStd`, `gamma`. Outputs, in order: `dX` when
 * `input`; `dW`, `db` and with `batchNorm` `dGamma`, `dBeta` when `params`.
 */
function denseBackward(
  { inputs, backend, attrs }: KernelArgs,
): tf.TensorInfo[] {
  const { dA, a, x, kernel, xhat, invStd, gamma } = inputs;
  const activation = attrs.activation as Activation;
  const norm = attrs.batchNorm as boolean;
  const [n, fanIn] = x.shape;
  const units = kernel.shape[1];
  const outputs: tf.TensorInfo[] = [];
  if (attrs.input) outputs.push(backend.makeOutput([n, fanIn], "float32"));
  if (attrs.params) {
    outputs.push(
      backend.makeOutput([fanIn, units], "float32"),
      backend.makeOutput([units], "float32"),
    );
    if (norm) {
      outputs.push(
        backend.makeOutput([units], "float32"),
        backend.makeOutput([units], "float32"),
      );
    }
  }
  const dZInfo = backend.makeOutput([n, units], "float32");
  activationGrad(backend, dZInfo, dA, a, activation);
  // Views are taken after the allocations, which may grow the heap.
  const views = outputs.map((t) => backend.typedArrayFromHeap(t));
  const dX = attrs.input ? views.shift() : undefined;
  const [dW, db, dGamma, dBeta] = views;
  const dZ = backend.typedArrayFromHeap(dZInfo);
  if (norm) {
    const xh = backend.typedArrayFromHeap(xhat);
    const inv = backend.typedArrayFromHeap(invStd);
    const g = backend.typedArrayFromHeap(gamma);
    const sumDy = new Float64Array(units);
    const sumDyXhat = new Float64Array(units);
    for (let r = 0; r < n; r++) {
      for (let c = 0, i = r * units; c < units; c++, i++) {
        sumDy[c] += dZ[i];
        sumDyXhat[c] += dZ[i] * xh[i];
      }
    }
    if (dGamma) {
      dGamma.set(sumDyXhat);
      dBeta.set(sumDy);
    }
    for (let r = 0; r < n; r++) {
      for (let c = 0, i = r * units; c < units; c++, i++) {
        dZ[i] = g[c] * inv[c] / n *
          (n * dZ[i] - sumDy[c] - xh[i] * sumDyXhat[c]);
      }
    }
  }
  const sgemm = blasSgemm();
  if (dW) {
    columnSums(dZ, n, units, db);
    sgemm(
      ROW_MAJOR,
      TRANS,
      NO_TRANS,
      fanIn,
      units,
      n,
      1,
      backend.typedArrayFromHeap(x),
      fanIn,
      dZ,
      units,
      0,
      dW,
      units,
    );
  }
  if (dX) {
    sgemm(
      ROW_MAJOR,
      NO_TRANS,
      TRANS,
      n,
      fanIn,
      units,
      1,
      dZ,
      units,
      backend.typedArrayFromHeap(kernel),
      units,
      0,
      dX,
      fanIn,
    );
  }
  backend.disposeData(dZInfo.dataId);
  return outputs;
}

const FORWARD = "CoganDense";
const BACKWARD = "CoganDenseGrad";

function register(): void {
  if (tf.getKernel(FORWARD, "wasm")) return;
  tf.registerKernel({
    kernelName: FORWARD,
    backendName: "wasm",
    kernelFunc: denseForward as unknown as tf.KernelFunc,
  });
  tf.registerKernel({
    kernelName: BACKWARD,
    backendName: "wasm",
    kernelFunc: denseBackward as unknown as tf.KernelFunc,
  });
}

/** The layer passes as the two fused kernels (wasm backend, OpenBLAS). */
export const FUSED_DENSE: DenseOps = {
  forward(layer, x, batchStats) {
    register();
    const norm = layer.norm;
    const inputs: tf.NamedTensorMap = {
      x,
      kernel: layer.kernel,
      bias: layer.bias,
      ...(norm ? { gamma: norm.gamma, beta: norm.beta } : {}),
    };
    const [a, xhat, invStd, mean, variance] = tf.engine().runKernel(
      FORWARD,
      inputs,
      { activation: layer.spec.activation, batchNorm: !!norm } as never,
    ) as tf.Tensor[];
    if (norm) {
      batchStats.push({
        norm,
        mean: tf.keep(mean as tf.Tensor1D),
        variance: tf.keep(variance as tf.Tensor1D),
      });
    }
    return {
      layer,
      x,
      a: a as tf.Tensor2D,
      xhat: xhat as tf.Tensor2D | undefined,
      invStd: invStd as tf.Tensor1D | undefined,
    };
  },

  backward(trace: LayerTrace, dA, want) {
    const { layer, x, a, xhat, invStd } = trace;
    const norm = layer.norm && xhat && invStd ? layer.norm : undefined;
    const inputs: tf.NamedTensorMap = {
      dA,
      a,
      x,
      kernel: layer.kernel,
      ...(norm ? { xhat: xhat!, invStd: invStd!, gamma: norm.gamma } : {}),
    };
    const out = [
      ...tf.engine().runKernel(BACKWARD, inputs, {
        activation: layer.spec.activation,
        batchNorm: !!norm,
        params: want.params,
        input: want.input,
      } as never) as tf.Tensor[],
    ];
    const dX = want.input ? out.shift() as tf.Tensor2D : undefined;
    const names = [layer.kernel.name, layer.bias.name];
    if (norm) names.push(norm.gamma.name, norm.beta.name);
    return {
      params: want.params ? names.map((name, i) => [name, out[i]]) : [],
      dX,
    };
  },
};

/**
 * The fastest layer passes available now: the fused kernels on the wasm
 * backend with the `blas` matmul kernel installed, else plain tfjs ops.
 */
export function denseOps(): DenseOps {
  return tf.getBackend() === "wasm" && installedMatMulKernel() === "blas"
    ? FUSED_DENSE
    : OPS_DENSE;
}
