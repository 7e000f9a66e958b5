"""Exact infinite-width NTK predictor on the full MNIST training set (N = 60000), on a CPU or a GPU.

    PYTHONPATH=. python benchmarks/mnist_full.py                      # relu, p = 0.5, N = 60000
    PYTHONPATH=. python benchmarks/mnist_full.py --activation erf --p 0.9
    PYTHONPATH=. python benchmarks/mnist_full.py --n 10000 --check-n 0  # smaller, no float64 check
    PYTHONPATH=. python benchmarks/mnist_full.py --plan-only           # memory plan, then exit
    PYTHONPATH=. python benchmarks/mnist_full.py --quick --resident yes  # N = 1000 smoke test, device loop

Pipeline (``nwcorrupt.predict``, ``solver="stored_cg"`` pieces called one by one so the
script can report progress):

1. MNIST (``nwcorrupt.data.load("mnist")``: 60000 training / 10000 test images, per-example
   normalised), training inputs corrupted by replacement noise U[-sqrt(3), sqrt(3)] at level
   p (noise seed 0), test inputs clean.
2. The NTK of an MLP with L dense layers (default L = 3, W_std = 1, b_std = 0, NTK
   parameterisation) between all training points, computed once in float32 tiles
   (HIGHEST-precision Gram products) into a :class:`StoredKernel` (upper triangle only).
3. ``(Theta + r I) alpha = Y`` (one-hot Y, 10 columns at once) by pivoted-Cholesky
   preconditioned CG with float64 recurrences and a float64 residual check
   (:func:`stored_cg_solve`); r = diag_reg * trace(Theta) / N.
4. Test logits ``Theta(x_test, X) alpha`` in tiles of test rows (:func:`tiled_predict`),
   t = infinity; clean-test accuracy of their argmax.
5. Optionally (``--check-n``): on a balanced subsample of the same corrupted training set,
   the float32 stored-CG predictor against a float64 Cholesky solve (relative logit error,
   argmax agreement).

The memory plan is printed first and the script stops with ``MemoryError`` if it does not
fit in the available memory. Prints the wall-time split, CG iterations and final residual,
peak RSS and the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

import numpy as np

from nwcorrupt import corruption, data, precision
from nwcorrupt import predict as P
from nwcorrupt.kernels import MLP


def loadavg() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "n/a"


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 2**30


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def corrupted_mnist(n: int, p: float, seed: int) -> data.Dataset:
    """MNIST, n training points (all 60000, or a balanced subset), training inputs corrupted at p."""
    ds = data.load("mnist", n_train=None if n >= 60000 else n, seed=0)
    return corruption.corrupt(ds, corruption.Replacement(), p, seed)


def float32_check(ds: data.Dataset, arch: MLP, n: int, n_test: int, diag_reg: float, args) -> dict:
    """float32 stored-CG vs float64 Cholesky on a balanced subsample (same corrupted points)."""
    idx = data.balanced_indices(ds.y_train, n, ds.num_classes, 1)
    xtr, ytr = ds.x_train[idx], ds.y_train[idx]
    xte, yte = ds.x_test[:n_test], ds.y_test[:n_test]
    y = np.eye(ds.num_classes)[ytr]
    t0 = time.perf_counter()
    f32, info = P.ntk_predict(
        arch, xtr, y, xte, diag_reg=diag_reg, solver="stored_cg", tol=args.tol, preconditioner="nystrom",
        precond_rank=args.precond_rank,
        block_size=args.block, tile_size=args.test_tile, return_info=True,
    )  # fmt: skip
    t1 = time.perf_counter()
    with precision.x64():
        f64 = np.asarray(
            P.ntk_predict(
                arch, xtr.astype(np.float64), y, xte.astype(np.float64), diag_reg=diag_reg, solver="cholesky"
            )
        )
    t2 = time.perf_counter()
    f32 = np.asarray(f32, np.float64)
    rel = float(np.linalg.norm(f32 - f64) / np.linalg.norm(f64))
    rows = np.linalg.norm(f32 - f64, axis=1) / np.linalg.norm(f64, axis=1)
    agree = float(np.mean(f32.argmax(1) == f64.argmax(1)))
    return {
        "n": n,
        "n_test": n_test,
        "rel_logit_error": rel,
        "max_row_rel_error": float(rows.max()),
        "argmax_agreement": agree,
        "acc_float32": float(np.mean(f32.argmax(1) == yte)),
        "acc_float64": float(np.mean(f64.argmax(1) == yte)),
        "cg_iterations": info.iterations,
        "time_float32_s": t1 - t0,
        "time_float64_cholesky_s": t2 - t1,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=60000, help="training points (60000 = all)")
    ap.add_argument("--p", type=float, default=0.5, help="corruption level of the training inputs")
    ap.add_argument("--activation", default="relu", help="relu or erf (any registered activation)")
    ap.add_argument("--depth", type=int, default=3, help="dense layers L")
    ap.add_argument("--diag-reg", type=float, default=1e-4, help="relative diagonal regulariser")
    ap.add_argument("--tol", type=float, default=1e-5, help="CG relative residual tolerance per column")
    ap.add_argument("--precond-rank", type=int, default=P.STORED_PRECOND_RANK)
    ap.add_argument("--block", type=int, default=P.STORED_BLOCK, help="rows per block of the stored kernel")
    ap.add_argument("--test-tile", type=int, default=1000, help="test rows per test-train kernel tile")
    ap.add_argument("--n-test", type=int, default=10000, help="test points (the clean MNIST test set)")
    ap.add_argument("--seed", type=int, default=0, help="noise seed")
    ap.add_argument("--check-n", type=int, default=4000, help="subsample for the float32-vs-float64 check (0: skip)")
    ap.add_argument("--check-test", type=int, default=2000, help="test points of the float32-vs-float64 check")
    ap.add_argument("--resident", choices=("auto", "yes", "no"), default="auto",
                    help="CG vectors on the tiles' device (yes), on the host (no), or yes on accelerators (auto)")
    ap.add_argument("--plan-only", action="store_true", help="print the memory plan and exit")
    ap.add_argument("--quick", action="store_true",
                    help="the same pipeline at N = 1000 (500 test points, rank 128, blocks of 256, check at 400): "
                         "a smoke test of the script")
    ap.add_argument("--json", default=None, help="write the results to this JSON file")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.n_test, args.precond_rank, args.block = 1000, 500, 128, 256
        args.test_tile, args.check_n, args.check_test = 250, 400, 200
    if precision.x64_enabled():
        raise SystemExit("run with x64 disabled: the stored kernel is float32 (JAX_ENABLE_X64 must be unset)")

    import jax

    device = jax.devices()[0]
    log(f"jax {jax.__version__}, numpy {np.__version__}, {os.cpu_count()} CPU cores, load {loadavg()}; "
        f"device {device.device_kind} ({device.platform})")
    arch = MLP(depth=args.depth, activation=args.activation, W_std=1.0, b_std=0.0)
    plan = P.stored_memory_plan(
        args.n, n_test=args.n_test, classes=10, depth=args.depth, itemsize=4, block_size=args.block,
        precond_rank=args.precond_rank, test_tile=args.test_tile,
    )  # fmt: skip
    print(plan.describe(), flush=True)
    plan.check()
    if args.plan_only:
        return {"plan": plan.__dict__}

    t_start = time.perf_counter()
    ds = corrupted_mnist(args.n, args.p, args.seed)
    xtr, ytr = ds.x_train, ds.y_train
    xte, yte = ds.x_test[: args.n_test], ds.y_test[: args.n_test]
    y = np.eye(ds.num_classes)[ytr]
    t_data = time.perf_counter() - t_start
    log(f"data: N = {len(xtr)}, d = {ds.d}, p = {args.p}, {len(xte)} clean test points ({t_data:.1f} s)")

    step = {"next": 0.0}

    def progress(done: int, total: int) -> None:
        if done / total >= step["next"] or done == total:
            log(f"  kernel tiles {done}/{total}, RSS peak {peak_rss_gib():.2f} GiB, load {loadavg()}")
            step["next"] += 0.1

    t0 = time.perf_counter()
    k = P.StoredKernel.from_arch(arch, xtr, get="ntk", block_size=args.block, check_memory=False, progress=progress)
    t_kernel = time.perf_counter() - t0
    log(f"stored NTK: {k.nbytes / 2**30:.2f} GiB in {t_kernel:.1f} s")

    reg = P.absolute_regularizer(k, args.diag_reg)
    t_iter = {"last": time.perf_counter()}

    def callback(it: int, rel: float) -> None:
        if it % 10 == 0:
            now = time.perf_counter()
            log(f"  CG iteration {it}: max column residual {rel:.2e} ({(now - t_iter['last']) / 10:.2f} s/iter)")
            t_iter["last"] = now

    resident = {"auto": None, "yes": True, "no": False}[args.resident]
    alpha, info = P.stored_cg_solve(
        k, y, shift=reg, tol=args.tol, precond_rank=args.precond_rank, callback=callback, return_info=True,
        resident=resident,
    )
    log(
        f"solve: {info.iterations} CG iterations, {info.refinements} refinements, relative residual "
        f"{info.residual:.2e} (float64), preconditioner rank {info.precond_rank} in {info.time_precond:.1f} s, "
        f"CG {info.time_solve:.1f} s, Lanczos cond of the preconditioned operator {info.cond:.3g}"
    )
    mean_diag = float(np.mean(k.diag()))
    del k

    t0 = time.perf_counter()
    logits = P.tiled_predict(arch, xtr, xte, alpha, tile_size=args.test_tile)
    t_pred = time.perf_counter() - t0
    wall = time.perf_counter() - t_start
    acc = float(np.mean(logits.argmax(1) == yte))
    log(f"test prediction: {t_pred:.1f} s; clean-test accuracy {acc:.4f}")
    result = {
        "n": len(xtr),
        "n_test": len(xte),
        "p": args.p,
        "activation": args.activation,
        "depth": args.depth,
        "diag_reg": args.diag_reg,
        "diag_reg_absolute": reg,
        "mean_diag": mean_diag,
        "tol": args.tol,
        "block": args.block,
        "precision": info.precision,
        "device": f"{device.device_kind} ({device.platform})",
        "time_data_s": t_data,
        "time_kernel_s": t_kernel,
        "time_precond_s": info.time_precond,
        "time_cg_s": info.time_solve,
        "time_predict_s": t_pred,
        "wall_s": wall,
        "cg_iterations": info.iterations,
        "refinements": info.refinements,
        "residual": info.residual,
        "precond_rank": info.precond_rank,
        "lanczos_cond": info.cond,
        "accuracy": acc,
        "matrix_gib": info.matrix_bytes / 2**30,
        "peak_rss_gib": peak_rss_gib(),
        "loadavg_end": loadavg(),
    }
    print(
        f"\nWALL {wall:.1f} s = data {t_data:.1f} + kernel {t_kernel:.1f} + preconditioner {info.time_precond:.1f} "
        f"+ CG {info.time_solve:.1f} + test {t_pred:.1f}; peak RSS {result['peak_rss_gib']:.2f} GiB; "
        f"load {loadavg()}",
        flush=True,
    )
    if args.check_n:
        del alpha, logits
        log(f"float32-vs-float64 check at N = {args.check_n}, {args.check_test} test points ...")
        result["check"] = float32_check(ds, arch, args.check_n, args.check_test, args.diag_reg, args)
        log(f"check: {json.dumps(result['check'])}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
