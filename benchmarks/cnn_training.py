"""Benchmark: training a convolutional network with scan-driven vs host-driven epochs.

The pooled CNN of the alignment study's quick scale: 22 × 22 single-channel images, Conv 3 × 3 (16) –
ReLU – Conv 3 × 3 (32) – ReLU with circular padding, global average pooling, Dense 512 – ReLU –
Dense 10, standard parameterisation with PyTorch's default initialisation, cross-entropy, Adam 1e-3,
batch 128, float32, random inputs (the time does not depend on the values).

Measured side by side in one run: :func:`nwcorrupt.train.train_member` with ``stepping="scan"``
(each epoch one compiled ``jax.lax.scan`` over its steps) and ``stepping="host"`` (the host calls
compiled pieces of ``HOST_STEPS`` unrolled steps: what ``"auto"`` picks for convolutions on a CPU),
and a plain jitted optax step in a Python loop as the reference. Times are per optimisation step,
steady state (a warm-up call compiles first), minimum over ``--repeats`` interleaved runs; the last
line prints the ratio scan / host.

Run: ``python benchmarks/cnn_training.py [--n 1024] [--epochs 2] [--repeats 2]``
"""

from __future__ import annotations

import argparse
import math

import jax
import numpy as np
import optax

from _common import block, describe_environment, interleaved_medians
from nwcorrupt import stax, train


def network(side: int, channels: tuple[int, int], width: int) -> stax.Network:
    w = 1 / math.sqrt(3)  # PyTorch's default fan-in std, as the alignment study

    def conv(c: int) -> stax.Layer:
        return stax.Conv(c, (3, 3), padding="CIRCULAR", W_std=w, b_std=0.0, parameterization="standard")

    def dense(n: int) -> stax.Layer:
        return stax.Dense(n, W_std=w, b_std=0.0, parameterization="standard")

    layers = [conv(channels[0]), stax.Relu(), conv(channels[1]), stax.Relu(), stax.GlobalAvgPool(),
              dense(width), stax.Relu(), dense(10)]  # fmt: skip
    return stax.Network(stax.serial(*layers), (side, side, 1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1024, help="training images")
    ap.add_argument("--side", type=int, default=22)
    ap.add_argument("--channels", type=int, nargs=2, default=(16, 32))
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    print(describe_environment())
    net = network(args.side, tuple(args.channels), args.width)
    rng = np.random.default_rng(0)
    x = rng.random((args.n, args.side**2), dtype=np.float32)
    y = rng.integers(0, 10, args.n)
    cfg = train.TrainConfig(arch=net, width=None, num_classes=10, optimizer=train.Optimizer("adam", 1e-3),
                            loss="cross_entropy", batch_size=args.batch, epochs=args.epochs, init="torch_default",
                            drop_last=False)  # fmt: skip
    steps = args.epochs * math.ceil(args.n / args.batch)

    params = net.init(jax.random.PRNGKey(0), law="torch_default")
    opt = optax.adam(1e-3)

    @jax.jit
    def step(p, s, xb, yb):
        grads = jax.grad(lambda q: optax.softmax_cross_entropy_with_integer_labels(net.apply(q, xb), yb).mean())(p)
        updates, s = opt.update(grads, s, p)
        return optax.apply_updates(p, updates), s

    def loop():
        p, s = params, opt.init(params)
        for _ in range(args.epochs):
            for i in range(0, args.n, args.batch):
                p, s = step(p, s, x[i : i + args.batch], y[i : i + args.batch])
        return p

    fns = {
        "train_member scan": lambda: train.train_member(cfg, x, y, x[:100], stepping="scan").test_logits,
        "train_member host": lambda: train.train_member(cfg, x, y, x[:100], stepping="host").test_logits,
        "jitted step loop": loop,
    }
    for fn in fns.values():
        block(fn())  # compile
    times = {name: min(v) / steps for name, v in interleaved_medians(fns, args.repeats).items()}
    print(f"pooled CNN, {args.side}x{args.side}x1, channels {tuple(args.channels)}, width {args.width}, "
          f"N={args.n}, batch {args.batch}, {steps} steps, float32; seconds per step (min of {args.repeats}):")
    for name, t in times.items():
        print(f"  {name:<20s} {t:.4f}")
    print(f"ratio scan / host: {times['train_member scan'] / times['train_member host']:.1f}")


if __name__ == "__main__":
    main()
