/**
 * Element-wise loops of the training step as small WebAssembly SIMD
 * functions, assembled here byte by byte and run on the wasm backend's own
 * heap: its memory is imported, so tensors are read and written where they
 * lie, with no copies.
 *
 * A TypeScript loop over a heap view costs 2 to 6 ns an element (Adam's
 * update, a ReLU's branch on the sign); four float32 lanes at a time
 * without branches cost a fraction of that. Each function handles a
 * multiple of four elements; callers finish the last one to three in
 * TypeScript. The arithmetic is float32, as in the tfjs kernels these
 * replace (tested against them).
 *
 * @module
 */

import { LEAKY_SLOPE } from "./arch.ts";

// Opcodes (WebAssembly core and SIMD specifications).
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const I32_ADD = 0x6a;
const I32_GE_U = 0x4f;
const I32_CONST = 0x41;
const F32_CONST = 0x43;
const BLOCK = 0x02;
const LOOP = 0x03;
const BR = 0x0c;
const BR_IF = 0x0d;
const END = 0x0b;
const EMPTY = 0x40;
const I32 = 0x7f;
const F32 = 0x7d;
const V128 = 0x7b;
const SIMD = 0xfd;
const V128_LOAD = [SIMD, 0x00, 0x00, 0x00]; // alignment 1, offset 0
const V128_STORE = [SIMD, 0x0b, 0x00, 0x00];
const V128_AND = [SIMD, 0x4e];
const V128_BITSELECT = [SIMD, 0x52];
const F32X4_SPLAT = [SIMD, 0x13];
const F32X4_GT = [SIMD, 0x44];
const F32X4_SQRT = [SIMD, 0xe3, 0x01];
const F32X4_ADD = [SIMD, 0xe4, 0x01];
const F32X4_SUB = [SIMD, 0xe5, 0x01];
const F32X4_MUL = [SIMD, 0xe6, 0x01];
const F32X4_DIV = [SIMD, 0xe7, 0x01];
const F32X4_MAX = [SIMD, 0xe9, 0x01];

function leb128(n: number): number[] {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n >>>= 7;
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
  return out;
}

function section(id: number, bytes: number[]): number[] {
  return [id, ...leb128(bytes.length), ...bytes];
}

function name(s: string): number[] {
  return [...leb128(s.length), ...new TextEncoder().encode(s)];
}

/** What a loop body may use; each helper returns code. */
interface Asm {
  /** Pushes four lanes of array `j` at the loop index. */
  load(j: number): number[];
  /** Stores the four lanes `value` leaves on the stack into array `j`. */
  store(j: number, value: number[]): number[];
  /** Pushes constant `k`, splatted to four lanes. */
  constant(k: number): number[];
  /** Pushes the float `x`, splatted to four lanes. */
  literal(x: number): number[];
  /** Pops four lanes into temporary `t`. */
  set(t: number): number[];
  /** Pushes temporary `t`. */
  get(t: number): number[];
}

/**
 * A function `(array offsets..., bytes, constants...)` that runs `body` for
 * each 16-byte step `i` below `bytes`.
 */
interface LoopSpec {
  name: string;
  arrays: number;
  constants: number;
  temps: number;
  body: (asm: Asm) => number[];
}

function assembleLoop(spec: LoopSpec): { type: number[]; code: number[] } {
  const bytes = spec.arrays;
  const i = spec.arrays + 1 + spec.constants;
  const splat = (k: number) => i + 1 + k;
  const temp = (t: number) => i + 1 + spec.constants + t;
  const at = (j: number) => [LOCAL_GET, j, LOCAL_GET, i, I32_ADD];
  const f32 = new Uint8Array(new Float32Array(1).buffer);
  const asm: Asm = {
    load: (j) => [...at(j), ...V128_LOAD],
    store: (j, value) => [...at(j), ...value, ...V128_STORE],
    constant: (k) => [LOCAL_GET, splat(k)],
    literal: (x) => {
      new Float32Array(f32.buffer)[0] = x;
      return [F32_CONST, ...f32, ...F32X4_SPLAT];
    },
    set: (t) => [LOCAL_SET, temp(t)],
    get: (t) => [LOCAL_GET, temp(t)],
  };
  const splats = Array.from({ length: spec.constants }, (_, k) => [
    LOCAL_GET,
    bytes + 1 + k,
    ...F32X4_SPLAT,
    LOCAL_SET,
    splat(k),
  ]).flat();
  const body = [
    ...splats,
    ...[BLOCK, EMPTY, LOOP, EMPTY],
    ...[LOCAL_GET, i, LOCAL_GET, bytes, I32_GE_U, BR_IF, 1],
    ...spec.body(asm),
    ...[LOCAL_GET, i, I32_CONST, 16, I32_ADD, LOCAL_SET, i],
    ...[BR, 0, END, END, END],
  ];
  const locals = [2, 1, I32, spec.constants + spec.temps, V128];
  const code = [...locals, ...body];
  const params = [
    ...Array(spec.arrays + 1).fill(I32),
    ...Array(spec.constants).fill(F32),
  ];
  return {
    type: [0x60, ...leb128(params.length), ...params, 0],
    code: [...leb128(code.length), ...code],
  };
}

