/**
 * `deno run -A bench/infer_bench.ts --model EXPORT [--count N]
 * [--batch-size N] [--threads N] [--repeats N] [--no-torch]`: pairs per
 * second of the ONNX Runtime generators at batch 1, 256 and 4096 on one
 * thread and on every core, then end to end (to `.npy`) against a plain
 * PyTorch forward pass of the same weights, measured in the same run.
 *
 * @module
 */

import { intFlag, parseFlags, runMain } from "../lib/cli.ts";
import { OptionError } from "../lib/errors.ts";
import { benchAgainstTorch, benchInference } from "../lib/infer_bench.ts";

const FLAGS = {
  model: { type: "string" },
  count: { type: "string" },
  "batch-size": { type: "string" },
  threads: { type: "string" },
  repeats: { type: "string" },
  "no-torch": { type: "boolean" },
} as const;

async function main(): Promise<number> {
  const flags = parseFlags(Deno.args, FLAGS);
  if (flags.model === undefined) throw new OptionError("--model is required");
  const threads = intFlag("threads", flags.threads, 1);

  for (const row of await benchInference(flags.model)) {
    console.log(
      `onnxruntime ${row.executionProvider} batch ${row.batchSize} threads ${row.threads}: ${
        Math.round(row.pairsPerSecond)
      } pairs/s (${row.runs} runs in ${row.seconds.toFixed(2)}s)`,
    );
  }
  if (flags["no-torch"]) return 0;

  const r = await benchAgainstTorch(flags.model, {
    count: intFlag("count", flags.count, 1),
    batchSize: intFlag("batch-size", flags["batch-size"], 1),
    threads,
    repeats: intFlag("repeats", flags.repeats, 1),
  });
  console.log(
    `end to end, ${r.count} pairs to .npy, batch ${r.batchSize}, ${r.threads} threads: onnxruntime ${
      Math.round(r.onnxPairsPerSecond)
    } pairs/s, torch ${r.torchVersion} ${
      Math.round(r.torchPairsPerSecond)
    } pairs/s (${
      (r.onnxPairsPerSecond / r.torchPairsPerSecond).toFixed(2)
    }x, best of ${r.onnxRuns.length} each: onnxruntime ${
      r.onnxRuns.map(Math.round).join(", ")
    }, torch ${
      r.torchRuns.map(Math.round).join(", ")
    }); same 64 latents differ by at most ${r.maxAbsDiff.toExponential(2)}`,
  );
  return 0;
}

if (import.meta.main) await runMain("infer_bench", main);
