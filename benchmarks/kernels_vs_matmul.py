"""nwcorrupt's native NNGP+NTK time over the time of its Gram product, in any environment.

Unlike ``benchmarks/kernels.py`` (which needs neural-tangents and therefore the pinned
reference environment), this runs with whatever jax is installed, e.g. the project's own
``.venv``:

    .venv/bin/python benchmarks/kernels_vs_matmul.py                  # N = 4000, float64 and float32
    .venv/bin/python benchmarks/kernels_vs_matmul.py --sizes 2000 --reps 3

For each dtype, activation and N it times, interleaved round by round after one warm-up
call each: ``x1 @ x2.T`` (precision HIGHEST), ``kernel(MLP(L, act), x1, x2)`` and the
symmetric ``kernel(MLP(L, act), x1)`` (NNGP and NTK; L = 3, d = 784, MNIST-like inputs).
It prints the medians and, for each kernel, the median over rounds of its time divided by
the matmul time of the same round (quartiles in brackets). Then it says where the time
beyond the matmul goes, from parts timed in the same rounds (as fractions of the matmul):

* ``tile Gram products``: the first-layer products x1[tile] (x2/d)ᵀ of the kernel's own tiling
  (``plan_tiles``), without the recursion or any output;
* ``recursion from the Gram``: ``kernel_from_gram`` on a precomputed Gram matrix (the layer
  recursion, the copies of its tiles into the outputs and the outputs' allocation);
* ``first touch of the outputs``: filling fresh N x M NumPy arrays (one per output), the page
  faults every fresh output costs (~4 KiB pages unless huge pages are in use; run with
  ``GLIBC_TUNABLES=glibc.malloc.hugetlb=1`` to see the huge-page numbers).

``--quick`` runs one small size (N = 600) with 2 rounds, as the test suite does.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import describe_environment, interleaved_medians, median, mnist_like  # noqa: E402
from nwcorrupt import kernels as nk  # noqa: E402
from nwcorrupt.precision import MATMUL_PRECISION, x64  # noqa: E402


def run(dtype: str, activation: str, n: int, d: int, depth: int, reps: int, cpu_tiles: bool = False) -> dict:
    """Times (s) per method and per-round ratios kernel / matmul for one configuration.

    ``cpu_tiles``: also time both kernels with the tiles the CPU would use (on an accelerator the
    defaults are larger; see ``nwcorrupt.kernels.tile_defaults``), as "... CPU tiles".
    """
    with x64(dtype == "float64"):
        x1 = mnist_like(n, d, 0, dtype)
        x2 = mnist_like(n, d, 1, dtype)
        arch = nk.MLP(depth=depth, activation=activation)
        gram = jax.jit(lambda a, b: jnp.matmul(a, b.T, precision=MATMUL_PRECISION))
        rt, ct = nk.plan_tiles(arch, n, n, d)
        x2s = x2 / d
        tile_gram = jax.jit(
            lambda a, b, i, j: jnp.matmul(
                jax.lax.dynamic_slice_in_dim(a, i, rt, 0), jax.lax.dynamic_slice_in_dim(b, j, ct, 0).T,
                precision=MATMUL_PRECISION,
            )
        )
        starts = [(min(r, n - rt), min(c, n - ct)) for r in range(0, n, rt) for c in range(0, n, ct)]
        g = gram(x1, x2s)
        q1, q2 = jnp.sum(x1 * x1, 1) / d, jnp.sum(x2 * x2, 1) / d
        fns = {
            "matmul": lambda: gram(x1, x2),
            "kernel(x1, x2)": lambda: nk.kernel(arch, x1, x2),
            "kernel(x1)": lambda: nk.kernel(arch, x1),
            "tile Gram products": lambda: [tile_gram(x1, x2s, np.int32(i), np.int32(j)) for i, j in starts],
            "recursion from the Gram": lambda: nk.kernel_from_gram(arch, g, q1, q2, input_dim=d),
            "first touch of the outputs": lambda: [np.full((n, n), 1.0, dtype) for _ in range(2)],
        }
        if cpu_tiles:
            cpu = jax.devices("cpu")
            rect = nk.plan_tiles(arch, n, n, d, devices=cpu)
            square = nk.plan_tiles(arch, n, n, d, devices=cpu, symmetric=True)
            fns["kernel(x1, x2) CPU tiles"] = lambda: nk.kernel(arch, x1, x2, tile_size=rect)
            fns["kernel(x1) CPU tiles"] = lambda: nk.kernel(arch, x1, tile_size=square)
        for fn in fns.values():
            jax.block_until_ready(fn())
        times = interleaved_medians(fns, reps)
    mm = np.asarray(times["matmul"])
    ratios = {name: np.asarray(t) / mm for name, t in times.items() if name != "matmul"}
    return {"median_s": {k: median(v) for k, v in times.items()}, "ratios": ratios}


PARTS = ("tile Gram products", "recursion from the Gram", "first touch of the outputs")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[4000])
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--activations", nargs="+", default=["relu", "erf"])
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    p.add_argument("--reps", type=int, default=7)
    p.add_argument("--quick", action="store_true", help="N = 600, 2 rounds (the test suite's smoke run)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.reps = [600], 2
    print("kernel / matmul benchmark:", describe_environment())
    for n in args.sizes:
        for dtype in args.dtypes:
            for activation in args.activations:
                r = run(dtype, activation, n, args.d, args.depth, args.reps)
                med = r["median_s"]
                print(f"{activation:>4} {dtype} N=M={n} d={args.d} L={args.depth}: matmul {med['matmul']:.3f} s")
                for name, ratio in r["ratios"].items():
                    if name in PARTS:
                        continue
                    q1, q2, q3 = np.quantile(ratio, [0.25, 0.5, 0.75])
                    print(f"    {name:<15} {med[name]:.3f} s   time / matmul = {q2:.2f} [{q1:.2f}-{q3:.2f}]")
                print("    where kernel(x1, x2) goes, as fractions of the matmul (same rounds):")
                for name in PARTS:
                    print(f"      {name:<27} {med[name]:.3f} s   {np.median(r['ratios'][name]):.2f}")
                sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
