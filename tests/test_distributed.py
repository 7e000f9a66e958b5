"""Multi-process runs for real: 2 processes on this CPU joined by jax.distributed (gloo collectives).

Each scenario starts tests/distributed_worker.py twice with ``nwcorrupt.distributed.launch_local``; the
workers compare the distributed computation with the same computation in one process and report. The
single-process paths of every function in ``nwcorrupt.distributed`` are tested here directly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nwcorrupt import distributed
from nwcorrupt.predict.memory import stored_memory_plan, tile_owner

WORKER = Path(__file__).with_name("distributed_worker.py")
ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}


@pytest.fixture(scope="module")
def two_processes(tmp_path_factory) -> tuple[Path, dict]:
    """Every worker scenario, run once by 2 processes: (their folder, scenario -> [result of process 0, 1])."""
    out = tmp_path_factory.mktemp("two_processes")
    res = distributed.launch_local([sys.executable, str(WORKER), "all", str(out)], 2, env=_env(), timeout_s=600)
    for i, r in enumerate(res):
        assert r.returncode == 0, f"process {i} failed:\n{r.stderr[-3000:]}"
    names = ("primitives", "stored", "ensemble")
    return out, {name: [json.loads((out / f"{name}-{i}.json").read_text()) for i in range(2)] for name in names}


# ----------------------------------------------------------------------------- single process


def test_single_process_collectives_are_the_identity():
    x = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(distributed.allgather(x), x[None])
    np.testing.assert_array_equal(distributed.allreduce_sum(x), x)
    np.testing.assert_array_equal(distributed.broadcast(x), x)
    assert distributed.allgather(np.float64(2.5)).shape == (1,)
    distributed.barrier("alone")
    distributed.check_same("anything", "value")
    info = distributed.process_info()
    assert (info.index, info.count, info.primary) == (0, 1, True) and distributed.is_primary()


def test_gather_shares_in_one_process_returns_the_rows_and_checks_their_count():
    x = np.arange(12.0).reshape(4, 3)
    np.testing.assert_array_equal(distributed.gather_shares(x, 4), x)
    with pytest.raises(ValueError, match="local must hold this process's 5 rows of 5"):
        distributed.gather_shares(x, 5)


def test_shares_cover_every_item_once():
    for n in (0, 1, 7, 10, 101):
        for count in (1, 2, 3, 8):
            parts = [distributed.local_range(n, count=count, index=i) for i in range(count)]
            assert parts[0][0] == 0 and parts[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
            sizes = [e - s for s, e in parts]
            assert max(sizes) - min(sizes) <= 1
            robin = [distributed.round_robin(list(range(n)), count=count, index=i) for i in range(count)]
            assert sorted(sum(robin, [])) == list(range(n))


def test_tile_owner_deals_tiles_evenly_and_the_memory_plan_shrinks():
    m = 9
    for p in (1, 2, 3, 5):
        held = np.bincount([tile_owner(i, j, m, p) for i in range(m) for j in range(i, m)], minlength=p)
        assert held.sum() == m * (m + 1) // 2 and held.max() - held.min() <= 1
    one = stored_memory_plan(60000, available_bytes=None)
    four = stored_memory_plan(60000, available_bytes=None, processes=4)
    assert 0.24 < four.matrix_bytes / one.matrix_bytes < 0.27
    with pytest.raises(ValueError, match="upper triangle"):
        tile_owner(3, 2, m, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(coordinator_address="localhost", num_processes=2, process_id=0), "coordinator_address must be 'host:port'"),
        (dict(coordinator_address="localhost:99999", num_processes=2, process_id=0), "coordinator_address"),
        (dict(coordinator_address="localhost:1234", num_processes=0, process_id=0), "num_processes must be an integer >= 1"),
        (dict(coordinator_address="localhost:1234", num_processes=2, process_id=2), r"process_id must be in \[0, num_processes=2\)"),
        (dict(coordinator_address="localhost:1234", num_processes=2, process_id=-1), "process_id must be an integer >= 0"),
    ],
)
def test_initialize_refuses_bad_arguments_before_starting(kwargs, match):
    with pytest.raises(ValueError, match=match):
        distributed.initialize(**kwargs)
    assert not distributed.is_initialized()


def test_initialize_names_a_bad_environment_variable(monkeypatch):
    monkeypatch.setenv(distributed.ENV_NUM_PROCESSES, "two")
    with pytest.raises(ValueError, match="NWCORRUPT_NUM_PROCESSES must be an integer"):
        distributed.initialize()


def test_distributed_flags_are_checked():
    from nwcorrupt import predict, train
    from nwcorrupt.arch import MLP

    x = np.zeros((4, 2))
    with pytest.raises(ValueError, match="distributed=True needs solver='stored_cg'"):
        predict.ntk_predict(MLP(2, "relu"), x, np.eye(2)[[0, 1, 0, 1]], x, solver="cholesky", distributed=True)
    cfg = train.TrainConfig(arch=MLP(2, "erf"), width=4, num_classes=2, optimizer=train.Optimizer("adam", 1e-2),
                            batch_size=2, epochs=1, seed=0)
    with pytest.raises(TypeError, match="distributed must be True or False"):
        train.train_ensemble(cfg, x, np.array([0, 1, 0, 1]), x, distributed="yes")


def test_launch_local_ends_the_others_when_one_fails(tmp_path):
    script = tmp_path / "fail.py"
    script.write_text(
        "import os, sys, time\n"
        f"if os.environ['{distributed.ENV_PROCESS_ID}'] == '1':\n    sys.exit(3)\n"
        "time.sleep(120)\n"
    )
    res = distributed.launch_local([sys.executable, str(script)], 2, timeout_s=60)
    assert res[1].returncode == 3 and res[0].returncode != 0  # process 0 was ended, not waited for


# ----------------------------------------------------------------------------- two processes


def test_two_process_collectives_move_exact_bytes(two_processes):
    r0, r1 = two_processes[1]["primitives"]
    for i, r in enumerate((r0, r1)):
        assert (r["index"], r["count"], r["local_devices"], r["devices"]) == (i, 2, 1, 2)
        assert r["gather_exact"] and r["reduce_ok"] and r["broadcast"] == 7.0
        assert "different dtype|shape" in r["mismatch_error"]
        assert "disagree on a test value" in r["disagree_error"]
    assert r0["share"] == [0, 5] and r1["share"] == [5, 10]
    assert r0["robin"] == [0, 2, 4, 6] and r1["robin"] == [1, 3, 5]


def test_distributed_stored_kernel_and_predictor_equal_one_process(two_processes):
    """Each process holds about half the tiles; every access and the stored-CG predictor equal one process's."""
    results = two_processes[1]["stored"]
    assert sum(r["tiles_here"] for r in results) == results[0]["tiles_total"] == 15
    assert sum(r["bytes_here"] for r in results) == results[0]["bytes_total"]
    assert max(r["bytes_here"] for r in results) < 0.55 * results[0]["bytes_total"]
    for r in results:
        assert r["dense_equal"] and r["diag_equal"] and r["rows_equal"] and r["row_equal"]
        assert r["matvec_rel"] < 1e-14 and r["matvec_exact_rel"] < 1e-14
        assert r["predict_rel"] < 1e-8  # CG to relative residual 1e-10 on both sides
        assert r["predict_vs_dense_rel"] < 1e-8  # and the Cholesky answer
        assert r["iterations"][0] > 5 and abs(r["iterations"][0] - r["iterations"][1]) <= 1
        assert max(r["residuals"]) <= 1e-10
        assert r["pivoted_rel"] < 1e-8
    assert results[0]["predict_rel"] == results[1]["predict_rel"]  # both processes return the same answer


