"""Tests of nwcorrupt.predict: solvers and predictors on synthetic SPD kernels, and the
architecture-level entry points with a monkeypatched identity-activation kernel."""

from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import nwcorrupt.kernels as K
from nwcorrupt import predict as P
from nwcorrupt.kernels import MLP, Kernels

# ---------------------------------------------------------------------------------------
# synthetic kernels


def spd_with_spectrum(n: int, cond: float, seed: int) -> np.ndarray:
    """Q diag(lam) Q^T with lam log-spaced from 1 down to 1/cond (a random orthogonal Q)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    lam = np.logspace(0.0, -np.log10(cond), n)
    k = (q * lam) @ q.T
    return (k + k.T) / 2


def rbf(x1: np.ndarray, x2: np.ndarray, lengthscale: float) -> np.ndarray:
    d2 = ((x1[:, None, :] - x2[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / (2 * lengthscale**2))


def one_hot(n: int, c: int, seed: int) -> np.ndarray:
    labels = np.random.default_rng(seed).integers(0, c, n)
    return np.eye(c)[labels]


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


@pytest.fixture
def problem():
    """A well-posed random-feature kernel problem: N=40 train, 15 test, C=3."""
    rng = np.random.default_rng(1)
    f_train = rng.normal(size=(40, 120)) / np.sqrt(120)
    f_test = rng.normal(size=(15, 120)) / np.sqrt(120)
    return f_test @ f_train.T, f_train @ f_train.T, one_hot(40, 3, 2)


# ---------------------------------------------------------------------------------------
# infinite-time solves and the regulariser


@pytest.mark.parametrize("solver", ["cholesky", "eigh", "cg"])
def test_gp_mean_with_relative_regulariser_matches_numpy(x64, problem, solver):
    kt, k, y = problem
    r = 0.05
    ref = kt @ np.linalg.solve(k + r * np.trace(k) / k.shape[0] * np.eye(k.shape[0]), y)
    pred, info = P.gp_mean(kt, k, y, diag_reg=r, solver=solver, tol=1e-13, return_info=True)
    assert pred.shape == (15, 3) and pred.dtype == jnp.float64
    assert rel_err(pred, ref) < 1e-10
    assert info.solver == solver
    assert info.diag_reg == pytest.approx(r * np.mean(np.diag(k)), rel=1e-14)
    assert info.residual < 1e-11
    assert info.jitter == 0.0


def test_absolute_scale_and_absolute_regularizer(x64, problem):
    kt, k, y = problem
    assert P.absolute_regularizer(k, 0.3) == pytest.approx(0.3 * np.trace(k) / 40, rel=1e-14)
    assert P.absolute_regularizer(k, 0.3, diag_reg_absolute_scale=True) == 0.3
    pred = P.gp_mean(kt, k, y, diag_reg=0.3, diag_reg_absolute_scale=True)
    np.testing.assert_allclose(pred, kt @ np.linalg.solve(k + 0.3 * np.eye(40), y), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("solver", ["cholesky", "eigh", "cg"])
def test_huge_regulariser_limit(x64, problem, solver):
    """(K + r m I)^{-1} -> I / (r m) as r -> inf, so the mean -> K_* Y / (r m)."""
    kt, k, y = problem
    r = 1e9
    pred = P.gp_mean(kt, k, y, diag_reg=r, solver=solver)
    limit = kt @ y / (r * np.mean(np.diag(k)))
    # next term is O(|K| / (r m)) ~ 1e-8 relative
    assert rel_err(pred, limit) < 1e-7


def test_auto_solver_rule():
    assert P.auto_solver(100, jnp.float64) == "cholesky"
    assert P.auto_solver(30000, jnp.float64) == "cg"  # 7.2 GB > 4 GiB
    assert P.auto_solver(30000, jnp.float32) == "cholesky"  # 3.6 GB
    assert P.auto_solver(30000, jnp.float32, max_bytes=10**9) == "cg"
    assert P.auto_solver(10**6, t=1.0) == "eigh"


def test_auto_resolves_to_cholesky_and_cg(x64, problem):
    kt, k, y = problem
    _, info = P.gp_mean(kt, k, y, return_info=True)
    assert info.solver == "cholesky"
    tiled = P.TiledKernel(rows=lambda idx: k[idx], n=40, tile_size=16)
    _, info = P.gp_mean(kt, tiled, y, return_info=True, tol=1e-12)
    assert info.solver == "cg" and info.iterations > 0


# ---------------------------------------------------------------------------------------
# finite time gradient flow


@pytest.fixture
def flow_problem():
    k = spd_with_spectrum(40, 50.0, seed=3) * 30.0  # eigenvalues in [0.6, 30]
    kt = np.random.default_rng(4).normal(size=(15, 40))
    return kt, k, one_hot(40, 3, 5)


def test_flow_matches_matrix_exponential(x64, flow_problem):
    kt, k, y = flow_problem
    t, lr, r = 37.0, 0.7, 0.01
    kr = k + r * np.trace(k) / 40 * np.eye(40)
    ref = kt @ np.linalg.solve(kr, (np.eye(40) - scipy.linalg.expm(-lr * t * kr / y.size)) @ y)
    pred, info = P.gradient_flow_mean(kt, k, y, t, diag_reg=r, learning_rate=lr, return_info=True)
    assert rel_err(pred, ref) < 1e-12
    assert info.solver == "eigh" and info.residual < 1e-12 and info.dropped == 0
    # only eta * t matters
    np.testing.assert_allclose(P.gradient_flow_mean(kt, k, y, t * lr, diag_reg=r), pred, rtol=1e-12, atol=1e-14)


def test_flow_limits(x64, flow_problem):
    kt, k, y = flow_problem
    inf_solve = P.gp_mean(kt, k, y, solver="cholesky")
    # t -> inf: exp(-lam_min t / Y.size) = exp(-0.6 * 1e5 / 120) ~ 1e-217
    np.testing.assert_allclose(P.gradient_flow_mean(kt, k, y, 1e5), inf_solve, rtol=1e-11, atol=1e-12)
    np.testing.assert_allclose(P.gradient_flow_mean(kt, k, y, np.inf), inf_solve, rtol=1e-11, atol=1e-12)
    # t = 0: nothing has been learned
    assert np.all(np.asarray(P.gradient_flow_mean(kt, k, y, 0.0)) == 0.0)
    # small t: first order t K_* Y / Y.size, second-order relative term ~ t lam_max / (2 Y.size) = 1.3e-5
    t = 1e-4
    first = t * kt @ y / y.size
    err = rel_err(P.gradient_flow_mean(kt, k, y, t), first)
    assert err < 5e-5
    assert rel_err(P.gradient_flow_mean(kt, k, y, 10 * t), 10 * first) > 5 * err  # the error is O(t)


def test_flow_array_of_times_and_ntk_at_infinity_with_eigh(x64, flow_problem):
    kt, k, y = flow_problem
    times = np.array([0.0, 1.0, 50.0, np.inf])
    out = P.gradient_flow_mean(kt, k, y, times)
    assert out.shape == (4, 15, 3)
    for i, t in enumerate(times):
        np.testing.assert_allclose(out[i], P.gradient_flow_mean(kt, k, y, t), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(out[-1], P.gp_mean(kt, k, y, solver="eigh"), rtol=1e-12, atol=1e-14)
    w = P.gradient_flow_weights(k, y, times)
    assert w.shape == (4, 40, 3)


def test_eigh_drops_numerical_null_space(x64):
    """Rank-deficient PSD kernel (rank 8 of 40): eigh is the pseudo-inverse solve."""
    rng = np.random.default_rng(6)
    f = rng.normal(size=(40, 8))
    g = rng.normal(size=(15, 8))
    k, kt, y = f @ f.T, g @ f.T, one_hot(40, 3, 7)
    pred, info = P.gp_mean(kt, k, y, solver="eigh", return_info=True)
    assert info.dropped == 32 and info.cond == np.inf
    np.testing.assert_allclose(pred, kt @ np.linalg.pinv(k, rcond=1e-10) @ y, rtol=1e-9, atol=1e-10)
    # at finite t the null space contributes nothing either: compare with expm on the range
    t = 3.0
    ref = kt @ np.linalg.pinv(k, rcond=1e-10) @ (np.eye(40) - scipy.linalg.expm(-t * k / y.size)) @ y
    np.testing.assert_allclose(P.gradient_flow_mean(kt, k, y, t), ref, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------------------------------
# Cholesky jitter and indefinite kernels


def test_jitter_fallback_on_singular_psd_matrix(x64):
    """Four duplicated training points (an all-ones block): Cholesky fails exactly, jitter rescues it.

    The four duplicates share a label and the test kernel is constant on them (as for
    any kernel of duplicated inputs), so the prediction is well-posed despite the
    singular kernel and must match the pseudo-inverse solution.
    """
    rng = np.random.default_rng(8)
    a = rng.normal(size=(36, 36))
    k = scipy.linalg.block_diag(a @ a.T / 36 + np.eye(36), np.ones((4, 4)))
    y = one_hot(40, 3, 9)
    y[36:] = [1.0, 0.0, 0.0]
    kt = rng.normal(size=(15, 40))
    kt[:, 36:] = rng.normal(size=(15, 1))
    with pytest.raises(np.linalg.LinAlgError):
        np.linalg.cholesky(k)  # exactly singular in floating point
    pred, info = P.gp_mean(kt, k, y, solver="cholesky", return_info=True)
    rel = info.jitter / (np.trace(k) / 40)
    assert 1e-12 * 0.99 <= rel <= P.JITTER_MAX * 1.01
    assert np.isclose(np.log10(rel), np.round(np.log10(rel)))  # 1e-12 x 10^k
    assert rel_err(pred, kt @ np.linalg.solve(k + info.jitter * np.eye(40), y)) < 1e-8
    assert rel_err(pred, kt @ np.linalg.pinv(k, rcond=1e-12) @ y) < 1e-8
    assert info.residual < 1e-9  # residual of the unjittered system K alpha = Y


def test_indefinite_matrix_raises_for_every_solver(x64):
    k = spd_with_spectrum(40, 10.0, seed=10)
    q = np.linalg.eigh(k)[1]
    k_bad = k - 2.0 * np.outer(q[:, 0], q[:, 0])  # smallest eigenvalue 0.1 - 2 < 0
    y = one_hot(40, 3, 11)
    with pytest.raises(ValueError, match="not positive semi-definite or is singular"):
        P.kernel_solve(k_bad, y, solver="cholesky")
    with pytest.raises(ValueError, match="not positive semi-definite"):
        P.kernel_solve(k_bad, y, solver="eigh")
    with pytest.raises(ValueError, match="not positive definite"):
        P.kernel_solve(k_bad, y, solver="cg", preconditioner="none")
    with pytest.raises(ValueError, match="no positive eigenvalue"):
        P.kernel_solve(-np.eye(40), y, solver="eigh")


# ---------------------------------------------------------------------------------------
# conjugate gradients


@pytest.mark.parametrize("cond", [1e3, 1e5])
@pytest.mark.parametrize("preconditioner", ["none", "jacobi", "pivoted_cholesky"])
def test_cg_equals_cholesky_full_matrix(x64, cond, preconditioner):
    k = spd_with_spectrum(80, cond, seed=12)
    y = one_hot(80, 3, 13)
    kt = np.random.default_rng(14).normal(size=(9, 80))
    chol = P.gp_mean(kt, k, y, solver="cholesky")
    pred, info = P.gp_mean(
        kt, k, y, solver="cg", tol=1e-11, maxiter=4000, preconditioner=preconditioner, return_info=True
    )
    assert rel_err(pred, chol) < 1e-8
    assert info.converged and info.residual <= 1e-11 and info.iterations > 0
    if preconditioner == "none":  # Lanczos Ritz values of K itself
        assert info.cond == pytest.approx(cond, rel=0.05)


def test_cg_equals_cholesky_with_tile_streaming(x64):
    """RBF kernel available only through row tiles: CG never sees the whole matrix."""
    rng = np.random.default_rng(15)
    x_train = rng.normal(size=(80, 3))
    x_test = rng.normal(size=(9, 3))
    y = one_hot(80, 3, 16)
    seen = []

    def rows(idx):
        seen.append(len(idx))
        return rbf(x_train[idx], x_train, 1.5)

    k = rbf(x_train, x_train, 1.5)
    reg = 1e-3  # relative; sets the condition number
    lam = np.linalg.eigvalsh(k + reg * np.eye(80))
    assert 1e3 <= lam[-1] / lam[0] <= 1e5
    kt = rbf(x_test, x_train, 1.5)
    chol = P.gp_mean(kt, k, y, diag_reg=reg, solver="cholesky")
    for pc in ("jacobi", "pivoted_cholesky"):
        seen.clear()
        tiled = P.TiledKernel(rows=rows, n=80, tile_size=32)
        pred, info = P.gp_mean(kt, tiled, y, diag_reg=reg, solver="cg", tol=1e-11, maxiter=3000, preconditioner=pc, return_info=True
        )
        assert rel_err(pred, chol) < 1e-8
        assert info.converged and info.diag_reg == pytest.approx(reg, rel=1e-12)  # mean diag of RBF = 1
        assert max(seen) <= 32 and len(seen) > 80 // 32


def test_tiled_kernel_matvec_and_diag(x64):
    k = spd_with_spectrum(40, 10.0, seed=17)
    tiled = P.TiledKernel(rows=lambda idx: k[idx], n=40, tile_size=16)
    v = np.random.default_rng(18).normal(size=(40, 3))
    np.testing.assert_allclose(tiled.matvec(jnp.asarray(v)), k @ v, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(tiled.diag(), np.diag(k), rtol=1e-15)
    assert tiled.tiles() == [(0, 16), (16, 32), (32, 40)]
    bad = P.TiledKernel(rows=lambda idx: k[idx, :5], n=40, tile_size=16)
    with pytest.raises(ValueError, match=r"expected \(16, 40\)"):
        bad.matvec(jnp.asarray(v))
    with pytest.raises(ValueError, match="diagonal must have shape"):
        P.TiledKernel(rows=lambda idx: k[idx], n=40, diagonal=np.ones(3))
    with pytest.raises(TypeError, match="rows must be a function"):
        P.TiledKernel(rows=None, n=3)


def test_cg_matvec_function_vector_rhs_and_zero_column(x64):
    k = spd_with_spectrum(40, 100.0, seed=19)
    b = np.random.default_rng(20).normal(size=40)
    x = P.cg_solve(lambda v: jnp.asarray(k) @ v, b, diag=np.diag(k), tol=1e-12)
    assert x.shape == (40,)
    np.testing.assert_allclose(x, np.linalg.solve(k, b), rtol=1e-9)
    bb = np.stack([b, np.zeros(40), -b], axis=1)
    x2, info = P.cg_solve(k, bb, shift=0.5, tol=1e-12, return_info=True)
    np.testing.assert_allclose(x2[:, 0], np.linalg.solve(k + 0.5 * np.eye(40), b), rtol=1e-10)
    assert np.all(np.asarray(x2[:, 1]) == 0.0)
    np.testing.assert_allclose(x2[:, 2], -x2[:, 0], rtol=1e-12)
    # a good initial guess converges immediately
    _, info0 = P.cg_solve(k, b, x0=np.linalg.solve(k, b), tol=1e-10, return_info=True)
    assert info0.iterations == 0
    with pytest.raises(ValueError, match="needs diag="):
        P.cg_solve(lambda v: k @ v, b)
    with pytest.raises(ValueError, match="needs rows of the matrix"):
        P.cg_solve(lambda v: k @ v, b, diag=np.diag(k), preconditioner="pivoted_cholesky")


def test_cg_nonconvergence_is_reported(x64):
    k = spd_with_spectrum(80, 1e4, seed=21)
    y = one_hot(80, 3, 22)
    with pytest.raises(P.ConvergenceError, match="did not converge") as err:
        P.cg_solve(k, y, tol=1e-12, maxiter=5, preconditioner="none")
    assert err.value.info.converged is False and err.value.info.iterations == 5
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        x, info = P.cg_solve(k, y, tol=1e-12, maxiter=5, on_nonconvergence="warn", return_info=True)
    assert any(issubclass(w.category, RuntimeWarning) for w in caught)
    assert not info.converged and info.residual > 1e-12 and np.all(np.isfinite(np.asarray(x)))
    # the reported residual is the true one
    assert info.residual == pytest.approx(np.linalg.norm(k @ np.asarray(x) - y) / np.linalg.norm(y), rel=1e-8)


def test_condition_number_estimates(x64):
    k = spd_with_spectrum(40, 2e3, seed=23)
    y = one_hot(40, 3, 24)
    _, info = P.kernel_solve(k, y, solver="cholesky", return_info=True)
    assert info.cond_method == "power" and info.cond == pytest.approx(2e3, rel=0.05)
    _, info = P.kernel_solve(k, y, solver="eigh", return_info=True)
    assert info.cond_method == "eigh" and info.cond == pytest.approx(2e3, rel=1e-9)


# ---------------------------------------------------------------------------------------
# float32


def test_float32_error_is_within_documented_bound(problem):
    """Without x64 everything is float32; error ~ eps32 * cond (cond ~ 1e2 here)."""
    kt, k, y = problem
    r = 0.05
    ref = kt @ np.linalg.solve(k + r * np.trace(k) / 40 * np.eye(40), y)
    lam = np.linalg.eigvalsh(k + r * np.trace(k) / 40 * np.eye(40))
    cond = lam[-1] / lam[0]
    for solver in ("cholesky", "eigh", "cg"):
        pred = P.gp_mean(kt, k, y, diag_reg=r, solver=solver)
        assert pred.dtype == jnp.float32
        assert rel_err(pred, ref) < 20 * 1.2e-7 * cond


# ---------------------------------------------------------------------------------------
# validation


def test_validation_errors(x64, problem):
    kt, k, y = problem
    with pytest.raises(ValueError, match="y_train must be 2-dimensional"):
        P.gp_mean(kt, k, y[:, 0])
    with pytest.raises(ValueError, match="y_train has 39 rows but k_train_train is 40 x 40"):
        P.gp_mean(kt, k, y[:39])
    with pytest.raises(ValueError, match="k_train_train must be a square"):
        P.gp_mean(kt, k[:, :39], y)
    with pytest.raises(ValueError, match=r"k_test_train must have shape \(N_test, 40\)"):
        P.gp_mean(kt[:, :39], k, y)
    k_nan = k.copy()
    k_nan[3, 4] = np.nan
    with pytest.raises(ValueError, match="k_train_train contains NaN"):
        P.gp_mean(kt, k_nan, y)
    with pytest.raises(ValueError, match="y_train contains NaN"):
        P.gp_mean(kt, k, np.where(y == 1, np.inf, 0.0))
    with pytest.raises(ValueError, match="k_test_train contains NaN"):
        P.gp_mean(np.full_like(kt, np.nan), k, y)
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="diag_reg must be a finite number >= 0"):
            P.gp_mean(kt, k, y, diag_reg=bad)
    with pytest.raises(ValueError, match="solver must be one of"):
        P.gp_mean(kt, k, y, solver="lu")
    for bad_t in (-1.0, np.nan, [1.0, -2.0]):
        with pytest.raises(ValueError, match="t must be >= 0"):
            P.gradient_flow_mean(kt, k, y, bad_t)
    with pytest.raises(ValueError, match="t must be a scalar or a 1-D"):
        P.gradient_flow_mean(kt, k, y, np.ones((2, 2)))
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        P.gradient_flow_mean(kt, k, y, 1.0, learning_rate=0.0)
    tiled = P.TiledKernel(rows=lambda idx: k[idx], n=40)
    with pytest.raises(ValueError, match="TiledKernel can only be solved with solver='cg'"):
        P.gp_mean(kt, tiled, y, solver="cholesky")
    with pytest.raises(ValueError, match="preconditioner must be one of"):
        P.cg_solve(k, y, preconditioner="ilu")
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        P.cg_solve(k, y, tol=0.0)
    with pytest.raises(ValueError, match="maxiter must be >= 1"):
        P.cg_solve(k, y, maxiter=0)
    with pytest.raises(ValueError, match=r"operator must have shape \(40, 40\)"):
        P.cg_solve(k[:30, :30], y)
    with pytest.raises(ValueError, match="on_nonconvergence must be one of"):
        P.cg_solve(k, y, on_nonconvergence="ignore")


def test_non_finite_outputs_are_not_returned_silently(x64, problem):
    _, k, y = problem
    alpha0 = np.linalg.solve(k, y)
    kt = np.tile(np.sign(alpha0[:, 0]) * 1e10, (2, 1))  # finite inputs whose product overflows
    with pytest.raises(FloatingPointError, match="predictions contains NaN or inf"):
        P.gp_mean(kt, k, 1e300 * y)


# ---------------------------------------------------------------------------------------
# architecture level, with the identity-activation kernel monkeypatched in


def _identity_recursion(arch: MLP, x1: np.ndarray, x2: np.ndarray, diag: bool):
    """NNGP and NTK of an identity-activation MLP by the layer recursion of docs/science.md#infinite-width-kernels."""
    cw, cb = arch.W_std**2, arch.b_std**2
    d = x1.shape[1]
    s = np.sum(x1 * x2, axis=1) / d if diag else x1 @ x2.T / d
    nngp = cb + cw * s
    ntk = nngp
    for _ in range(arch.depth - 1):
        # identity: <sigma sigma>_K = K, <sigma' sigma'>_K = 1
        nngp, ntk = cb + cw * nngp, cb + cw * (nngp + ntk)
    return nngp, ntk


