"""Experiment configs, the resumable runner and reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nwcorrupt import cli
from nwcorrupt.experiments import runner, studies
from nwcorrupt.experiments.schema import ConfigError, load_config, parse_config

TRAINING_STUDIES = ("accuracy_vs_corruption", "activations", "centroid_comparison", "finite_vs_infinite",
                    "heavy_corruption", "ptrain_ptest", "snr_sweep")
CONFIGS = sorted(Path(__file__).resolve().parents[1].joinpath("experiments").glob("*.toml"), key=lambda p: (p.stem != "centroid_rules", p.stem))  # CONFIGS[0]: a cheap study


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_config_validates_at_every_scale(path):
    for scale in ("quick", "full"):
        cfg = load_config(path, scale)
        assert cfg.study in studies.names()
        assert len(runner.plan(cfg)) >= 1


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.stem)
def test_every_study_runs_end_to_end_at_tiny_scale(path, tmp_path):
    cfg = load_config(path, "tiny")
    summary = runner.run(cfg, tmp_path, quiet=True)
    assert summary.ran == summary.total >= 1
    tables = runner.report(tmp_path, formats=("png",))
    assert tables and all(len(t) >= 2 for t in tables.values())
    assert any((tmp_path / "figures").glob("*.png"))
    if cfg.study in TRAINING_STUDIES:  # the networks' training-set fit is stored and tabled with its flag
        for path in (tmp_path / "records").glob("*.json"):
            assert {"train_loss_mean", "train_accuracy_mean", "train_accuracy_min"} <= set(json.loads(path.read_text())["metrics"])
        assert tables["training_fit"][0][-1] == "fit" and len(tables["training_fit"]) >= 2


def test_resume_recomputes_nothing_and_matches_uninterrupted_run(tmp_path, monkeypatch):
    cfg = load_config(CONFIGS[0], "tiny")
    assert cfg.study == "centroid_rules"
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    runner.run(cfg, full_dir, quiet=True)
    first = runner.run(cfg, part_dir, quiet=True, max_points=2)  # "killed" after two points
    assert first.ran == 2
    stored = {p.name: p.stat().st_mtime_ns for p in (part_dir / "records").glob("*.json")}
    calls = []
    study = studies.get(cfg.study)
    original = study.run_point
    monkeypatch.setattr(study, "run_point", lambda params, pt: calls.append(pt) or original(params, pt))
    second = runner.run(cfg, part_dir, quiet=True)
    assert second.skipped == 2 and second.ran == second.total - 2 == len(calls)
    for name, mtime in stored.items():  # finished records are not rewritten
        assert (part_dir / "records" / name).stat().st_mtime_ns == mtime

    def metrics(folder):
        return {p.name: json.loads(p.read_text())["metrics"] for p in (folder / "records").glob("*.json")}

    assert metrics(part_dir) == metrics(full_dir)
    assert runner.report(part_dir, formats=("png",)) == runner.report(full_dir, formats=("png",))


def test_report_rebuilds_the_tables_the_run_printed(tmp_path, capsys):
    path = CONFIGS[0]
    assert cli.main(["run", str(path), "--scale", "tiny", "--out", str(tmp_path), "--quiet"]) == 0
    printed = capsys.readouterr().out
    table_text = printed[printed.index("accuracy"):]
    csv_before = (tmp_path / "tables" / "accuracy.csv").read_text()
    (tmp_path / "tables" / "accuracy.csv").unlink()
    assert cli.main(["report", str(tmp_path)]) == 0
    reported = capsys.readouterr().out
    assert reported.startswith(table_text.strip())
    assert (tmp_path / "tables" / "accuracy.csv").read_text() == csv_before
    assert (tmp_path / "figures" / "accuracy_vs_p.pdf").is_file()


def test_another_config_in_the_same_folder_is_refused(tmp_path):
    runner.run(load_config(CONFIGS[0], "tiny"), tmp_path, quiet=True, max_points=1)
    with pytest.raises(ConfigError, match="different configuration"):
        runner.run(load_config(CONFIGS[0], "tiny", overrides={"k": 3}), tmp_path, quiet=True)


def _doc(**quick):
    return {"study": "centroid_rules", "quick": {"dataset": "digits", **quick}, "full": {}}


def test_bad_configs_fail_before_any_work(tmp_path, monkeypatch, capsys):
    with pytest.raises(ConfigError, match="unknown study 'nope'"):
        parse_config({"study": "nope", "quick": {}, "full": {}}, "quick")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['epochs'\]"):
        parse_config(_doc(epochs=3), "quick")
    with pytest.raises(ConfigError, match=r"ps must lie in \[0, 1\], got \[1.5\]"):
        parse_config(_doc(ps=[0.5, 1.5]), "quick")
    with pytest.raises(ConfigError, match=r"k: expected an integer"):
        parse_config(_doc(k="many"), "quick")
    with pytest.raises(ConfigError, match="dataset must be one of"):
        parse_config(_doc(dataset="cifar10"), "quick")
    with pytest.raises(ConfigError, match=r"missing scale table\(s\) \['full'\]"):
        parse_config({"study": "centroid_rules", "quick": {}}, "quick")
    with pytest.raises(ConfigError, match="unknown top-level key"):
        parse_config({**_doc(), "seed": 3}, "quick")
    with pytest.raises(ConfigError, match="no scale 'huge'"):
        parse_config(_doc(), "huge")
    # a missing data set: refused by the runner before anything is written
    from nwcorrupt import data

    cfg = parse_config({"study": "centroid_rules", "quick": {"dataset": "kmnist"}, "full": {}}, "quick")
    monkeypatch.delenv("NWCORRUPT_KMNIST_DIR", raising=False)
    data._RAW_CACHE.clear()
    with pytest.raises(ConfigError, match="NWCORRUPT_KMNIST_DIR"):
        runner.run(cfg, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out").exists()
    bad = tmp_path / "bad.toml"
    bad.write_text('study = "centroid_rules"\n[quick]\nps = [2.0]\n[full]\n')
    assert cli.main(["run", str(bad), "--out", str(tmp_path / "o2")]) == 2
    assert "ps must lie in [0, 1]" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists()


def test_report_closes_the_figures_it_saves(tmp_path):
    # regression: every report left its figures open (matplotlib warned after 20 of them)
    import matplotlib.pyplot as plt

    runner.run(load_config(CONFIGS[0], "tiny"), tmp_path, quiet=True)
    plt.close("all")
    runner.report(tmp_path, formats=("png",))
    assert plt.get_fignums() == []
    assert (tmp_path / "figures" / "accuracy_vs_p.png").stat().st_size > 1000
