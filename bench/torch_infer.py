"""The PyTorch baseline of `deno task infer`: the same weights, a plain
torch forward pass, and np.save of each domain's images.

Usage:
  /usr/bin/python3 bench/torch_infer.py --model EXPORT_DIR|FILE.onnx \
      --count N --batch-size B --threads T --out DIR [--z FILE.npy]

The weights are read from the export's ONNX initializers (python3-onnx's
numpy_helper) and the graph's few node types (Gemm, MatMul, Add, the
activations, Reshape) are run as the matching torch functions, in the
graph's order, under torch.inference_mode(). Latents come from torch.randn,
or from --z (float32 [N, latentDim]) to compare outputs with ONNX Runtime.

Timed, like `deno task infer`'s figure: from the first latent drawn to the
last file written and fsynced; loading the model is not. Prints one JSON
line: count, batchSize, threads, seconds, pairsPerSecond, torch version,
files.
"""

import argparse
import json
import os
import sys
import time

import numpy as np
import onnx
import torch
from onnx import numpy_helper


def load_graph(path):
    """The graph of pair.onnx (or a lone .onnx file) with its weights."""
    if os.path.isdir(path):
        path = os.path.join(path, "pair.onnx")
    model = onnx.load(path)
    weights = {
        t.name: torch.from_numpy(numpy_helper.to_array(t).copy())
        for t in model.graph.initializer
    }
    inputs = [i.name for i in model.graph.input if i.name not in weights]
    if inputs != ["z"]:
        raise SystemExit(f"{path}: expected one input z, found {inputs}")
    outputs = [o.name for o in model.graph.output]
    latent_dim = (
        model.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    )
    return list(model.graph.node), weights, outputs, latent_dim


def attribute(node, name, default):
    for a in node.attribute:
        if a.name == name:
            return onnx.helper.get_attribute_value(a)
    return default


def forward(nodes, weights, outputs, z):
    """Runs the graph's nodes as torch ops; returns the named outputs."""
    values = dict(weights)
    values["z"] = z
    for node in nodes:
        x = [values[name] for name in node.input]
        op = node.op_type
        if op == "Gemm":
            a, b = x[0], x[1]
            if attribute(node, "transA", 0):
                a = a.t()
            if attribute(node, "transB", 0):
                b = b.t()
            y = torch.addmm(x[2], a, b) if len(x) > 2 else a @ b
        elif op == "MatMul":
            y = x[0] @ x[1]
        elif op == "Add":
            y = x[0] + x[1]
        elif op == "Relu":
            y = torch.relu(x[0])
        elif op == "LeakyRelu":
            y = torch.nn.functional.leaky_relu(x[0], attribute(node, "alpha", 0.01))
        elif op == "Sigmoid":
            y = torch.sigmoid(x[0])
        elif op == "Tanh":
            y = torch.tanh(x[0])
        elif op == "Identity":
            y = x[0]
        elif op == "Reshape":
            y = x[0].reshape([int(d) for d in x[1].tolist()])
        else:
            raise SystemExit(f"unsupported ONNX node {op}")
        values[node.output[0]] = y
    return {name: values[name] for name in outputs}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--count", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--threads", type=int, default=os.cpu_count())
    parser.add_argument("--out", required=True)
    parser.add_argument("--z")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    nodes, weights, outputs, latent_dim = load_graph(args.model)
    given = None
    if args.z:
        given = torch.from_numpy(np.load(args.z).astype(np.float32))
        args.count = given.shape[0]
    os.makedirs(args.out, exist_ok=True)

    started = time.perf_counter()
    images = {d: np.empty((args.count, 28, 28), np.float32) for d in outputs}
    with torch.inference_mode():
        for start in range(0, args.count, args.batch_size):
            n = min(args.batch_size, args.count - start)
            z = (
                given[start : start + n]
                if given is not None
                else torch.randn(n, latent_dim)
            )
            for d, y in forward(nodes, weights, outputs, z).items():
                images[d][start : start + n] = y.reshape(n, 28, 28).numpy()
    files = []
    for d in outputs:
        path = os.path.join(args.out, f"{d}.npy")
        with open(path, "wb") as f:
            np.save(f, images[d])
            f.flush()
            os.fsync(f.fileno())
        files.append(path)
    seconds = time.perf_counter() - started

    print(
        json.dumps(
            {
                "count": args.count,
                "batchSize": args.batch_size,
                "threads": torch.get_num_threads(),
                "seconds": seconds,
                "pairsPerSecond": args.count / seconds,
                "torch": torch.__version__,
                "files": files,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
