"""Tests of nwcorrupt.compare: finite-width ensembles against the exact NTK/NNGP predictors."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import compare, corruption, data, metrics, precision, predict, train
from nwcorrupt.kernels import MLP


@pytest.fixture(scope="module")
def digits():
    ds = data.load("digits", n_train=200)
    return ds.x_train, ds.y_train, ds.x_test[:200], ds.y_test[:200]


def _small(**kw):
    rng = np.random.default_rng(0)
    x, xt = rng.normal(size=(20, 5)), rng.normal(size=(7, 5))
    y, yt = np.arange(20, dtype=np.int32) % 3, np.arange(7, dtype=np.int32) % 3
    base = dict(noise="additive", p=0.4, widths=(8,), num_inits=2, num_datasets=2, seed=3,
                optimizer=train.Optimizer("sgd", 0.5), batch_size=20, steps=5)
    base.update(kw)
    return (MLP(2, "erf"), x, y, xt, yt), base


def test_networks_approach_ntk_with_width(digits):
    """Full-batch SGD (step η) on MSE ≈ gradient flow at t = steps with learning rate 2η.

    W_std = 0.5 keeps the init-averaged initial output (O(1/√M) at any width) small,
    so the finite-width deviation dominates the narrow network. Measured: relative
    distance 0.180 (width 16) vs 0.050 (width 1024), agreement 0.965 vs 0.990.
    """
    x, y, xt, yt = digits
    r = compare.compare_widths(
        MLP(2, "erf", W_std=0.5), x, y, xt, yt, noise=corruption.Replacement(), p=0.5, widths=(16, 1024),
        num_datasets=1, num_inits=8, t="match", optimizer=train.Optimizer("sgd", 30.0), batch_size=200,
        steps=400,
    )
    assert r.t == 400.0 and r.ntk_learning_rate == 60.0
    d_narrow, d_wide = r.rel_distance_ntk.mean(axis=1)
    assert d_wide < 0.5 * d_narrow, r.rel_distance_ntk
    assert d_wide < 0.1, r.rel_distance_ntk
    a_narrow, a_wide = r.agreement_ntk.mean(axis=1)
    assert a_wide > a_narrow, r.agreement_ntk
    assert a_wide > 0.95
    # the wide ensemble also agrees with the NNGP about as often as the NTK does (±5 points)
    ntk_vs_nngp = metrics.agreement(r.ntk_logits[0], r.nngp_logits[0])
    assert abs(r.agreement_nngp[1, 0] - ntk_vs_nngp) < 0.05


def test_kernel_predictions_equal_direct_calls():
    """NTK (finite t and t = ∞) and NNGP equal direct predict calls on the same noisy sets (1e-12)."""
    (arch, x, y, xt, yt), kw = _small()
    onehot = np.eye(3)[y]
    model = corruption.Additive()
    # "match" and the numeric t use the recipe's NTK learning rate 2η = 1.0
    for t, expect_t in ((None, None), ("match", 5.0), (2.5, 2.5)):
        r = compare.compare_widths(arch, x, y, xt, yt, t=t, diag_reg=1e-4, **kw)
        assert r.noise_seeds == (3, 4) and r.t == expect_t
        for k, s in enumerate(r.noise_seeds):
            noisy = np.asarray(model.apply(x, 0.4, s), dtype=np.float32).astype(np.float64)
            with precision.x64():
                ntk = np.asarray(predict.ntk_predict(arch, noisy, onehot, xt.astype(np.float64), t=expect_t,
                                                     learning_rate=1.0, diag_reg=1e-4))
                nngp = np.asarray(predict.nngp_predict(arch, noisy, onehot, xt.astype(np.float64), diag_reg=1e-4))
            assert r.ntk_logits.dtype == np.float64
            np.testing.assert_allclose(r.ntk_logits[k], ntk, rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(r.nngp_logits[k], nngp, rtol=1e-12, atol=1e-12)
            assert r.ntk_accuracy[k] == metrics.accuracy(ntk, yt)
            assert r.nngp_accuracy[k] == metrics.accuracy(nngp, yt)
            rel = np.linalg.norm(r.network_logits[0, k] - ntk) / np.linalg.norm(ntk)
            assert r.rel_distance_ntk[0, k] == pytest.approx(rel, rel=1e-10)


def test_network_logits_equal_train_ensemble_and_rows():
    (arch, x, y, xt, yt), kw = _small(widths=(8, 12))
    r = compare.compare_widths(arch, x, y, xt, yt, **kw)
    noisy = np.stack([np.asarray(corruption.Additive().apply(x, 0.4, s), dtype=np.float32) for s in (3, 4)])
    for i, w in enumerate((8, 12)):
        cfg = train.TrainConfig(arch, w, 3, optimizer=train.Optimizer("sgd", 0.5), batch_size=20, steps=5, seed=3)
        ens = train.train_ensemble(cfg, noisy, y, xt, yt, num_inits=2, quiet=True)
        np.testing.assert_allclose(r.network_logits[i], ens.test_logits.mean(axis=1), rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(r.accuracy[i], ens.accuracy["init_averaged"], atol=1e-12)
        for k in range(2):
            assert r.agreement_ntk[i, k] == metrics.agreement(r.network_logits[i, k], r.ntk_logits[k])
            assert r.agreement_nngp[i, k] == metrics.agreement(r.network_logits[i, k], r.nngp_logits[k])
    header, rows = r.as_rows()
    assert header == compare.ROW_HEADER and len(rows) == 4
    assert rows[0][0] == 8 and rows[1][0] == 12 and rows[2][0] == "ntk" and rows[3][0] == "nngp"
    assert rows[1][1] == pytest.approx(r.accuracy[1].mean()) and rows[1][2] == pytest.approx(r.accuracy[1].std(ddof=1))
    assert rows[0][7] == pytest.approx(r.rel_distance_ntk[0].mean())
    assert rows[2][1] == pytest.approx(r.ntk_accuracy.mean()) and rows[3][1] == pytest.approx(r.nngp_accuracy.mean())
    assert "nngp" in r.format_table()


def test_matching_ntk_time():
    arch = MLP(2, "erf")
    cfg = train.TrainConfig(arch, 8, 3, optimizer=train.Optimizer("sgd", 0.25), batch_size=10, epochs=7)
    assert compare.matching_ntk_time(cfg, 10) == (7.0, 0.5)
    with pytest.raises(ValueError, match="full-batch"):
        compare.matching_ntk_time(cfg, 20)
    with pytest.raises(ValueError, match="Optimizer\\('sgd'"):
        compare.matching_ntk_time(train.TrainConfig(arch, 8, 3, batch_size=10, epochs=7), 10)
    with pytest.raises(ValueError, match="loss='mse'"):
        compare.matching_ntk_time(
            train.TrainConfig(arch, 8, 3, optimizer=train.Optimizer("sgd", 0.1), loss="cross_entropy",
                              batch_size=10, epochs=7), 10)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(widths=()), ValueError, "widths must be a non-empty"),
        (dict(widths=(8, 0)), ValueError, "widths\\[1\\] must be >= 1"),
        (dict(widths=(8, 2.5)), TypeError, "widths\\[1\\] must be an integer"),
        (dict(widths=(8, 8)), ValueError, "widths must be distinct"),
        (dict(widths=None), TypeError, "widths must be a non-empty sequence"),
        (dict(p=1.5), ValueError, "p must be in \\[0, 1\\]"),
        (dict(p=float("nan")), ValueError, "p must be in \\[0, 1\\]"),
        (dict(num_datasets=0), ValueError, "num_datasets must be >= 1"),
        (dict(num_inits=0), ValueError, "num_inits must be >= 1"),
        (dict(noise="gaussian"), ValueError, "kind must be one of"),
        (dict(noise=3), TypeError, "noise must be a corruption model"),
        (dict(t="forever"), ValueError, "t must be None, a number >= 0 or 'match'"),
        (dict(t=-1.0), ValueError, "t must be None"),
        (dict(t=3.0, optimizer=train.Optimizer("adam", 0.1)), ValueError, "numeric t needs ntk_learning_rate"),
        (dict(t=3.0, ntk_learning_rate=0.0), ValueError, "ntk_learning_rate must be"),
        (dict(t="match", batch_size=10), ValueError, "full-batch"),
        (dict(diag_reg=-1.0), ValueError, "diag_reg must be"),
        (dict(seed=-1), ValueError, r"seed must be in \[0, 2\*\*32\)"),
        (dict(seed=2**32), ValueError, r"seed must be in \[0, 2\*\*32\)"),
        (dict(width=4), ValueError, "set by compare_widths"),
        (dict(num_classes=2), ValueError, "y_train must lie in \\[0, 2\\)"),
    ],
)
def test_argument_errors(change, exc, match):
    (arch, x, y, xt, yt), kw = _small()
    kw.update(change)
    with pytest.raises(exc, match=match):
        compare.compare_widths(arch, x, y, xt, yt, **kw)


def test_shape_errors():
    (arch, x, y, xt, yt), kw = _small()
    with pytest.raises(ValueError, match="x_test has 4 features but x_train has 5"):
        compare.compare_widths(arch, x, y, xt[:, :4], yt, **kw)
    with pytest.raises(ValueError, match="y_train has 19 labels but x_train has 20 rows"):
        compare.compare_widths(arch, x, y[:19], xt, yt, **kw)
    with pytest.raises(ValueError, match="y_test has 6 labels but x_test has 7 rows"):
        compare.compare_widths(arch, x, y, xt, yt[:6], **kw)
    with pytest.raises(ValueError, match="x_train must be 2-dimensional"):
        compare.compare_widths(arch, x[None], y, xt, yt, **kw)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x_train contains NaN"):
        compare.compare_widths(arch, bad, y, xt, yt, **kw)


def test_one_data_set_leaves_the_std_cells_empty_as_the_study_tables_do():
    (arch, x, y, xt, yt), kw = _small(num_datasets=1)
    r = compare.compare_widths(arch, x, y, xt, yt, **kw)
    header, rows = r.as_rows()
    std_cols = [i for i, h in enumerate(header) if h.endswith("_std")]
    assert len(std_cols) == 4
    for row in rows:
        assert all(row[i] == metrics.NO_STD or (row[0] == "nngp" and i == 8) for i in std_cols), row
    assert rows[0][1] == pytest.approx(r.accuracy[0, 0]) and rows[0][7] == pytest.approx(r.rel_distance_ntk[0, 0])
    # printed: a width row shows its 4 means and no invented 0.0000 std
    width_line = r.format_table().splitlines()[1]
    assert width_line.split()[0] == "8" and len(width_line.split()) == 5


def test_standard_networks_trained_by_gd_track_the_standard_ntk_at_their_width(digits):
    """Full-batch SGD on a standard-parameterised network (step η ∝ 1/n) follows the standard-
    parameterisation NTK at base width n, and ever more closely as n grows.

    The standard NTK grows ∝ n, so η = 30/n here plays the role of η = 30 in the NTK
    parameterisation. Measured: relative distance to the standard NTK at width n 0.124 (n = 64) and
    0.044 (n = 1024), agreement 0.90 and 0.98; the NTK-parameterised predictor at the same matched
    time is far off (distance 2.7 and 42: its time scale is ~n times slower).
    """
    x, y, xt, yt = digits
    dist, agree = [], []
    for n in (64, 1024):
        r = compare.compare_widths(
            MLP(2, "erf", W_std=0.5, parameterization="standard"), x, y, xt, yt, noise=corruption.Replacement(),
            p=0.5, widths=(n,), num_datasets=1, num_inits=8, t="match", optimizer=train.Optimizer("sgd", 30.0 / n),
            batch_size=200, steps=400, kernel_arch=MLP(2, "erf", W_std=0.5), standard_ntk=True,
        )
        assert r.rel_distance_ntk_standard.shape == r.ntk_standard_accuracy.shape == (1, 1)
        assert r.rel_distance_ntk[0, 0] > 10 * r.rel_distance_ntk_standard[0, 0]
        dist.append(r.rel_distance_ntk_standard[0, 0])
        agree.append(r.agreement_ntk_standard[0, 0])
    assert dist[1] < 0.6 * dist[0] and dist[1] < 0.08, dist
    assert agree[1] >= agree[0] and agree[1] > 0.95, agree


def test_standard_ntk_must_be_a_bool():
    (arch, x, y, xt, yt), kw = _small()
    with pytest.raises(TypeError, match="standard_ntk"):
        compare.compare_widths(arch, x, y, xt, yt, standard_ntk=1, **kw)
