"""Scaling of the exact NTK predictor (``solver="stored_cg"``) over processes, measured side by side.

    PYTHONPATH=. python benchmarks/distributed.py                    # N = 8000 MNIST, 1 then 2 processes
    PYTHONPATH=. python benchmarks/distributed.py --n 20000 --processes 1,2,4
    PYTHONPATH=. python benchmarks/distributed.py --one-core         # P processes on P cores, one core each
    PYTHONPATH=. python benchmarks/distributed.py --quick            # N = 600 smoke test (the test suite)
    PYTHONPATH=. python benchmarks/distributed.py --plan             # largest N per cluster size, on paper

For each process count P (in one invocation, one after another) the script starts P processes on this
machine with ``nwcorrupt.distributed.launch_local``; each joins the run (gloo collectives on CPU) and
calls ``ntk_predict(..., solver="stored_cg", distributed=True)`` on the same data: MNIST training images
corrupted by replacement noise at p = 0.5 (noise seed 0), L = 3 ReLU MLP, float32 stored kernel,
Nystrom-preconditioned CG, 2000 clean test images. It prints, per P: wall time and its split (kernel
tiles, CG, test predictions), the speed-up over P = 1, the CG iterations, the accuracy (identical up to
the CG tolerance), the stored-matrix bytes and peak RSS of the largest process, and the P-process
predictions' largest difference from P = 1.

On one machine the processes share its cores and memory bandwidth, so the speed-up measures the
overhead of the distribution (collectives, duplicated CG vector work) more than a cluster's gain; the
memory column is what each host of a cluster would hold.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def worker(n: int, n_test: int, block: int, out: str) -> None:
    from nwcorrupt import corruption, data, distributed
    from nwcorrupt import predict as P
    from nwcorrupt.kernels import MLP

    if os.environ.get("NWCORRUPT_BENCH_PIN") == "1":  # one core per process, before JAX starts its threads
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(os.environ[distributed.ENV_PROCESS_ID]) % len(cores)]})
    info = distributed.initialize(timeout_s=300)
    ds = corruption.corrupt(data.load("mnist", n_train=n, seed=0), corruption.Replacement(), 0.5, 0)
    noisy, x_test, y_test = ds.x_train, ds.x_test[:n_test], ds.y_test[:n_test]
    y = np.eye(10)[ds.y_train] - 0.1
    distributed.barrier("bench-start")
    t0 = time.perf_counter()
    pred, sinfo = P.ntk_predict(
        MLP(3, "relu"), noisy, y, x_test, solver="stored_cg", diag_reg=1e-4, block_size=block,
        distributed=True, return_info=True,
    )  # fmt: skip
    wall = time.perf_counter() - t0
    distributed.barrier("bench-end")
    acc = float(np.mean(np.argmax(pred, axis=1) == y_test))
    rec = {
        "index": info.index, "wall": wall, "kernel": sinfo.time_kernel, "solve": sinfo.time_precond + sinfo.time_solve,
        "predict": sinfo.time_predict, "iterations": sinfo.iterations, "residual": sinfo.residual,
        "accuracy": acc, "matrix_bytes": sinfo.matrix_bytes,
        "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
    }  # fmt: skip
    Path(out, f"rec-{info.index}.json").write_text(json.dumps(rec))
    if info.primary:
        np.save(Path(out, "pred.npy"), np.asarray(pred))


def plan() -> None:
    from nwcorrupt.predict.memory import stored_memory_plan

    print("Largest N of the stored-kernel NTK predictor (float32 tiles, C = 10, 10000 test points), from")
    print("stored_memory_plan: the process holding the most tiles must fit in 90% of its memory.")
    print("| memory per process | " + " | ".join(f"P = {p}" for p in (1, 2, 4, 8, 16, 64)) + " |")
    print("|---|" + "---|" * 6)
    for gib in (24, 80, 128, 512):
        cells = []
        for p in (1, 2, 4, 8, 16, 64):
            lo, hi = 1000, 10_000_000
            while hi - lo > 1000:
                mid = (lo + hi) // 2
                fits = stored_memory_plan(mid, n_test=10000, itemsize=4, available_bytes=gib * 2**30,
                                          processes=p).peak_bytes <= 0.9 * gib * 2**30
                lo, hi = (mid, hi) if fits else (lo, mid)
            cells.append(f"{lo // 1000:,}k")
        print(f"| {gib} GiB | " + " | ".join(cells) + " |")
    print("CG traffic per iteration: each process sends and receives its (N, C) float64 partial product,")
    print("N * C * 8 bytes x P (allgather), e.g. 4.8 MB x P at N = 60000, C = 10.")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=8000, help="training points (default 8000)")
    ap.add_argument("--n-test", type=int, default=2000)
    ap.add_argument("--block", type=int, default=2048, help="rows per stored-kernel block")
    ap.add_argument("--processes", default="1,2", help="process counts, comma-separated (default 1,2)")
    ap.add_argument("--one-core", action="store_true",
                    help="pin process i to core i (sched_setaffinity): P processes use P cores, so the speed-up "
                         "measures the distribution itself")
    ap.add_argument("--quick", action="store_true", help="N = 600, 200 test points, blocks of 128 (smoke test)")
    ap.add_argument("--plan", action="store_true", help="print the largest N per cluster size and exit")
    ap.add_argument("--worker", nargs=4, metavar=("N", "N_TEST", "BLOCK", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        n, n_test, block, out = args.worker
        worker(int(n), int(n_test), int(block), out)
        return
    if args.plan:
        plan()
        return
    from nwcorrupt import distributed

    if args.quick:
        args.n, args.n_test, args.block = 600, 200, 128
    counts = [int(c) for c in args.processes.split(",")]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    if args.one_core:
        env.update(NWCORRUPT_BENCH_PIN="1", OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    print(f"stored-CG NTK predictor, MNIST N = {args.n}, {args.n_test} test, p = 0.5 replacement, L = 3 relu, "
          f"float32 tiles of {args.block}; load {os.getloadavg()[0]:.2f}; {os.cpu_count()} cores; "
          + ("one core per process" if args.one_core else "every process on all cores"))
    print("| P | wall s | kernel s | CG s | predict s | speed-up | iterations | accuracy | matrix MiB/proc "
          "| peak RSS MiB/proc | max |pred - pred(P=1)| |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    base_wall = base_pred = None
    for p in counts:
        with tempfile.TemporaryDirectory() as tmp:
            res = distributed.launch_local(
                [sys.executable, __file__, "--worker", str(args.n), str(args.n_test), str(args.block), tmp], p,
                env=env, timeout_s=3600,
            )  # fmt: skip
            for i, r in enumerate(res):
                if r.returncode != 0:
                    raise SystemExit(f"process {i} of {p} failed:\n{r.stderr[-3000:]}")
            recs = [json.loads(Path(tmp, f"rec-{i}.json").read_text()) for i in range(p)]
            pred = np.load(Path(tmp, "pred.npy"))
        wall = max(r["wall"] for r in recs)
        if base_wall is None:
            base_wall, base_pred = wall, pred
        top = max(recs, key=lambda r: r["wall"])
        print(f"| {p} | {wall:.1f} | {top['kernel']:.1f} | {top['solve']:.1f} | {top['predict']:.1f} | "
              f"{base_wall / wall:.2f} | {recs[0]['iterations']} | {recs[0]['accuracy']:.4f} | "
              f"{max(r['matrix_bytes'] for r in recs) / 2**20:.0f} | {max(r['peak_rss'] for r in recs) / 2**20:.0f} | "
              f"{float(np.max(np.abs(pred - base_pred))):.2e} |")


if __name__ == "__main__":
    main()
