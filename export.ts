/**
 * `deno task export`: writes a run's generators as ONNX models, checked
 * against tfjs with ONNX Runtime.
 *
 * @module
 */

import { intFlag, parseFlags, runMain } from "./lib/cli.ts";
import { OptionError } from "./lib/errors.ts";
import {
  EXPORT_MANIFEST_FILE,
  EXPORT_TOLERANCE,
  ExportCheckError,
  exportRun,
  PAIR_FILE,
} from "./lib/export.ts";

const HELP = `Usage: deno task export --run DIR --out DIR [flags]

Writes the generators of one checkpoint of a training run as ONNX models
(IR 8, opset 17), loads them back with ONNX Runtime and checks them against
the tfjs generators on 64 fixed latents (max abs diff <= ${EXPORT_TOLERANCE}).
Files are built in a temporary folder beside --out and moved there only
when the check passes.

Flags:
  --run DIR     run folder written by deno task train (required)
  --step N      step of the checkpoint to export (default: the newest)
  --out DIR     destination folder (required); must be missing or empty
  --force       replace --out even if it is not empty
  -h, --help    show this help

Writes into --out:
  ${PAIR_FILE}          input z [batch, latentDim]; one output per domain,
                     named after it (mnist, mnist-rot90, ...), each
                     [batch, 1, 28, 28] in [0, 1]; shared layers run once
  <domain>.onnx      one domain's generator: same input, one output
  ${EXPORT_MANIFEST_FILE}      domains, latentDim, step, training options,
                     architecture, source checkpoint, SHA-256 of each file
Each .onnx file also carries these facts in its metadata_props (cogan.*).
`;

const FLAGS = {
  run: { type: "string" },
  step: { type: "string" },
  out: { type: "string" },
  force: { type: "boolean" },
  help: { type: "boolean", short: "h" },
} as const;

async function main(): Promise<number> {
  const flags = parseFlags(Deno.args, FLAGS);
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  if (flags.run === undefined) throw new OptionError("--run DIR is required");
  if (flags.out === undefined) throw new OptionError("--out DIR is required");

  try {
    const result = await exportRun({
      run: flags.run,
      step: intFlag("step", flags.step, 0),
      out: flags.out,
      force: flags.force,
    });
    const { check } = result.manifest;
    console.log(
      `exported step ${result.step} from ${result.checkpoint} to ${result.out}: ${
        Object.keys(result.manifest.files).join(", ")
      }, ${EXPORT_MANIFEST_FILE}; ONNX Runtime vs tfjs max abs diff ${
        result.maxAbsDiff.toExponential(2)
      } on ${check.batch} latents`,
    );
    return 0;
  } catch (err) {
    if (!(err instanceof ExportCheckError)) throw err;
    console.error(`export: ${err.message}`);
    return 1;
  }
}

if (import.meta.main) await runMain("export", main);
