"""Runs the ONNX checker with full_check (shape inference included) on each
file named on the command line; exits 1 on the first failure.

Used by tests/export_test.ts with /usr/bin/python3 (Debian python3-onnx).
"""

import sys

import onnx


def main(paths):
    if not paths:
        print("usage: onnx_check.py MODEL.onnx...", file=sys.stderr)
        return 2
    for path in paths:
        try:
            onnx.checker.check_model(path, full_check=True)
        except Exception as err:  # the checker raises several classes
            print(f"{path}: {type(err).__name__}: {err}", file=sys.stderr)
            return 1
        print(f"ok {path} (onnx {onnx.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
