"""The two_stage study: parameters, the constant fit, the real-data pair and its logged training, records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nwcorrupt import data
from nwcorrupt import two_stage as ts
from nwcorrupt.experiments import catalog
from nwcorrupt.experiments.studies import two_stage as study


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(taus=(0.0, 0.5)), "taus"),
        (dict(taus=(0.1, 0.1)), "distinct"),
        (dict(sweep_n_snr2=(1.0, -2.0)), "sweep_n_snr2"),
        (dict(d=50, n=100), "d must be at least"),
        (dict(steps=7, log_every=2), "multiple of log_every"),
        (dict(real_n_train=101), "even"),
        (dict(real_classes=(3, 3)), "real_classes"),
        (dict(real_optimizers=("adam", "rmsprop")), "real_optimizers"),
        (dict(parts=("trajectory", "nope")), "parts"),
        (dict(lr=float("inf")), "lr"),
    ],
)
def test_params_reject_bad_values_before_any_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        study.Params(**kwargs)


def test_quick_scale_is_the_full_recipe_made_smaller():
    full, quick = catalog.load("two_stage", "full").params, catalog.load("two_stage", "quick").params
    for key in ("n", "d", "m", "lr", "sigma0", "sigma_xi", "log_every", "study_noise", "n_snr2", "real_dataset",
                "real_classes", "real_flip", "real_hidden", "real_width", "real_adam_lr", "real_sgd_lr",
                "real_batch_size", "real_optimizers"):  # fmt: skip
        assert getattr(quick, key) == getattr(full, key), key
    assert set(quick.taus) <= set(full.taus) and set(quick.sweep_taus) <= set(full.sweep_taus)
    assert set(quick.sweep_n_snr2) <= set(full.sweep_n_snr2) and {0.5, 1, 2, 4, 8} <= set(quick.sweep_n_snr2)


def test_fit_constant_brackets_the_change():
    c = study.fit_constant([0.35, 0.7, 1.4, 2.1, 2.8, 5.6], [0, 0, 0.33, 0.5, 1, 1])
    assert (c["lower"], c["upper"]) == (1.4, 2.1) and c["estimate"] == pytest.approx(math.sqrt(1.4 * 2.1))
    # a majority below a failure does not count: the upper end is where every larger value has windows
    c = study.fit_constant([1, 2, 3, 4], [0, 1, 0, 1])
    assert (c["lower"], c["upper"]) == (3, 4)
    assert study.fit_constant([1, 2], [1, 1])["lower"] is None and study.fit_constant([1, 2], [0, 0])["upper"] is None


def test_rho_of_the_rows_own_filters_matches_a_loop():
    tr = ts.simulate_seeds(8, 40, 3, 2.0, 0.3, seeds=[0], lr=0.2, steps=6, log_every=2, n_test=10)
    got = study._network_series(tr, 0)
    flipped = tr.flipped[0]
    y_noisy = tr.data[0].y_noisy
    ref = np.zeros((tr.t.size, 8))
    for i in range(8):
        j = 0 if y_noisy[i] > 0 else 1
        ref[:, i] = tr.rho[0][:, j, :, i].max(axis=1)
    np.testing.assert_allclose(got["rho_clean"], ref[:, ~flipped].mean(axis=1))
    np.testing.assert_allclose(got["rho_flipped"], ref[:, flipped].mean(axis=1) if flipped.any() else 0.0)


def _real_params(**kw):
    base = dict(parts=("real",), real_dataset="digits", real_classes=(3, 5), real_flip=0.2, real_n_train=120,
                real_width=64, real_epochs=40, real_batch_size=32)  # fmt: skip
    base.update(kw)
    return study.Params(**base)


def test_pair_dataset_is_balanced_with_exact_flips_per_class():
    params = _real_params()
    ds, noisy = study.pair_dataset(params)
    raw = data.load("digits", normalize="none")
    assert ds.x_train.shape[0] == 120 and np.bincount(ds.y_train).tolist() == [60, 60]
    # labels: 0 for class 3, 1 for class 5; every training row is a row of the raw set with that class
    for x, y in zip(ds.x_train[:10], ds.y_train[:10]):
        (rows,) = np.nonzero((raw.x_train == x).all(axis=1))
        assert raw.y_train[rows[0]] == (5 if y == 1 else 3)
    assert set(np.unique(raw.y_test[np.isin(raw.y_test, [3, 5])])) == {3, 5}
    assert ds.x_test.shape[0] == int(np.isin(raw.y_test, [3, 5]).sum())
    for cls in (0, 1):
        assert ((ds.y_train == cls) & (noisy != cls)).sum() == math.floor(0.2 * 60)


def test_logged_training_fits_clean_rows_before_flipped_ones():
    params = _real_params()
    ds, noisy = study.pair_dataset(params)
    log = study.train_logged(params, "adam", ds, noisy)
    assert len(log["test_accuracy"]) == params.real_epochs + 1
    fc, ff = np.asarray(log["fit_clean"]), np.asarray(log["fit_flipped"])
    first_clean = int(np.argmax(fc >= 0.95))
    assert fc[first_clean] >= 0.95 and ff[first_clean] < 0.5  # clean fitted while the flipped rows are not
    assert ff[-1] > ff[first_clean]  # and the flipped ones are memorised later
    # the log is the definition: train accuracy = fraction of rows at their observed label
    flipped = noisy != ds.y_train
    for e in (0, first_clean, params.real_epochs):
        expect = (fc[e] * (~flipped).sum() + ff[e] * flipped.sum()) / flipped.size
        assert log["train_accuracy"][e] == pytest.approx(expect)


def test_one_trajectory_point_records_stages_series_and_the_lazy_run():
    params = study.Params(parts=("trajectory",), n=40, d=800, m=8, steps=60, log_every=2, n_test=200, seeds=2,
                          taus=(0.2,))  # fmt: skip
    rec = study.run_point(params, {"part": "trajectory", "tau": 0.2})
    assert len(rec["t"]) == 31 and set(rec["series"]) == {"network", "lazy"}
    for model in ("network", "lazy"):
        assert len(rec["stages"][model]) == 2
        assert all(len(v) == 31 for v in rec["series"][model].values())
    # the record's stages equal an independent reading of the same runs
    tr = ts.simulate_seeds(40, 800, 8, ts.mu_norm_for(4.0, 40, 800), 0.2, seeds=[0, 1], lr=0.05, steps=60, log_every=2,
                           n_test=200)  # fmt: skip
    for s in range(2):
        ok = np.flatnonzero((tr.fit_clean[s] == 1) & (tr.fit_flipped[s] == 0))
        expect = None if not ok.size else int(tr.t[ok[0]])
        assert rec["stages"]["network"][s]["window_start"] == expect
    tables = study.tables(params, [{"point": {"part": "trajectory", "tau": 0.2}, "metrics": rec}])
    assert {"stages", "trajectory"} <= set(tables)