@pytest.fixture
def fake_kernels(monkeypatch):
    calls = []

    def kernel(arch, x1, x2=None, get=("nngp", "ntk"), *, backend="native"):
        assert backend == "native"
        x1 = np.asarray(x1)
        x2 = x1 if x2 is None else np.asarray(x2)
        calls.append((x1.shape[0], x2.shape[0]))
        nngp, ntk = _identity_recursion(arch, x1, x2, diag=False)
        return Kernels(nngp=jnp.asarray(nngp) if "nngp" in get else None, ntk=jnp.asarray(ntk) if "ntk" in get else None)

    def kernel_diag(arch, x, get=("nngp", "ntk")):
        x = np.asarray(x)
        nngp, ntk = _identity_recursion(arch, x, x, diag=True)
        return Kernels(nngp=jnp.asarray(nngp) if "nngp" in get else None, ntk=jnp.asarray(ntk) if "ntk" in get else None)

    monkeypatch.setattr(K, "kernel", kernel, raising=False)
    monkeypatch.setattr(K, "kernel_diag", kernel_diag, raising=False)
    return calls


def _identity_closed_form(arch: MLP, x1: np.ndarray, x2: np.ndarray):
    """Closed forms: K^l = C_w^l s + C_b sum_{j<l} C_w^j and Theta^L = sum_l C_w^(L-l) K^l."""
    cw, cb, L = arch.W_std**2, arch.b_std**2, arch.depth
    s = x1 @ x2.T / x1.shape[1]

    def k_layer(layer):
        return cw**layer * s + cb * sum(cw**j for j in range(layer))

    return k_layer(L), sum(cw ** (L - layer) * k_layer(layer) for layer in range(1, L + 1))


