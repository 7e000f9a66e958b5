"""Kernel benchmark: nwcorrupt's native NNGP+NTK against neural-tangents and
against the Gram matrix product, side by side in ONE process.

Run it in the reference environment (it needs neural-tangents and jax 0.5.3):

    bash scripts/ref_env.sh
    .venv-ref/bin/python benchmarks/kernels.py            # full run (minutes)
    .venv-ref/bin/python benchmarks/kernels.py --quick    # smoke run (seconds)

For each activation (relu, erf), dtype (float64, float32) and size N = M it builds
the NNGP and NTK of an MLP with L = 3 dense layers on d = 784 MNIST-like inputs
(random, per-example normalised: zero feature mean, unit RMS) with

* ``nwcorrupt.kernels.kernel(arch, x1, x2)`` (native backend),
* neural-tangents' ``kernel_fn`` of the same ``stax`` network, jitted (the fair
  comparison, used for the targets) and, as an extra row, called without
  ``jax.jit`` (op by op, as its examples often do),
* a plain ``jnp.matmul(x1, x2.T)`` of the same shape and dtype (precision HIGHEST),

after one warm-up call each (compilation excluded), interleaving the repetitions
and taking medians. It prints, per configuration: the medians, the time ratio
neural-tangents / nwcorrupt (the median over rounds of the ratio of the two calls
of each round, with its quartiles, and the ratio of the medians), the machine's measured matmul throughput (GFLOP/s of
x1 @ x2.T, 2·N·M·d flops), the "effective" GFLOP/s of each kernel computation
(the same flop count over the kernel time) and its ratio to the matmul
throughput, the kernel time over the Gram matmul time, and the peak RSS increase
of one call of each, measured in a fresh process per method (RSS sampled from
/proc every 2 ms; output included, inputs not).

Targets: nwcorrupt >= 1.5x faster than neural-tangents in float64; for
N = M = 4000 the native kernel within 2x of its own Gram matmul time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import warnings  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from _common import (  # noqa: E402
    block,
    describe_environment,
    mib,
    mnist_like,
    interleaved_medians,
    median,
    peak_rss_bytes,
    peak_rss_increase,
)
from nwcorrupt import kernels as nk  # noqa: E402
from nwcorrupt import nt_backend  # noqa: E402
from nwcorrupt.precision import MATMUL_PRECISION, x64  # noqa: E402

# jax 0.5.3 on CPU cannot donate the native kernels' output buffers and warns on each call.
warnings.filterwarnings("ignore", message="Some donated buffers were not usable", category=UserWarning)


def _make_fns(activation: str, dtype: str, n: int, d: int, depth: int, methods: tuple[str, ...]) -> dict:
    """name -> zero-argument callable computing that method's result for one configuration."""
    arch = nk.MLP(depth=depth, activation=activation, W_std=1.0, b_std=0.0)
    x1 = mnist_like(n, d, 0, dtype)
    x2 = mnist_like(n, d, 1, dtype)
    get = ("nngp", "ntk")
    fns = {}
    if "matmul" in methods:
        gram = jax.jit(lambda a, b: jnp.matmul(a, b.T, precision=MATMUL_PRECISION))
        fns["matmul"] = lambda: gram(x1, x2)
    if "nwcorrupt" in methods:
        fns["nwcorrupt"] = lambda: nk.kernel(arch, x1, x2, get)
    if "neural_tangents" in methods:
        nt_fn = jax.jit(nt_backend.stax_mlp(arch)[2], static_argnames="get")
        fns["neural_tangents"] = lambda: nt_fn(x1, x2, get=get)
    if "nt_not_jitted" in methods:
        nt_eager = nt_backend.stax_mlp(arch)[2]
        fns["nt_not_jitted"] = lambda: nt_eager(x1, x2, get)
    return fns


