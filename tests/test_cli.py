"""The nwcorrupt command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nwcorrupt import cli, data
from nwcorrupt.experiments.schema import load_config


def test_demo_runs_heavy_corruption_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--scale", "tiny", "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "meanfield" in text and "rule_leading" in text and "network~ntk" in text
    records = sorted((out / "records").glob("*.json"))
    cfg = load_config(cli.find_config("heavy_corruption"), "tiny")
    assert len(records) == len(cfg.params.noises) * len(cfg.params.ps)
    assert (out / "figures" / "accuracy_vs_p.png").stat().st_size > 1000
    # the printed table carries the stored accuracies
    rec = json.loads(records[0].read_text())
    ntk_mean = float(np.mean(rec["metrics"]["accuracy"]["ntk"]))
    assert f"{ntk_mean:.4f}" in text
    # the leading-order rule in the record equals the overlap rule on the clean training set
    ds = data.load(cfg.params.dataset, n_train=cfg.params.n_train, seed=cfg.params.seed)
    if cfg.params.n_test:
        ds = ds.replace(x_test=ds.x_test[: cfg.params.n_test], y_test=ds.y_test[: cfg.params.n_test])
    from nwcorrupt import metrics, prototype

    rule = metrics.accuracy(prototype.predict(ds.x_test, ds.x_train, ds.y_train, num_classes=10), ds.y_test)
    assert rec["metrics"]["accuracy"]["rule_leading"] == [rule]
    # a rerun computes nothing and reports the same table
    stamps = {p.name: p.stat().st_mtime_ns for p in records}
    assert cli.main(["demo", "--scale", "tiny", "--out", str(out), "--quiet"]) == 0
    again = capsys.readouterr().out
    assert "0 points run" in again and text.splitlines()[0] == again.splitlines()[0]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")} == stamps


def test_demo_finds_its_config_from_any_directory(tmp_path):
    path = cli.find_config("heavy_corruption", cwd=tmp_path)
    assert path.name == "heavy_corruption.toml" and path.is_file()
    with pytest.raises(FileNotFoundError, match="--config"):
        cli.find_config("no_such_study", cwd=tmp_path)


def test_demo_rejects_a_config_of_another_study(tmp_path, capsys):
    other = cli.find_config("centroid_rules")
    assert cli.main(["demo", "--config", str(other), "--scale", "tiny", "--out", str(tmp_path)]) == 2
    assert "heavy_corruption" in capsys.readouterr().err


def test_demo_reports_missing_data_set(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("NWCORRUPT_KMNIST_DIR", raising=False)
    rc = cli.main(["demo", "--dataset", "kmnist", "--scale", "tiny", "--out", str(tmp_path / "out")])
    assert rc == 2
    err = capsys.readouterr().err
    assert "kmnist" in err.lower() and "NWCORRUPT_KMNIST_DIR" in err
    assert not (tmp_path / "out" / "records").exists()  # failed before any work


def test_demo_rejects_bad_overrides(tmp_path, capsys):
    assert cli.main(["demo", "--n-train", "0", "--scale", "tiny", "--out", str(tmp_path)]) == 2
    assert "n_train" in capsys.readouterr().err
