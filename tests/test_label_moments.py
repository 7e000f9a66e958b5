"""Exact moments of kernel predictors under label noise, against Monte Carlo over label draws.

The Monte Carlo reference is independent of the code under test: the labels are drawn with
numpy from the transition matrix (or the dilution law as §10 states it), and each draw's
predictor is solved with ``numpy.linalg.solve`` (t = ∞) or ``scipy.linalg.expm`` (finite t)
from the kernel matrices.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from nwcorrupt import data, kernels, predict
from nwcorrupt import labels as L
from nwcorrupt.arch import MLP

ARCH = MLP(depth=2, activation="erf", W_std=1.5, b_std=0.1)
DRAWS = 3000


def _problem(n=48, m=20, c=3, d=6, seed=0):
    ds = data.gaussian_mixture(n_train=n, n_test=m - m % c, d=d, num_classes=c, separation=1.0, seed=seed)
    return ds


def _kernels(x_train, x_test, get="ntk"):
    ktr = np.asarray(getattr(kernels.kernel(ARCH, x_train, None, get=(get,)), get), np.float64)
    kte = np.asarray(getattr(kernels.kernel(ARCH, x_test, x_train, get=(get,)), get), np.float64)
    return ktr, kte


def _mc_predictions(ktr, kte, y_draws, c, reg=0.0, t=None, lr=1.0):
    """(S, M, C) predictions of the kernel predictor for each label draw (S, N)."""
    n = ktr.shape[0]
    a = ktr + reg * np.eye(n)
    ys = np.eye(c)[y_draws]  # (S, N, C)
    rhs = ys.transpose(1, 0, 2).reshape(n, -1)
    if t is None:
        sol = np.linalg.solve(a, rhs)
    else:
        flow = np.eye(n) - scipy.linalg.expm(-lr * t / (n * c) * a)
        sol = np.linalg.solve(a, flow @ rhs)
    return (kte @ sol).reshape(kte.shape[0], -1, c).transpose(1, 0, 2)


def _draw_from_rows(probs_rows, draws, seed):
    """(draws, N) labels, row j from probs_rows[j] (numpy's own sampler)."""
    rng = np.random.default_rng(seed)
    cdf = np.cumsum(probs_rows, axis=1)
    u = rng.random((draws, probs_rows.shape[0], 1))
    return np.minimum((u > cdf[None]).sum(axis=2), probs_rows.shape[1] - 1)


def _check_against_mc(mean, cov, preds):
    s = preds.shape[0]
    mc_mean = preds.mean(axis=0)
    mc_cov = np.einsum("smi,smj->mij", preds - mc_mean, preds - mc_mean) / (s - 1)
    sd = np.sqrt(np.clip(np.einsum("mii->mi", cov), 1e-300, None))
    z_mean = (mc_mean - mean) / (sd / np.sqrt(s))
    assert np.max(np.abs(z_mean)) < 5.0
    # sample covariance standard error, Gaussian approximation: sqrt((s_ii s_jj + s_ij^2) / S)
    se_cov = np.sqrt((sd[:, :, None] ** 2 * sd[:, None, :] ** 2 + cov**2) / s)
    z_cov = (mc_cov - cov) / se_cov
    assert np.max(np.abs(z_cov)) < 6.0
    assert np.mean(np.abs(z_cov)) < 1.2


def _transition_models(c):
    rng = np.random.default_rng(4)
    t = 0.5 * np.eye(c) + 0.5 * rng.dirichlet(np.ones(c), size=c)
    return [L.Symmetric(0.6), L.Pair(0.4), L.Transition(t)]


@pytest.mark.parametrize("get,t", [("ntk", None), ("nngp", None), ("ntk", 40.0)])
@pytest.mark.parametrize("which", [0, 1, 2], ids=["symmetric", "pair", "random_T"])
def test_moments_match_monte_carlo_over_label_draws(x64, get, t, which):
    ds = _problem()
    c = ds.num_classes
    model = _transition_models(c)[which]
    reg_rel = 1e-3
    mean, cov = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, model, num_classes=c, get=get,
                                    t=t, diag_reg=reg_rel)
    ktr, kte = _kernels(ds.x_train, ds.x_test, get)
    reg = reg_rel * np.trace(ktr) / ktr.shape[0]
    draws = _draw_from_rows(model.transition(c)[ds.y_train], DRAWS, seed=which)
    _check_against_mc(mean, cov, _mc_predictions(ktr, kte, draws, c, reg=reg, t=t))


