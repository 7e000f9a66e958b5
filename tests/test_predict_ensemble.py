"""nwcorrupt.predict.gradient_descent_mse_ensemble: mean and covariance of the infinite ensemble.

Reference: the ensemble written out from its definition with numpy/scipy (dense inverse
and matrix exponential, no eigendecomposition): a network linearised around its
initialisation and trained by gradient flow on |f - Y|^2 / (2 Y.size) has outputs

    f_t(x*) = f_0(x*) + G_*n G^{-1} (I - exp(-s G)) (Y - f_0(X)),   s = eta t / Y.size,

with f_0 ~ GP(0, K) jointly on test and train points, G = Θ (all layers trained) or
G = K (readout only). Mean and covariance follow by linearity; with diag_reg = 0 this
is exactly the closed form the predictor uses. A Monte Carlo draw of f_0 checks the
same covariance by sampling.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from nwcorrupt import kernels, predict
from nwcorrupt.arch import MLP

ARCH = MLP(3, "erf", W_std=1.4, b_std=0.3)


def _data(seed=0, n=12, m=5, d=6, c=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.normal(size=(n, c)), rng.normal(size=(m, d))


def _reference(fn, x, y, xt, get, t, lr=1.0, reg_abs=0.0):
    """(mean, cov) from the definition; t=None means t = inf."""
    knn, ktn, ktt = (np.asarray(fn(a, b, "nngp")) for a, b in ((x, None), (xt, x), (xt, None)))
    g_nn = np.asarray(fn(x, None, get)) + reg_abs * np.eye(len(x))
    g_tn = np.asarray(fn(xt, x, get))
    s = np.inf if t is None else lr * t / y.size
    inv = np.linalg.inv(g_nn)
    flow = np.eye(len(x)) if np.isinf(s) else np.eye(len(x)) - scipy.linalg.expm(-s * g_nn)
    a = g_tn @ inv @ flow  # (M, N): f_t(x*) = f_0(x*) + A (Y - f_0(X))
    mean = a @ y
    cov = ktt - a @ ktn.T - ktn @ a.T + a @ knn @ a.T
    return mean, cov


@pytest.mark.parametrize("get", ["nngp", "ntk"])
@pytest.mark.parametrize("t", [None, 0.5, 40.0])
def test_mean_and_covariance_match_the_definition(x64, get, t):
    x, y, xt = _data()
    fn = kernels.kernel_fn(ARCH)
    predict_fn = predict.gradient_descent_mse_ensemble(fn, x, y, learning_rate=0.7)
    out = predict_fn(t=t, x_test=xt, get=get, compute_cov=True)
    mean, cov = _reference(fn, x, y, xt, get, t, lr=0.7)
    np.testing.assert_allclose(out.mean, mean, rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(out.covariance, cov, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(out.covariance, out.covariance.T, atol=1e-12)
    assert np.linalg.eigvalsh(np.asarray(out.covariance)).min() > -1e-9


def test_infinite_time_nngp_is_the_gp_posterior_and_ntk_at_t_inf_equals_large_t(x64):
    x, y, xt = _data(1)
    fn = kernels.kernel_fn(ARCH)
    predict_fn = predict.gradient_descent_mse_ensemble(fn, x, y, diag_reg=1e-3)
    k = np.asarray(fn(x, None, "nngp"))
    r = 1e-3 * np.trace(k) / len(x)
    kr = k + r * np.eye(len(x))
    ktn, ktt = np.asarray(fn(xt, x, "nngp")), np.asarray(fn(xt, None, "nngp"))
    gp = predict_fn(None, xt, "nngp", compute_cov=True)
    np.testing.assert_allclose(gp.mean, ktn @ np.linalg.solve(kr, y), rtol=1e-9)
    np.testing.assert_allclose(gp.covariance, ktt - ktn @ np.linalg.solve(kr, ktn.T), rtol=1e-8, atol=1e-10)
    big = predict_fn(np.array([1e9]), xt, "ntk", compute_cov=True)
    inf = predict_fn(None, xt, "ntk", compute_cov=True)
    np.testing.assert_allclose(big.mean[0], inf.mean, rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(big.covariance[0], inf.covariance, rtol=1e-6, atol=1e-8)


def test_covariance_matches_monte_carlo_over_initial_functions(x64):
    """Sample f_0 ~ GP(0, K) on train+test, flow it with the NTK, compare the sample covariance."""
    x, y, xt = _data(2, n=8, m=4)
    fn = kernels.kernel_fn(ARCH)
    t = 3.0
    out = predict.gradient_descent_mse_ensemble(fn, x, y)(t, xt, "ntk", compute_cov=True)
    xa = np.concatenate([xt, x])
    k_all = np.asarray(fn(xa, None, "nngp"))
    theta = np.asarray(fn(x, None, "ntk"))
    a = np.asarray(fn(xt, x, "ntk")) @ np.linalg.solve(theta, np.eye(len(x)) - scipy.linalg.expm(-t / y.size * theta))
    rng = np.random.default_rng(3)
    samples = 40000
    f0 = rng.multivariate_normal(np.zeros(len(xa)), k_all, size=(samples, y.shape[1]))  # (S, C, M + N)
    ft = f0[..., : len(xt)] + (y.T[None] - f0[..., len(xt):]) @ a.T  # (S, C, M)
    flat = ft.reshape(-1, len(xt))  # channels are independent draws of the same covariance
    mc_mean = ft.mean(axis=0).T
    mc_cov = np.cov(flat - np.repeat(np.asarray(out.mean).T[None], samples, 0).reshape(-1, len(xt)), rowvar=False)
    scale = np.sqrt(np.outer(np.diag(out.covariance), np.diag(out.covariance)))
    # standard error of a covariance estimate ~ scale * sqrt(2 / n) with n = S * C draws: 4 sigma
    assert np.max(np.abs(mc_cov - out.covariance) / scale) < 4 * np.sqrt(2 / flat.shape[0]) * 1.5
    assert np.max(np.abs(mc_mean - out.mean) / np.sqrt(np.diag(out.covariance))[:, None]) < 5 / np.sqrt(samples)


def test_training_set_predictions(x64):
    x, y, _ = _data(4)
    fn = kernels.kernel_fn(ARCH)
    predict_fn = predict.gradient_descent_mse_ensemble(fn, x, y)
    inf = predict_fn(None, None, "ntk", compute_cov=True)
    np.testing.assert_array_equal(inf.mean, y)
    np.testing.assert_array_equal(inf.covariance, np.zeros((len(x), len(x))))
    t = 2.0
    s = t / y.size
    theta, k = np.asarray(fn(x, None, "ntk")), np.asarray(fn(x, None, "nngp"))
    e_ntk = scipy.linalg.expm(-s * theta)
    out = predict_fn(t, None, ("ntk", "nngp"), compute_cov=True)
    np.testing.assert_allclose(out.ntk.mean, (np.eye(len(x)) - e_ntk) @ y, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(out.ntk.covariance, e_ntk @ k @ e_ntk, rtol=1e-8, atol=1e-10)
    e_nngp = scipy.linalg.expm(-2 * s * k)
    np.testing.assert_allclose(out.nngp.covariance, e_nngp @ k, rtol=1e-8, atol=1e-10)


def test_times_get_forms_and_agreement_with_ntk_predict(x64):
    x, y, xt = _data(5)
    fn = kernels.kernel_fn(ARCH)
    predict_fn = predict.gradient_descent_mse_ensemble(fn, x, y, diag_reg=1e-4)
    ts = np.array([0.0, 1.0, 10.0])
    many = predict_fn(ts, xt, "ntk")
    assert many.shape == (3, len(xt), y.shape[1])
    np.testing.assert_allclose(many[0], 0.0, atol=1e-12)
    for i, t in enumerate(ts):
        np.testing.assert_allclose(predict_fn(t, xt, "ntk"), many[i], rtol=1e-10, atol=1e-12)
    both = predict_fn(None, xt)
    assert both._fields == ("nngp", "ntk")
    np.testing.assert_allclose(both.ntk, predict.ntk_predict(ARCH, x, y, xt, diag_reg=1e-4), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(both.nngp, predict.nngp_predict(ARCH, x, y, xt, diag_reg=1e-4), rtol=1e-8, atol=1e-10)
    vec = predict.gradient_descent_mse_ensemble(fn, x, y[:, 0], diag_reg=1e-4)(None, xt, "ntk")
    np.testing.assert_allclose(vec, both.ntk[:, 0], rtol=1e-10)


def test_bad_input_is_refused_before_compute():
    calls = []

    def counting_kernel_fn(x1, x2, get):
        calls.append(get)
        return kernels.kernel_fn(ARCH)(x1, x2, get)

    x, y, xt = _data(6)
    with pytest.raises(ValueError, match="y_train must have shape"):
        predict.gradient_descent_mse_ensemble(counting_kernel_fn, x, y[:-1])
    with pytest.raises(ValueError, match="diag_reg"):
        predict.gradient_descent_mse_ensemble(counting_kernel_fn, x, y, diag_reg=-1.0)
    with pytest.raises(TypeError, match="kernel_fn must be callable"):
        predict.gradient_descent_mse_ensemble("ntk", x, y)
    predict_fn = predict.gradient_descent_mse_ensemble(counting_kernel_fn, x, y)
    with pytest.raises(ValueError, match="x_test must have shape"):
        predict_fn(None, xt[:, :2], "ntk")
    with pytest.raises(ValueError, match="t must be >= 0"):
        predict_fn(-1.0, xt, "ntk")
    with pytest.raises(ValueError, match="get"):
        predict_fn(None, xt, "gp")
    assert calls == []
