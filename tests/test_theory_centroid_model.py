"""Centroid logit model: fit, Monte Carlo accuracy and the analytic accuracy in the model's own setting."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import prototype


def _synthetic(K=60, M=3, n=200, C=5, a=2.0, b=0.3, c=0.5, seed=0):
    rng = np.random.default_rng(seed)
    s = rng.standard_normal((n, C))
    z = a * s[None, None] + b + c * rng.standard_normal((K, 1, n, C)) + 0.01 * rng.standard_normal((K, M, n, C))
    return s, z


def test_fit_recovers_parameters():
    s, z = _synthetic()
    m = prototype.fit_centroid_model(z, s, p_ref=0.97)
    # a, b from means over K = 60 sets: standard error c/√K ≈ 0.065 per logit, averaged over 1000 → ~0.003
    assert abs(m["a"] - 2.0) < 0.01 and abs(m["b"] - 0.3) < 0.01
    assert abs(m["c"] - 0.5) < 0.02  # std over K = 60 (init average shrinks the 0.01 jitter to 0.006)
    np.testing.assert_allclose(m["A"], m["a"] / 0.03)
    assert m["r2"] > 0.99
    m3 = prototype.fit_centroid_model(z.mean(axis=1), s, p_ref=0.97)
    np.testing.assert_allclose(m3["a"], m["a"])


@pytest.mark.parametrize("C,a_eff", [(2, 0.5), (10, 1.5), (10, 3.0)])
def test_monte_carlo_matches_analytic_in_model_setting(C, a_eff):
    # scores: true class 1, others 0 → margin A(1−p); c = 1
    n = 400
    y = np.arange(n) % C
    s = np.eye(C)[y]
    model = dict(A=a_eff / 0.1, b=0.0, c=1.0)
    mc = prototype.centroid_model_accuracy(model, s, y, [0.9], n_draws=100, seed=1)[0]
    an = prototype.centroid_model_accuracy_analytic(a_eff, 1.0, C)
    # 40 000 Bernoulli draws: standard error ≤ 0.0025; allow 4 standard errors
    assert abs(mc - an) < 0.01, (mc, an)
    # limits: a_eff = 0 gives chance 1/C
    np.testing.assert_allclose(prototype.centroid_model_accuracy_analytic(0.0, 1.0, C), 1 / C, rtol=1e-10)


def test_validation():
    s, z = _synthetic(K=3)
    with pytest.raises(ValueError, match="p_ref must be < 1"):
        prototype.fit_centroid_model(z, s, 1.0)
    with pytest.raises(ValueError, match="logits must have shape"):
        prototype.fit_centroid_model(z[0, 0], s, 0.9)
    with pytest.raises(ValueError, match="K >= 2"):
        prototype.fit_centroid_model(z[:1], s, 0.9)
    with pytest.raises(ValueError, match="s has shape"):
        prototype.fit_centroid_model(z, s[:, :2], 0.9)
    with pytest.raises(ValueError, match="c must be > 0"):
        prototype.centroid_model_accuracy_analytic(1.0, 0.0, 3)