def test_moments_of_dilution_match_monte_carlo(x64):
    ds = _problem(n=30)
    pool = _problem(n=300, seed=9)
    out = L.Dilution(2.0, "pool").apply(ds, 0, pool=pool)
    x = out.dataset.x_train
    c = ds.num_classes
    mean, cov = L.predictor_moments(ARCH, x, out.dataset.y_train, ds.x_test, out.law, num_classes=c, diag_reg=1e-3)
    ktr, kte = _kernels(x, ds.x_test)
    # the law as section 10 states it: clean rows keep their label, noisy rows are uniform over C
    rows = np.where(out.clean_mask[:, None], np.eye(c)[out.dataset.y_train], 1.0 / c)
    draws = _draw_from_rows(rows, DRAWS, seed=1)
    _check_against_mc(mean, cov, _mc_predictions(ktr, kte, draws, c, reg=1e-3 * np.trace(ktr) / ktr.shape[0]))


def test_symmetric_closed_form_is_exact(x64):
    ds = _problem()
    c, r = ds.num_classes, 0.7
    mean, _ = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Symmetric(r), num_classes=c,
                                  diag_reg=1e-4)
    f_clean = np.asarray(predict.ntk_predict(ARCH, ds.x_train, np.eye(c)[ds.y_train], ds.x_test, diag_reg=1e-4))
    w_one = np.asarray(predict.ntk_predict(ARCH, ds.x_train, np.ones((ds.n_train, 1)), ds.x_test, diag_reg=1e-4))
    np.testing.assert_allclose(mean, (1 - r) * f_clean + (r / c) * w_one * np.ones((1, c)), rtol=1e-8, atol=1e-10)
    # the mean predictor's decisions do not change for any r < 1
    np.testing.assert_array_equal(np.argmax(mean, axis=1), np.argmax(f_clean, axis=1))


def test_clean_labels_have_zero_covariance_and_the_clean_mean(x64):
    ds = _problem()
    mean, cov = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Symmetric(0.0),
                                    num_classes=ds.num_classes, diag_reg=1e-4)
    f = np.asarray(predict.ntk_predict(ARCH, ds.x_train, np.eye(ds.num_classes)[ds.y_train], ds.x_test, diag_reg=1e-4))
    np.testing.assert_allclose(mean, f, rtol=1e-8, atol=1e-10)
    assert np.max(np.abs(cov)) == 0.0


def test_finite_time_moments_tend_to_the_infinite_time_ones(x64):
    ds = _problem()
    kw = dict(num_classes=ds.num_classes, diag_reg=1e-2)
    m_inf, c_inf = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Pair(0.3), **kw)
    m_t, c_t = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Pair(0.3), t=1e9, **kw)
    np.testing.assert_allclose(m_t, m_inf, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(c_t, c_inf, rtol=1e-6, atol=1e-12)
    m0, c0 = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Pair(0.3), t=0.0, **kw)
    assert np.max(np.abs(m0)) == 0.0 and np.max(np.abs(c0)) == 0.0


def test_tiles_do_not_change_the_moments(x64):
    ds = _problem()
    a = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Symmetric(0.5), num_classes=3, diag_reg=1e-3)
    b = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Symmetric(0.5), num_classes=3, diag_reg=1e-3,
                            tile_size=7)
    for u, v in zip(a, b):
        np.testing.assert_allclose(u, v, rtol=1e-10, atol=1e-14)


