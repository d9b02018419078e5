/**
 * Adam's element-wise update as a small WebAssembly SIMD function, assembled
 * here byte by byte and run on the wasm backend's own heap (its memory is
 * imported, so tensors are read and written where they lie, no copies).
 *
 * A TypeScript loop over the update costs about 6 ns a parameter, which made
 * Adam a third of a training step of the default network; four float32
 * lanes at a time it costs about a quarter of that (see `deno task bench`).
 * The arithmetic is float32, like the tfjs-op update it is tested against.
 *
 * @module
 */

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

type AdamFn = (
  param: number,
  m: number,
  v: number,
  grad: number,
  out: number,
  bytes: number,
  beta1: number,
  oneMinusBeta1: number,
  beta2: number,
  oneMinusBeta2: number,
  inverseRootCorrection: number,
  epsilon: number,
  stepSize: number,
  vFloor: number,
) => void;

// Opcodes used below (WebAssembly core and SIMD specifications).
const LOCAL_GET = 0x20;
const LOCAL_SET = 0x21;
const I32_ADD = 0x6a;
const I32_GE_U = 0x4f;
const I32_CONST = 0x41;
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
const V128_LOAD = [SIMD, 0x00, 0x00, 0x00]; // align 1, offset 0
const V128_STORE = [SIMD, 0x0b, 0x00, 0x00];
const F32X4_SPLAT = [SIMD, 0x13];
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

/** The module: imports `env.memory`, exports `adam` (see {@linkcode AdamFn}). */
function assemble(): Uint8Array<ArrayBuffer> {
  // Parameters 0-5: offsets and byte count (i32); 6-13: constants (f32).
  const [p, m, v, g, out, bytes] = [0, 1, 2, 3, 4, 5];
  // Locals: 14 the byte index; 15-22 the constants splatted to four lanes;
  // 23-25 this iteration's gradient, first and second moments.
  const i = 14;
  const splat = (param: number) => param + 9;
  const [G, M, V] = [23, 24, 25];
  const get = (x: number) => [LOCAL_GET, x];
  const set = (x: number) => [LOCAL_SET, x];
  const at = (base: number) => [...get(base), ...get(i), I32_ADD];
  const load = (base: number) => [...at(base), ...V128_LOAD];
  const body = [
    ...[6, 7, 8, 9, 10, 11, 12, 13].flatMap((c) => [
      ...get(c),
      ...F32X4_SPLAT,
      ...set(splat(c)),
    ]),
    BLOCK,
    EMPTY,
    LOOP,
    EMPTY,
    ...get(i),
    ...get(bytes),
    I32_GE_U,
    BR_IF,
    1,
    ...load(g),
    ...set(G),
    // m = beta1 m + (1 - beta1) g
    ...load(m),
    ...get(splat(6)),
    ...F32X4_MUL,
    ...get(splat(7)),
    ...get(G),
    ...F32X4_MUL,
    ...F32X4_ADD,
    ...set(M),
    ...at(m),
    ...get(M),
    ...V128_STORE,
    // v = max(beta2 v + (1 - beta2) g g, floor)
    ...load(v),
    ...get(splat(8)),
    ...F32X4_MUL,
    ...get(splat(9)),
    ...get(G),
    ...F32X4_MUL,
    ...get(G),
    ...F32X4_MUL,
    ...F32X4_ADD,
    ...get(splat(13)),
    ...F32X4_MAX,
    ...set(V),
    ...at(v),
    ...get(V),
    ...V128_STORE,
    // out = p - step m / (sqrt(v) / rootCorrection + epsilon)
    ...at(out),
    ...load(p),
    ...get(splat(12)),
    ...get(M),
    ...F32X4_MUL,
    ...get(V),
    ...F32X4_SQRT,
    ...get(splat(10)),
    ...F32X4_MUL,
    ...get(splat(11)),
    ...F32X4_ADD,
    ...F32X4_DIV,
    ...F32X4_SUB,
    ...V128_STORE,
    ...get(i),
    I32_CONST,
    16,
    I32_ADD,
    ...set(i),
    BR,
    0,
    END,
    END,
    END,
  ];
  const locals = [2, 1, I32, 11, V128];
  const code = [...locals, ...body];
  return new Uint8Array([
    ...[0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00],
    ...section(1, [
      1,
      0x60,
      14,
      ...Array(6).fill(I32),
      ...Array(8).fill(F32),
      0,
    ]),
    ...section(2, [1, ...name("env"), ...name("memory"), 0x02, 0x00, 0x01]),
    ...section(3, [1, 0]),
    ...section(7, [1, ...name("adam"), 0x00, 0]),
    ...section(10, [1, ...leb128(code.length), ...code]),
  ]);
}

const instances = new WeakMap<WebAssembly.Memory, AdamFn>();

/**
 * Runs the update on `memory` (the wasm backend's heap): `m`, `v` in
 * place, the new parameter into `out`.
 */
export function adamSimd(memory: WebAssembly.Memory, a: AdamSimdArgs): void {
  let adam = instances.get(memory);
  if (!adam) {
    const module = new WebAssembly.Module(assemble());
    const instance = new WebAssembly.Instance(module, { env: { memory } });
    adam = instance.exports.adam as AdamFn;
    instances.set(memory, adam);
  }
  adam(
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
