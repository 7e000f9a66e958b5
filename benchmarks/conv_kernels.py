"""Convolutional kernel benchmark: nwcorrupt.stax against neural-tangents' stax, side by side in ONE process.

Run it in the reference environment (both libraries import there), from the repository root:

    PYTHONPATH=. .venv-ref/bin/python benchmarks/conv_kernels.py          # default sizes (minutes)
    PYTHONPATH=. .venv-ref/bin/python benchmarks/conv_kernels.py --x64    # float64
    .venv/bin/python benchmarks/conv_kernels.py --n 4 --channels 2 --image 8 --repeats 1   # smoke run

Without neural-tangents (the main environment) it prints nwcorrupt's own numbers only.

Inputs: N MNIST-sized images (N, image, image, 1) of standard normal data (float32,
or float64 with ``--x64``). Two architectures, the same in both libraries:

* ``pooled``:  Conv(C, (3, 3), SAME), Relu, Conv(C, (3, 3), SAME), Relu, GlobalAvgPool, Dense(1)
  (the kernel needs the covariance of every pair of positions: N²·(HW)² entries);
* ``flatten``: the same convolutions, then Flatten, Dense(1) (N²·HW entries).

For ``get=("nngp", "ntk")`` and the symmetric call kernel_fn(x, None) it measures

1. wall time (after one warm-up call each, repetitions interleaved, min and median) of
   nwcorrupt's eager kernel_fn (blocks under ``--budget-mib``), neural-tangents' kernel_fn
   under ``jax.jit(..., static_argnames="get")`` on the whole batch and ``nt.batch`` of it
   (batch size ``--batch-size``, by default the largest divisor of N not above nwcorrupt's
   block); the time ratio neural-tangents / nwcorrupt and the largest relative difference
   max|K_nt - K_nw| / max|K_nt| over NNGP and NTK;
2. compiled working memory, XLA's ``memory_analysis()`` (temp + argument + output bytes):
   of nwcorrupt's block program (``tiling._group`` with the group of block pairs it runs per
   call), of neural-tangents' jitted kernel_fn on the whole N and on one nt.batch block, and,
   as a reference, of nwcorrupt's kernel_fn traced under ``jax.jit`` on the whole N;
3. the largest N that fits in ``--limit-gib`` (24 GiB): for the whole-batch jitted kernels by
   fitting a·N² + b·N + c to the compiled memory at three N (N/4, N/2, N) and solving; for the
   blocked paths (nwcorrupt, nt.batch), whose working memory is one block's, the output bound
   block + k·2·N²·itemsize, with k = 2 (as implemented: nwcorrupt keeps its host arrays and
   returns a jax copy, nt.batch concatenates its blocks into a new array) and k = 1 (outputs
   held once).
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import block, describe_environment, interleaved_medians, median  # noqa: E402
from nwcorrupt import stax as nw_stax  # noqa: E402
from nwcorrupt.precision import x64  # noqa: E402
from nwcorrupt.stax import tiling  # noqa: E402

warnings.filterwarnings("ignore", message="Some donated buffers were not usable", category=UserWarning)

GET = ("nngp", "ntk")
ARCHS = ("pooled", "flatten")
DEFAULT_N = {"pooled": 8, "flatten": 64}

try:
    import neural_tangents as nt
    from neural_tangents import stax as nt_stax
except ImportError:  # the main environment
    nt = nt_stax = None


def network(lib, arch: str, channels: int):
    """(init_fn, apply_fn, kernel_fn) of one architecture built from ``lib`` (either library's stax)."""
    convs = [
        lib.Conv(channels, (3, 3), padding="SAME"),
        lib.Relu(),
        lib.Conv(channels, (3, 3), padding="SAME"),
        lib.Relu(),
    ]
    readout = lib.GlobalAvgPool() if arch == "pooled" else lib.Flatten()
    return lib.serial(*convs, readout, lib.Dense(1))


def images(n: int, side: int, seed: int, dtype) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, side, side, 1)).astype(dtype)


def compiled_bytes(lowered) -> int:
    """temp + argument + output bytes of a lowered program, from XLA's compiled memory statistics."""
    stats = lowered.compile().memory_analysis()
    return int(stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes)


