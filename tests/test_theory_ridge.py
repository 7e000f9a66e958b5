"""Ridge conventions: absolute ``ridge`` in theory/fluctuations, relative ``diag_reg`` in predict and the studies.

Regression: ``nested_predictors`` passed the studies' relative ``diag_reg`` to the mean-field predictor,
which read it as an absolute ridge. Here one configured ``diag_reg`` goes through every ridge-bearing
predictor of the study, and each result is compared with a direct numpy solve that adds the intended
absolute ridge r = diag_reg × (mean diagonal of that predictor's own train kernel), the kernels coming
from :mod:`nwcorrupt.kernels` and the mean-field overlaps written out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import corruption, data, kernels, theory
from nwcorrupt.experiments.studies import nested_predictors


def _setting():
    ds = data.load("digits", n_train=40, seed=0)
    ds = ds.replace(x_test=ds.x_test[:15], y_test=ds.y_test[:15])
    # C_w = 2.25, C_b = 0.25, L = 3 relu: the NTK diagonal is ~9, so relative and absolute ridges differ
    arch = kernels.MLP(3, "relu", W_std=1.5, b_std=0.5)
    return ds, arch, corruption.Additive("gaussian")


def _solve(k_test_train, k_train, y, r):
    return k_test_train @ np.linalg.solve(k_train + r * np.eye(len(k_train)), y)


def test_one_relative_diag_reg_gives_each_predictor_its_own_absolute_ridge(x64):
    ds, arch, noise = _setting()
    p, diag_reg = 0.6, 0.3
    x = ds.x_train.astype(np.float64)
    xt = ds.x_test.astype(np.float64)
    y = np.eye(ds.num_classes)[ds.y_train]
    noisy = np.stack([np.asarray(noise.apply(ds.x_train, p, s), dtype=np.float64) for s in (0, 1)])
    got = nested_predictors.kernel_predictors(ds, arch, noise, p, noisy, diag_reg=diag_reg)
    assert got["ntk"].shape == (2, 15, 10) and got["meanfield"].shape == (1, 15, 10)

    # exact NTK on each noisy set: r = diag_reg · trace Θ(X̃, X̃) / N
    for k in range(2):
        th = np.asarray(kernels.kernel(arch, noisy[k], get="ntk").ntk)
        th_star = np.asarray(kernels.kernel(arch, xt, noisy[k], get="ntk").ntk)
        r = diag_reg * np.trace(th) / len(th)
        np.testing.assert_allclose(got["ntk"][k], _solve(th_star, th, y, r), rtol=1e-8, atol=1e-10)

    # mean-field: additive N(0, 1) noise (μ = 0, μ₂ = 1), ε = 1 − p:
    # E⟨x̃_α, x̃_β⟩ = ε²⟨x_α, x_β⟩ + δ_αβ (1 − ε)², E⟨x*, x̃_α⟩ = ε⟨x*, x_α⟩
    eps, d = 1 - p, x.shape[1]
    g = eps**2 * x @ x.T / d + (1 - eps) ** 2 * np.eye(len(x))
    g_star = eps * xt @ x.T / d
    kbar = np.asarray(kernels.kernel_from_gram(arch, g, np.diagonal(g), get="ntk", symmetric=True).ntk)
    kbar_star = np.asarray(
        kernels.kernel_from_gram(arch, g_star, np.sum(xt * xt, axis=1) / d, np.diagonal(g), get="ntk").ntk
    )
    r_mf = diag_reg * np.mean(np.diagonal(kbar))
    want = _solve(kbar_star, kbar, y, r_mf)
    np.testing.assert_allclose(got["meanfield"][0], want, rtol=1e-8, atol=1e-10)
    assert theory.meanfield_ridge(arch, noise, p, x, diag_reg) == pytest.approx(r_mf, rel=1e-10)

    # the test can fail: reading diag_reg as an absolute ridge (the old defect) gives another predictor
    assert r_mf / diag_reg > 3
    wrong = _solve(kbar_star, kbar, y, diag_reg)
    assert np.max(np.abs(wrong - want)) > 1e-2 * np.max(np.abs(want))


def test_meanfield_train_diag_is_the_diagonal_of_the_meanfield_kernel(x64):
    ds, arch, _ = _setting()
    noise = corruption.Replacement("uniform", low=0.0, high=1.0)
    x = ds.x_train.astype(np.float64)
    ov = theory.meanfield_overlaps(noise, 0.7, x)
    for get in ("ntk", "nngp"):
        full = getattr(kernels.kernel_from_gram(arch, ov.train, ov.train_diag, get=get, symmetric=True), get)
        diag = theory.meanfield_train_diag(arch, noise, 0.7, x, get=get)
        np.testing.assert_allclose(diag, np.diagonal(np.asarray(full)), rtol=1e-12)


def test_ridge_is_absolute_in_theory_and_fluctuations(x64):
    # depth 1: the kernel is C_b + C_w⟨x, x'⟩ in closed form, so the absolute ridge can be checked directly
    ds, _, noise = _setting()
    arch = kernels.MLP(1, "erf", W_std=1.5, b_std=0.5)
    x, xt = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    d = x.shape[1]
    y = np.eye(10)[ds.y_train]
    k = 0.25 + 2.25 * x @ x.T / d
    want = _solve(0.25 + 2.25 * xt @ x.T / d, k, y, 0.7)
    np.testing.assert_allclose(theory.meanfield_predict(arch, noise, 0.0, x, ds.y_train, xt, ridge=0.7), want,
                               rtol=1e-9, atol=1e-12)
    from nwcorrupt import fluctuations

    np.testing.assert_allclose(fluctuations.predicted_mean(arch, noise, 0.0, x, ds.y_train, xt, order="linear",
                                                           ridge=0.7), want, rtol=1e-9, atol=1e-12)


def test_ridge_and_diag_reg_validation():
    ds, arch, noise = _setting()
    x = ds.x_train.astype(np.float64)
    with pytest.raises(ValueError, match="ridge must be a finite number >= 0"):
        theory.meanfield_predict(arch, noise, 0.5, x, ds.y_train, ds.x_test, ridge=float("nan"))
    with pytest.raises(ValueError, match="diag_reg must be a finite number >= 0"):
        theory.meanfield_ridge(arch, noise, 0.5, x, -1e-3)
    assert theory.meanfield_ridge(arch, noise, 0.5, x, 0.0) == 0.0
    with pytest.raises(TypeError, match="diag_reg"):
        theory.meanfield_predict(arch, noise, 0.5, x, ds.y_train, ds.x_test, diag_reg=1e-3)
