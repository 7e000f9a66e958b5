"""Experiment configs, the resumable runner and reports."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path

import pytest

from nwcorrupt import cli
from nwcorrupt.experiments import catalog, runner, studies
from nwcorrupt.experiments.schema import ConfigError, parse_config
from nwcorrupt.experiments.store import point_id

TRAINING_STUDIES = ("accuracy_vs_corruption", "activations", "alignment", "architectures", "centroid_comparison", "finite_vs_infinite", "labels_and_inputs", "predictive_power",
                    "heavy_corruption", "ptrain_ptest", "snr_sweep")
CONFIGS = sorted(catalog.names(), key=lambda name: (name != "centroid_rules", name))  # CONFIGS[0]: a cheap study


def load(name, scale, **overrides):
    return catalog.load(name, scale, overrides=overrides or None)


def test_every_registered_study_ships_a_config_with_the_three_scales():
    assert catalog.names() == studies.names()
    for name in catalog.names():
        assert {"tiny", "quick", "full"} <= set(catalog.scales(name)), name
        assert catalog.document(name)["study"] == name


@pytest.mark.parametrize("path", CONFIGS)
def test_every_config_validates_at_every_scale(path):
    for scale in catalog.scales(path):
        cfg = load(path, scale)
        assert cfg.study == path in studies.names()
        assert len(runner.plan(cfg)) >= 1


# studies whose own test module runs the tiny scale end to end once and reuses its records (the same checks)
OWN_END_TO_END = ("architectures",)


@pytest.mark.parametrize("path", [c for c in CONFIGS if c not in OWN_END_TO_END])
def test_every_study_runs_end_to_end_at_tiny_scale(path, tmp_path):
    cfg = load(path, "tiny")
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
    cfg = load(CONFIGS[0], "tiny")
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
    assert cli.main(["run", path, "--scale", "tiny", "--out", str(tmp_path), "--quiet"]) == 0
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
    runner.run(load(CONFIGS[0], "tiny"), tmp_path, quiet=True, max_points=1)
    with pytest.raises(ConfigError, match="different configuration"):
        runner.run(load(CONFIGS[0], "tiny", k=3), tmp_path, quiet=True)


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

    runner.run(load(CONFIGS[0], "tiny"), tmp_path, quiet=True)
    plt.close("all")
    runner.report(tmp_path, formats=("png",))
    assert plt.get_fignums() == []
    assert (tmp_path / "figures" / "accuracy_vs_p.png").stat().st_size > 1000


# --- sweep lists: a point is keyed by its own parameters ---------------------------------------


@pytest.mark.parametrize("name", CONFIGS)
def test_declared_sweep_lists_enumerate_exactly_the_points(name):
    # an independent enumeration: the product of the declared lists, in declared order
    for scale in catalog.scales(name):
        params = load(name, scale).params
        sweeps = studies.sweeps(name)
        if not getattr(studies.get(name), "POINTS_ARE_PRODUCT", True):
            # a study of parts: each point's values come from the lists that feed its keys, no repeats
            pts = studies.get(name).points(params)
            assert len({json.dumps(p, sort_keys=True) for p in pts}) == len(pts), (name, scale)
            for pt in pts:
                for key, value in pt.items():
                    feeding = [f for f, k in sweeps.items() if k == key]
                    assert feeding and any(value in getattr(params, f) for f in feeding), (name, scale, pt, key)
            continue
        fields = list(sweeps)
        expected = [dict(zip([sweeps[f] for f in fields], combo))
                    for combo in itertools.product(*(getattr(params, f) for f in fields))]
        assert studies.get(name).points(params) == expected, (name, scale)


def _reduced(params, field):
    """params with the sweep list ``field`` cut to one value (one that the study accepts)."""
    for value in getattr(params, field):
        try:
            return dataclasses.replace(params, **{field: (value,)})
        except ValueError:
            continue
    return None


@pytest.mark.parametrize("name", CONFIGS)
def test_a_point_id_does_not_depend_on_the_other_points(name):
    cfg = load(name, "quick")
    ids = {json.dumps(pt, sort_keys=True): pid for pid, pt, _ in runner.plan(cfg)}
    for field in studies.sweeps(name):
        params = _reduced(cfg.params, field)
        if params is None:
            continue
        small = dataclasses.replace(cfg, params=params)
        for pid, pt, _ in runner.plan(small):
            if field in studies.depends_on(name, cfg.params, pt):
                assert pid != ids[json.dumps(pt, sort_keys=True)]
            else:
                assert pid == ids[json.dumps(pt, sort_keys=True)], (name, field, pt)
    # a shared parameter is part of every point's id
    other = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, seed=cfg.params.seed + 1))
    assert not {pid for pid, _, _ in runner.plan(other)} & set(ids.values())


def test_centroid_comparison_reference_points_depend_on_the_whole_p_list():
    # the record at p_ref stores the centroid model's accuracy at every p of the list
    cfg = load("centroid_comparison", "quick")
    longer = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, ps=(*cfg.params.ps, 0.5)))
    before = {json.dumps(pt, sort_keys=True): pid for pid, pt, _ in runner.plan(cfg)}
    for pid, pt, _ in runner.plan(longer):
        old = before.get(json.dumps(pt, sort_keys=True))
        if pt["p"] == 0.5:
            assert old is None
        elif pt["p"] == cfg.params.p_ref:
            assert pid != old
        else:
            assert pid == old


def _metrics_by_point(folder):
    return {json.dumps(r["point"], sort_keys=True): r["metrics"] for r in runner.folder_records(folder)}


def test_extending_a_sweep_list_computes_exactly_the_new_points(tmp_path, monkeypatch):
    # regression: adding one p to a finished sweep was refused as a "different configuration"
    cfg = load("centroid_rules", "tiny")
    out = tmp_path / "out"
    first = runner.run(cfg, out, quiet=True)
    assert first.ran == first.total == len(cfg.params.noises) * len(cfg.params.ps)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json")}
    study = studies.get("centroid_rules")
    calls = []
    original = study.run_point
    monkeypatch.setattr(study, "run_point", lambda params, pt: calls.append(pt) or original(params, pt))
    longer = load("centroid_rules", "tiny", ps=[*cfg.params.ps, 0.5])
    second = runner.run(longer, out, quiet=True)
    assert sorted(json.dumps(c, sort_keys=True) for c in calls) == sorted(
        json.dumps({"noise": n, "p": 0.5}, sort_keys=True) for n in cfg.params.noises)
    assert (second.ran, second.skipped, second.total) == (len(cfg.params.noises), first.total, first.total + len(cfg.params.noises))
    assert {p.name: p.stat().st_mtime_ns for p in (out / "records").glob("*.json") if p.name in stamps} == stamps
    # config.json describes the union of the runs (numeric lists sorted), the report covers every point
    stored = json.loads((out / "config.json").read_text())
    assert stored["params"]["ps"] == sorted([*cfg.params.ps, 0.5])
    assert stored["params"]["noises"] == list(cfg.params.noises)
    rows = runner.report(out, formats=("png",))["accuracy"][1:]
    assert sorted({r[1] for r in rows}) == sorted([*cfg.params.ps, 0.5])
    # a run of a part of the sweep computes nothing
    calls.clear()
    part = runner.run(load("centroid_rules", "tiny", ps=[0.5]), out, quiet=True)
    assert calls == [] and part.skipped == part.total == len(cfg.params.noises)
    # the new points equal those of a folder that only ever held them
    monkeypatch.setattr(study, "run_point", original)
    alone = tmp_path / "alone"
    runner.run(load("centroid_rules", "tiny", ps=[0.5]), alone, quiet=True)
    new = {k: v for k, v in _metrics_by_point(out).items() if json.loads(k)["p"] == 0.5}
    assert new == _metrics_by_point(alone)
    assert {p.name for p in (alone / "records").glob("*.json")} <= set(p.name for p in (out / "records").glob("*.json"))


def test_changing_a_shared_parameter_is_refused_naming_the_keys(tmp_path):
    cfg = load("centroid_rules", "tiny")
    runner.run(cfg, tmp_path, quiet=True, max_points=1)
    before = sorted((tmp_path / "records").glob("*.json"))
    k, n = cfg.params.k, cfg.params.n_train
    with pytest.raises(ConfigError, match="different configuration") as err:
        runner.run(load("centroid_rules", "tiny", k=k + 1, n_train=n + 10, ps=[0.5]), tmp_path, quiet=True)
    msg = str(err.value)
    assert f"k = {k} there, {k + 1} here" in msg and f"n_train = {n} there, {n + 10} here" in msg
    assert "ps" not in msg.split(".")[0]  # sweep lists are not among the differing keys
    with pytest.raises(ConfigError, match="study 'centroid_rules' there, 'noise_illustration' here"):
        runner.run(load("noise_illustration", "tiny"), tmp_path, quiet=True)
    assert sorted((tmp_path / "records").glob("*.json")) == before
    assert json.loads((tmp_path / "config.json").read_text())["params"]["k"] == k


def test_a_folder_of_the_old_layout_is_refused_not_reused(tmp_path):
    # the first layout keyed each point by the whole configuration; its records must not be
    # trusted under the new ids (nor silently recomputed beside them)
    cfg = load("centroid_rules", "tiny")
    runner.run(cfg, tmp_path, quiet=True)
    doc = json.loads((tmp_path / "config.json").read_text())
    old = {"study": doc["study"], "scale": doc["scale"], "params": doc["params"]}  # what the old layout wrote
    (tmp_path / "config.json").write_text(json.dumps(old))
    n = len(list((tmp_path / "records").glob("*.json")))
    with pytest.raises(ConfigError, match="layout 1"):
        runner.run(cfg, tmp_path, quiet=True)
    with pytest.raises(ConfigError, match="layout 1"):
        runner.format_plan(cfg, tmp_path)
    assert len(list((tmp_path / "records").glob("*.json"))) == n
    # its report still works: such a folder held a single configuration
    assert len(runner.report(tmp_path, formats=("png",))["accuracy"]) > 1


def test_a_record_under_a_wrong_id_is_not_trusted(tmp_path):
    cfg = load("centroid_rules", "tiny")
    runner.run(cfg, tmp_path, quiet=True)
    (pid_a, pt_a, _), (pid_b, _, _) = runner.plan(cfg)[:2]
    rec = json.loads((tmp_path / "records" / f"{pid_a}.json").read_text())
    (tmp_path / "records" / f"{pid_b}.json").write_text(json.dumps(rec))
    from nwcorrupt.experiments.errors import DamagedFileWarning

    n = len(runner.plan(cfg))
    with pytest.warns(DamagedFileWarning, match=f"its id is '{pid_a}', not '{pid_b}'"):
        records = runner.folder_records(tmp_path)  # moved aside and left out, never read as point b
    assert len(records) == n - 1 and pid_b not in {r["id"] for r in records}
    assert point_id(rec["key"]) == pid_a == rec["id"]
    # a record with the right id but another point's key is not trusted either
    rec["id"] = pid_b
    (tmp_path / "records" / f"{pid_b}.json").write_text(json.dumps(rec))
    with pytest.warns(DamagedFileWarning, match="does not hold point"):
        assert len(runner.folder_records(tmp_path)) == n - 1


# --- a results folder heals: damaged files are moved aside and recomputed -------------------------


def _damage(path, how):
    if how == "truncated":
        path.write_text(path.read_text()[: len(path.read_text()) // 2])
    elif how == "empty":
        path.write_text("")
    else:  # valid JSON that is not a finished record
        path.write_text('{"id": "x"}')


@pytest.mark.parametrize("how", ["truncated", "empty", "not_a_record"])
def test_a_damaged_record_is_moved_aside_and_recomputed(tmp_path, how):
    from nwcorrupt.experiments.errors import DamagedFileWarning

    cfg = load(CONFIGS[0], "tiny")
    runner.run(cfg, tmp_path, quiet=True)
    before = {p.name: json.loads(p.read_text())["metrics"] for p in (tmp_path / "records").glob("*.json")}
    victim = sorted((tmp_path / "records").glob("*.json"))[0]
    _damage(victim, how)
    with pytest.warns(DamagedFileWarning, match=str(victim.name)):
        assert len(runner.folder_records(tmp_path)) == len(before) - 1  # the report leaves it out, by name
    moved = list((tmp_path / "damaged").iterdir())
    assert len(moved) == 1 and moved[0].name.startswith(victim.name)  # kept, not deleted
    assert [pt for pt in runner.missing_points(tmp_path)]  # the folder knows it is incomplete
    assert cli.main(["report", str(tmp_path)]) == 3
    summary = runner.run(cfg, tmp_path, quiet=True)  # the next run recomputes exactly that point
    assert summary.ran == 1 and summary.skipped == len(before) - 1
    after = {p.name: json.loads(p.read_text())["metrics"] for p in (tmp_path / "records").glob("*.json")}
    assert after == before
    assert cli.main(["report", str(tmp_path)]) == 0


def test_a_damaged_record_found_by_a_run_is_recomputed(tmp_path):
    from nwcorrupt.experiments.errors import DamagedFileWarning

    cfg = load(CONFIGS[0], "tiny")
    runner.run(cfg, tmp_path, quiet=True)
    victim = sorted((tmp_path / "records").glob("*.json"))[-1]
    _damage(victim, "truncated")
    with pytest.warns(DamagedFileWarning, match="does not parse as JSON"):
        summary = runner.run(cfg, tmp_path, quiet=True)
    assert summary.ran == 1 and json.loads(victim.read_text())["id"] == victim.stem


def test_a_damaged_config_is_moved_aside_rebuilt_by_a_run_and_named_by_a_report(tmp_path, capsys):
    from nwcorrupt.experiments.errors import DamagedFileWarning

    cfg = load(CONFIGS[0], "tiny")
    runner.run(cfg, tmp_path, quiet=True)
    n = len(list((tmp_path / "records").glob("*.json")))
    (tmp_path / "config.json").write_text("{not json")
    assert cli.main(["report", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "config.json does not parse as JSON" in err and "moved to" in err and "nwcorrupt run" in err
    assert list((tmp_path / "damaged").glob("config.json.*"))
    (tmp_path / "config.json").write_text('["a list"]')
    with pytest.warns(DamagedFileWarning, match="holds a JSON list"):
        summary = runner.run(cfg, tmp_path, quiet=True)  # rebuilt; every finished record reused
    assert summary.ran == 0 and summary.skipped == n
    assert cli.main(["report", str(tmp_path)]) == 0
