"""``solver="mixed_cholesky"``: a float32 Cholesky factor preconditioning float64 CG.

References are numpy float64 solves of the very matrix passed (the float32-rounded one for float32
kernels); the plain float32 Cholesky solve is shown to miss the same reference by orders of
magnitude, so the refinement is what the tests measure.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from linalg_helpers import fro_rel, spd
from nwcorrupt import precision
from nwcorrupt import predict as P
from nwcorrupt.kernels import MLP
from nwcorrupt.predict import dense as D


@pytest.mark.parametrize("cond", [1e2, 1e4, 1e6])
def test_float32_kernel_is_solved_to_float64_accuracy(cond):
    n = 200
    k = spd(n, cond, 0)
    y = np.random.default_rng(1).normal(size=(n, 3))
    k32 = k.astype(np.float32)
    want = np.linalg.solve(k32.astype(np.float64), y)  # the matrix that was passed
    with precision.x64(False):
        x, info = P.solve_mixed_cholesky(jnp.asarray(k32), y, 0.0)
        assert not jax.config.read("jax_enable_x64")
    assert x.dtype == np.float64 and info.solver == "mixed_cholesky" and info.converged
    assert info.residual <= P.MIXED_TOL
    assert fro_rel(x, want) <= cond * info.residual  # the residual bound of a float64 solve, not float32's
    assert 1.0 <= info.cond < 2.0  # the float32 factor is a near-exact preconditioner: ~1 + eps32 cond
    assert 2 <= info.iterations <= 8
    if cond >= 1e4:
        with precision.x64(False):
            plain = np.asarray(P.kernel_solve(jnp.asarray(k32), jnp.asarray(y, jnp.float32), solver="cholesky"))
        assert fro_rel(plain, want) > 1e3 * fro_rel(x, want)  # what float32 alone gives


def test_float64_kernel_and_a_regulariser(x64):
    n, reg = 150, 1e-3
    k = spd(n, 1e5, 2)
    y = np.random.default_rng(3).normal(size=(n, 2))
    x, info = P.solve_mixed_cholesky(jnp.asarray(k), jnp.asarray(y), reg)
    want = np.linalg.solve(k + reg * np.eye(n), y)
    assert fro_rel(x, want) < 1e-12 and info.residual <= 1e-10 and info.jitter == 0.0


def test_row_blocks_with_a_shifted_last_block(x64, monkeypatch):
    # 8 bytes x 53 columns x 7 rows per block: blocks of 7 rows, the last one shifted back
    n = 53
    monkeypatch.setattr(D, "MIXED_BLOCK_BYTES", 8 * n * 7)
    k = spd(n, 1e3, 4)
    y = np.random.default_rng(5).normal(size=(n, 2))
    x, info = P.solve_mixed_cholesky(jnp.asarray(k), jnp.asarray(y), 0.0, tol=1e-13)
    assert np.linalg.norm(k @ x - y) / np.linalg.norm(y) <= 1e-13
    assert fro_rel(x, np.linalg.solve(k, y)) < 1e-11


def test_near_singular_kernel_uses_jitter_in_the_factor_only(x64):
    # cond 1e9 in float64: rounded to float32 the matrix is no longer positive definite, so the
    # factor needs jitter; the float64 system itself (without jitter) is still solved.
    n = 200
    k = spd(n, 1e9, 6)
    y = np.random.default_rng(7).normal(size=(n, 2))
    x, info = P.solve_mixed_cholesky(jnp.asarray(k), jnp.asarray(y), 0.0, tol=1e-6)
    assert info.jitter > 0  # in the preconditioner ...
    assert np.linalg.norm(k @ x - y) / np.linalg.norm(y) <= 1e-6  # ... not in the solved system
    assert info.iterations < 100


def test_unreachable_tol_raises_or_warns(x64):
    k = spd(100, 1e7, 8)
    y = np.random.default_rng(9).normal(size=(100, 1))
    with pytest.raises(P.ConvergenceError, match="did not reach tol=1e-15"):
        P.solve_mixed_cholesky(jnp.asarray(k), jnp.asarray(y), 0.0, tol=1e-15, maxiter=30)
    with pytest.warns(RuntimeWarning, match="did not reach"):
        x, info = P.solve_mixed_cholesky(jnp.asarray(k), jnp.asarray(y), 0.0, tol=1e-15, maxiter=30,
                                         on_nonconvergence="warn")  # fmt: skip
    assert not info.converged and info.residual < 1e-8  # still a float64-accurate answer


def test_indefinite_kernel_and_bad_arguments(x64):
    k = spd(30, 10, 10)
    k[0, 0] = -5.0
    with pytest.raises(ValueError, match="could not be Cholesky-factorised"):
        P.solve_mixed_cholesky(jnp.asarray(k), jnp.ones((30, 1)), 0.0)
    good = jnp.asarray(spd(30, 10, 11))
    for kwargs, match in (({"tol": 0.0}, "tol must be a finite number > 0, got 0"),
                          ({"tol": float("nan")}, "tol must be a finite number > 0"),
                          ({"maxiter": 0}, "maxiter must be >= 1, got 0"),
                          ({"on_nonconvergence": "ignore"}, "on_nonconvergence must be")):  # fmt: skip
        with pytest.raises(ValueError, match=match):
            P.solve_mixed_cholesky(good, jnp.ones((30, 1)), 0.0, **kwargs)
    # a float maxiter is refused, not truncated (it was int()-ed silently until 2026-12-07)
    with pytest.raises(TypeError, match="maxiter must be an integer, got 2.5"):
        P.solve_mixed_cholesky(good, jnp.ones((30, 1)), 0.0, maxiter=2.5)


def test_ntk_predict_with_mixed_cholesky_matches_float64_cholesky():
    rng = np.random.default_rng(12)
    xtr, xte = rng.normal(size=(120, 10)), rng.normal(size=(40, 10))
    y = np.eye(3)[rng.integers(0, 3, 120)]
    arch = MLP(depth=3, activation="erf")
    with precision.x64():
        want = np.asarray(P.ntk_predict(arch, xtr, y, xte, solver="cholesky"))
    with precision.x64(False):
        got, info = P.ntk_predict(arch, xtr, y, xte, solver="mixed_cholesky", return_info=True)
        plain = P.ntk_predict(arch, xtr, y, xte, solver="cholesky")
    assert info.solver == "mixed_cholesky" and info.residual <= P.MIXED_TOL
    err = fro_rel(got, want)
    assert err < 1e-4  # the float32 kernel's rounding, amplified by cond
    assert err <= fro_rel(plain, want)  # never worse than the float32 solve
    alpha = P.kernel_solve(jnp.asarray(spd(20, 10, 13)), np.ones((20, 1)), solver="mixed_cholesky")
    assert alpha.shape == (20, 1)


@pytest.mark.parametrize("solver", ["cholesky", "mixed_cholesky", "eigh"])
def test_dense_solvers_refuse_a_kernel_that_cannot_fit_before_computing_it(monkeypatch, solver):
    from nwcorrupt.predict import architecture as A
    from nwcorrupt.predict import memory as M

    rng = np.random.default_rng(14)
    xtr, xte, y = rng.normal(size=(100, 5)), rng.normal(size=(10, 5)), np.eye(2)[rng.integers(0, 2, 100)]
    need = M.DENSE_MATRICES[solver] * 100 * 100 * 4  # float32 (x64 off)
    monkeypatch.setattr(M, "available_memory_bytes", lambda device=None: int(need / M.MEMORY_HEADROOM) - 1)

    def no_kernel(*args, **kwargs):
        raise AssertionError("the kernel was computed before the memory check")

    monkeypatch.setattr(A, "_arch_kernel", no_kernel)
    t = 1.0 if solver == "eigh" else None
    with precision.x64(False), pytest.raises(MemoryError, match=f"solver='{solver}' at N = 100 holds"):
        P.ntk_predict(MLP(depth=2), xtr, y, xte, t=t, solver=solver)
    assert M.check_dense_memory(100, solver, itemsize=4, available_bytes=int(need / M.MEMORY_HEADROOM) + 1) == need
    assert M.check_dense_memory(100, "cg", available_bytes=1) == 0  # not a dense solver
    assert M.check_dense_memory(100, solver, available_bytes=None) == need  # unknown memory: passes


def test_dense_memory_check_can_be_switched_off(monkeypatch):
    from nwcorrupt.predict import memory as M

    monkeypatch.setattr(M, "available_memory_bytes", lambda device=None: 1)
    rng = np.random.default_rng(15)
    xtr, xte, y = rng.normal(size=(30, 4)), rng.normal(size=(5, 4)), np.eye(2)[rng.integers(0, 2, 30)]
    with pytest.raises(MemoryError):
        P.nngp_predict(MLP(depth=2), xtr, y, xte, solver="cholesky", diag_reg=1e-3)
    out = P.nngp_predict(MLP(depth=2), xtr, y, xte, solver="cholesky", diag_reg=1e-3, check_memory=False)
    assert out.shape == (5, 2)