def test_predicted_accuracy_matches_monte_carlo_accuracy(x64):
    ds = data.gaussian_mixture(n_train=120, n_test=120, d=10, num_classes=4, separation=1.2, seed=3)
    c, model = 4, L.Symmetric(0.85)
    mean, cov = L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, model, num_classes=c, diag_reg=1e-3)
    pred = L.predicted_accuracy(mean, cov, ds.y_test, n_samples=4000, seed=0)
    ktr, kte = _kernels(ds.x_train, ds.x_test)
    draws = _draw_from_rows(model.transition(c)[ds.y_train], 2000, seed=5)
    preds = _mc_predictions(ktr, kte, draws, c, reg=1e-3 * np.trace(ktr) / ktr.shape[0])
    acc = np.mean(np.argmax(preds, axis=2) == ds.y_test[None, :], axis=1)
    assert 0.35 < acc.mean() < 0.9  # a regime where the noise matters
    # Gaussian approximation of a sum of 120 label terms: within 0.02 of the Monte Carlo accuracy
    assert abs(pred.accuracy - acc.mean()) < 0.02 + 3 * pred.stderr
    assert pred.stderr < 0.005


def test_predicted_accuracy_two_classes_is_exact():
    mean = np.array([[1.0, 0.0], [0.0, 0.5], [0.3, 0.1]])
    cov = np.array([[[1.0, 0.0], [0.0, 1.0]], [[0.5, -0.5], [-0.5, 0.5]], [[1.0, 1.0], [1.0, 1.0]]])
    out = L.predicted_accuracy(mean, cov, np.array([0, 1, 0]))
    from scipy.stats import norm

    np.testing.assert_allclose(out.per_point, [norm.cdf(1 / np.sqrt(2)), norm.cdf(0.5 / np.sqrt(2.0)), 1.0])
    assert out.stderr == 0.0
    # Monte Carlo path on the same problem embedded in 3 classes with a hopeless third class
    mean3 = np.concatenate([mean, np.full((3, 1), -1e6)], axis=1)
    cov3 = np.zeros((3, 3, 3))
    cov3[:, :2, :2] = cov
    mc = L.predicted_accuracy(mean3, cov3, np.array([0, 1, 0]), n_samples=20000)
    assert abs(mc.accuracy - out.accuracy) < 4 * mc.stderr + 1e-3


def test_noisy_class_means_mix_as_the_transition_says():
    ds = data.gaussian_mixture(n_train=300, n_test=3, d=5, num_classes=3, seed=0)
    x = ds.x_train.astype(np.float64)
    mu = np.stack([x[ds.y_train == a].mean(axis=0) for a in range(3)])
    n = np.bincount(ds.y_train, minlength=3)
    for model in (L.Symmetric(0.5), L.Pair(0.3)):
        t = model.transition(3)
        expect = (t.T * n) @ mu / (n @ t)[:, None]
        np.testing.assert_allclose(L.noisy_class_means(x, model.law(ds.y_train, 3)), expect, rtol=1e-10)


def test_clean_size_for_accuracy_interpolates_in_log_n():
    n = [10, 100, 1000]
    assert L.clean_size_for_accuracy(n, [0.5, 0.7, 0.9], 0.8) == pytest.approx(np.sqrt(100 * 1000))
    assert L.clean_size_for_accuracy(n, [0.5, 0.7, 0.9], 0.4) == 10
    assert np.isnan(L.clean_size_for_accuracy(n, [0.5, 0.7, 0.9], 0.95))


def test_bad_input_raises_clear_errors():
    ds = _problem()
    with pytest.raises(ValueError, match="y_train must lie in \\[0, 3\\)"):
        L.predictor_moments(ARCH, ds.x_train, ds.y_train + 3, ds.x_test, L.Symmetric(0.1), num_classes=3)
    with pytest.raises(ValueError, match="get must be one of"):
        L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, L.Symmetric(0.1), num_classes=3, get="ntkk")
    with pytest.raises(ValueError, match="x_test has 5 features but x_train has 6"):
        L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test[:, :5], L.Symmetric(0.1), num_classes=3)
    with pytest.raises(TypeError, match="label-noise model"):
        L.predictor_moments(ARCH, ds.x_train, ds.y_train, ds.x_test, 0.3, num_classes=3)
    with pytest.raises(ValueError, match="cov must have shape"):
        L.predicted_accuracy(np.zeros((2, 3)), np.zeros((2, 2, 2)), np.array([0, 1]))
