"""The dilution study: its data, its theory columns against an independent solve, its reports."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from nwcorrupt import data, precision, predict
from nwcorrupt.experiments.studies import dilution as D

SMALL = D.Params(n_clean=50, n_test=100, width=16, depths=(1,), epochs=2, min_steps=0, batch_size=25, repeats=1,
                 parts=("alpha",), alphas=(0, 3), theory_max_rows=400, mc_samples=500)


def test_pool_images_are_other_images_of_the_data_set():
    s = D.setting(SMALL, {"part": "alpha", "depth": 1, "alpha": 3})
    ds, dil = D.diluted_set(SMALL, s)
    full = data.load("mnist", normalize="none")
    clean_rows = {row.tobytes() for row in ds.x_train}
    noisy = dil.dataset.x_train[~dil.clean_mask]
    assert noisy.shape == (150, 784) and not dil.with_replacement
    assert not any(row.tobytes() in clean_rows for row in noisy)
    # each noisy image is an MNIST training image, and its recorded class is that image's label
    lookup = {row.tobytes(): int(y) for row, y in zip(full.x_train, full.y_train)}
    np.testing.assert_array_equal([lookup[row.tobytes()] for row in noisy], dil.source_labels[~dil.clean_mask])


def test_theory_columns_match_an_independent_solve_and_alpha_zero_has_no_noise():
    rec = D.run_point(SMALL, {"part": "alpha", "depth": 1, "alpha": 3})
    s = D.setting(SMALL, {"part": "alpha", "depth": 1, "alpha": 3})
    ds, dil = D.diluted_set(SMALL, s)
    with precision.x64():
        f = np.asarray(predict.ntk_predict(D.kernel_arch(1), dil.dataset.x_train.astype(np.float64),
                                           dil.law.mean_targets(), ds.x_test.astype(np.float64),
                                           diag_reg=SMALL.diag_reg))
    assert rec["theory"]["ntk"]["mean_accuracy"] == pytest.approx(np.mean(f.argmax(1) == ds.y_test))
    assert 0.1 < rec["theory"]["ntk"]["predicted_accuracy"] < rec["theory"]["ntk"]["mean_accuracy"] + 0.05
    assert rec["n_rows"] == 200 and rec["n_noisy"] == 150
    assert len(rec["epoch_accuracy_clean"]) == len(rec["epoch_accuracy_noisy"]) == SMALL.epochs
    assert all(0.0 <= v <= 1.0 for v in rec["train_accuracy_clean"] + rec["train_accuracy_noisy"])
    assert all(0.0 <= v <= 1.0 for v in rec["epoch_accuracy_clean"] + rec["epoch_accuracy_noisy"])
    clean = D.run_point(SMALL, {"part": "alpha", "depth": 1, "alpha": 0})
    th = clean["theory"]["ntk"]
    assert clean["n_noisy"] == 0 and th["predicted_accuracy"] == pytest.approx(th["mean_accuracy"])
    assert clean["train_accuracy_noisy"] == [None] and clean["epoch_accuracy_noisy"] == [None] * SMALL.epochs


def test_theory_is_skipped_above_the_row_limit_with_the_reason():
    params = dataclasses.replace(SMALL, theory_max_rows=100)
    rec = D.run_point(params, {"part": "alpha", "depth": 1, "alpha": 3})
    assert "200 training rows > theory_max_rows = 100" in rec["theory"]["skipped"]


def test_required_sizes_interpolate_in_log_n_and_slopes_fit_log_log():
    def rec(n, alpha, acc, pred):
        return {"point": {"part": "clean_size", "n_clean": n, "alpha": alpha},
                "metrics": {"test_accuracy": [acc], "theory": {"ntk": {"predicted_accuracy": pred}}}}

    params = dataclasses.replace(SMALL, accuracy_targets=(0.7,))
    records = [rec(100, 0, 0.6, 0.65), rec(200, 0, 0.8, 0.75), rec(200, 3, 0.6, 0.6), rec(800, 3, 0.8, 0.8)]
    rows = D.required_sizes(params, records)
    assert rows[0][:3] == [0.0, 0.7, pytest.approx(math.sqrt(100 * 200))]
    assert rows[0][3] == pytest.approx(100 * 2 ** (0.05 / 0.1))
    assert rows[1][2] == pytest.approx(math.sqrt(200 * 800))
    # a curve already above the target at the smallest N, or never reaching it, gives no N
    high = D.required_sizes(dataclasses.replace(params, accuracy_targets=(0.62,)), records[:2])
    assert math.isnan(high[0][3]) and "NTK: <= 100" in high[0][4] and high[0][2] == pytest.approx(100 * 2 ** 0.1)
    never = D.required_sizes(dataclasses.replace(params, accuracy_targets=(0.9,)), records[:2])
    assert math.isnan(never[0][2]) and "networks: not reached" in never[0][4]
    # N proportional to 1 + alpha gives slope 1
    lin = [[a, 0.7, 50 * (1 + a), 60 * (1 + a), ""] for a in (0.0, 3.0, 9.0)]
    slopes = {r[1]: r[2] for r in D.size_slopes(lin)}
    assert slopes["networks"] == pytest.approx(1.0) and slopes["ntk_predicted"] == pytest.approx(1.0)


def test_training_runs_epochs_passes_but_at_least_min_steps():
    params = dataclasses.replace(SMALL, epochs=10, min_steps=500)
    assert D.train_steps(params, 200, 128) == 500  # 10 passes of 2 steps would be 20
    assert D.train_steps(params, 10000, 128) == 790  # 10 passes of ceil(10000 / 128) = 79 steps
    rec = D.run_point(dataclasses.replace(SMALL, min_steps=30), {"part": "alpha", "depth": 1, "alpha": 0})
    assert rec["steps"] == 30 and len(rec["epoch_accuracy_clean"]) == 15  # 2 steps per pass of 50 rows


def test_accuracy_targets_only_shape_the_report(tmp_path):
    from nwcorrupt.experiments import catalog, runner

    cfg = catalog.load("dilution", "quick")
    other = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, accuracy_targets=(0.45, 0.5)))
    assert [pid for pid, _, _ in runner.plan(cfg)] == [pid for pid, _, _ in runner.plan(other)]
    moved = dataclasses.replace(cfg, params=dataclasses.replace(cfg.params, n_test=500))
    assert not {pid for pid, _, _ in runner.plan(moved)} & {pid for pid, _, _ in runner.plan(cfg)}


def test_points_cover_every_part_with_its_own_keys():
    params = D.Params()
    pts = D.points(params)
    parts = {p["part"] for p in pts}
    assert parts == set(D.PARTS)
    assert sum(p["part"] == "alpha" for p in pts) == len(params.depths) * len(params.alphas)
    s = D.setting(params, {"part": "batch", "batch_size": 0})
    assert s.h_alpha and s.batch_size == params.batch_size and s.alpha == params.fixed_alpha
    s = D.setting(params, {"part": "structured", "order": "reverse", "delta": 0.5})
    assert s.alpha == params.structured_alpha and s.noise == ("structured", "reverse", 0.5)


@pytest.mark.parametrize("change,match", [
    ({"parts": ("alpha", "bogus")}, "parts must be one of"),
    ({"deltas": (0.5, 1.5)}, "deltas must lie in \\[0, 1\\]"),
    ({"alphas": (-1.0,)}, "alphas must be"),
    ({"sources": ("pool", "sky")}, "sources must be one of"),
    ({"n_clean": 0}, "n_clean must be"),
    ({"optimizer": "lbfgs"}, "optimizer must be one of"),
    ({"parameterization": "ntk"}, "torch_default"),
])
def test_bad_parameters_raise_naming_the_field(change, match):
    with pytest.raises((ValueError, TypeError), match=match):
        dataclasses.replace(D.Params(), **change)