def test_distributed_ensemble_equals_one_process_and_resumes(two_processes):
    folder, results = two_processes
    for r in results["ensemble"]:
        assert r["logits_max_diff"] < 1e-12 and r["losses_max_diff"] < 1e-12 and r["fit_equal"]
        assert r["num_trained"] == 9
        assert (r["again_loaded"], r["again_trained"], r["again_equal"]) == (9, 0, True)
    assert (folder / "ensemble-shared" / "ensemble.npz").is_file()


def test_distributed_study_run_equals_one_process(tmp_path):
    """`nwcorrupt run ... --distributed` in 2 processes stores the same records as one process, each point once."""
    cmd = [sys.executable, "-m", "nwcorrupt.cli", "run", "centroid_rules", "--scale", "tiny", "--quiet"]
    subprocess.run(cmd + ["--out", str(tmp_path / "one")], check=True, env=_env(), capture_output=True, timeout=600)
    res = distributed.launch_local(cmd + ["--out", str(tmp_path / "two"), "--distributed"], 2, env=_env(),
                                   timeout_s=600)
    assert [r.returncode for r in res] == [0, 0], res[0].stderr[-2000:] + res[1].stderr[-2000:]
    assert "centroid_rules (tiny)" in res[0].stdout and "centroid_rules" not in res[1].stdout  # process 0 reports

    def records(folder):
        return {p.name: json.loads(p.read_text()) for p in sorted((folder / "records").glob("*.json"))}

    one, two = records(tmp_path / "one"), records(tmp_path / "two")
    assert len(one) > 1 and one.keys() == two.keys()
    for name in one:
        assert two[name]["metrics"] == one[name]["metrics"]
    # a second distributed run finds everything stored and recomputes nothing
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two" / "records").glob("*.json")}
    res = distributed.launch_local(cmd + ["--out", str(tmp_path / "two"), "--distributed"], 2, env=_env(),
                                   timeout_s=600)
    assert [r.returncode for r in res] == [0, 0]
    assert "0 points run" in res[0].stdout
    assert {p.name: p.stat().st_mtime_ns for p in (tmp_path / "two" / "records").glob("*.json")} == before
