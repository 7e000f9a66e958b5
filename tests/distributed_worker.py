"""One process of the multi-process tests (tests/test_distributed.py); not a test module itself.

Usage: python tests/distributed_worker.py SCENARIO|all OUT_DIR, started P times by
``nwcorrupt.distributed.launch_local`` (which sets the coordinator variables). Every process joins the
run, computes SCENARIO both distributed and alone (the single-process reference is process-local), and
writes what it found to OUT_DIR/SCENARIO-<process>.json for the test to check.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np


def primitives() -> dict:
    from nwcorrupt import distributed

    info = distributed.process_info()
    p, count = info.index, info.count
    x64 = np.array([1.0 + 2.0**-40 * (p + 1), np.pi * (p + 1)], dtype=np.float64)  # exact float64 bits
    gathered = distributed.allgather(x64)
    want = np.stack([np.array([1.0 + 2.0**-40 * (q + 1), np.pi * (q + 1)]) for q in range(count)])
    big = np.full(3 * distributed.REDUCE_CHUNK_BYTES // 8 + 5, float(p + 1))  # several reduction pieces
    total = distributed.allreduce_sum(big)
    mismatch = ""
    try:
        distributed.allgather(np.zeros(p + 1))
    except ValueError as err:
        mismatch = str(err)
    disagree = ""
    try:
        distributed.check_same("a test value", f"value of {p}")
    except RuntimeError as err:
        disagree = str(err)
    distributed.check_same("a shared value", "same everywhere")
    return {
        "index": p,
        "count": count,
        "local_devices": len(info.local_devices),
        "devices": len(info.devices),
        "gather_exact": bool(np.array_equal(gathered, want)),
        "reduce_ok": bool(np.all(total == count * (count + 1) / 2)),
        "broadcast": float(distributed.broadcast(np.array(7.0 + p))),
        "mismatch_error": mismatch,
        "disagree_error": disagree,
        "share": list(distributed.local_range(10)),
        "robin": distributed.round_robin(list(range(7))),
    }


def stored() -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    from nwcorrupt import distributed, predict
    from nwcorrupt.arch import MLP

    rng = np.random.default_rng(0)
    x = rng.normal(size=(230, 12))
    y = np.eye(3)[rng.integers(0, 3, 230)] - 1 / 3
    xt = rng.normal(size=(37, 12))
    arch = MLP(3, "relu", W_std=1.4, b_std=0.1)
    one = predict.StoredKernel.from_arch(arch, x, "ntk", block_size=48, check_memory=False)
    dist = predict.StoredKernel.from_arch(arch, x, "ntk", block_size=48, check_memory=False, distributed=True)
    v = rng.normal(size=(230, 3))
    dense1, dense_d = one.to_dense(), dist.to_dense()
    idx = np.array([0, 47, 48, 229, 100])
    kw = dict(solver="stored_cg", diag_reg=1e-4, block_size=48, check_memory=False, return_info=True, precond_rank=16)
    pred1, info1 = predict.ntk_predict(arch, x, y, xt, **kw)
    pred_d, info_d = predict.ntk_predict(arch, x, y, xt, distributed=True, **kw)
    pred_dense = predict.ntk_predict(arch, x, y, xt, solver="cholesky", diag_reg=1e-4)
    sol1 = predict.stored_cg_solve(one, y, shift=1e-3, preconditioner="pivoted_cholesky", precond_rank=20)
    sol_d = predict.stored_cg_solve(dist, y, shift=1e-3, preconditioner="pivoted_cholesky", precond_rank=20)
    rel = lambda a, b: float(np.max(np.abs(a - b)) / np.max(np.abs(b)))  # noqa: E731
    return {
        "index": distributed.process_info().index,
        "tiles_total": sum(t is not None for row in one.tiles for t in row),
        "tiles_here": sum(t is not None for row in dist.tiles for t in row),
        "bytes_total": one.nbytes,
        "bytes_here": dist.nbytes,
        "dense_equal": bool(np.array_equal(dense1, dense_d)),
        "diag_equal": bool(np.array_equal(one.diag(), dist.diag())),
        "rows_equal": bool(np.array_equal(one.rows(idx), dist.rows(idx))),
        "row_equal": bool(np.array_equal(one.row(48), dist.row(48))),
        "matvec_rel": rel(dist.matvec(v), one.matvec(v)),
        "matvec_exact_rel": rel(dist.matvec(v, exact=True), one.matvec(v, exact=True)),
        "predict_rel": rel(pred_d, pred1),
        "predict_vs_dense_rel": rel(pred_d, np.asarray(pred_dense)),
        "iterations": [info1.iterations, info_d.iterations],
        "residuals": [info1.residual, info_d.residual],
        "pivoted_rel": rel(sol_d, sol1),
    }


def ensemble(out: Path) -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    from nwcorrupt import distributed, train
    from nwcorrupt.arch import MLP

    rng = np.random.default_rng(1)
    x = rng.normal(size=(3, 32, 6))
    y = rng.integers(0, 3, 32).astype(np.int32)
    xt = rng.normal(size=(10, 6))
    yt = rng.integers(0, 3, 10).astype(np.int32)
    cfg = train.TrainConfig(arch=MLP(2, "erf"), width=16, num_classes=3, optimizer=train.Optimizer("adam", 1e-2),
                            batch_size=8, epochs=2, seed=3)
    one = train.train_ensemble(cfg, x, y, xt, yt, num_inits=3, quiet=True)
    shared = out / "ensemble-shared"
    dist = train.train_ensemble(cfg, x, y, xt, yt, num_inits=3, quiet=True, distributed=True, out_dir=shared)
    again = train.train_ensemble(cfg, x, y, xt, yt, num_inits=3, quiet=True, distributed=True, out_dir=shared)
    return {
        "index": distributed.process_info().index,
        "logits_max_diff": float(np.max(np.abs(dist.test_logits - one.test_logits))),
        "losses_max_diff": float(np.nanmax(np.abs(dist.step_losses - one.step_losses))),
        "fit_equal": bool(np.array_equal(dist.train_accuracy, one.train_accuracy)),
        "num_trained": dist.num_trained,
        "again_loaded": again.num_loaded,
        "again_trained": again.num_trained,
        "again_equal": bool(np.array_equal(again.test_logits, dist.test_logits)),
    }


def main() -> None:
    scenario, out = sys.argv[1], Path(sys.argv[2])
    from nwcorrupt import distributed

    info = distributed.initialize(timeout_s=120)
    runs = {"primitives": primitives, "stored": stored, "ensemble": lambda: ensemble(out)}
    names = list(runs) if scenario == "all" else [scenario]
    if not set(names) <= set(runs):
        raise SystemExit(f"unknown scenario {scenario!r}")
    for name in names:  # one launch for all: the processes start and join once
        result = runs[name]()
        distributed.barrier(f"worker-done-{name}")
        (out / f"{name}-{info.index}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
