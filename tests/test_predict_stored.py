"""The stored-kernel solver (``solver="stored_cg"``): StoredKernel tiles, products, CG with
float64 refinement, preconditioners, architecture-level predictor, memory plan, errors.

float64 tests compare with dense Cholesky solves (tight tolerances); the float32 test states
the error of the float32 pipeline against float64 on a corrupted real data set.
"""

from __future__ import annotations

import numpy as np
import pytest

from linalg_helpers import spd
from nwcorrupt import corruption, data, precision
from nwcorrupt import predict as P
from nwcorrupt.kernels import MLP, kernel
from nwcorrupt.predict import matrix as predict_matrix
from nwcorrupt.predict import memory as predict_memory


def normalized(n: int, d: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    x -= x.mean(axis=1, keepdims=True)
    return x / np.sqrt((x**2).mean(axis=1, keepdims=True))


def rel_err(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def one_hot(n: int, c: int, seed: int) -> np.ndarray:
    return np.eye(c)[np.random.default_rng(seed).integers(0, c, n)]


# ------------------------------------------------------------------------------ storage


@pytest.mark.parametrize("n, block", [(1, 4), (7, 7), (37, 8), (50, 16), (64, 16)])
def test_block_bounds_partition(n, block):
    b = np.asarray(predict_memory.block_bounds(n, block))
    sizes = np.diff(b)
    assert b[0] == 0 and b[-1] == n
    assert len(sizes) == -(-n // block)
    assert sizes.max() <= block and sizes.max() - sizes.min() <= 1


def test_from_matrix_products_rows_and_dense(x64):
    n = 37
    k = spd(n, 1e3, 0)
    garbage = k.copy()
    garbage[np.tril_indices(n, -1)] = 123.0  # only the upper triangle is read
    sk = P.StoredKernel.from_matrix(garbage, block_size=8)
    assert sk.n_blocks == 5 and sk.dtype == np.float64
    assert sk.nbytes == sum(t.size for row in sk.tiles for t in row) * 8
    assert sk.nbytes == P.stored_memory_plan(n, block_size=8, itemsize=8, available_bytes=None).matrix_bytes
    np.testing.assert_allclose(sk.to_dense(), k, rtol=0, atol=1e-15)
    v = np.random.default_rng(1).normal(size=(n, 3))
    for exact in (False, True):
        np.testing.assert_allclose(sk.matvec(v, exact=exact), k @ v, rtol=0, atol=1e-13)
    np.testing.assert_allclose(sk.matvec(v[:, 0]), k @ v[:, 0], rtol=0, atol=1e-13)
    for i in (0, 6, 7, 20, 36):
        np.testing.assert_array_equal(sk.row(i), k[i])
    idx = np.array([36, 0, 9, 10, 11, 30])
    np.testing.assert_array_equal(sk.rows(idx), k[idx])
    np.testing.assert_array_equal(sk.diag(), np.diag(k))


def test_float32_storage_exact_product_is_float64_accurate():
    k = spd(40, 1e2, 2)
    sk = P.StoredKernel.from_matrix(k, block_size=16)
    assert sk.dtype == np.float32
    k32 = sk.to_dense()  # the float32-rounded matrix, in float64
    v = np.random.default_rng(3).normal(size=(40, 2))
    assert rel_err(sk.matvec(v, exact=True), k32 @ v) < 1e-14
    fast = rel_err(sk.matvec(v), k32 @ v)
    assert 0 < fast < 1e-6  # float32 products: rounding of v and the accumulation


@pytest.mark.parametrize("activation, get", [("relu", "ntk"), ("erf", "nngp")])
def test_from_arch_equals_dense_kernel(x64, activation, get):
    x = normalized(45, 24, 4)
    arch = MLP(depth=3, activation=activation, W_std=1.1, b_std=0.2)
    if True:
        sk = P.StoredKernel.from_arch(arch, x, get, block_size=16)
        dense = np.asarray(getattr(kernel(arch, x, get=get), get))
        assert rel_err(sk.to_dense(), dense) < 1e-12
        diag_tile = np.asarray(sk.tiles[1][0])
        np.testing.assert_array_equal(diag_tile, diag_tile.T)


# ------------------------------------------------------------------------------ solves


@pytest.mark.parametrize("preconditioner", ["none", "jacobi", "pivoted_cholesky", "nystrom"])
def test_stored_cg_matches_cholesky(x64, preconditioner):
    n = 120
    k = spd(n, 1e3, 5)
    y = one_hot(n, 4, 6)
    ref = P.kernel_solve(k, y, diag_reg=1e-3, solver="cholesky")
    sk = P.StoredKernel.from_matrix(k, block_size=32)
    alpha, info = P.kernel_solve(
        sk, y, diag_reg=1e-3, solver="stored_cg", preconditioner=preconditioner, precond_rank=24, return_info=True
    )
    assert rel_err(alpha, ref) < 1e-8
    assert isinstance(info, P.StoredSolveInfo) and info.solver == "stored_cg" and info.converged
    assert info.residual <= 1e-10 and info.storage_dtype == "float64"
    assert info.precond_rank == (24 if preconditioner in ("pivoted_cholesky", "nystrom") else 0)
    # "auto" on a StoredKernel, and a dense matrix passed to "stored_cg", give the same weights
    assert rel_err(P.kernel_solve(sk, y, diag_reg=1e-3), ref) < 1e-8
    assert rel_err(P.kernel_solve(k, y, diag_reg=1e-3, solver="stored_cg"), ref) < 1e-8


def test_low_rank_preconditioners_cut_iterations(x64):
    # kernel-like spectrum: eigenvalues decaying as 1/i^2 onto a floor, random eigenvectors
    rng = np.random.default_rng(7)
    n = 150
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    k = (q * (1.0 / (1.0 + np.arange(n)) ** 2 + 1e-3)) @ q.T
    k = (k + k.T) / 2
    sk = P.StoredKernel.from_matrix(k, block_size=40)
    y = one_hot(n, 3, 8)
    its = {}
    for pre in ("none", "pivoted_cholesky", "nystrom"):
        x, info = P.stored_cg_solve(sk, y, preconditioner=pre, precond_rank=40, return_info=True)
        assert rel_err(x, np.linalg.solve(k, y)) < 1e-8
        its[pre] = info.iterations
    assert its["pivoted_cholesky"] < its["none"] and its["nystrom"] < its["none"]


def test_float32_storage_refines_to_float64_residual():
    k = spd(80, 1e2, 9)
    sk = P.StoredKernel.from_matrix(k, block_size=32)
    y = one_hot(80, 3, 10)
    x, info = P.stored_cg_solve(sk, y, tol=1e-10, preconditioner="none", return_info=True)
    assert info.converged and info.residual <= 1e-10 and info.refinements >= 1
    assert "float32" in info.precision and "float64" in info.precision
    assert rel_err(x, np.linalg.solve(sk.to_dense(), y)) < 1e-9  # the float32-rounded matrix, solved in float64


def test_float32_nystrom_factor_keeps_the_solve_exact_and_cuts_iterations():
    """A float32 kernel's Nystrom set-up runs its triangular solves in float32; the preconditioner is still
    symmetric positive definite, so CG with float64 refinement reaches the float64 solution of the stored
    (float32-rounded) matrix, in fewer iterations than without it."""
    rng = np.random.default_rng(21)
    n = 160
    q, _ = np.linalg.qr(rng.normal(size=(n, n)))
    k = (q * (1.0 / (1.0 + np.arange(n)) ** 1.5 + 2e-3)) @ q.T
    sk = P.StoredKernel.from_matrix((k + k.T) / 2, block_size=48)
    assert sk.dtype == np.float32
    y = one_hot(n, 3, 22)
    exact = np.linalg.solve(sk.to_dense(), y)
    its = {}
    for pre, rank in (("none", 0), ("nystrom", 48)):
        x, info = P.stored_cg_solve(sk, y, tol=1e-9, preconditioner=pre, precond_rank=rank, return_info=True)
        assert info.converged and rel_err(x, exact) < 1e-7
        its[pre] = info.iterations
    assert its["nystrom"] < its["none"] / 2, its


def test_nonconvergence_raises_or_warns(x64):
    sk = P.StoredKernel.from_matrix(spd(60, 1e4, 11), block_size=32)
    y = one_hot(60, 2, 12)
    with pytest.raises(P.ConvergenceError, match="did not converge") as err:
        P.stored_cg_solve(sk, y, maxiter=3, preconditioner="none")
    assert err.value.info.iterations == 3 and not err.value.info.converged
    with pytest.warns(RuntimeWarning, match="did not converge"):
        x, info = P.stored_cg_solve(sk, y, maxiter=3, preconditioner="none", on_nonconvergence="warn", return_info=True)
    assert not info.converged and x.shape == y.shape


def test_indefinite_matrix_is_reported(x64):
    k = spd(30, 10, 13)
    k[5, 5] = -3.0
    sk = P.StoredKernel.from_matrix(k, block_size=16)
    with pytest.raises(ValueError, match="broke down"):
        P.stored_cg_solve(sk, one_hot(30, 2, 14), preconditioner="none")
    with pytest.raises(ValueError, match="Nystrom preconditioner failed"):
        P.stored_cg_solve(sk, one_hot(30, 2, 14), preconditioner="nystrom", precond_rank=30)


# ------------------------------------------------------------------------------ architecture level


@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_ntk_predict_stored_matches_cholesky(x64, activation):
    xtr, xte = normalized(96, 32, 15), normalized(20, 32, 16)
    y = one_hot(96, 4, 17)
    arch = MLP(depth=3, activation=activation)
    ref = P.ntk_predict(arch, xtr, y, xte, diag_reg=1e-4, solver="cholesky")
    pred, info = P.ntk_predict(
        arch, xtr, y, xte, diag_reg=1e-4, solver="stored_cg", block_size=32, tile_size=8,
        preconditioner="nystrom", precond_rank=16, return_info=True,
    )  # fmt: skip
    assert rel_err(pred, ref) < 1e-9
    assert info.converged and info.time_kernel > 0 and info.time_predict > 0 and info.block_size == 32
    nngp_ref = P.nngp_predict(arch, xtr, y, xte, diag_reg=1e-4, solver="cholesky")
    nngp = P.nngp_predict(arch, xtr, y, xte, diag_reg=1e-4, solver="stored_cg", block_size=32, tile_size=8)
    assert rel_err(nngp, nngp_ref) < 1e-9


def test_tiled_predict_equals_dense_product(x64):
    xtr, xte = normalized(30, 16, 18), normalized(11, 16, 19)
    w = np.random.default_rng(20).normal(size=(30, 3))
    arch = MLP(depth=2, activation="erf")
    ref = np.asarray(kernel(arch, xte, xtr).ntk) @ w
    out = P.tiled_predict(arch, xtr, xte, w, tile_size=4)  # 11 rows: the last tile is shifted back
    assert rel_err(out, ref) < 1e-13
    with pytest.raises(ValueError, match="features"):
        P.tiled_predict(arch, xtr, xte[:, :5], w)
    with pytest.raises(ValueError, match="weights must have 30 rows"):
        P.tiled_predict(arch, xtr, xte, w[:5])


def test_get_selects_the_kernel_and_which_still_works(x64):
    # the argument was called which= before the predict package used the get vocabulary
    xtr, xte = normalized(20, 8, 40), normalized(7, 8, 41)
    w = np.random.default_rng(42).normal(size=(20, 2))
    arch = MLP(depth=2, activation="erf")
    ks = kernel(arch, xte, xtr)
    ref_nngp, ref_ntk = np.asarray(ks.nngp) @ w, np.asarray(ks.ntk) @ w
    assert rel_err(ref_nngp, ref_ntk) > 1e-2  # the two kernels differ: the choice is visible
    assert rel_err(P.tiled_predict(arch, xtr, xte, w, get="nngp"), ref_nngp) < 1e-13
    assert rel_err(P.tiled_predict(arch, xtr, xte, w, get=("nngp",)), ref_nngp) < 1e-13
    with pytest.warns(DeprecationWarning, match="which= is deprecated"):
        old = P.tiled_predict(arch, xtr, xte, w, which="nngp")
    assert rel_err(old, ref_nngp) < 1e-13
    dense_nngp = np.asarray(kernel(arch, xtr).nngp)
    with pytest.warns(DeprecationWarning, match="which= is deprecated"):
        sk = P.StoredKernel.from_arch(arch, xtr, which="nngp", block_size=8)
    assert rel_err(sk.to_dense(), dense_nngp) < 1e-12
    with pytest.raises(ValueError, match="get must name exactly one kernel"):
        P.tiled_predict(arch, xtr, xte, w, get=("nngp", "ntk"))
    with pytest.raises(ValueError, match="get must contain only"):
        P.StoredKernel.from_arch(arch, xtr, get="cnn")


def test_float32_pipeline_error_on_corrupted_digits():
    """float32 stored CG against float64 Cholesky: digits (d = 64), N = 1000, p = 0.5, relu L = 3."""
    ds = data.load("digits", n_train=1000, seed=0)
    ds = corruption.corrupt(ds, corruption.Replacement(), 0.5, 0)
    y = np.eye(10)[ds.y_train]
    arch = MLP(depth=3, activation="relu")
    f32 = np.asarray(
        P.ntk_predict(
            arch, ds.x_train, y, ds.x_test, diag_reg=1e-4, solver="stored_cg", block_size=256,
            preconditioner="nystrom", precond_rank=128, tile_size=360,
        ),
        np.float64,
    )  # fmt: skip
    with precision.x64():
        f64 = np.asarray(
            P.ntk_predict(arch, ds.x_train.astype(np.float64), y, ds.x_test.astype(np.float64), diag_reg=1e-4,
                          solver="cholesky")
        )  # fmt: skip
    assert rel_err(f32, f64) < 2e-5  # measured 1.7e-6 (docs/predict.md)
    assert np.mean(f32.argmax(1) == f64.argmax(1)) >= 0.995
    assert np.mean(f64.argmax(1) == ds.y_test) > 0.8  # the predictor itself works


# ------------------------------------------------------------------------------ memory plan and errors


def test_memory_plan_matches_storage_and_checks():
    plan = P.stored_memory_plan(60000, n_test=10000, itemsize=4, block_size=2048, available_bytes=None)
    assert plan.n_blocks == 30 and plan.block_size == 2000
    assert plan.matrix_bytes == 4 * 30 * 31 // 2 * 2000 * 2000  # 465 tiles of 2000 x 2000 float32
    assert plan.peak_bytes > plan.matrix_bytes and "465 tiles" in plan.describe()
    assert plan.check() is plan  # unknown memory: nothing to check
    small = P.stored_memory_plan(60000, itemsize=4, available_bytes=8 * 2**30)
    with pytest.raises(MemoryError, match="not enough memory"):
        small.check()


def test_ntk_predict_stored_checks_memory_first(monkeypatch):
    monkeypatch.setattr(predict_memory, "available_memory_bytes", lambda: 2**20)
    x = normalized(40, 8, 21)
    with pytest.raises(MemoryError, match="not enough memory"):
        P.ntk_predict(MLP(depth=2), x, one_hot(40, 2, 22), x[:5], solver="stored_cg")
    with pytest.raises(MemoryError, match="not enough memory"):
        P.StoredKernel.from_arch(MLP(depth=2), x)


def test_errors_name_the_argument(x64):
    k = spd(20, 10, 23)
    sk = P.StoredKernel.from_matrix(k, block_size=8)
    y = one_hot(20, 2, 24)
    with pytest.raises(ValueError, match="StoredKernel can only be solved with solver='stored_cg'"):
        P.kernel_solve(sk, y, solver="cholesky")
    tiled = P.TiledKernel(rows=lambda idx: k[idx], n=20)
    with pytest.raises(ValueError, match="TiledKernel can only be solved with solver='cg'"):
        P.kernel_solve(tiled, y, solver="stored_cg")
    with pytest.raises(ValueError, match="k must be a square"):
        P.StoredKernel.from_matrix(np.ones((3, 4)))
    with pytest.raises(ValueError, match="block_size"):
        P.StoredKernel.from_matrix(k, block_size=0)
    with pytest.raises(ValueError, match="NaN or inf"):
        P.StoredKernel.from_matrix(np.full((3, 3), np.nan))
    with pytest.raises(ValueError, match="bounds must increase"):
        P.StoredKernel(20, (0, 30), sk.tiles)
    with pytest.raises(ValueError, match=r"tile \(0, 1\) must have shape"):
        P.StoredKernel(20, (0, 10, 20), ((np.zeros((10, 10)), np.zeros((10, 9))), (np.zeros((10, 10)),)))
    with pytest.raises(ValueError, match="rhs has 5 rows"):
        P.stored_cg_solve(sk, y[:5])
    with pytest.raises(TypeError, match="k must be a StoredKernel"):
        P.stored_cg_solve(k, y)
    with pytest.raises(ValueError, match="tol must be a finite number > 0"):
        P.stored_cg_solve(sk, y, tol=0)
    with pytest.raises(ValueError, match="preconditioner must be one of"):
        P.stored_cg_solve(sk, y, preconditioner="ilu")
    with pytest.raises(ValueError, match="row index"):
        sk.row(20)
    with pytest.raises(ValueError, match="idx must be"):
        sk.rows(np.array([0, 25]))
    with pytest.raises(ValueError, match="v must have shape"):
        sk.matvec(np.ones((19, 2)))
    x = normalized(20, 8, 25)
    with pytest.raises(ValueError, match="finite t needs solver 'eigh'"):
        P.ntk_predict(MLP(depth=2), x, y, x, t=1.0, solver="stored_cg")
    with pytest.raises(ValueError, match="backend='native'"):
        P.ntk_predict(MLP(depth=2), x, y, x, solver="stored_cg", backend="neural_tangents")
    with pytest.raises(ValueError, match="get must contain only"):
        P.StoredKernel.from_arch(MLP(depth=2), x, "cnn")


def test_solvers_pick_their_own_preconditioner_by_default(x64, monkeypatch):
    # regression: ntk_predict(solver="stored_cg") used the CG default (pivoted Cholesky, rank 64)
    assert P.default_preconditioner("stored_cg") == ("nystrom", P.STORED_PRECOND_RANK)
    assert P.default_preconditioner("cg") == ("pivoted_cholesky", P.PRECOND_RANK)
    assert P.default_preconditioner("stored_cg", "jacobi", 3) == ("jacobi", 3)
    n = P.STORED_PRECOND_RANK + 52
    xtr, xte = normalized(n, 16, 31), normalized(5, 16, 32)
    y = one_hot(n, 3, 33)
    arch = MLP(depth=2, activation="erf")
    _, info = P.ntk_predict(arch, xtr, y, xte, diag_reg=1e-3, solver="stored_cg", block_size=512, return_info=True)
    assert info.precond_rank == P.STORED_PRECOND_RANK  # rank < N: the stored default, not 64
    seen = {}
    real_cg = P.cg_solve

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_cg(*args, **kwargs)

    monkeypatch.setattr(predict_matrix, "cg_solve", spy)  # the name kernel_solve calls
    P.kernel_solve(np.eye(300) + 0.1, y[:300], solver="cg")
    assert (seen["preconditioner"], seen["precond_rank"]) == ("pivoted_cholesky", P.PRECOND_RANK)


def test_available_memory_is_the_accelerators_free_memory_where_the_tiles_live():
    class Device:
        def __init__(self, platform, stats):
            self.platform, self._stats = platform, stats

        def memory_stats(self):
            return self._stats

    gpu = Device("gpu", {"bytes_limit": 80 * 2**30, "bytes_in_use": 5 * 2**30})
    assert predict_memory.available_memory_bytes(gpu) == 75 * 2**30
    host = predict_memory.available_memory_bytes(Device("cpu", None))
    assert host is not None and host > 0  # Linux: MemAvailable
    # no statistics: the host's; this CPU process: the host's (MemAvailable moves with other processes)
    for other in (predict_memory.available_memory_bytes(Device("gpu", None)), predict_memory.available_memory_bytes()):
        assert abs(other - host) < 0.25 * host


def test_float32_passes_stop_at_their_reduction_and_refine_to_tol(monkeypatch):
    """A float32 stored solve ends each CG pass once its residual fell by STORED_PASS_REDUCTION (what float32
    products resolve), checks the residual in float64 and restarts: the first float64 check comes right after
    the first iteration at or below 1e-3 (where the pass began at 1), and the final residual meets tol."""
    assert P.STORED_PASS_REDUCTION == {"float64": 0.0, "float32": 1e-3}
    k = spd(120, 1e2, 23)
    sk = P.StoredKernel.from_matrix(k, block_size=40)
    y = one_hot(120, 2, 24)
    seen, checks = [], []
    real = P.StoredKernel.matvec

    def spy(self, v, *, exact=False):
        if exact:
            checks.append(len(seen))
        return real(self, v, exact=exact)

    monkeypatch.setattr(P.StoredKernel, "matvec", spy)
    x, info = P.stored_cg_solve(sk, y, tol=1e-6, preconditioner="none", return_info=True,
                                callback=lambda it, rel: seen.append(rel))
    assert info.converged and info.residual <= 1e-6 and info.refinements >= 1
    first = next(i for i, rel in enumerate(seen) if rel <= 1e-3) + 1  # iterations of the first pass
    assert checks[0] == first and seen[first - 1] > 1e-6
    assert rel_err(x, np.linalg.solve(sk.to_dense(), y)) < 1e-4
