"""NaN and infinite metrics never reach a results folder silently (reliability audit)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from nwcorrupt.experiments import catalog, runner
from nwcorrupt.experiments.errors import NonFiniteMetricsError, NonFiniteWarning
from nwcorrupt.experiments.store import nonfinite_paths
from nwcorrupt.experiments.studies import centroid_rules

STUDY = "centroid_rules"


def test_nonfinite_paths_name_every_bad_number():
    obj = {"a": [1.0, float("nan")], "b": {"c": float("inf"), "d": None, "e": True, "f": "nan"},
           "g": np.array([[0.0, -np.inf]]), "h": np.float32("nan")}  # fmt: skip
    assert sorted(nonfinite_paths(obj)) == ["metrics.a[1]", "metrics.b.c", "metrics.g[0, 1]", "metrics.h"]
    assert nonfinite_paths({"x": [1, 2.5, None, "text"]}) == []


def _poison(monkeypatch, bad_p: float):
    real = centroid_rules.run_point

    def run_point(params, point):
        out = real(params, point)
        if point["p"] == bad_p:
            out["accuracy"][params.rules[0]][0] = math.nan
        return out

    monkeypatch.setattr(centroid_rules, "run_point", run_point)
    return real


def test_a_point_with_nan_metrics_is_not_stored_the_others_are_and_a_rerun_recomputes_it(tmp_path, monkeypatch):
    cfg = catalog.load(STUDY, "tiny")
    points = centroid_rules.points(cfg.params)
    bad_p = points[1]["p"]
    bad = [pt for pt in points if pt["p"] == bad_p]
    real = _poison(monkeypatch, bad_p)
    with pytest.raises(NonFiniteMetricsError, match=r"accuracy\." + cfg.params.rules[0] + r"\[0\]") as err:
        runner.run(cfg, tmp_path, quiet=True)
    assert str(bad[0]) in str(err.value)
    stored = [json.loads(p.read_text()) for p in (tmp_path / "records").glob("*.json")]
    assert len(stored) == len(points) - len(bad)
    assert all(not nonfinite_paths(r["metrics"]) for r in stored)
    assert sorted(map(str, runner.missing_points(tmp_path))) == sorted(map(str, bad))
    monkeypatch.setattr(centroid_rules, "run_point", real)
    summary = runner.run(cfg, tmp_path, quiet=True)
    assert summary.ran == len(bad) and summary.skipped == len(points) - len(bad)


def test_a_study_may_declare_where_nonfinite_values_are_possible(tmp_path, monkeypatch):
    cfg = catalog.load(STUDY, "tiny")
    _poison(monkeypatch, centroid_rules.points(cfg.params)[0]["p"])
    monkeypatch.setattr(centroid_rules, "NONFINITE_METRICS", ("metrics.accuracy",), raising=False)
    summary = runner.run(cfg, tmp_path, quiet=True)
    assert summary.ran == summary.total
    # the report still flags the NaN that reached a table, by table, row and column
    with pytest.warns(NonFiniteWarning, match=r"accuracy\[\d+\]\.(mean|std)"):
        runner.report(tmp_path, formats=("png",))


def test_nonfinite_cells_of_tables():
    tables = {"t": (["a", "b"], [[1.0, "x"], [float("nan"), float("-inf")]])}
    assert runner.nonfinite_cells(tables) == ["t[1].a", "t[1].b"]
