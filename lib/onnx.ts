/**
 * The generators as ONNX graphs, built directly as protobuf messages.
 *
 * One graph takes the latent `z` ([batch, latentDim], batch dynamic) and
 * runs the shared layers once; every private head reads their output and
 * ends in a Reshape to [batch, 1, 28, 28], one graph output per domain,
 * named after the domain. A dense layer is `Gemm(x, kernel, bias)` with the
 * checkpoint's [inputs, units] kernel as is (transB = 0), then its
 * activation node, if any.
 *
 * Files are ONNX IR version 8 with opset 17 of the default domain, which
 * ONNX Runtime 1.x and the ONNX checker of Debian's python3-onnx 1.12 both
 * accept. Weights are raw little-endian float32 initializers.
 *
 * @module
 */

import { create, fromBinary, toBinary } from "@bufbuild/protobuf";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  AttributeProto_AttributeType,
  type ModelProto,
  ModelProtoSchema,
  type NodeProtoSchema,
  TensorProto_DataType,
  type TensorProtoSchema,
  type ValueInfoProtoSchema,
} from "onnx-buf";
import {
  type Activation,
  BN_EPSILON,
  IMAGE_SIZE,
  type LayerSpec,
  LEAKY_SLOPE,
} from "./arch.ts";
import type { Checkpoint } from "./checkpoint.ts";
import { InputError } from "./errors.ts";
import { LATENT_INPUT } from "./export_format.ts";

export { LATENT_INPUT };

/** ONNX IR version of the files we write. */
export const ONNX_IR_VERSION = 8;
/** Opset version of the default ONNX domain the graphs use. */
export const ONNX_OPSET = 17;
/** Symbolic name of the batch dimension of inputs and outputs. */
export const BATCH_DIM = "batch";
/** Shape of one generated image: channels, height, width. */
export const IMAGE_SHAPE: readonly number[] = [1, IMAGE_SIZE, IMAGE_SIZE];

/** A dense layer with its trained values. */
export interface DenseWeights {
  /** Tensor name prefix in the checkpoint: `generator/shared/0`. */
  name: string;
  spec: LayerSpec;
  inputs: number;
  /** [inputs, units], row-major. */
  kernel: Float32Array;
  /** [units]. */
  bias: Float32Array;
}

/** Every generator layer of a checkpoint, with its values. */
export interface GeneratorWeights {
  latentDim: number;
  /** Run once on `z`, common to every domain. */
  shared: DenseWeights[];
  /** Each domain's private layers, in the checkpoint's domain order. */
  heads: { domain: string; layers: DenseWeights[] }[];
}

/**
 * Reads the generators' layers out of a checkpoint, checking each tensor's
 * shape against the checkpoint's architecture. Any mismatch throws an
 * {@linkcode InputError} naming the checkpoint and the tensor.
 */
