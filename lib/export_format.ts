/**
 * Names of the export format, shared by the exporter and the readers. This
 * module imports nothing, so inference can read exports without loading
 * tfjs.
 *
 * @module
 */

/** Format tag of an export's `manifest.json`. */
export const EXPORT_FORMAT = "cogan-export";
/** Version of the export format written and read. */
export const EXPORT_VERSION = 1;
/** File name of the all-domains graph in an export folder. */
export const PAIR_FILE = "pair.onnx";
/** File name of an export's manifest. */
export const EXPORT_MANIFEST_FILE = "manifest.json";
/** Name of the latent input of every exported graph. */
export const LATENT_INPUT = "z";
/** Prefix of the keys an export writes into `metadata_props`. */
export const METADATA_PREFIX = "cogan.";
