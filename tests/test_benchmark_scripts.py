"""The benchmark scripts run end to end (at smoke-test sizes; their real sizes are for docs numbers)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_gpu_study_script_runs_a_study_and_reports_cost_per_network(tmp_path):
    text = _run("benchmarks/gpu_study.py", "centroid_comparison", "--scale", "tiny", "--out", str(tmp_path / "r"))
    assert "on 1 x" in text and "per network" in text and "1 points run" in text
    # a second call resumes: nothing is retrained
    assert "0 points run, 1 already stored" in _run(
        "benchmarks/gpu_study.py", "centroid_comparison", "--scale", "tiny", "--out", str(tmp_path / "r"))


def test_fidelity_script_resumes_and_replaces_a_damaged_file(tmp_path):
    out = tmp_path / "fid.json"
    args = ("benchmarks/fidelity.py", "--k", "2", "--m", "1", "--ps", "0.9", "--noises", "additive",
            "--n-train", "500", "--n-test", "200", "--width", "8", "--epochs", "1", "--out", str(out))
    text = _run(*args)
    rows = json.loads(out.read_text())
    assert len(rows) == 1 and rows[0]["noise"] == "additive" and len(rows[0]["net"]) == 2
    assert 0.0 <= rows[0]["ntk"][0] <= 1.0 and "agree" in text
    _run(*args)  # resumes: the row is not recomputed
    assert json.loads(out.read_text()) == rows
    out.write_text("{not json")
    assert "damaged" in _run(*args)
    assert len(json.loads(out.read_text())) == 1


def test_label_moments_script_prints_the_ratio_to_one_solve():
    text = _run("benchmarks/label_moments.py", "--n", "200", "--m", "50", "--reps", "1")
    row = text.strip().splitlines()[-1].split()
    assert row[0] == "200" and row[1] == "50" and float(row[4]) > 0


def test_conv_kernels_script_prints_nwcorrupt_numbers_for_both_architectures():
    text = _run("benchmarks/conv_kernels.py", "--n", "4", "--channels", "2", "--image", "8", "--repeats", "1",
                "--no-nw-jit")
    for arch in ("pooled", "flatten"):
        assert f"{arch}: N=4 images 8x8x1 float32" in text
    rows = [line.split() for line in text.splitlines() if line.strip().startswith("nwcorrupt (blocked)")]
    assert len(rows) == 2
    for row in rows:
        assert float(row[2]) > 0 and row[-1].replace(",", "").isdigit()  # min time; largest N in the limit
    try:
        import neural_tangents  # noqa: F401
    except ImportError:
        assert "neural-tangents is not installed" in text
    else:
        assert text.count("nt jit (whole N)") >= 2


def test_cnn_training_script_prints_the_scan_to_host_ratio():
    text = _run("benchmarks/cnn_training.py", "--n", "64", "--side", "6", "--channels", "2", "2", "--width", "8",
                "--batch", "32", "--epochs", "1", "--repeats", "1")
    assert "train_member host" in text and "jitted step loop" in text
    assert float(text.strip().splitlines()[-1].split()[-1]) > 0


def test_distributed_benchmark_quick_prints_the_scaling_table_and_the_plan():
    text = _run("benchmarks/distributed.py", "--quick")
    rows = [line for line in text.splitlines() if line.startswith("| 1 |") or line.startswith("| 2 |")]
    assert len(rows) == 2
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    assert cells[0][5] == "1.00" and float(cells[1][5]) > 0  # speed-up column
    assert cells[0][7] == cells[1][7]  # the same accuracy with 2 processes
    assert float(cells[1][10]) < 1e-6  # and the same predictions to the CG tolerance
    plan = _run("benchmarks/distributed.py", "--plan")
    sizes = [int(c.strip().rstrip("k").replace(",", "")) for c in plan.splitlines()[4].strip("|").split("|")[1:]]
    assert sizes == sorted(sizes) and sizes[-1] > 2 * sizes[0]  # more processes hold a larger N


def test_cg_bandwidth_quick_prints_the_fraction_of_the_stream_and_a_correct_product():
    text = _run("benchmarks/cg_bandwidth.py", "--quick")
    rows = {line.split("|")[1].strip(): line for line in text.splitlines() if line.startswith("| ") and "---" not in line}
    assert {"stream (jitted sum of every tile)", "matvec (one CG product)", "square GEMM b x b x b"} <= set(rows)
    matvec = rows["matvec (one CG product)"]
    assert "of the stream" in matvec
    assert float(matvec.split("rel. error vs float64")[1].strip(" |")) < 1e-5  # float32 products, float64 reference


def test_kernels_vs_matmul_quick_prints_both_ratios_and_where_the_time_goes():
    text = _run("benchmarks/kernels_vs_matmul.py", "--quick", "--dtypes", "float64", "--activations", "relu")
    assert "relu float64 N=M=600" in text
    for name in ("kernel(x1, x2)", "kernel(x1)"):
        line = next(line for line in text.splitlines() if line.strip().startswith(name))
        assert float(line.split("time / matmul =")[1].split()[0]) > 0
    for part in ("tile Gram products", "recursion from the Gram", "first touch of the outputs"):
        line = next(line for line in text.splitlines() if line.strip().startswith(part))
        assert float(line.split()[-1]) >= 0


def test_mnist_full_quick_runs_the_device_resident_solve_and_the_float64_check(tmp_path):
    out = tmp_path / "r.json"
    text = _run("benchmarks/mnist_full.py", "--quick", "--resident", "yes", "--json", str(out))
    assert "WALL" in text and "device " in text
    res = json.loads(out.read_text())
    assert res["n"] == 1000 and "on the device" in res["precision"]
    assert res["residual"] <= 1e-5 and res["accuracy"] > 0.7  # p = 0.5: ~0.82 at N = 1000
    assert res["check"]["argmax_agreement"] >= 0.99 and res["check"]["rel_logit_error"] < 1e-3


def test_gpu_table_quick_runs_every_section_and_prints_the_table(tmp_path):
    out = tmp_path / "t.json"
    text = _run("benchmarks/gpu_table.py", "--quick", "--json", str(out))
    assert "| section | what | numbers |" in text and "failed sections" not in text
    res = json.loads(out.read_text())
    assert set(res["rows"]) == {"kernels", "stored", "mixed", "moments", "largest"}
    assert res["header"]["device"]
    stored = res["rows"]["stored"][0]
    assert stored["residual"] <= 1e-5 and stored["accuracy"] > 0.7
    mixed = res["rows"]["mixed"][0]
    assert mixed["residual"] <= 1e-10 and mixed["accuracy"] > 0.7
    mom = res["rows"]["moments"][0]
    assert 0.1 < mom["predicted_accuracy"] <= 1.0 and mom["ratio"] > 0
    largest = res["rows"]["largest"][0]
    assert largest["n"] >= 1000 and largest["run_n"] == 1500 and largest["residual"] <= 1e-5


def test_training_quick_prints_the_ensemble_table_with_equal_members():
    text = _run("benchmarks/training.py", "--quick")
    assert "| width | ensemble (auto)" in text and "\n| 32 |" in text
    diff = float(text.split("max |logit diff| ")[1].split(")")[0])
    assert diff < 1e-4  # the ensemble's members equal the same members trained one by one
