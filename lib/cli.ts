/**
 * Helpers shared by the entry scripts: flag parsing with `node:util`
 * `parseArgs` (JSR's `@std/cli` is unreachable from our machines), number
 * checks, the progress line, and turning errors into one line and an exit
 * code.
 *
 * @module
 */

import { parseArgs, type ParseArgsConfig } from "node:util";
import { InputError, OptionError } from "./errors.ts";

/** Exit code of a usage error: unknown flag or bad value. */
export const EXIT_USAGE = 2;
/** Exit code of a failure on the user's files or the work itself. */
export const EXIT_FAILURE = 1;

/** Flags of one script, as `parseArgs` options. */
export type FlagSpec = NonNullable<ParseArgsConfig["options"]>;

/**
 * Parses `args` strictly; an unknown flag or a missing value throws an
 * {@linkcode OptionError}.
 */
export function parseFlags<T extends FlagSpec>(
  args: string[],
  options: T,
): ReturnType<
  typeof parseArgs<{ args: string[]; options: T; strict: true }>
>["values"] {
  // `--steps -5` would read as two flags; joining a negative number to its
  // flag lets the value checks name the real problem.
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const name = args[i].startsWith("--") ? args[i].slice(2) : undefined;
    const spec = name === undefined ? undefined : options[name];
    if (spec?.type === "string" && /^-\d/.test(args[i + 1] ?? "")) {
      joined.push(`${args[i]}=${args[++i]}`);
    } else {
      joined.push(args[i]);
    }
  }
  try {
    return parseArgs({
      args: joined,
      options,
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (err) {
    throw new OptionError((err as Error).message.split("\n")[0]);
  }
}

/** Parses an integer flag value, or `undefined` when it was not given. */
export function intFlag(
  flag: string,
  value: string | undefined,
  min: number,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^[+-]?\d+$/.test(value.trim()) || !Number.isSafeInteger(n) || n < min) {
    throw new OptionError(
      `Invalid value for --${flag}: "${value}". Should be an integer >= ${min}`,
    );
  }
  return n;
}

/** Parses a positive number flag value, or `undefined` when not given. */
export function numberFlag(
  flag: string,
  value: string | undefined,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (value.trim() === "" || !Number.isFinite(n) || n <= 0) {
    throw new OptionError(
      `Invalid value for --${flag}: "${value}". Should be a positive number`,
    );
  }
  return n;
}

/** Checks a flag's value against a list of choices. */
export function choiceFlag<T extends string>(
  flag: string,
  value: string | undefined,
  choices: readonly T[],
): T | undefined {
  if (value === undefined) return undefined;
  if (!(choices as readonly string[]).includes(value)) {
    throw new OptionError(
      `Invalid value for --${flag}: "${value}". Should be one of: ${
        choices.join(", ")
      }`,
    );
  }
  return value as T;
}

/**
 * Runs a script's main function: a usage error prints one line and exits
 * 2; a problem with the user's files prints one line and exits 1; anything
 * else is a bug and keeps its stack trace.
 */
export async function runMain(
  name: string,
  main: () => Promise<number | void>,
): Promise<void> {
  try {
    Deno.exitCode = (await main()) ?? 0;
  } catch (err) {
    if (err instanceof OptionError) {
      console.error(`${name}: ${err.message} (see --help)`);
      Deno.exitCode = EXIT_USAGE;
    } else if (err instanceof InputError) {
      console.error(`${name}: ${err.message}`);
      Deno.exitCode = EXIT_FAILURE;
    } else {
      throw err;
    }
  }
}

/** Formats seconds as `1h02m`, `3m05s` or `12s`. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  if (s >= 3600) {
    return `${Math.floor(s / 3600)}h${
      String(Math.floor((s % 3600) / 60)).padStart(2, "0")
    }m`;
  }
  if (s >= 60) {
    return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  }
  return `${s}s`;
}

/**
 * A one-line progress display on stderr, redrawn in place on a terminal
 * and at most every few seconds elsewhere (logs stay readable).
 */
export class ProgressLine {
  #lastDraw = 0;
  readonly #tty = Deno.stderr.isTerminal();
  readonly #encoder = new TextEncoder();

  /** Redraws the line, rate-limited unless `force`. */
  update(text: string, force = false): void {
    const now = performance.now();
    const interval = this.#tty ? 100 : 5000;
    if (!force && now - this.#lastDraw < interval) return;
    this.#lastDraw = now;
    const line = this.#tty ? `\r\x1b[2K${text}` : `${text}\n`;
    Deno.stderr.writeSync(this.#encoder.encode(line));
  }

  /** Ends the line so later output starts on a fresh one. */
  done(): void {
    if (this.#tty) Deno.stderr.writeSync(this.#encoder.encode("\n"));
  }
}