@pytest.fixture
def arch_data():
    rng = np.random.default_rng(25)
    d = 60
    x_train = rng.normal(size=(40, d))  # N < d: the identity kernels are nonsingular
    x_test = rng.normal(size=(15, d))
    return MLP(depth=3, activation="identity", W_std=1.3, b_std=0.4), x_train, one_hot(40, 3, 26), x_test


@pytest.mark.parametrize("solver", ["cholesky", "eigh", "cg"])
def test_arch_predictors_with_identity_kernel(x64, fake_kernels, arch_data, solver):
    arch, xtr, y, xte = arch_data
    nngp_tr, ntk_tr = _identity_closed_form(arch, xtr, xtr)
    nngp_te, ntk_te = _identity_closed_form(arch, xte, xtr)
    r = 1e-3
    n = 40
    ref_ntk = ntk_te @ np.linalg.solve(ntk_tr + r * np.trace(ntk_tr) / n * np.eye(n), y)
    ref_nngp = nngp_te @ np.linalg.solve(nngp_tr + r * np.trace(nngp_tr) / n * np.eye(n), y)
    opts = dict(diag_reg=r, solver=solver, tol=1e-13, tile_size=16)
    pred, info = P.ntk_predict(arch, xtr, y, xte, return_info=True, **opts)
    assert pred.shape == (15, 3) and info.solver == solver
    assert rel_err(pred, ref_ntk) < 1e-9
    assert rel_err(P.nngp_predict(arch, xtr, y, xte, **opts), ref_nngp) < 1e-9
    if solver == "cg":  # the training kernel was only ever computed in row tiles
        assert max(n1 for n1, _ in fake_kernels) <= 16


