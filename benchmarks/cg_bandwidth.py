"""How fast one stored-kernel CG product runs, against this machine's memory stream and matmul, in one run.

    PYTHONPATH=. python benchmarks/cg_bandwidth.py              # N = 20000 float32 triangle (~0.9 GB), C = 10
    PYTHONPATH=. python benchmarks/cg_bandwidth.py --n 40000
    PYTHONPATH=. python benchmarks/cg_bandwidth.py --quick      # N = 3000 smoke test (the test suite)

A :class:`nwcorrupt.predict.StoredKernel` of random float32 tiles (the default 2048-row blocks; the
values do not matter for the timing) is multiplied by an (N, C) block of vectors with
``StoredKernel.matvec`` -- one CG iteration's product, every stored tile read once and used for its two
mirror products. Timed side by side, interleaved, best of ``--reps``:

* **stream**: a jitted sum of every tile (reads the same bytes, does nothing else): the memory bandwidth
  a pass over the triangle can reach here;
* **matvec**: the product; its GB/s (stored bytes / time), the fraction of the stream, its GFLOP/s
  (4 C flops per stored entry: two products, multiply and add);
* **thin GEMM**: one 2048 x 2048 tile times (2048, C), both orientations (the two products a tile takes
  part in), and **square GEMM**: 2048 x 2048 x 2048, to show whether the product is bound by memory or by
  the throughput of thin matrix products.

The product's result is checked against the float64 host product (``exact=True``).
"""

from __future__ import annotations

import argparse
import os
import time

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt.predict import StoredKernel
from nwcorrupt.predict.memory import block_bounds


def random_stored(n: int, block: int, seed: int = 0) -> StoredKernel:
    """A StoredKernel of random float32 tiles (diagonal tiles symmetric)."""
    b = block_bounds(n, block)
    m = len(b) - 1
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(m):
        row = []
        for j in range(i, m):
            t = rng.standard_normal((b[i + 1] - b[i], b[j + 1] - b[j]), dtype=np.float32)
            if i == j:
                t = (t + t.T) / 2
            row.append(jnp.asarray(t))
        rows.append(tuple(row))
    return StoredKernel(n, b, tuple(rows))


@jax.jit
def _tile_sum(t: jax.Array) -> jax.Array:
    return jnp.sum(t)


def best(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--c", type=int, default=10, help="right-hand sides (classes)")
    ap.add_argument("--block", type=int, default=2048)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--quick", action="store_true", help="N = 3000, blocks of 512, 2 repetitions")
    args = ap.parse_args()
    if args.quick:
        args.n, args.block, args.reps = 3000, 512, 2
    k = random_stored(args.n, args.block)
    v = np.random.default_rng(1).standard_normal((args.n, args.c))
    gb = k.nbytes / 1e9
    entries = k.nbytes // 4

    def stream() -> float:
        return float(sum(_tile_sum(t) for row in k.tiles for t in row))

    t_stream = best(stream, args.reps)
    t_mv = best(lambda: k.matvec(v), args.reps)
    err = float(np.max(np.abs(k.matvec(v) - k.matvec(v, exact=True))) / np.max(np.abs(k.matvec(v, exact=True))))
    b = args.block
    a = jnp.asarray(np.random.default_rng(2).standard_normal((b, b), dtype=np.float32))
    w = jnp.asarray(np.random.default_rng(3).standard_normal((b, args.c), dtype=np.float32))
    right = jax.jit(lambda a, w: a @ w)
    left = jax.jit(lambda a, w: w.T @ a)
    square = jax.jit(lambda a: a @ a)
    t_right = best(lambda: right(a, w).block_until_ready(), 3 * args.reps)
    t_left = best(lambda: left(a, w).block_until_ready(), 3 * args.reps)
    t_square = best(lambda: square(a).block_until_ready(), args.reps)
    thin = 2 * b * b * args.c
    print(f"stored triangle N = {args.n}, blocks of {b}, C = {args.c}: {gb:.3f} GB float32; {os.cpu_count()} cores, "
          f"load {os.getloadavg()[0]:.2f}; jax {jax.__version__}")
    print("| measure | seconds | GB/s | GFLOP/s | note |")
    print("|---|---|---|---|---|")
    print(f"| stream (jitted sum of every tile) | {t_stream:.4f} | {gb / t_stream:.2f} | | memory bandwidth of a pass |")
    print(f"| matvec (one CG product) | {t_mv:.4f} | {gb / t_mv:.2f} | {4 * args.c * entries / t_mv / 1e9:.1f} | "
          f"**{t_stream / t_mv:.0%} of the stream**; rel. error vs float64 {err:.1e} |")
    print(f"| thin GEMM tile @ (b, C) | {t_right:.5f} | {4 * b * b / t_right / 1e9:.2f} | {thin / t_right / 1e9:.1f} | "
          "first product of a tile |")
    print(f"| thin GEMM (b, C)^T @ tile | {t_left:.5f} | {4 * b * b / t_left / 1e9:.2f} | {thin / t_left / 1e9:.1f} | "
          "mirror product |")
    print(f"| square GEMM b x b x b | {t_square:.4f} | | {2 * b**3 / t_square / 1e9:.1f} | matmul throughput |")


if __name__ == "__main__":
    main()
