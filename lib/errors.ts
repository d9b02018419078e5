/**
 * Error classes shared by the library and the scripts.
 *
 * @module
 */

/**
 * A user-supplied option or flag is invalid. Scripts report it as a usage
 * error (exit code 2) without a stack trace.
 */
export class OptionError extends Error {
  override name = "OptionError";
}

/**
 * A file the user pointed at (data, checkpoint, model) is missing, corrupt or
 * of the wrong kind. Scripts report it in one line (exit code 1).
 */
export class InputError extends Error {
  override name = "InputError";
}