def test_arch_ntk_finite_time(x64, fake_kernels, arch_data):
    arch, xtr, y, xte = arch_data
    _, ntk_tr = _identity_closed_form(arch, xtr, xtr)
    _, ntk_te = _identity_closed_form(arch, xte, xtr)
    t, lr = 25.0, 0.5
    ref = ntk_te @ np.linalg.solve(ntk_tr, (np.eye(40) - scipy.linalg.expm(-lr * t * ntk_tr / y.size)) @ y)
    pred = P.ntk_predict(arch, xtr, y, xte, t=t, learning_rate=lr)
    assert rel_err(pred, ref) < 1e-10
    both = P.ntk_predict(arch, xtr, y, xte, t=[t * lr, np.inf], tile_size=8)  # test side in 2 tiles
    assert both.shape == (2, 15, 3)
    np.testing.assert_allclose(both[0], pred, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(both[1], P.ntk_predict(arch, xtr, y, xte), rtol=1e-9, atol=1e-11)
    with pytest.raises(ValueError, match="finite t needs solver 'eigh'"):
        P.ntk_predict(arch, xtr, y, xte, t=1.0, solver="cg")


def test_arch_validation(x64, fake_kernels, arch_data):
    arch, xtr, y, xte = arch_data
    with pytest.raises(ValueError, match="x_test has 59 features but x_train has 60"):
        P.ntk_predict(arch, xtr, y, xte[:, :59])
    with pytest.raises(ValueError, match="y_train has 39 rows but x_train has 40"):
        P.nngp_predict(arch, xtr, y[:39], xte)
    bad = xtr.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x_train contains NaN"):
        P.ntk_predict(arch, bad, y, xte)
    with pytest.raises(ValueError, match="x_test must be 2-dimensional"):
        P.ntk_predict(arch, xtr, y, xte[0])
    with pytest.raises(ValueError, match="t must be >= 0"):
        P.ntk_predict(arch, xtr, y, xte, t=-1.0)
    with pytest.raises(ValueError, match="tile_size must be >= 1"):
        P.ntk_predict(arch, xtr, y, xte, tile_size=0)