/** Adam: arrays p, m, v, g, out; constants in {@linkcode adamSimd}'s order. */
const ADAM: LoopSpec = {
  name: "adam",
  arrays: 5,
  constants: 8,
  temps: 3,
  body: ({ load, store, constant, set, get }) => {
    const [p, m, v, g, out] = [0, 1, 2, 3, 4];
    const [b1, c1, b2, c2, inverseRoot, epsilon, step, floor] = [
      0,
      1,
      2,
      3,
      4,
      5,
      6,
      7,
    ];
    const [G, M, V] = [0, 1, 2];
    return [
      ...load(g),
      ...set(G),
      // m = beta1 m + (1 - beta1) g
      ...load(m),
      ...constant(b1),
      ...F32X4_MUL,
      ...constant(c1),
      ...get(G),
      ...F32X4_MUL,
      ...F32X4_ADD,
      ...set(M),
      ...store(m, get(M)),
      // v = max(beta2 v + (1 - beta2) g g, floor)
      ...load(v),
      ...constant(b2),
      ...F32X4_MUL,
      ...constant(c2),
      ...get(G),
      ...F32X4_MUL,
      ...get(G),
      ...F32X4_MUL,
      ...F32X4_ADD,
      ...constant(floor),
      ...F32X4_MAX,
      ...set(V),
      ...store(v, get(V)),
      // out = p - step m / (sqrt(v) / rootCorrection + epsilon)
      ...store(out, [
        ...load(p),
        ...constant(step),
        ...get(M),
        ...F32X4_MUL,
        ...get(V),
        ...F32X4_SQRT,
        ...constant(inverseRoot),
        ...F32X4_MUL,
        ...constant(epsilon),
        ...F32X4_ADD,
        ...F32X4_DIV,
        ...F32X4_SUB,
      ]),
    ];
  },
};

/** Activations in place: array x. */
const RELU: LoopSpec = {
  name: "relu",
  arrays: 1,
  constants: 0,
  temps: 0,
  body: ({ load, store, literal }) =>
    store(0, [...load(0), ...literal(0), ...F32X4_MAX]),
};

/** max(x, slope x) is the leaky ReLU for a slope below 1. */
const LEAKY_RELU: LoopSpec = {
  name: "leaky_relu",
  arrays: 1,
  constants: 0,
  temps: 0,
  body: ({ load, store, literal }) =>
    store(0, [
      ...load(0),
      ...load(0),
      ...literal(LEAKY_SLOPE),
      ...F32X4_MUL,
      ...F32X4_MAX,
    ]),
};

/** Activation gradients: arrays dA, a (the activation's output), out. */
const RELU_GRAD: LoopSpec = {
  name: "relu_grad",
  arrays: 3,
  constants: 0,
  temps: 0,
  body: ({ load, store, literal }) =>
    store(2, [
      ...load(0),
      ...load(1),
      ...literal(0),
      ...F32X4_GT,
      ...V128_AND,
    ]),
};

const LEAKY_RELU_GRAD: LoopSpec = {
  name: "leaky_relu_grad",
  arrays: 3,
  constants: 0,
  temps: 0,
  body: ({ load, store, literal }) =>
    store(2, [
      ...load(0),
      ...load(0),
      ...literal(LEAKY_SLOPE),
      ...F32X4_MUL,
      ...load(1),
      ...literal(0),
      ...F32X4_GT,
      ...V128_BITSELECT,
    ]),
};

