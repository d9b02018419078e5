/**
 * cogan-deno: Coupled GANs (Liu & Tuzel, NeurIPS 2016) in Deno with tfjs,
 * exported to ONNX and run with ONNX Runtime.
 *
 * Vocabulary, used the same way everywhere in this code:
 *
 * - A *domain* is one image distribution: `mnist`, or `mnist-rot90`
 *   (MNIST rotated 90 degrees counter-clockwise), `mnist-negative`,
 *   `mnist-edge`.
 * - The *latent* `z` is a vector of standard normal numbers; a *pair* is
 *   the images every domain's generator makes from one `z`.
 * - *Shared* layers are one set of variables used by every domain (the
 *   generators' first layers, the discriminators' last); *private* layers
 *   belong to one domain.
 * - A *step* is one discriminator update plus one generator update.
 * - A *checkpoint* is a run's whole state at one step; an *export* is a
 *   folder of ONNX generator graphs made from one checkpoint.
 * - A *run* is a folder with `config.json`, `metrics.jsonl`, `samples/` and
 *   `checkpoints/step-NNNNNN/`.
 *
 * @module
 */

export * from "./lib/arch.ts";
export * from "./lib/errors.ts";
export {
  archOf,
  type BackendName,
  BACKENDS,
  resolveTrainOptions,
  type TrainOptions,
  type TrainOptionsInput,
} from "./lib/options.ts";
export {
  type MetricsRecord,
  train,
  type TrainHooks,
  type TrainProgress,
  type TrainResult,
} from "./lib/train.ts";
export {
  type Checkpoint,
  type CheckpointManifest,
  findCheckpoint,
  listCheckpoints,
  loadCheckpoint,
} from "./lib/checkpoint.ts";
export {
  type CoupledModel,
  createModel,
  discriminate,
  disposeModel,
  generate,
  modelFromCheckpoint,
} from "./lib/model.ts";
export { type DomainInfo, domainInfos, makeDomains } from "./lib/data.ts";
export { loadMnist, type MnistSplit } from "./lib/mnist.ts";
export {
  applyTransform,
  invertTransform,
  type TransformName,
  TRANSFORMS,
} from "./lib/transforms.ts";
export { encodePng, type GrayImage, pairGrid } from "./lib/png.ts";
export { Rng } from "./lib/rng.ts";
export {
  EXECUTION_PROVIDERS,
  type ExecutionProvider,
  type ExecutionProviderChoice,
  type InferOptions,
  type InferProgress,
  type InferResult,
  interpolateLatents,
  LatentStream,
  openPairGenerator,
  OUTPUT_FORMATS,
  type OutputFormat,
  type PairGenerator,
  type PairGeneratorOptions,
  readModel,
  runInference,
  seededLatents,
  slerp,
} from "./lib/infer.ts";
export {
  type NpyArray,
  NpyWriter,
  parseNpy,
  readNpy,
  writeNpy,
} from "./lib/npy.ts";
export {
  domainFile,
  EXPORT_FORMAT,
  EXPORT_MANIFEST_FILE,
  EXPORT_TOLERANCE,
  EXPORT_VERSION,
  type ExportCheck,
  ExportCheckError,
  type ExportFile,
  type ExportManifest,
  type ExportOptions,
  type ExportResult,
  exportRun,
  METADATA_PREFIX,
  PAIR_FILE,
} from "./lib/export.ts";
export {
  BATCH_DIM,
  decodeModel,
  type DenseWeights,
  encodeModel,
  generatorModel,
  type GeneratorModelSpec,
  type GeneratorWeights,
  generatorWeights,
  IMAGE_SHAPE,
  LATENT_INPUT,
  modelMetadata,
  ONNX_IR_VERSION,
  ONNX_OPSET,
} from "./lib/onnx.ts";
export { useBackend } from "./lib/backend.ts";
export {
  blasAvailable,
  MATMUL_KERNELS,
  type MatMulKernel,
  useMatMulKernel,
} from "./lib/kernels.ts";
export { Adam, type AdamConfig } from "./lib/adam.ts";
export {
  CacheProblem,
  type Classification,
  Classifier,
  type ClassifierConfig,
  type ClassifierEvent,
  DEFAULT_CLASSIFIER_CONFIG,
  type LoadedClassifier,
  loadOrTrainClassifier,
  type LoadOrTrainOptions,
  resolveClassifierConfig,
} from "./lib/classifier.ts";
export {
  classesCovered,
  confidentShare,
  type EvalReport,
  evaluatePairs,
  type ImageClassifier,
  labelAgreement,
  pixelAgreement,
} from "./lib/metrics.ts";
export {
  drawLatents,
  evaluateModel,
  type EvaluateOptions,
  generatePairs,
} from "./lib/evaluate.ts";
