"""Predictors on the real infinite-width kernels of nwcorrupt.kernels.

Skipped while nwcorrupt.kernels has no ``kernel`` function (the kernel code is
developed on another branch); runs once both are merged.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

import nwcorrupt.kernels as K

if not hasattr(K, "kernel") or not hasattr(K, "kernel_diag"):
    pytest.skip("nwcorrupt.kernels.kernel is not available yet", allow_module_level=True)

from nwcorrupt import predict as P  # noqa: E402
from nwcorrupt.kernels import MLP  # noqa: E402


def normalized(n: int, d: int, seed: int) -> np.ndarray:
    """Per-example normalised inputs: zero feature mean, unit RMS (<x, x> = 1)."""
    x = np.random.default_rng(seed).normal(size=(n, d))
    x -= x.mean(axis=1, keepdims=True)
    return x / np.sqrt((x**2).mean(axis=1, keepdims=True))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def data():
    y = np.eye(3)[np.random.default_rng(3).integers(0, 3, 48)]
    return normalized(48, 64, 1), y, normalized(16, 64, 2)  # 16 test rows: the tile shape (fewer compiles)


def test_all_solvers_agree_on_real_kernels(x64, data):
    xtr, y, xte = data
    arch = MLP(depth=3, activation="relu")
    ref = None
    for solver in ("cholesky", "eigh", "cg"):
        pred, info = P.ntk_predict(
            arch, xtr, y, xte, diag_reg=1e-4, solver=solver, tol=1e-12, tile_size=16, precond_rank=8, return_info=True
        )
        assert info.solver == solver and info.converged
        if ref is None:
            ref = pred
        else:
            assert rel_err(pred, ref) < 1e-8, solver
    nngp_chol = P.nngp_predict(arch, xtr, y, xte, diag_reg=1e-4, solver="cholesky")
    nngp_cg = P.nngp_predict(arch, xtr, y, xte, diag_reg=1e-4, solver="cg", tol=1e-12, tile_size=16, precond_rank=8)
    assert rel_err(nngp_cg, nngp_chol) < 1e-8


def test_entry_points_equal_matrix_level(x64, data):
    xtr, y, xte = data
    arch = MLP(depth=2, activation="relu", W_std=1.2, b_std=0.1)
    k_tr = K.kernel(arch, xtr)
    k_te = K.kernel(arch, xte, xtr)
    np.testing.assert_allclose(
        P.ntk_predict(arch, xtr, y, xte, diag_reg=1e-3), P.gp_mean(k_te.ntk, k_tr.ntk, y, diag_reg=1e-3),
        rtol=1e-10, atol=1e-12,
    )
    np.testing.assert_allclose(
        P.nngp_predict(arch, xtr, y, xte, diag_reg=1e-3), P.gp_mean(k_te.nngp, k_tr.nngp, y, diag_reg=1e-3),
        rtol=1e-10, atol=1e-12,
    )
    t = 40.0
    np.testing.assert_allclose(
        P.ntk_predict(arch, xtr, y, xte, t=t), P.gradient_flow_mean(k_te.ntk, k_tr.ntk, y, t), rtol=1e-10, atol=1e-12
    )


def test_identity_activation_closed_form(x64):
    """Identity MLP: K^L = C_w^L s + C_b sum_{j<L} C_w^j, Theta^L = sum_l C_w^(L-l) K^l, s = x.x'/d."""
    rng = np.random.default_rng(5)
    xtr, xte = rng.normal(size=(20, 50)), rng.normal(size=(7, 50))
    y = np.eye(2)[rng.integers(0, 2, 20)]
    arch = MLP(depth=3, activation="identity", W_std=0.9, b_std=0.3)
    cw, cb, L = 0.81, 0.09, 3

    def closed(x1, x2):
        s = x1 @ x2.T / 50
        k_layer = [cw**m * s + cb * sum(cw**j for j in range(m)) for m in range(1, L + 1)]
        return k_layer[-1], sum(cw ** (L - m) * k_layer[m - 1] for m in range(1, L + 1))

    nngp_tr, ntk_tr = closed(xtr, xtr)
    nngp_te, ntk_te = closed(xte, xtr)
    np.testing.assert_allclose(P.nngp_predict(arch, xtr, y, xte), nngp_te @ np.linalg.solve(nngp_tr, y), rtol=1e-9)
    t = 12.0
    ref = ntk_te @ np.linalg.solve(ntk_tr, (np.eye(20) - scipy.linalg.expm(-t * ntk_tr / y.size)) @ y)
    np.testing.assert_allclose(P.ntk_predict(arch, xtr, y, xte, t=t), ref, rtol=1e-9)


def test_flow_limits_on_real_ntk(x64, data):
    xtr, y, xte = data
    arch = MLP(depth=3, activation="erf")
    inf = P.ntk_predict(arch, xtr, y, xte, diag_reg=1e-3)
    lam_min = float(np.linalg.eigvalsh(np.asarray(K.kernel(arch, xtr, get="ntk").ntk))[0])
    t_big = 800.0 * y.size / lam_min  # exp(-800) underflows
    np.testing.assert_allclose(P.ntk_predict(arch, xtr, y, xte, t=t_big, diag_reg=1e-3), inf, rtol=1e-8, atol=1e-10)
    t = 1e-5
    first = t * np.asarray(K.kernel(arch, xte, xtr, get="ntk").ntk) @ y / y.size
    assert rel_err(P.ntk_predict(arch, xtr, y, xte, t=t), first) < 1e-5
