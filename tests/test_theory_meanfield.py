"""Mean-field first-layer overlaps against Monte Carlo of real corrupted data."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import corruption as C
from nwcorrupt import data, theory


def _raw_mixture(d, n=12, seed=0):
    # non-normalised inputs with non-zero feature means, so every term of the formulas matters
    ds = data.gaussian_mixture(n_train=n, n_test=n, d=d, num_classes=3, separation=1.0, noise_std=0.5, seed=seed)
    shift = np.linspace(-0.5, 0.8, n)[:, None]
    return ds.x_train + shift, ds.x_test - shift


MODELS = [
    C.Replacement("uniform", low=0.0, high=1.0),  # mu = 1/2, mu2 = 1/3
    C.Replacement("gaussian", loc=-0.3, scale=1.5),
    C.Replacement("salt_pepper", low=-1.0, high=2.0, salt_prob=0.25),
    C.Additive("gaussian"),
    C.Additive("laplace"),
]


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.kind}-{m.dist}")
def test_meanfield_is_the_noise_average(model):
    x, xt = _raw_mixture(d=400)
    p, K = 0.7, 200
    mf = theory.meanfield_overlaps(model, p, x, xt)
    draws = [theory.empirical_overlaps(np.asarray(model.apply(x, p, seed=s)), xt) for s in range(K)]
    for field in ("train", "test_train"):
        samples = np.stack([getattr(o, field) for o in draws])
        mean, se = samples.mean(0), samples.std(0, ddof=1) / np.sqrt(K)
        # unbiased: the Monte Carlo mean is within 5 standard errors everywhere (plus float32 round-off)
        assert np.all(np.abs(mean - getattr(mf, field)) <= 5 * se + 1e-5), field
    np.testing.assert_allclose(mf.test_diag, np.sum(xt.astype(np.float64) ** 2, 1) / x.shape[1], rtol=1e-12)


@pytest.mark.parametrize("model", [MODELS[0], MODELS[3]], ids=["replacement", "additive"])
def test_single_realisation_concentrates_like_one_over_sqrt_d(model):
    ds_ = [100, 400, 1600, 6400]
    errs = []
    for d in ds_:
        x, xt = _raw_mixture(d=d, seed=1)
        mf = theory.meanfield_overlaps(model, 0.9, x, xt)
        err = []
        for s in range(8):
            emp = theory.empirical_overlaps(np.asarray(model.apply(x, 0.9, seed=s)), xt)
            err.append(np.sqrt(np.mean((emp.train - mf.train) ** 2)))
        errs.append(np.mean(err))
    slope = np.polyfit(np.log(ds_), np.log(errs), 1)[0]
    assert -0.6 < slope < -0.4, (slope, errs)


def test_special_cases_and_limits():
    x, xt = _raw_mixture(d=50)
    z = data.normalize_examples(x)
    zt = data.normalize_examples(xt)
    eps = 0.2
    mf = theory.meanfield_overlaps(C.Additive(), 1 - eps, z, zt)
    g = z.astype(np.float64) @ z.T.astype(np.float64) / 50
    np.testing.assert_allclose(mf.train, eps**2 * g + np.eye(len(z)) * (1 - eps) ** 2, atol=1e-6)
    np.testing.assert_allclose(mf.test_train, eps * zt.astype(np.float64) @ z.T.astype(np.float64) / 50, atol=1e-6)
    # p = 0: the clean overlaps; p = 1: pure noise, exchangeable (mu2 on the diagonal, mu^2 off it)
    clean = theory.meanfield_overlaps(MODELS[0], 0.0, x, xt)
    np.testing.assert_allclose(clean.train, x.astype(np.float64) @ x.T.astype(np.float64) / 50, rtol=1e-6)
    noise = theory.meanfield_overlaps(MODELS[0], 1.0, x, xt)
    np.testing.assert_allclose(noise.train_diag, 1 / 3)
    np.testing.assert_allclose(noise.train[0, 1:], 0.25)
    np.testing.assert_allclose(noise.test_train, 0.5 * xt.astype(np.float64).mean(1)[:, None] * np.ones((1, len(x))))


def test_validation():
    x, xt = _raw_mixture(d=20)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        theory.meanfield_overlaps(C.Additive(), 1.5, x, xt)
    with pytest.raises(ValueError, match="noise must be a corruption model"):
        theory.meanfield_overlaps("gaussian", 0.5, x, xt)
    with pytest.raises(ValueError, match="x_test has 19 features but x_train has 20"):
        theory.meanfield_overlaps(C.Additive(), 0.5, x, xt[:, 1:])


@pytest.mark.parametrize("noise", [C.Additive(), C.Replacement("uniform")], ids=["additive", "replacement"])
def test_exact_predictor_on_one_noisy_set_approaches_the_meanfield_predictor_like_d_to_minus_half(x64, noise):
    # predictor level: ‖f(one realisation) − f̄‖/‖f̄‖ over 4 noisy sets, d = 1000 … 10⁴ (N = 50, p = 0.5).
    # Measured slopes −0.506 (additive) and −0.493 (replacement); standard errors of the fit ~0.01.
    from nwcorrupt import metrics, predict
    from nwcorrupt.kernels import MLP

    arch = MLP(3, "erf")
    dims, dist = (1000, 3000, 10000), []
    for d in dims:
        ds = data.load("gaussian_mixture", n_train=50, n_test=50, d=d, separation=0.5, seed=3)
        mf = theory.meanfield_predict(arch, noise, 0.5, ds.x_train, ds.y_train, ds.x_test)
        rel = []
        for s in range(4):
            noisy = np.asarray(noise.apply(ds.x_train, 0.5, s), dtype=np.float64)
            f = np.asarray(predict.ntk_predict(arch, noisy, np.eye(10)[ds.y_train], ds.x_test, solver="cholesky"))
            rel.append(np.linalg.norm(f - mf) / np.linalg.norm(mf))
        dist.append(np.mean(rel))
    slope, _, _ = metrics.loglog_slope(dims, dist)
    assert abs(slope + 0.5) < 0.08, (slope, dist)
    assert dist[-1] < 0.15


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.kind}-{m.dist}")
def test_self_overlaps_are_the_diagonal_without_the_gram_matrix(model):
    x, _ = _raw_mixture(d=60)
    for p in (0.0, 0.35, 1.0):
        np.testing.assert_allclose(theory.meanfield_self_overlaps(model, p, x),
                                   theory.meanfield_overlaps(model, p, x).train_diag, rtol=1e-12, atol=1e-14)
