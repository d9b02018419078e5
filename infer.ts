/**
 * `deno task infer`: makes pairs with the exported generators in ONNX
 * Runtime and writes them as `.npy` files and a PNG grid.
 *
 * @module
 */

import {
  choiceFlag,
  formatDuration,
  intFlag,
  parseFlags,
  ProgressLine,
  runMain,
} from "./lib/cli.ts";
import { OptionError } from "./lib/errors.ts";
import {
  EXECUTION_PROVIDERS,
  OUTPUT_FORMATS,
  PNG_MAX_PAIRS,
  runInference,
} from "./lib/infer.ts";

const HELP = `Usage: deno task infer --model PATH --out DIR [flags]

Runs the generators of an export (deno task export) in ONNX Runtime and
writes <domain>.npy per domain (float32 [N, 28, 28] in [0, 1]) and
pairs.png, a grid with each pair's images stacked in one column.

Flags:
  --model PATH        export folder, or a .onnx file made by deno task export
  --out DIR           output folder, created if needed (required)
  --count N           pairs to make (default: 64; with --z, all its rows)
  --batch-size N      pairs per ONNX Runtime run (default: 1024)
  --seed N            seed of the standard normal latents (default: 0)
  --z FILE.npy        your own latents, float32 [N, latentDim]
  --domains A,B       only these domains' outputs (default: all)
  --interpolate K     K pairs along a spherical path between two seeded
                      latents (excludes --count and --z)
  --format F          ${
  OUTPUT_FORMATS.join(" | ")
} (default: both up to ${PNG_MAX_PAIRS} pairs, npy above;
                      pairs.png holds at most ${PNG_MAX_PAIRS} pairs)
  --ep NAME           ${
  EXECUTION_PROVIDERS.join(" | ")
} (default: auto, CUDA if it loads, else CPU)
  --threads N         CPU threads (default: all cores)
  -h, --help          show this help
`;

const FLAGS = {
  model: { type: "string" },
  out: { type: "string" },
  count: { type: "string" },
  "batch-size": { type: "string" },
  seed: { type: "string" },
  z: { type: "string" },
  domains: { type: "string" },
  interpolate: { type: "string" },
  format: { type: "string" },
  ep: { type: "string" },
  threads: { type: "string" },
  help: { type: "boolean", short: "h" },
} as const;

async function main(): Promise<number> {
  const flags = parseFlags(Deno.args, FLAGS);
  if (flags.help) {
    console.log(HELP);
    return 0;
  }
  if (flags.model === undefined) throw new OptionError("--model is required");
  if (flags.out === undefined) throw new OptionError("--out is required");
  const options = {
    model: flags.model,
    out: flags.out,
    count: intFlag("count", flags.count, 1),
    batchSize: intFlag("batch-size", flags["batch-size"], 1),
    seed: intFlag("seed", flags.seed, 0),
    z: flags.z,
    domains: flags.domains?.split(",").map((d) => d.trim()),
    interpolate: intFlag("interpolate", flags.interpolate, 2),
    format: choiceFlag("format", flags.format, OUTPUT_FORMATS),
    ep: choiceFlag("ep", flags.ep, EXECUTION_PROVIDERS),
    threads: intFlag("threads", flags.threads, 1),
  };

  const progress = new ProgressLine();
  const result = await runInference(options, (p) => {
    const eta = (p.total - p.done) / p.pairsPerSecond;
    progress.update(
      `pairs ${p.done}/${p.total}  ${
        Math.round(p.pairsPerSecond)
      } pairs/s  ETA ${formatDuration(eta)}`,
    );
  });
  progress.done();
  if (result.fallbackReason !== undefined) {
    console.error(
      `infer: --ep auto uses cpu, as CUDA cannot be used: ${result.fallbackReason}`,
    );
  }
  console.log(
    `generated ${result.count} pairs (${
      result.domains.join(", ")
    }) on ${result.executionProvider} in ${result.seconds.toFixed(2)}s: ${
      Math.round(result.pairsPerSecond)
    } pairs/s; wrote ${result.files.join(", ")}`,
  );
  return 0;
}

if (import.meta.main) await runMain("infer", main);
