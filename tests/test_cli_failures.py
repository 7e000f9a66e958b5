"""Failures of the nwcorrupt command: one line ``error: ...`` and a non-zero exit; ``--debug`` adds the traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from nwcorrupt import cli
from nwcorrupt.experiments import studies
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.train import TrainingDivergedError

ROOT = Path(__file__).resolve().parents[1]
TINY = ["run", "centroid_rules", "--scale", "tiny", "--quiet"]


def _lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


def _one_error(capsys) -> str:
    """The single non-empty stderr line of an expected failure (no traceback)."""
    err = capsys.readouterr().err
    lines = _lines(err)
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    return lines[0]


def _debug_error(capsys) -> str:
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    assert _lines(err)[-1].startswith("error: ")
    return err


# --out -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("dry_run", [False, True])
def test_out_that_is_a_file_is_refused_before_any_work(tmp_path, capsys, dry_run):
    f = tmp_path / "afile"
    f.write_text("x")
    args = [*TINY, "--out", str(f), *(["--dry-run"] if dry_run else [])]
    assert cli.main(args) == 2
    line = _one_error(capsys)
    assert "--out" in line and str(f) in line and "file" in line
    assert f.read_text() == "x"


@pytest.mark.parametrize("dry_run", [False, True])
def test_out_under_a_file_is_refused(tmp_path, capsys, dry_run):
    f = tmp_path / "afile"
    f.write_text("x")
    out = f / "sub" / "deeper"
    assert cli.main([*TINY, "--out", str(out), *(["--dry-run"] if dry_run else [])]) == 2
    line = _one_error(capsys)
    assert "--out" in line and str(out) in line and f"{f} is a file" in line


def test_out_checked_before_the_config_is_read(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    assert cli.main(["run", "no_such_study", "--out", str(f)]) == 2
    assert "--out" in _one_error(capsys)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root may write anywhere")
@pytest.mark.parametrize("sub", ["", "new"])
def test_out_without_write_permission_is_refused(tmp_path, capsys, sub):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        out = ro / sub if sub else ro
        assert cli.main([*TINY, "--out", str(out)]) == 2
        line = _one_error(capsys)
        assert "--out" in line and str(out) in line and "permission" in line
        assert not (ro / "config.json").exists() and not (ro / "new").exists()
        # a dry run writes nothing: no permission needed
        assert cli.main([*TINY, "--out", str(out), "--dry-run"]) == 0
    finally:
        ro.chmod(0o700)


@pytest.mark.parametrize("sub", ["", "new"])
def test_out_without_write_permission_is_refused_simulated(tmp_path, capsys, monkeypatch, sub):
    # runs as root too: os.access says the folder may not be written
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(cli.os, "access", lambda p, mode, **kw: False if Path(p) == ro else real(p, mode, **kw))
    out = ro / sub if sub else ro
    assert cli.main([*TINY, "--out", str(out)]) == 2
    line = _one_error(capsys)
    assert "--out" in line and str(out) in line and "no permission to write" in line
    assert list(ro.iterdir()) == []
    assert cli.main(["--debug", *TINY, "--out", str(out)]) == 2
    assert "ConfigError" in _debug_error(capsys)


def test_check_out_dir_creates_nothing(tmp_path):
    out = tmp_path / "a" / "b"
    assert cli.check_out_dir(out) == out and not (tmp_path / "a").exists()
    (tmp_path / "f").write_text("")
    with pytest.raises(ConfigError, match="--out"):
        cli.check_out_dir(tmp_path / "f" / "x", write=False)


def test_debug_shows_the_traceback_before_or_after_the_subcommand(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    for argv in (["--debug", *TINY, "--out", str(f)], [*TINY, "--debug", "--out", str(f)]):
        assert cli.main(argv) == 2
        err = _debug_error(capsys)
        assert "ConfigError" in err and str(f) in _lines(err)[-1]


def test_debug_is_documented_in_help(capsys):
    for argv in ([], ["run"]):
        with pytest.raises(SystemExit):
            cli.main([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--debug" in text and "traceback" in text
    assert cli.build_parser().parse_args(["list"]).debug is False
    assert cli.build_parser().parse_args(["--debug", "list"]).debug is True
    assert cli.build_parser().parse_args(["list", "--debug"]).debug is True


# failures while a point runs -------------------------------------------------------------------------


def _patch_run_point(monkeypatch, study: str, exc: BaseException):
    def run_point(params, point):
        raise exc

    monkeypatch.setattr(studies.get(study), "run_point", run_point)


def test_training_divergence_is_one_line_naming_the_point(tmp_path, capsys, monkeypatch):
    msg = "training diverged at epoch 3, step 40 for member k=0, m=1: loss = nan (non-finite). Lower the learning rate."
    _patch_run_point(monkeypatch, "centroid_rules", TrainingDivergedError(msg))
    out = tmp_path / "res"
    argv = [*TINY, "--set", "noises=['additive']", "--set", "ps=[0.9]", "--out", str(out)]
    rc = cli.main(argv)
    assert rc not in (0, None)
    line = _one_error(capsys)
    assert "TrainingDivergedError" in line and "centroid_rules" in line and "'p': 0.9" in line
    assert msg in line and "--debug" in line and "learning rate" in line
    assert not list((out / "records").glob("*.json"))
    assert cli.main(["--debug", *argv]) == rc
    err = _debug_error(capsys)
    assert "TrainingDivergedError" in err and "run_point" in err


def test_training_divergence_hint_names_the_learning_rate_parameter(tmp_path, capsys, monkeypatch):
    _patch_run_point(monkeypatch, "ptrain_ptest", TrainingDivergedError("loss = inf"))
    assert cli.main(["run", "ptrain_ptest", "--scale", "tiny", "--quiet", "--out", str(tmp_path / "r")]) == 1
    line = _one_error(capsys)
    assert "--set learning_rate=" in line and "ptrain_ptest" in line


def test_non_finite_metrics_are_one_line(tmp_path, capsys, monkeypatch):
    nan = {"accuracy": {"overlap": [float("nan")]}}
    monkeypatch.setattr(studies.get("centroid_rules"), "run_point", lambda params, point: nan)
    assert cli.main([*TINY, "--set", "ps=[0.9]", "--out", str(tmp_path / "r")]) == 1
    line = _one_error(capsys)
    assert "NaN or infinite" in line and "metrics.accuracy.overlap[0]" in line


def test_validation_errors_are_one_line_with_exit_2(tmp_path, capsys, monkeypatch):
    for exc in (ValueError("width must be positive, got 0"), TypeError("n_train must be an int, got 'a'")):
        _patch_run_point(monkeypatch, "centroid_rules", exc)
        assert cli.main([*TINY, "--set", "ps=[0.9]", "--out", str(tmp_path / "r")]) == 2
        assert _one_error(capsys) == f"error: {exc}"


def test_an_unexpected_exception_shows_its_traceback_and_asks_for_a_report(tmp_path, capsys, monkeypatch):
    _patch_run_point(monkeypatch, "centroid_rules", KeyError("oops"))
    assert cli.main([*TINY, "--set", "ps=[0.9]", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and "KeyError" in err
    last = _lines(err)[-1]
    assert last.startswith("error: ") and "bug" in last and "report" in last


def test_an_interruption_is_one_line(tmp_path, capsys, monkeypatch):
    _patch_run_point(monkeypatch, "centroid_rules", KeyboardInterrupt())
    assert cli.main([*TINY, "--set", "ps=[0.9]", "--out", str(tmp_path / "r")]) == 130
    assert "interrupted" in _one_error(capsys)


# data sets, configs, report --------------------------------------------------------------------------


def test_missing_data_set_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NWCORRUPT_KMNIST_DIR", raising=False)
    from nwcorrupt import data

    data._RAW_CACHE.clear()
    for extra in ([], ["--dry-run"]):
        assert cli.main([*TINY, "--set", "dataset=kmnist", "--out", str(tmp_path / "r"), *extra]) == 2
        line = _one_error(capsys)
        assert "kmnist" in line and "NWCORRUPT_KMNIST_DIR" in line
    assert not (tmp_path / "r").exists()


def test_data_set_not_found_raised_by_a_point_is_one_line(tmp_path, capsys, monkeypatch):
    from nwcorrupt.data import DatasetNotFoundError

    _patch_run_point(monkeypatch, "centroid_rules", DatasetNotFoundError("data set 'x' is not installed: set NWCORRUPT_X_DIR"))
    assert cli.main([*TINY, "--set", "ps=[0.9]", "--out", str(tmp_path / "r")]) == 2
    assert "NWCORRUPT_X_DIR" in _one_error(capsys)


def test_config_errors_are_one_line(tmp_path, capsys):
    assert cli.main([*TINY, "--set", "k=abc", "--out", str(tmp_path / "r")]) == 2
    assert "k: expected an integer" in _one_error(capsys)
    assert cli.main([*TINY, "--set", "ps", "--out", str(tmp_path / "r")]) == 2
    assert "--set expects KEY=VALUE" in _one_error(capsys)
    assert cli.main(["run", "no_such_study", "--out", str(tmp_path / "r")]) == 2
    assert "unknown study 'no_such_study'" in _one_error(capsys)


def test_report_of_a_missing_folder_a_file_or_a_non_results_folder(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert cli.main(["report", str(missing)]) == 2
    line = _one_error(capsys)
    assert str(missing) in line and "does not exist" in line
    f = tmp_path / "afile"
    f.write_text("x")
    assert cli.main(["report", str(f)]) == 2
    line = _one_error(capsys)
    assert str(f) in line and "is a file" in line
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli.main(["report", str(empty)]) == 2
    line = _one_error(capsys)
    assert str(empty) in line and "not a results folder" in line
    assert cli.main(["report", "--debug", str(f)]) == 2
    _debug_error(capsys)


# the installed command, in a process of its own ------------------------------------------------------


def _nwcorrupt(*argv: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-m", "nwcorrupt.cli", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_command_prints_one_line_or_with_debug_the_traceback(tmp_path):
    (tmp_path / "afile").write_text("x")
    proc = _nwcorrupt(*TINY, "--out", "afile/sub", cwd=tmp_path)
    assert proc.returncode == 2
    assert _lines(proc.stderr) == ["error: --out afile/sub: afile is a file, so no folder can be made under it; "
                                   "choose another --out folder"]
    proc = _nwcorrupt("--debug", *TINY, "--out", "afile", cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback (most recent call last)" in proc.stderr
    assert _lines(proc.stderr)[-1] == "error: --out afile: is an existing file, not a folder; choose a folder for the results"
    proc = _nwcorrupt("report", "nope", cwd=tmp_path)
    assert proc.returncode == 2 and len(_lines(proc.stderr)) == 1 and "nope" in proc.stderr
