"""Metrics: SNR across repeats, log-log slopes and the AUC of accuracy curves."""

import numpy as np
import pytest

from nwcorrupt import metrics


def test_snr_matches_gaussian_draws():
    # mean 2, std 0.5 -> SNR 16; with 20000 repeats the estimate is within ~3% (rel. SE ≈ sqrt(2/K)·(1+...) ≈ 1.3%).
    rng = np.random.default_rng(0)
    z = 2.0 + 0.5 * rng.standard_normal((20000, 3))
    s = metrics.snr(z)
    assert s.shape == (3,)
    np.testing.assert_allclose(s, 16.0, rtol=0.05)


def test_snr_exact_small_case_and_axis():
    z = np.array([[1.0, 3.0], [3.0, 5.0]])  # repeats along axis 1: means 2, 4; unbiased vars 2, 2
    np.testing.assert_allclose(metrics.snr(z, axis=1), [2.0, 8.0])
    np.testing.assert_allclose(metrics.snr(z.T, axis=0), [2.0, 8.0])


def test_snr_errors():
    with pytest.raises(ValueError, match="repeats"):
        metrics.snr(np.ones((1, 4)))
    with pytest.raises(ValueError, match="NaN"):
        metrics.snr(np.array([[1.0], [np.nan]]))
    with pytest.raises(ValueError, match="scalar"):
        metrics.snr(1.0)


def test_loglog_slope_recovers_power_law():
    x = np.array([1.0, 2.0, 4.0, 8.0, 16.0])
    slope, intercept, se = metrics.loglog_slope(x, 3.0 * x**1.5)
    assert slope == pytest.approx(1.5, abs=1e-12)
    assert intercept == pytest.approx(np.log(3.0), abs=1e-12)
    assert se == pytest.approx(0.0, abs=1e-10)
    rng = np.random.default_rng(1)
    y = x**0.8 * np.exp(0.05 * rng.standard_normal(x.size))
    slope, _, se = metrics.loglog_slope(x, y)
    assert abs(slope - 0.8) < 4 * se + 1e-3 and se > 0


def test_loglog_slope_errors():
    with pytest.raises(ValueError, match="positive"):
        metrics.loglog_slope([1.0, 2.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.loglog_slope([1.0], [1.0])
    with pytest.raises(ValueError, match="same length"):
        metrics.loglog_slope([1.0, 2.0], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="distinct"):
        metrics.loglog_slope([2.0, 2.0], [1.0, 3.0])


def test_auc_closed_forms():
    ps = np.linspace(0, 1, 11)
    assert metrics.auc(ps, np.full(11, 0.1)) == pytest.approx(0.1)  # chance over [0, 1]
    assert metrics.auc(ps, 1 - ps) == pytest.approx(0.5)  # linear: trapezoid is exact
    # nonuniform grid, quadratic curve: trapezoid error is bounded by max h^2/12 * |f''| * range
    ps2 = np.sort(np.concatenate([[0.0, 1.0], np.random.default_rng(2).uniform(0, 1, 200)]))
    assert metrics.auc(ps2, ps2**2) == pytest.approx(1 / 3, abs=1e-3)
    assert metrics.auc([0.5, 1.0], [0.8, 0.4], normalize=True) == pytest.approx(0.6)


def test_auc_errors():
    with pytest.raises(ValueError, match="increasing"):
        metrics.auc([0.0, 0.5, 0.5], [1, 1, 1])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        metrics.auc([0.0, 1.5], [1, 1])
    with pytest.raises(ValueError, match="at least 2"):
        metrics.auc([0.3], [1])
    with pytest.raises(ValueError, match="finite"):
        metrics.auc([0.0, 1.0], [np.nan, 1])