def memory_probe(method: str, activation: str, dtype: str, n: int, d: int, depth: int) -> int:
    """Peak RSS increase (bytes) of the first call of one method, in a FRESH process.

    A fresh process is needed because freed buffers stay in the allocator's pools:
    in a process that already ran other methods, RSS growth undercounts. The
    baseline is taken after the inputs exist; compilation is included (small).
    """
    cmd = [sys.executable, __file__, "--memory-probe", method, activation, dtype, str(n), str(d), str(depth)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return int(out.strip().splitlines()[-1])


def _memory_probe_main(method: str, activation: str, dtype: str, n: str, d: str, depth: str) -> int:
    with x64(dtype == "float64"):
        fn = _make_fns(activation, dtype, int(n), int(d), int(depth), (method,))[method]
        increase, _ = peak_rss_increase(fn)
    print(increase)
    return 0


def run_config(
    activation: str,
    dtype: str,
    n: int,
    d: int,
    depth: int,
    reps: int,
    have_native: bool,
    memory: bool,
    eager: bool,
) -> dict:
    methods = ("matmul", "nwcorrupt", "neural_tangents") if have_native else ("matmul", "neural_tangents")
    if eager:
        methods += ("nt_not_jitted",)
    # x64 only for float64: with it on, nwcorrupt computes float32 inputs in float64.
    with x64(dtype == "float64"):
        return _run_config(activation, dtype, n, d, depth, reps, have_native, memory, methods)


def _run_config(
    activation: str,
    dtype: str,
    n: int,
    d: int,
    depth: int,
    reps: int,
    have_native: bool,
    memory: bool,
    methods: tuple[str, ...],
) -> dict:
    fns = _make_fns(activation, dtype, n, d, depth, methods)
    eager = "nt_not_jitted" in methods

    first_s = {}
    out_dtype = None
    for name, fn in fns.items():  # warm-up: compilation and first-call costs
        start = time.perf_counter()
        out = block(fn())
        first_s[name] = time.perf_counter() - start
        if name == "nwcorrupt":
            out_dtype = str(out.ntk.dtype)
            if out_dtype != dtype:
                print(f"    (note: nwcorrupt returned {out_dtype} for {dtype} inputs)")
        del out

    times = interleaved_medians(fns, reps)
    med = {name: median(t) for name, t in times.items()}
    mem = {name: memory_probe(name, activation, dtype, n, d, depth) for name in fns} if memory else {}
    flops = 2.0 * n * n * d
    record = {
        "activation": activation,
        "dtype": dtype,
        "N": n,
        "M": n,
        "d": d,
        "depth": depth,
        "reps": reps,
        "median_s": med,
        "all_s": times,
        "first_call_s": first_s,
        "peak_rss_increase_bytes": mem,
        "output_bytes": 2 * n * n * np.dtype(dtype).itemsize,
        "matmul_gflops": flops / med["matmul"] / 1e9,
        "nt_over_matmul": med["neural_tangents"] / med["matmul"],
    }
    if have_native:
        # Per-round ratios: the two calls of one round run back to back, so a load
        # change on the shared machine between rounds cancels out of each ratio.
        paired = np.asarray(times["neural_tangents"]) / np.asarray(times["nwcorrupt"])
        record.update(
            native_output_dtype=out_dtype,
            nt_over_native=med["neural_tangents"] / med["nwcorrupt"],
            nt_over_native_paired=float(np.median(paired)),
            nt_over_native_paired_quartiles=[float(np.quantile(paired, 0.25)), float(np.quantile(paired, 0.75))],
            **({"nt_not_jitted_over_native": med["nt_not_jitted"] / med["nwcorrupt"]} if eager else {}),
            native_over_matmul=med["nwcorrupt"] / med["matmul"],
        )
    return record


def print_record(r: dict) -> None:
    med, mem = r["median_s"], r["peak_rss_increase_bytes"]

    def rss(name: str) -> str:
        return f"   peak RSS +{mib(mem[name])}" if name in mem else ""

    gf = r["matmul_gflops"]
    head = (
        f"{r['activation']:>4} {r['dtype']:>7} N=M={r['N']:<5} d={r['d']} L={r['depth']} ({r['reps']} reps; "
        f"NNGP+NTK output {mib(r['output_bytes'])})"
    )
    print(head)
    print(f"    matmul x1@x2.T   {med['matmul']:8.3f} s   {gf:7.1f} GFLOP/s (machine){rss('matmul')}")
    for name in ("nwcorrupt", "neural_tangents", "nt_not_jitted"):
        if name not in med:
            continue
        eff = 2.0 * r["N"] * r["M"] * r["d"] / med[name] / 1e9
        print(
            f"    {name:<16} {med[name]:8.3f} s   {eff:7.1f} GFLOP/s effective = {eff / gf:5.2f} of matmul;"
            f"  time / matmul = {med[name] / med['matmul']:5.2f}{rss(name)}"
        )
    if "nt_over_native" in r:
        speed = r["nt_over_native_paired"]
        q1, q3 = r["nt_over_native_paired_quartiles"]
        print(
            f"    => neural-tangents / nwcorrupt time = {speed:.2f}x (median of per-round ratios; quartiles "
            f"{q1:.2f}-{q3:.2f}; ratio of medians {r['nt_over_native']:.2f}x)",
            end="",
        )
        if r["dtype"] == "float64":
            print(f"  [target >= 1.5: {'met' if speed >= 1.5 else 'NOT met'}]", end="")
        if "nt_not_jitted_over_native" in r:
            print(f" (not jitted: {r['nt_not_jitted_over_native']:.2f}x)", end="")
        print(f";  nwcorrupt / matmul = {r['native_over_matmul']:.2f}", end="")
        if r["N"] == 4000:
            print(f"  [target <= 2: {'met' if r['native_over_matmul'] <= 2 else 'NOT met'}]", end="")
        print()
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="small smoke run: N=M=400, 3 reps")
    p.add_argument("--sizes", type=int, nargs="+", default=None, help="N = M values (default 4000 8000)")
    p.add_argument("--d", type=int, default=784)
    p.add_argument("--depth", type=int, default=3)
    p.add_argument("--activations", nargs="+", default=["relu", "erf"])
    p.add_argument("--dtypes", nargs="+", default=["float64", "float32"], choices=["float64", "float32"])
    p.add_argument("--reps", type=int, default=None, help="repetitions per method (default 9; 3 above N=4000)")
    p.add_argument("--json", default=None, help="also write all records to this JSON file")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory probes (fresh processes)")
    p.add_argument(
        "--no-eager", action="store_true", help="skip neural-tangents' kernel_fn without jax.jit (as often called)"
    )
    p.add_argument("--memory-probe", nargs=6, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_probe:
        return _memory_probe_main(*args.memory_probe)

    sizes = args.sizes or ([400] if args.quick else [4000, 8000])
    have_native = hasattr(nk, "kernel")
    print("kernel benchmark:", describe_environment())
    import neural_tangents

    print(f"neural-tangents {neural_tangents.__version__}; native kernels: {'yes' if have_native else 'NOT AVAILABLE'}")
    if not have_native:
        print("  (nwcorrupt.kernels.kernel is missing: only neural-tangents and the matmul are measured)")
    records = []
    for n in sizes:
        reps = args.reps or (3 if args.quick or n > 4000 else 9)
        for dtype in args.dtypes:
            for activation in args.activations:
                r = run_config(activation, dtype, n, args.d, args.depth, reps, have_native, not args.no_memory, not args.no_eager)
                print_record(r)
                records.append(r)
    print(f"peak RSS of the whole (timing) process: {mib(peak_rss_bytes())}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"environment": describe_environment(), "records": records}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