/** dA a (1 - a). */
const SIGMOID_GRAD: LoopSpec = {
  name: "sigmoid_grad",
  arrays: 3,
  constants: 0,
  temps: 0,
  body: ({ load, store, literal }) =>
    store(2, [
      ...load(0),
      ...load(1),
      ...F32X4_MUL,
      ...literal(1),
      ...load(1),
      ...F32X4_SUB,
      ...F32X4_MUL,
    ]),
};

/** dA (1 - a a). */
const TANH_GRAD: LoopSpec = {
  name: "tanh_grad",
  arrays: 3,
  constants: 0,
  temps: 0,
  body: ({ load, store, literal }) =>
    store(2, [
      ...load(0),
      ...literal(1),
      ...load(1),
      ...load(1),
      ...F32X4_MUL,
      ...F32X4_SUB,
      ...F32X4_MUL,
    ]),
};

const LOOPS = [
  ADAM,
  RELU,
  LEAKY_RELU,
  RELU_GRAD,
  LEAKY_RELU_GRAD,
  SIGMOID_GRAD,
  TANH_GRAD,
];

/** The module: imports `env.memory`, exports each loop by name. */
function assemble(): Uint8Array<ArrayBuffer> {
  const functions = LOOPS.map(assembleLoop);
  const vec = (items: number[][]) => [...leb128(items.length), ...items.flat()];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, vec(functions.map((f) => f.type))),
    ...section(2, [1, ...name("env"), ...name("memory"), 0x02, 0x00, 0x01]),
    ...section(3, vec(functions.map((_, k) => leb128(k)))),
    ...section(
      7,
      vec(LOOPS.map((l, k) => [...name(l.name), 0x00, ...leb128(k)])),
    ),
    ...section(10, vec(functions.map((f) => f.code))),
  ]);
}

type Loop = (...args: number[]) => void;

const instances = new WeakMap<WebAssembly.Memory, Record<string, Loop>>();

function loops(memory: WebAssembly.Memory): Record<string, Loop> {
  let exports = instances.get(memory);
  if (!exports) {
    const module = new WebAssembly.Module(assemble());
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    exports = instance.exports as Record<string, Loop>;
    instances.set(memory, exports);
  }
  return exports;
}

/** Offsets (bytes) into the wasm heap and the update's constants. */
export interface AdamSimdArgs {
  param: number;
  m: number;
  v: number;
  grad: number;
  out: number;
  /** Elements to update: a multiple of 4. */
  count: number;
  beta1: number;
  beta2: number;
  /** `1 / sqrt(1 - beta2^t)`. */
  inverseRootCorrection: number;
  epsilon: number;
  /** `learningRate / (1 - beta1^t)`. */
  stepSize: number;
  /** Floor of the second moment. */
  vFloor: number;
}

/**
 * Adam's update on `memory` (the wasm backend's heap): `m`, `v` in place,
 * the new parameter into `out`.
 */
export function adamSimd(memory: WebAssembly.Memory, a: AdamSimdArgs): void {
  loops(memory).adam(
    a.param,
    a.m,
    a.v,
    a.grad,
    a.out,
    a.count * 4,
    a.beta1,
    1 - a.beta1,
    a.beta2,
    1 - a.beta2,
    a.inverseRootCorrection,
    a.epsilon,
    a.stepSize,
    a.vFloor,
  );
}

/**
 * Applies `relu` or `leaky_relu` in place to `count` (a multiple of 4)
 * floats at byte offset `x`.
 */
export function activateSimd(
  memory: WebAssembly.Memory,
  activation: "relu" | "leaky_relu",
  x: number,
  count: number,
): void {
  loops(memory)[activation](x, count * 4);
}

/**
 * Writes `dA * act'` (from the activation's output `a`) to `out`, for
 * `count` (a multiple of 4) floats at byte offsets `dA`, `a`, `out`.
 */
export function activationGradSimd(
  memory: WebAssembly.Memory,
  activation: "relu" | "leaky_relu" | "sigmoid" | "tanh",
  dA: number,
  a: number,
  out: number,
  count: number,
): void {
  loops(memory)[`${activation}_grad`](dA, a, out, count * 4);
}
