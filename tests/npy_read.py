"""Reads .npy files with numpy, independently of our TypeScript reader.

Usage: /usr/bin/python3 tests/npy_read.py FILE.npy [...]

Prints one JSON line per file: shape, dtype, fortran_order, the float64 sum
of the values, their min and max, and the SHA-256 of the array's bytes in
C order. Without numpy it fails (exit 1), so a test relying on it cannot
pass by skipping.
"""

import hashlib
import json
import sys

import numpy as np


def describe(path):
    arr = np.load(path, allow_pickle=False)
    return {
        "path": path,
        "shape": list(arr.shape),
        "dtype": arr.dtype.str,
        "fortran_order": bool(np.isfortran(arr)) and arr.ndim > 1,
        "sum": float(arr.astype(np.float64).sum()),
        "min": float(arr.min()) if arr.size else None,
        "max": float(arr.max()) if arr.size else None,
        "sha256": hashlib.sha256(np.ascontiguousarray(arr).tobytes()).hexdigest(),
    }


def main(paths):
    if not paths:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    for path in paths:
        print(json.dumps(describe(path)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
