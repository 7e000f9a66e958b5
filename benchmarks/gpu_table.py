"""The performance table on whatever device JAX sees (made for one GPU): kernels, exact predictors, moments.

    PYTHONPATH=. python benchmarks/gpu_table.py --json out/gpu_table.json     # full sizes (a GPU)
    PYTHONPATH=. python benchmarks/gpu_table.py --quick                       # smoke run on a CPU (~1 min)
    bash benchmarks/gpu_table.sh "$OUT"          # on the lent GPU machine (the MNIST wheel carried in .carry/)

Sections (``--sections``; each runs on its own, a failure is printed in its row and the next one runs):

* ``stored``: the exact NTK predictor on all 60 000 corrupted MNIST training images (replacement noise,
  p = 0.5, relu, diag_reg 1e-4), 10 000 clean test images, end to end: ``mnist_full.main`` with the
  float32 stored kernel and the CG loop resident on the device (``--resident auto``).
* ``kernels``: NNGP+NTK of an L = 3 MLP at N = M = 4000, d = 784, float32 and float64, relu and erf:
  time over the time of the Gram product ``x1 @ x2.T`` of the same round (``kernels_vs_matmul.run``),
  with the device's default tiles and with the CPU's (``ratio_cpu_tiles``: whether the larger
  accelerator tiles of ``nwcorrupt.kernels.tile_defaults`` pay off there).
* ``mixed``: the same predictor with a dense float32 NTK solved by ``solver="mixed_cholesky"`` (float32
  Cholesky, float64 refinement), end to end (kernel build included).
* ``moments``: the exact mean and covariance of every test logit under symmetric label noise (rate 0.5)
  on clean MNIST (``labels.predictor_moments``, float32 dense kernel) against one plain solve, and the
  accuracy they predict.
* ``largest``: the largest N whose stored-kernel plan fits this device's free memory
  (``stored_memory_plan``), and, with ``--run-largest``, the stored-CG predictor timed at that N on
  copies of the MNIST training images, each copy with its own replacement noise at p = 0.5 (MNIST has
  only 60 000 training images), tested on 2000 clean test images.

The dense sections use ``min(N, the largest N whose three float32 N x N matrices fit)``. It prints the
device, then one markdown table (for ``docs/performance.md``), and writes every number to ``--json``.
``--quick`` runs the same sections at small sizes.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import jax  # noqa: E402
import numpy as np  # noqa: E402

import kernels_vs_matmul  # noqa: E402
import mnist_full  # noqa: E402
from _common import describe_environment  # noqa: E402
from nwcorrupt import corruption, data, labels, precision  # noqa: E402
from nwcorrupt import predict as P  # noqa: E402
from nwcorrupt.kernels import MLP  # noqa: E402

SECTIONS = ("stored", "kernels", "mixed", "moments", "largest")  # the 30 s target first
DIAG_REG = 1e-4


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def dense_max_n(available: int | None, matrices: int = 3) -> int | None:
    """Largest N whose ``matrices`` float32 N x N arrays take at most 85% of ``available`` bytes."""
    if available is None:
        return None
    return int(math.sqrt(0.85 * available / (4 * matrices)))


def stored_max_n(n_test: int, precond_rank: int, available: int | None) -> int | None:
    """Largest N (multiple of 1000) whose float32 stored-kernel plan passes its check on ``available`` bytes."""
    if available is None:
        return None

    def fits(n: int) -> bool:
        plan = P.stored_memory_plan(n, n_test=n_test, itemsize=4, precond_rank=precond_rank,
                                    available_bytes=available)  # fmt: skip
        return plan.peak_bytes <= P.MEMORY_HEADROOM * available

    lo, hi = 1000, 1000
    while fits(hi * 2):
        hi *= 2
    hi *= 2
    while hi - lo > 1000:
        mid = (lo + hi) // 2 // 1000 * 1000
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo


def corrupted(n: int, n_test: int, p: float) -> data.Dataset:
    ds = data.load("mnist", n_train=None if n >= 60000 else n, seed=0)
    ds = corruption.corrupt(ds, corruption.Replacement(), p, 0) if p > 0 else ds
    return ds


def noisy_copies(n: int, n_test: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """N training inputs beyond MNIST's 60 000: copies of its training images, each copy corrupted by its
    own replacement noise at p = 0.5 (seed = copy index), with their labels; clean test images."""
    base = data.load("mnist", seed=0)
    xs, ys = [], []
    for copy in range(-(-n // base.x_train.shape[0])):
        xs.append(corruption.corrupt(base, corruption.Replacement(), 0.5, copy).x_train)
        ys.append(base.y_train)
    return np.concatenate(xs)[:n], np.concatenate(ys)[:n], base.x_test[:n_test], base.y_test[:n_test]


def section_kernels(args) -> list[dict]:
    rows = []
    for dtype in ("float32", "float64"):
        for act in ("relu", "erf"):
            r = kernels_vs_matmul.run(dtype, act, args.kernel_n, 784, 3, args.reps, cpu_tiles=True)
            med, ratio = r["median_s"], {k: float(np.median(v)) for k, v in r["ratios"].items()}
            rows.append({
                "what": f"NNGP+NTK {act} {dtype}, N=M={args.kernel_n}",
                "time_s": med["kernel(x1, x2)"],
                "matmul_s": med["matmul"],
                "ratio": ratio["kernel(x1, x2)"],
                "ratio_symmetric": ratio["kernel(x1)"],
                "ratio_cpu_tiles": ratio["kernel(x1, x2) CPU tiles"],
                "ratio_symmetric_cpu_tiles": ratio["kernel(x1) CPU tiles"],
            })  # fmt: skip
            log(f"kernels: {rows[-1]}")
    return rows


def section_stored(args, out: Path) -> list[dict]:
    path = out / "stored.json"
    argv = ["--n", str(args.n), "--n-test", str(args.n_test), "--check-n", "0", "--resident", "auto",
            "--json", str(path)]  # fmt: skip
    if args.quick:
        argv = ["--quick", "--check-n", "0", "--resident", "auto", "--json", str(path)]
    with precision.x64(False):
        res = mnist_full.main(argv)
    return [{
        "what": f"stored CG, MNIST N={res['n']} relu p=0.5, {res['n_test']} test",
        "time_s": res["wall_s"] - res["time_data_s"],
        "kernel_s": res["time_kernel_s"], "precond_s": res["time_precond_s"], "cg_s": res["time_cg_s"],
        "test_s": res["time_predict_s"], "iterations": res["cg_iterations"], "residual": res["residual"],
        "accuracy": res["accuracy"], "precision": res["precision"],
    }]  # fmt: skip


def section_mixed(args, dense_n: int) -> list[dict]:
    ds = corrupted(dense_n, args.n_test, 0.5)
    xtr, xte, yte = ds.x_train, ds.x_test[: args.n_test], ds.y_test[: args.n_test]
    y = np.eye(10)[ds.y_train]
    arch = MLP(depth=3, activation="relu", W_std=1.0, b_std=0.0)
    with precision.x64(False):
        P.ntk_predict(arch, xtr[:200], y[:200], xte[:50], diag_reg=DIAG_REG, solver="mixed_cholesky")  # compile
        t0 = time.perf_counter()
        pred, info = P.ntk_predict(arch, xtr, y, xte, diag_reg=DIAG_REG, solver="mixed_cholesky", return_info=True)
        pred = np.asarray(pred)
        wall = time.perf_counter() - t0
    acc = float(np.mean(pred.argmax(1) == yte))
    row = {"what": f"mixed_cholesky, MNIST N={len(xtr)} relu p=0.5, {len(xte)} test", "time_s": wall,
           "iterations": info.iterations, "residual": info.residual, "accuracy": acc, "jitter": info.jitter}
    log(f"mixed: {row}")
    return [row]


def section_moments(args, dense_n: int) -> list[dict]:
    ds = data.load("mnist", n_train=None if dense_n >= 60000 else dense_n, seed=0)
    m = args.n_test
    xtr, xte, yte = ds.x_train, ds.x_test[:m], ds.y_test[:m]
    model = labels.Symmetric(0.5)
    arch = MLP(depth=3, activation="relu", W_std=1.0, b_std=0.0)
    with precision.x64(False):
        labels.predictor_moments(arch, xtr[:200], ds.y_train[:200], xte[:50], model, num_classes=10,
                                 diag_reg=DIAG_REG)  # fmt: skip  (compile)
        t0 = time.perf_counter()
        mean, cov = labels.predictor_moments(arch, xtr, ds.y_train, xte, model, num_classes=10, diag_reg=DIAG_REG)
        t_mom = time.perf_counter() - t0
        noisy = np.eye(10)[model.law(ds.y_train, 10).sample(0)]  # one draw of the noisy labels
        t0 = time.perf_counter()
        np.asarray(P.ntk_predict(arch, xtr, noisy, xte, diag_reg=DIAG_REG, solver="cholesky"))
        t_one = time.perf_counter() - t0
    pred = labels.predicted_accuracy(mean, cov, yte)
    row = {"what": f"label moments, MNIST N={len(xtr)}, symmetric 0.5, {m} test", "time_s": t_mom,
           "one_solve_s": t_one, "ratio": t_mom / t_one, "predicted_accuracy": pred.accuracy,
           "accuracy_of_mean": float(np.mean(mean.argmax(1) == yte))}  # fmt: skip
    log(f"moments: {row}")
    return [row]


def section_largest(args, available: int | None) -> list[dict]:
    n_max = stored_max_n(args.n_test, P.STORED_PRECOND_RANK, available)
    row = {"what": "largest N of the float32 stored solver (plan)", "n": n_max,
           "available_gib": None if available is None else available / 2**30}  # fmt: skip
    if args.run_largest and n_max:
        n = min(n_max, args.largest_cap) if args.largest_cap else n_max
        xtr, ytr, xte, yte = noisy_copies(n, 2000)
        arch = MLP(depth=3, activation="relu", W_std=1.0, b_std=0.0)
        with precision.x64(False):
            t0 = time.perf_counter()
            pred, info = P.ntk_predict(arch, xtr, np.eye(10)[ytr], xte, diag_reg=DIAG_REG, solver="stored_cg",
                                       tol=1e-5, return_info=True)  # fmt: skip
            pred = np.asarray(pred)
            wall = time.perf_counter() - t0
        row.update({"run_n": int(xtr.shape[0]), "time_s": wall, "kernel_s": info.time_kernel,
                    "cg_s": info.time_solve, "iterations": info.iterations, "residual": info.residual,
                    "accuracy": float(np.mean(pred.argmax(1) == yte))})  # fmt: skip
    log(f"largest: {row}")
    return [row]


def fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    return str(v)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    ap.add_argument("--n", type=int, default=60000, help="training points of the MNIST predictors")
    ap.add_argument("--n-test", type=int, default=10000, help="clean test points")
    ap.add_argument("--kernel-n", type=int, default=4000, help="N = M of the kernel timing")
    ap.add_argument("--reps", type=int, default=5, help="interleaved rounds of the kernel timing")
    ap.add_argument("--run-largest", action="store_true", help="also time the stored solver at the largest N")
    ap.add_argument("--largest-cap", type=int, default=0, help="cap on that N (0: none)")
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run of every section")
    ap.add_argument("--json", default=None, help="write all rows to this file")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.n_test, args.kernel_n, args.reps = 1000, 300, 300, 1
        args.run_largest, args.largest_cap = True, 1500
    out = Path(args.json).parent if args.json else Path(os.environ.get("TMPDIR", "/tmp")) / "gpu_table"
    out.mkdir(parents=True, exist_ok=True)
    device = jax.devices()[0]
    available = P.available_memory_bytes(device)
    header = {
        "device": f"{device.device_kind} ({device.platform})",
        "environment": describe_environment(),
        "date": datetime.date.today().isoformat(),
        "free_memory_gib": None if available is None else round(available / 2**30, 1),
    }
    log(json.dumps(header))
    dense_cap = dense_max_n(available)
    dense_n = args.n if dense_cap is None else min(args.n, dense_cap)
    results: dict = {"header": header, "rows": {}}
    for name in args.sections:
        t0 = time.perf_counter()
        try:
            if name == "kernels":
                rows = section_kernels(args)
            elif name == "stored":
                rows = section_stored(args, out)
            elif name == "mixed":
                rows = section_mixed(args, dense_n)
            elif name == "moments":
                rows = section_moments(args, dense_n)
            else:
                rows = section_largest(args, available)
        except Exception as err:  # noqa: BLE001 -- one failed section must not lose the others
            traceback.print_exc()
            rows = [{"what": name, "failed": f"{type(err).__name__}: {err}"[:300]}]
        results["rows"][name] = rows
        log(f"section {name}: {time.perf_counter() - t0:.1f} s")
        if args.json:
            Path(args.json).write_text(json.dumps(results, indent=1))
    print(f"\n### {header['device']}, {header['date']}\n")
    print("| section | what | numbers |\n|---|---|---|")
    for name, rows in results["rows"].items():
        for row in rows:
            rest = ", ".join(f"{k} {fmt(v)}" for k, v in row.items() if k != "what")
            print(f"| {name} | {row['what']} | {rest} |")
    failed = [n for n, rows in results["rows"].items() if any("failed" in r for r in rows)]
    if failed:
        print(f"\nfailed sections: {', '.join(failed)}")
    return results


if __name__ == "__main__":
    res = main()
    sys.exit(1 if any("failed" in r for rows in res["rows"].values() for r in rows) else 0)