export function generatorWeights(checkpoint: Checkpoint): GeneratorWeights {
  const { arch, domains } = checkpoint.manifest;
  const fail = (problem: string) =>
    new InputError(`Cannot export checkpoint "${checkpoint.path}": ${problem}`);
  const names = domains.map((d) => d.name);
  for (const name of names) {
    if (typeof name !== "string" || !/^[A-Za-z0-9][\w.-]*$/.test(name)) {
      throw fail(
        `domain name "${name}" must be letters, digits, ".", "_" or "-"`,
      );
    }
    if (
      name === LATENT_INPUT || names.indexOf(name) !== names.lastIndexOf(name)
    ) {
      throw fail(`domain name "${name}" is used twice or clashes with "z"`);
    }
  }
  const pixels = IMAGE_SHAPE.reduce((a, b) => a * b, 1);
  const last = arch.generatorPrivate[arch.generatorPrivate.length - 1];
  if (!last || last.units !== pixels) {
    throw fail(`the private generator must end in ${pixels} units`);
  }

  const stack = (prefix: string, inputs: number, specs: LayerSpec[]) =>
    specs.map((spec, i) => {
      const name = `${prefix}/${i}`;
      const kernel = checkpoint.tensors.get(`${name}/kernel`);
      const bias = checkpoint.tensors.get(`${name}/bias`);
      if (kernel?.length !== inputs * spec.units) {
        throw fail(
          `tensor "${name}/kernel" must have ${inputs} x ${spec.units} values: ${
            kernel ? `it has ${kernel.length}` : "it is missing"
          }`,
        );
      }
      if (bias?.length !== spec.units) {
        throw fail(
          `tensor "${name}/bias" must have ${spec.units} values: ${
            bias ? `it has ${bias.length}` : "it is missing"
          }`,
        );
      }
      if (!kernel.every(Number.isFinite) || !bias.every(Number.isFinite)) {
        throw fail(
          `tensor "${name}" holds NaN or infinite values (did training diverge?)`,
        );
      }
      const folded = spec.batchNorm
        ? foldBatchNorm(name, kernel, bias, spec.units)
        : { kernel, bias };
      const layer = { name, spec, inputs, ...folded };
      inputs = spec.units;
      return layer;
    });

  // Batch normalisation at generation time is an affine map per unit with
  // the moving averages, so it folds into the dense layer before it:
  // W' = W s, b' = (b - mean) s + beta, with s = gamma / sqrt(var + eps).
  function foldBatchNorm(
    name: string,
    kernel: Float32Array,
    bias: Float32Array,
    units: number,
  ): { kernel: Float32Array; bias: Float32Array } {
    const get = (part: string) => {
      const values = checkpoint.tensors.get(`${name}/${part}`);
      if (values?.length !== units || !values.every(Number.isFinite)) {
        throw fail(
          `tensor "${name}/${part}" must have ${units} finite values: ${
            values ? `it has ${values.length}` : "it is missing"
          }`,
        );
      }
      return values;
    };
    const [gamma, beta, mean, variance] = [
      "gamma",
      "beta",
      "moving_mean",
      "moving_variance",
    ].map(get);
    const scale = gamma.map((g, j) => g / Math.sqrt(variance[j] + BN_EPSILON));
    const foldedKernel = kernel.map((w, k) => w * scale[k % units]);
    const foldedBias = bias.map((b, j) => (b - mean[j]) * scale[j] + beta[j]);
    return { kernel: foldedKernel, bias: foldedBias };
  }

  const shared = stack(
    "generator/shared",
    arch.latentDim,
    arch.generatorShared,
  );
  const sharedOut = shared.length > 0
    ? shared[shared.length - 1].spec.units
    : arch.latentDim;
  return {
    latentDim: arch.latentDim,
    shared,
    heads: names.map((domain) => ({
      domain,
      layers: stack(`generator/${domain}`, sharedOut, arch.generatorPrivate),
    })),
  };
}

/** What {@linkcode generatorModel} builds. */
export interface GeneratorModelSpec {
  /** Graph name, e.g. `cogan-pair`. */
  graphName: string;
  /** One line stored as the model's doc string. */
  docString: string;
  /** Domains to output, each from its own head; others are left out. */
  domains: string[];
  /** Stored in the model's `metadata_props`. */
  metadata: Record<string, string>;
}

type TensorProto = MessageInitShape<typeof TensorProtoSchema>;
type NodeProto = MessageInitShape<typeof NodeProtoSchema>;
type ValueInfoProto = MessageInitShape<typeof ValueInfoProtoSchema>;
type AttributeProto = NonNullable<NodeProto["attribute"]>[number];

function floatTensor(
  name: string,
  dims: number[],
  values: Float32Array,
): TensorProto {
  const raw = new Uint8Array(values.length * 4);
  const view = new DataView(raw.buffer);
  for (let i = 0; i < values.length; i++) {
    view.setFloat32(4 * i, values[i], true);
  }
  return {
    name,
    dims: dims.map(BigInt),
    dataType: TensorProto_DataType.FLOAT,
    rawData: raw,
  };
}

function int64Tensor(name: string, values: number[]): TensorProto {
  const raw = new Uint8Array(values.length * 8);
  const view = new DataView(raw.buffer);
  values.forEach((v, i) => view.setBigInt64(8 * i, BigInt(v), true));
  return {
    name,
    dims: [BigInt(values.length)],
    dataType: TensorProto_DataType.INT64,
    rawData: raw,
  };
}

function floatValue(name: string, dims: (number | string)[]): ValueInfoProto {
  return {
    name,
    type: {
      value: {
        case: "tensorType",
        value: {
          elemType: TensorProto_DataType.FLOAT,
          shape: {
            dim: dims.map((d) => ({
              value: typeof d === "string"
                ? { case: "dimParam", value: d }
                : { case: "dimValue", value: BigInt(d) },
            })),
          },
        },
      },
    },
  };
}

function node(
  opType: string,
  name: string,
  input: string[],
  output: string[],
  attribute: AttributeProto[] = [],
): NodeProto {
  return { opType, name, input, output, attribute };
}

