"""The nwcorrupt command."""

from __future__ import annotations

import json

import numpy as np

from nwcorrupt import cli, data


def test_demo_on_digits_writes_table_and_figure(tmp_path, capsys):
    rc = cli.main(["demo", "--dataset", "digits", "--n-train", "500", "--out", str(tmp_path), "--quiet"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "acc_overlap" in out and "acc_euclidean" in out
    record = json.loads((tmp_path / "demo.json").read_text())
    rows = record["rows"]
    assert [r["p"] for r in rows if r["noise"] == "replacement"] == list(cli.DEMO_PS)
    assert (tmp_path / "demo_corrupted.png").stat().st_size > 1000
    csv_lines = (tmp_path / "demo.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + len(rows)
    # the table matches a direct computation at one point
    clean = [r for r in rows if r["p"] == 0.0 and r["noise"] == "additive"][0]
    ds = data.load("digits", n_train=500)
    from nwcorrupt import metrics, prototype

    acc = metrics.accuracy(prototype.predict(ds.x_test, ds.x_train, ds.y_train, rule="euclidean"), ds.y_test)
    assert np.isclose(clean["acc_euclidean"], acc)
    # heavy corruption degrades accuracy, p = 0 is far above chance
    assert clean["acc_overlap"] > 0.8


def test_demo_reports_missing_data_set(tmp_path, capsys):
    rc = cli.main(["demo", "--dataset", "fashion_mnist", "--data-dir", str(tmp_path), "--out", str(tmp_path)])
    assert rc == 2
    assert "apt-get install dataset-fashion-mnist" in capsys.readouterr().err
