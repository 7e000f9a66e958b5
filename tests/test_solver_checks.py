"""Solvers refuse to return what does not solve the system (reliability audit), in float32 and float64."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nwcorrupt import predict
from nwcorrupt.arch import MLP
from nwcorrupt.predict import dense


@pytest.fixture(params=[False, True], ids=["float32", "float64"])
def precision(request):
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", request.param)
    yield request.param
    jax.config.update("jax_enable_x64", prev)


def _conflicting(seed=0):
    """50 training points, each twice with two different one-hot labels (no kernel interpolates both)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((25, 16))
    x2 = np.concatenate([x, x])
    y = np.zeros((50, 2))
    y[:25, 0] = 1.0
    y[25:, 1] = 1.0
    return x2, y, rng.standard_normal((40, 16))


def test_duplicated_points_with_conflicting_labels_raise_instead_of_predicting(precision):
    x, y, xt = _conflicting()
    with pytest.raises(ValueError, match=r"relative residual .* set diag_reg > 0"):
        predict.ntk_predict(MLP(2, "relu"), x, y, xt, diag_reg=0.0, solver="cholesky")
    # the pseudo-inverse is there for who wants it, and a ridge makes the problem well posed
    pinv = predict.ntk_predict(MLP(2, "relu"), x, y, xt, diag_reg=0.0, solver="eigh")
    ridge = predict.ntk_predict(MLP(2, "relu"), x, y, xt, diag_reg=1e-3)
    assert np.all(np.isfinite(pinv)) and np.all(np.isfinite(ridge))
    # duplicated rows with labels (1, 0) and (0, 1): the least-squares answer at a training point is (1/2, 1/2)
    at_train = predict.ntk_predict(MLP(2, "relu"), x, y, x[:5], diag_reg=0.0, solver="eigh")
    np.testing.assert_allclose(np.asarray(at_train), 0.5, atol=1e-2 if not precision else 1e-5)


def test_an_all_zero_kernel_is_refused(precision):
    with pytest.raises(ValueError, match="does not solve it"):
        predict.kernel_solve(np.zeros((4, 4)), np.eye(4)[:, :2], solver="cholesky")


def test_a_non_symmetric_kernel_is_refused_by_name(precision):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((6, 6))
    k = a @ a.T + 6 * np.eye(6)
    k[0, 3] += 0.1 * np.abs(k).max()
    with pytest.raises(ValueError, match="k_train_train must be symmetric"):
        predict.gp_mean(np.ones((2, 6)), k, np.eye(6)[:, :2])
    # rounding-level asymmetry is accepted (tiled kernels)
    k = a @ a.T + 6 * np.eye(6)
    k[0, 3] *= 1 + 1e-9
    predict.gp_mean(np.ones((2, 6)), k, np.eye(6)[:, :2])


def test_a_well_posed_system_still_solves_and_reports_its_residual(precision):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((30, 30))
    k = a @ a.T / 30 + np.eye(30)
    y = rng.standard_normal((30, 3))
    x, info = predict.kernel_solve(k, y, solver="cholesky", return_info=True)
    tol = dense.RESIDUAL_TOL["float64" if precision else "float32"]
    assert info.residual <= tol
    np.testing.assert_allclose(np.asarray(x), np.linalg.solve(k, y), rtol=1e-3 if not precision else 1e-10)