function activationNode(
  activation: Activation,
  name: string,
  input: string,
  output: string,
): NodeProto {
  switch (activation) {
    case "relu":
      return node("Relu", `${name}/relu`, [input], [output]);
    case "leaky_relu":
      return node("LeakyRelu", `${name}/leaky_relu`, [input], [output], [{
        name: "alpha",
        type: AttributeProto_AttributeType.FLOAT,
        f: LEAKY_SLOPE,
      }]);
    case "tanh":
      return node("Tanh", `${name}/tanh`, [input], [output]);
    case "sigmoid":
      return node("Sigmoid", `${name}/sigmoid`, [input], [output]);
    case "linear":
      break;
  }
  throw new InputError(
    `Cannot export layer "${name}": unsupported activation "${activation}"`,
  );
}

/**
 * Appends the nodes and initializers of dense layers run on `input` and
 * returns the name of their output.
 */
function addDense(
  layers: DenseWeights[],
  input: string,
  nodes: NodeProto[],
  initializers: TensorProto[],
): string {
  let x = input;
  for (const layer of layers) {
    const { name, spec } = layer;
    initializers.push(
      floatTensor(`${name}/kernel`, [layer.inputs, spec.units], layer.kernel),
      floatTensor(`${name}/bias`, [spec.units], layer.bias),
    );
    const out = `${name}/out`;
    const linear = spec.activation === "linear" ? out : `${name}/linear`;
    // [batch, inputs] x [inputs, units] + [units] -> [batch, units]
    nodes.push(node(
      "Gemm",
      `${name}/gemm`,
      [
        x,
        `${name}/kernel`,
        `${name}/bias`,
      ],
      [linear],
      [
        { name: "transB", type: AttributeProto_AttributeType.INT, i: 0n },
      ],
    ));
    if (spec.activation !== "linear") {
      nodes.push(activationNode(spec.activation, name, linear, out));
    }
    x = out;
  }
  return x;
}

/**
 * Builds an ONNX model of the generators: input `z`, the shared layers
 * once, then one head per requested domain, each ending in a Reshape to
 * [batch, 1, 28, 28] named after its domain.
 */
export function generatorModel(
  weights: GeneratorWeights,
  spec: GeneratorModelSpec,
): ModelProto {
  const nodes: NodeProto[] = [];
  const initializers: TensorProto[] = [];
  const shared = addDense(weights.shared, LATENT_INPUT, nodes, initializers);

  const imageShape = "image_shape";
  initializers.push(int64Tensor(imageShape, [-1, ...IMAGE_SHAPE]));
  for (const domain of spec.domains) {
    const head = weights.heads.find((h) => h.domain === domain);
    if (!head) {
      throw new InputError(
        `Cannot export domain "${domain}": the checkpoint has domains ${
          weights.heads.map((h) => h.domain).join(", ")
        }`,
      );
    }
    const flat = addDense(head.layers, shared, nodes, initializers);
    // [batch, 784] -> [batch, 1, 28, 28]
    nodes.push(
      node("Reshape", `${domain}/reshape`, [flat, imageShape], [domain]),
    );
  }

  const graph = {
    name: spec.graphName,
    node: nodes,
    initializer: initializers,
    input: [floatValue(LATENT_INPUT, [BATCH_DIM, weights.latentDim])],
    output: spec.domains.map((d) => floatValue(d, [BATCH_DIM, ...IMAGE_SHAPE])),
  };
  return create(ModelProtoSchema, {
    irVersion: BigInt(ONNX_IR_VERSION),
    opsetImport: [{ domain: "", version: BigInt(ONNX_OPSET) }],
    producerName: "cogan-deno",
    docString: spec.docString,
    graph,
    metadataProps: Object.entries(spec.metadata).map(([key, value]) => ({
      key,
      value,
    })),
  });
}

/** Serialises a model to the bytes of a `.onnx` file. */
export function encodeModel(model: ModelProto): Uint8Array<ArrayBuffer> {
  return toBinary(ModelProtoSchema, model) as Uint8Array<ArrayBuffer>;
}

/**
 * Parses the bytes of a `.onnx` file; throws an {@linkcode InputError}
 * naming `source` when they are not an ONNX model.
 */
export function decodeModel(bytes: Uint8Array, source: string): ModelProto {
  let model: ModelProto;
  try {
    model = fromBinary(ModelProtoSchema, bytes);
  } catch (err) {
    throw new InputError(
      `Cannot read ONNX model "${source}": ${(err as Error).message}`,
    );
  }
  if (!model.graph) {
    throw new InputError(`Cannot read ONNX model "${source}": it has no graph`);
  }
  return model;
}

/** A model's `metadata_props` as an object. */
export function modelMetadata(model: ModelProto): Record<string, string> {
  return Object.fromEntries(model.metadataProps.map((p) => [p.key, p.value]));
}