def largest_n_quadratic(ns: list[int], used: list[int], limit: float) -> tuple[float, tuple[float, ...]]:
    """Largest N with a·N² + b·N + c <= limit, the quadratic fitted (least squares) to (ns, used)."""
    ns_a = np.asarray(ns, float)
    deg = min(2, len(set(ns)) - 1)
    if deg < 1:
        return float("nan"), ()
    coef = np.polyfit(ns_a, np.asarray(used, float), deg)
    if deg == 1 or coef[0] <= 0:
        lin = np.polyfit(ns_a, np.asarray(used, float), 1)
        return ((limit - lin[1]) / lin[0] if lin[0] > 0 else float("inf")), tuple(lin)
    a, b, c = coef
    return (-b + math.sqrt(b * b - 4 * a * (c - limit))) / (2 * a), tuple(coef)


def largest_n_output_bound(block_bytes: int, itemsize: int, copies: int, limit: float) -> float:
    """Largest N with block_bytes + copies · 2 kernels · N² · itemsize <= limit."""
    room = limit - block_bytes
    return math.sqrt(room / (copies * 2 * itemsize)) if room > 0 else 0.0


def nw_block_plan(kernel_fn, x: np.ndarray, budget: int, block_size: int | None) -> dict:
    """The block size and group nwcorrupt's eager kernel_fn(x, None, GET) uses, and that program's compiled memory."""
    spec = kernel_fn.spec
    n = x.shape[0]
    out_full = len(spec.output_shape(tuple(x.shape[1:]))) > 1
    in_full = bool(spec.input_full(out_full)) and x.ndim > 2
    sizes = tiling.pair_sizes(spec, jnp.asarray(x[:1]), in_full, True)
    itemsize = x.dtype.itemsize
    b = min(block_size or tiling.choose_block(n, n, sizes, itemsize, budget), n)
    nb = -(-n // b)
    pairs = nb * (nb + 1) // 2  # symmetric: upper triangle of block pairs
    group = min(pairs, tiling.MAX_GROUP)
    xa = jnp.zeros((group, b) + x.shape[1:], x.dtype)
    idx = jnp.zeros((group,), jnp.int32)
    lowered = tiling._group.lower(xa, xa, idx, idx, spec=spec, in_full=in_full, want_ntk=True, symmetric=True)
    return {
        "block": b,
        "pairs": pairs,
        "group": group,
        "calls": -(-pairs // group),
        "estimate": tiling.block_bytes(b, b, sizes, itemsize),
        "compiled": compiled_bytes(lowered),
        "pair_entries": sizes,
    }


def largest_divisor_at_most(n: int, cap: int) -> int:
    return max(d for d in range(1, max(1, min(n, cap)) + 1) if n % d == 0)


def rel_diff(got, ref) -> tuple[float, float]:
    """(off-diagonal, diagonal) max over NNGP and NTK of |got - ref| / max|ref| (symmetric N x N kernels)."""
    off = diag = 0.0
    for name in GET:
        a, r = np.asarray(getattr(got, name), np.float64), np.asarray(getattr(ref, name), np.float64)
        d = np.abs(a - r) / np.max(np.abs(r))
        on = np.eye(d.shape[0], dtype=bool)
        diag = max(diag, float(d[on].max()))
        off = max(off, float(d[~on].max())) if d.shape[0] > 1 else off
    return off, diag


def fit_ns(n: int) -> list[int]:
    return sorted({max(1, n // 4), max(1, n // 2), n})


def run_arch(arch: str, n: int, args: argparse.Namespace, dtype) -> dict:
    x = images(n, args.image, 0, dtype)
    xj = jnp.asarray(x)
    itemsize = x.dtype.itemsize
    limit = args.limit_gib * 2**30
    budget = int(args.budget_mib * 2**20)
    nw_kernel = network(nw_stax, arch, args.channels)[2]
    plan = nw_block_plan(nw_kernel, x, budget, args.block_size)

    fns = {"nwcorrupt": lambda: nw_kernel(x, None, GET, memory_budget=budget, block_size=args.block_size)}
    rows: dict[str, dict] = {"nwcorrupt": {"mem": plan["compiled"]}}
    rows["nwcorrupt"]["n_max"] = largest_n_output_bound(plan["compiled"], itemsize, 2, limit)
    rows["nwcorrupt"]["n_max_once"] = largest_n_output_bound(plan["compiled"], itemsize, 1, limit)
    bs = None
    if nt is not None:
        nt_kernel = network(nt_stax, arch, args.channels)[2]
        nt_jit = jax.jit(nt_kernel, static_argnames="get")
        bs = args.batch_size or largest_divisor_at_most(n, plan["block"])
        if n % bs:
            raise SystemExit(f"--batch-size {bs} must divide N = {n} (nt.batch needs it)")
        nt_batched = nt.batch(nt_kernel, batch_size=bs)
        fns["nt_jit"] = lambda: nt_jit(xj, None, get=GET)
        fns["nt_batch"] = lambda: nt_batched(xj, None, get=GET)
        ns = fit_ns(n)
        used = [compiled_bytes(nt_jit.lower(jnp.asarray(x[:m]), None, get=GET)) for m in ns]
        n_max, coef = largest_n_quadratic(ns, used, limit)
        rows["nt_jit"] = {"mem": used[-1], "n_max": n_max, "fit": (ns, used, coef)}
        xb = jnp.asarray(x[:bs])
        bmem = compiled_bytes(nt_jit.lower(xb, xb, get=GET))  # nt.batch calls the kernel on (x1 block, x2 block)
        rows["nt_batch"] = {
            "mem": bmem,
            "n_max": largest_n_output_bound(bmem, itemsize, 2, limit),
            "n_max_once": largest_n_output_bound(bmem, itemsize, 1, limit),
        }
    if not args.no_nw_jit:
        # Reference: nwcorrupt's kernel traced under jit is one expression on the whole N (no blocks).
        nw_jit = jax.jit(lambda a: nw_kernel(a, None, GET))
        ns = fit_ns(n)
        used = [compiled_bytes(nw_jit.lower(jnp.asarray(x[:m]))) for m in ns]
        n_max, coef = largest_n_quadratic(ns, used, limit)
        rows["nw_jit"] = {"mem": used[-1], "n_max": n_max, "fit": (ns, used, coef)}

    first, results = {}, {}
    for name, fn in fns.items():  # warm-up: compilation and first-call costs
        start = time.perf_counter()
        results[name] = block(fn())
        first[name] = time.perf_counter() - start
    times = interleaved_medians(fns, args.repeats)
    for name, t in times.items():
        rows[name].update(min=min(t), med=median(t), first=first[name])
    out_dtype = str(np.asarray(results["nwcorrupt"].ntk).dtype)
    for name in ("nt_jit", "nt_batch"):
        if name in results:
            rows[name]["diff_off"], rows[name]["diff_diag"] = rel_diff(results["nwcorrupt"], results[name])
            rows[name]["ratio_med"] = rows[name]["med"] / rows["nwcorrupt"]["med"]
            rows[name]["ratio_min"] = rows[name]["min"] / rows["nwcorrupt"]["min"]
    if "nt_batch" in results:
        rows["nt_batch"]["nt_off"], rows["nt_batch"]["nt_diag"] = rel_diff(results["nt_batch"], results["nt_jit"])
    return {"arch": arch, "n": n, "plan": plan, "bs": bs, "rows": rows, "out_dtype": out_dtype, "x_dtype": str(x.dtype)}


def size(nbytes: float) -> str:
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= scale:
            return f"{nbytes / scale:.{1 if nbytes < 10 * scale else 0}f} {unit}"
    return f"{nbytes:.0f} B"


def _fmt_n(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return "inf" if math.isinf(v) else f"{int(v):,}"


def print_result(r: dict, args: argparse.Namespace) -> None:
    plan, rows = r["plan"], r["rows"]
    print(
        f"\n{r['arch']}: N={r['n']} images {args.image}x{args.image}x1 {r['x_dtype']} (nwcorrupt returned "
        f"{r['out_dtype']}), C={args.channels}, get=(nngp, ntk), {args.repeats} repeats"
    )
    print(
        f"  nwcorrupt blocks: b={plan['block']} (budget {size(args.budget_mib * 2**20)}; its estimate "
        f"{size(plan['estimate'])}), {plan['pairs']} block pairs in {plan['calls']} call(s) of {plan['group']}; "
        f"covariance entries per pair: peak {plan['pair_entries'][0]}, all layers {plan['pair_entries'][1]}"
    )
    print(
        f"  {'method':<24}{'min s':>9}{'median s':>10}{'1st s':>8}{'nt/nw med':>10}{'nt/nw min':>10}"
        f"{'diff off':>10}{'diff diag':>10}{'compiled':>11}{'N max ' + format(args.limit_gib, 'g') + ' GiB':>14}"
    )
    labels = {
        "nwcorrupt": "nwcorrupt (blocked)",
        "nt_jit": "nt jit (whole N)",
        "nt_batch": f"nt.batch (bs={r['bs']})",
        "nw_jit": "nwcorrupt jit (whole N)",
    }
    for name in ("nwcorrupt", "nt_jit", "nt_batch", "nw_jit"):
        if name not in rows:
            continue
        row = rows[name]

        def num(key: str, width: int, fmt: str) -> str:
            return format(format(row[key], fmt) if key in row else "-", f">{width}")

        print(
            f"  {labels[name]:<24}{num('min', 9, '.3f')}{num('med', 10, '.3f')}{num('first', 8, '.1f')}"
            f"{num('ratio_med', 10, '.2f')}{num('ratio_min', 10, '.2f')}{num('diff_off', 10, '.1e')}"
            f"{num('diff_diag', 10, '.1e')}{size(row['mem']):>11}{_fmt_n(row['n_max']):>14}"
        )
    notes = [
        "diff: max |K_nt - K_nw| / max |K_nt| over NNGP and NTK, off the diagonal and on it (x_i with itself)",
        "N max of the blocked rows: one block + 2 copies of the two N x N outputs (outputs held once: nwcorrupt "
        + _fmt_n(rows["nwcorrupt"]["n_max_once"])
        + (f", nt.batch {_fmt_n(rows['nt_batch']['n_max_once'])}" if "nt_batch" in rows else "")
        + ")",
    ]
    for name in ("nt_jit", "nw_jit"):
        if name in rows:
            ns, used, coef = rows[name]["fit"]
            pts = ", ".join(f"{m}: {size(u)}" for m, u in zip(ns, used))
            fit = " + ".join(f"{c:.4g}{t}" for c, t in zip(coef, ("·N²", "·N", "")[-len(coef):]))
            notes.append(f"{labels[name]} compiled memory at N = {pts}; fit {fit} bytes")
    if "nt_batch" in rows:
        notes.append(f"nt.batch vs nt jit: diff off {rows['nt_batch']['nt_off']:.1e}, diag {rows['nt_batch']['nt_diag']:.1e}")
    for line in notes:
        print("  " + line)
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=None, help=f"images N for every architecture (default {DEFAULT_N})")
    p.add_argument("--archs", nargs="+", default=list(ARCHS), choices=ARCHS)
    p.add_argument("--image", type=int, default=28, help="image side length (default 28, MNIST)")
    p.add_argument("--channels", type=int, default=32, help="Conv channels C (does not change the kernel)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each method (interleaved)")
    p.add_argument("--x64", action="store_true", help="float64 inputs and kernels (default float32)")
    p.add_argument("--budget-mib", type=float, default=tiling.DEFAULT_MEMORY_BUDGET / 2**20,
                   help="nwcorrupt's memory_budget per block, MiB (default its own default)")
    p.add_argument("--block-size", type=int, default=None, help="nwcorrupt's block_size (default: from the budget)")
    p.add_argument("--batch-size", type=int, default=None,
                   help="nt.batch batch size, must divide N (default: largest divisor of N <= nwcorrupt's block)")
    p.add_argument("--no-nw-jit", action="store_true",
                   help="skip the reference row of nwcorrupt's kernel_fn under jax.jit (3 compilations per architecture)")
    p.add_argument("--limit-gib", type=float, default=24.0, help="memory for the largest-N estimates, GiB")
    args = p.parse_args(argv)

    print("conv kernel benchmark:", describe_environment())
    if nt is None:
        print("neural-tangents is not installed: printing nwcorrupt's numbers only "
              "(run with .venv-ref/bin/python to compare)")
    else:
        print(f"neural-tangents {nt.__version__}")
    with x64(args.x64):
        dtype = np.float64 if args.x64 else np.float32
        for arch in args.archs:
            n = args.n or DEFAULT_N[arch]
            print_result(run_arch(arch, n, args, dtype), args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
