"""The nwcorrupt command."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from nwcorrupt import cli, data
from nwcorrupt.experiments import catalog, studies
from nwcorrupt.experiments.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "nwcorrupt" / "experiments" / "configs"


def test_demo_runs_heavy_corruption_and_resumes(tmp_path, capsys):
    out = tmp_path / "demo"
    rc = cli.main(["demo", "--scale", "tiny", "--out", str(out), "--quiet"])
    assert rc == 0
    text = capsys.readouterr().out
    # the summary table reads like the figures: labels, not the records' internal keys
    assert "mean-field" in text and "leading-order" in text and "network vs" in text
    assert not any(key in text for key in ("meanfield", "rule_leading", "network~ntk"))
    records = sorted((out / "records").glob("*.json"))
    cfg = catalog.load("heavy_corruption", "tiny")
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


def test_demo_and_run_find_the_shipped_configs_from_any_directory(tmp_path, monkeypatch, capsys):
    # regression: configs were looked up in ./experiments or beside the checkout, so an installed
    # package could not find them; they ship inside the package now
    monkeypatch.chdir(tmp_path)
    assert cli.main(["run", "heavy_corruption", "--scale", "tiny", "--dry-run", "--out", "r"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("study heavy_corruption (tiny): 2 points, 0 already stored in r")
    assert not (tmp_path / "r").exists()


def test_demo_rejects_a_config_of_another_study(tmp_path, capsys):
    other = tmp_path / "other.toml"
    other.write_text(catalog.text("centroid_rules"))
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


def _shipped_docs():
    return {p.stem: tomllib.loads(p.read_text()) for p in sorted(CONFIG_DIR.glob("*.toml"))}


def test_list_shows_every_study_with_its_description_and_scales(capsys):
    assert cli.main(["list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    docs = _shipped_docs()
    assert sorted(docs) == studies.names()
    for name, doc in docs.items():
        (line,) = [ln for ln in lines if ln.split()[:1] == [name]]
        assert doc["description"] in line
        scales = [k for k, v in doc.items() if isinstance(v, dict)]
        assert ", ".join(sorted(scales, key=["tiny", "quick", "full"].index)) in line


def test_scale_help_lists_every_scale_the_configs_define(capsys):
    every = {k for doc in _shipped_docs().values() for k, v in doc.items() if isinstance(v, dict)}
    assert {"tiny", "quick", "full"} <= every
    for command in ("run", "demo"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert all(scale in text for scale in every)
        assert ", ".join(catalog.scales()) in text


def test_unknown_study_or_scale_errors_listing_the_valid_ones(tmp_path, capsys):
    assert cli.main(["run", "no_such_study", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "unknown study 'no_such_study'" in err and all(name in err for name in studies.names())
    assert cli.main(["run", "heavy_corruption", "--scale", "huge", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "no scale 'huge'" in err and "tiny, quick, full" in err
    assert cli.main(["run", str(tmp_path / "missing.toml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_set_parses_toml_values_and_strings():
    assert cli.parse_set(["ps=[0.5, 0.9]", "k = 3", "dataset=digits", "noises=['additive']"]) == {
        "ps": [0.5, 0.9], "k": 3, "dataset": "digits", "noises": ["additive"]}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        cli.parse_set(["ps"])


def test_run_by_name_with_set_extends_a_finished_sweep(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    base = ["run", "centroid_rules", "--scale", "tiny", "--set", "noises=['additive']", "--quiet", "--out", "res"]
    assert cli.main([*base, "--set", "ps=[0.9]"]) == 0
    assert "centroid_rules (tiny): 1 points run, 0 already stored" in capsys.readouterr().out
    assert cli.main([*base, "--set", "ps=[0.9, 0.5]"]) == 0
    assert "centroid_rules (tiny): 1 points run, 1 already stored" in capsys.readouterr().out
    assert len(list((tmp_path / "res" / "records").glob("*.json"))) == 2
    assert cli.main([*base, "--set", "ps=[0.5]", "--set", "k=3"]) == 2
    assert "k = 2 there, 3 here" in capsys.readouterr().err
