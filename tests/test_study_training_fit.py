"""Studies that train networks record their training-set fit and flag networks that did not fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nwcorrupt.experiments import catalog, runner
from nwcorrupt.experiments.studies import accuracy_vs_corruption as avc
from nwcorrupt.experiments.studies import heavy_corruption, training_fit


def test_flag_thresholds_and_old_records():
    fit = training_fit.summarize([[0.1, 0.3]], [[1.0, 0.98]])
    assert fit == {"train_loss_mean": pytest.approx(0.2), "train_accuracy_mean": pytest.approx(0.99),
                   "train_accuracy_min": 0.98}
    assert training_fit.flag(1.0, training_fit.FIXED_SET_THRESHOLD) == "ok"
    assert training_fit.flag(0.99, 0.99) == "ok"
    assert training_fit.flag(0.98, 0.99).startswith("UNDERFIT (min train accuracy 0.9800 < 0.99")
    assert training_fit.online_threshold(0.0) == training_fit.FIXED_SET_THRESHOLD
    assert training_fit.online_threshold(0.3) is None
    assert training_fit.flag(0.5, None) == "not checked (online, p > 0)"
    # a record stored before the fields existed
    cols = training_fit.columns({"accuracy": [0.5]}, 0.99)
    assert all(math.isnan(v) for v in cols[:3]) and cols[3:] == [0.99, "not recorded"]
    assert training_fit.columns(fit, 0.99)[:3] == [fit[name] for name in training_fit.FIELDS]
    assert len(training_fit.columns(fit, None)) == len(training_fit.HEADER)
    with pytest.raises(ValueError, match="same non-empty shape"):
        training_fit.summarize([0.1, 0.2], [1.0])


def test_undertrained_heavy_corruption_point_is_flagged_in_the_record_table_and_summary():
    # one epoch at a negligible learning rate: the networks stay at their initialisation
    params = heavy_corruption.Params(dataset="digits", n_train=100, n_test=60, noises=("additive",), ps=(0.5,),
                                     width=16, epochs=1, batch_size=50, learning_rate=1e-7, k=2, m=2)
    rec = heavy_corruption.run_point(params, {"noise": "additive", "p": 0.5})
    assert set(training_fit.FIELDS) <= set(rec)
    assert 0.0 <= rec["train_accuracy_min"] <= rec["train_accuracy_mean"] < 0.5  # 10 classes, untrained
    assert rec["train_loss_mean"] > 0.05
    stored = {"point": {"noise": "additive", "p": 0.5}, "metrics": rec}
    header, rows = heavy_corruption.tables(params, [stored])["training_fit"]
    assert header == ["noise", "p", *training_fit.HEADER]
    assert rows[0][:2] == ["additive", 0.5] and rows[0][-1].startswith("UNDERFIT")
    assert "UNDERFIT" in heavy_corruption.summary_table([stored])


def test_networks_that_fit_their_noisy_sets_are_not_flagged():
    params = heavy_corruption.Params(dataset="digits", n_train=100, n_test=60, noises=("additive",), ps=(0.5,),
                                     width=128, epochs=60, batch_size=50, learning_rate=1e-2, k=2, m=1)
    rec = heavy_corruption.run_point(params, {"noise": "additive", "p": 0.5})
    assert rec["train_accuracy_min"] == 1.0
    stored = {"point": {"noise": "additive", "p": 0.5}, "metrics": rec}
    assert heavy_corruption.tables(params, [stored])["training_fit"][1][0][-1] == "ok"
    assert "UNDERFIT" not in heavy_corruption.summary_table([stored])


def test_online_study_fit_at_p0_is_the_clean_training_accuracy_and_p_above_0_is_not_checked():
    params = avc.Params(datasets=("digits",), n_train=100, n_test=60, depth=2, width=16, epochs=2, batch_size=25,
                        learning_rate=1e-4, repeats=2, ps=(0.0, 0.9))
    clean = avc.run_point(params, {"dataset": "digits", "p": 0.0})
    noisy = avc.run_point(params, {"dataset": "digits", "p": 0.9})
    for rec in (clean, noisy):
        assert set(training_fit.FIELDS) <= set(rec)
    # at p = 0 the last epoch's inputs are the clean training images, which the record also
    # evaluates the networks on (through the test-logit path): the accuracies agree
    n = clean["n_train"]
    assert clean["train_accuracy_mean"] == pytest.approx(np.mean(clean["accuracy"]["train_clean"]), abs=1.0 / n)
    assert clean["train_accuracy_min"] == pytest.approx(min(clean["accuracy"]["train_clean"]), abs=1.0 / n)
    records = [{"point": {"dataset": "digits", "p": p}, "metrics": m} for p, m in ((0.0, clean), (0.9, noisy))]
    _, rows = avc.tables(params, records)["training_fit"]
    assert rows[0][-1].startswith("UNDERFIT")  # two epochs at lr 1e-4 do not fit 100 digits
    assert rows[1][-2:] == ["-", "not checked (online, p > 0)"]


def test_report_of_an_undertrained_run_flags_it_in_the_csv_and_the_printed_tables(tmp_path):
    cfg = catalog.load("heavy_corruption", "tiny", overrides={"epochs": 1, "learning_rate": 1e-7})
    runner.run(cfg, tmp_path, quiet=True)
    tables = runner.report(tmp_path, formats=("png",))
    header, *rows = tables["training_fit"]
    assert header == ["noise", "p", *training_fit.HEADER] and len(rows) == len(cfg.params.ps)
    assert all(r[-1].startswith("UNDERFIT") for r in rows)
    assert "UNDERFIT" in (tmp_path / "tables" / "training_fit.csv").read_text()
    assert "UNDERFIT" in runner.format_tables(tables)
