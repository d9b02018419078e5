"""The training step of cogan-deno in PyTorch, for side-by-side speed runs.

Same algorithm as lib/step.ts: one z batch for both domains; discriminator
loss = sum over domains of BCE on logits for real and (detached) generated
images; then the non-saturating generator loss on the same generated images
(one generator pass serves both, as in lib/fast_step.ts); shared
gradients divided by the number of domains; Adam (PyTorch's). The network
comes from an ArchSpec JSON written by bench/main.ts.

usage: torch_peer.py --arch-json FILE --batch N --seconds S [--threads T]
Prints one JSON line: {"steps_per_s": ..., "steps": ..., "threads": ...}.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


def activation(name):
    return {
        "linear": nn.Identity,
        "relu": nn.ReLU,
        "leaky_relu": lambda: nn.LeakyReLU(0.2),
        "tanh": nn.Tanh,
        "sigmoid": nn.Sigmoid,
    }[name]()


def stack(inputs, layers):
    mods = []
    for layer in layers:
        mods.append(nn.Linear(inputs, layer["units"]))
        if layer.get("batchNorm"):
            mods.append(nn.BatchNorm1d(layer["units"], eps=1e-5, momentum=0.1))
        mods.append(activation(layer["activation"]))
        inputs = layer["units"]
    return nn.Sequential(*mods), inputs


def load_images(path, start, count):
    raw = np.fromfile(path, dtype=np.uint8, offset=16)
    x = raw.reshape(-1, 28, 28)[start:start + count].astype(np.float32) / 255
    return x


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--arch-json", required=True)
    ap.add_argument("--batch", type=int, required=True)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    torch.manual_seed(0)
    arch = json.load(open(args.arch_json))

    images = os.path.join(os.environ["MNIST_DIR"], "train-images-idx3-ubyte")
    xa = torch.from_numpy(load_images(images, 0, 30000).reshape(-1, 784))
    xb = np.rot90(load_images(images, 30000, 30000), 1, axes=(1, 2))
    xb = torch.from_numpy(np.ascontiguousarray(xb).reshape(-1, 784))

    g_shared, width = stack(arch["latentDim"], arch["generatorShared"])
    g_private = [stack(width, arch["generatorPrivate"])[0] for _ in range(2)]
    d_private = []
    for _ in range(2):
        net, d_width = stack(784, arch["discriminatorPrivate"])
        d_private.append(net)
    d_shared, _ = stack(d_width, arch["discriminatorShared"])

    def generate(z):
        h = g_shared(z)
        return [g(h) for g in g_private]

    def discriminate(i, x):
        return d_shared(d_private[i](x))

    d_params = [p for m in d_private + [d_shared] for p in m.parameters()]
    g_params = [p for m in g_private + [g_shared] for p in m.parameters()]
    betas = (arch["beta1"], arch["beta2"])
    d_opt = torch.optim.Adam(d_params, lr=arch["learningRate"], betas=betas)
    g_opt = torch.optim.Adam(g_params, lr=arch["learningRate"], betas=betas)
    reals_all = [xa, xb]
    batch = args.batch

    def step():
        reals = [r[torch.randint(0, len(r), (batch,))] for r in reals_all]
        z = torch.randn(batch, arch["latentDim"])
        # Like lib/fast_step.ts: one training-mode generator pass (it updates
        # the moving averages once) serves both updates; the discriminator
        # sees its images detached.
        images = generate(z)
        d_loss = 0
        for i in range(2):
            real_logits = discriminate(i, reals[i])
            fake_logits = discriminate(i, images[i].detach())
            d_loss = d_loss + F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()
        d_opt.zero_grad(set_to_none=True)
        d_loss.backward()
        for p in d_shared.parameters():
            p.grad /= 2
        d_opt.step()
        # Frozen before the pass, so autograd skips their weight gradients.
        for p in d_params:
            p.requires_grad_(False)
        g_loss = sum(F.softplus(-discriminate(i, images[i])).mean() for i in range(2))
        g_opt.zero_grad(set_to_none=True)
        g_loss.backward()
        for p in d_params:
            p.requires_grad_(True)
        for p in g_shared.parameters():
            p.grad /= 2
        g_opt.step()

    for _ in range(10):
        step()
    steps = 0
    start = time.perf_counter()
    while time.perf_counter() - start < args.seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - start
    print(json.dumps({
        "steps_per_s": steps / elapsed,
        "steps": steps,
        "threads": torch.get_num_threads(),
    }))


if __name__ == "__main__":
    main()
