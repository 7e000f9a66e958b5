"""The device-resident stored-kernel solver (``stored_cg_solve(..., resident=True)``, the GPU path).

On this CPU the "device" is the host CPU device, so these tests run the very code an accelerator
runs (jitted tile products, device gathers, the device preconditioner, eager float64 jnp CG) and
compare it with the host loop and with numpy references written from the definitions:
products and preconditioner applications at 1e-12 (float64), CG iterates after a few
iterations at 1e-12, converged solves against a dense float64 solve.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

from linalg_helpers import max_rel, spd
from nwcorrupt import precision
from nwcorrupt import predict as P
from nwcorrupt.predict import resident as R
from nwcorrupt.predict import stored as S


@pytest.mark.parametrize("exact", [False, True])
def test_device_products_equal_the_dense_product(x64, exact):
    k = spd(53, 1e3, 0)
    sk = P.StoredKernel.from_matrix(k, block_size=12)  # 5 blocks, one of them shorter
    v = np.random.default_rng(1).normal(size=(53, 4))
    out = R.device_products(sk.tiles, sk.bounds, jnp.asarray(v), exact=exact)
    assert out.dtype == jnp.float64 and out.shape == (53, 4)
    assert max_rel(out, k @ v) < 1e-12
    assert max_rel(out, sk.matvec(v, exact=exact)) < 1e-13


def test_float32_tiles_exact_products_accumulate_in_float64(x64):
    k = spd(40, 1e3, 2)
    with precision.x64(False):
        sk = P.StoredKernel.from_matrix(k, block_size=16)
    assert sk.dtype == np.float32
    k32 = sk.to_dense()  # the float32-rounded matrix, as float64
    v = np.random.default_rng(3).normal(size=(40, 3))
    exact = R.device_products(sk.tiles, sk.bounds, jnp.asarray(v), exact=True)
    rounded = R.device_products(sk.tiles, sk.bounds, jnp.asarray(v), exact=False)
    assert max_rel(exact, k32 @ v) < 1e-13  # float64 accumulation of the stored matrix
    err32 = max_rel(rounded, k32 @ v)
    assert 1e-9 < err32 < 1e-5  # float32 products: visibly rounded, within float32's bound


@pytest.mark.parametrize("axis", [0, 1])
def test_take_to_host_gathers_on_the_device_with_padding(x64, axis):
    t = jnp.asarray(np.random.default_rng(4).normal(size=(9, 7)))
    for index in ([3], [0, 2, 5], [1, 2, 3, 4, 5], []):
        idx = np.asarray(index, dtype=np.int64)
        want = np.take(np.asarray(t), idx, axis=axis)
        got = R.take_to_host(t, idx, axis, gather_on_device=True)
        assert got.shape == want.shape and np.array_equal(got, want)
        assert np.array_equal(R.take_to_host(t, idx, axis), want)


def _host_and_device_preconditioners(kind: str, k: P.StoredKernel, shift: float, rank: int):
    host, used_h = S._stored_preconditioner(kind, k, shift, rank)
    dev, used_d = S._stored_preconditioner(kind, k, shift, rank, resident=True)
    return host, dev, used_h, used_d


@pytest.mark.parametrize("kind", ["nystrom", "pivoted_cholesky", "jacobi"])
def test_device_preconditioner_equals_the_host_one(x64, kind):
    k = spd(70, 1e4, 5)
    sk = P.StoredKernel.from_matrix(k, block_size=16)
    host, dev, used_h, used_d = _host_and_device_preconditioners(kind, sk, 1e-3, 25)
    assert used_h == used_d == (0 if kind == "jacobi" else 25)
    r = np.random.default_rng(6).normal(size=(70, 3))
    assert max_rel(dev(jnp.asarray(r)), host(r)) < 1e-12


def test_device_nystrom_preconditioner_is_the_inverse_of_its_definition(x64):
    # P = L^T L + diag(d) with L the Nystrom factor on the solver's random pivots: P^{-1} r from the
    # device path must solve P z = r (dense numpy solve of P built from the definition).
    n, rank, shift = 60, 15, 1e-2
    k = spd(n, 1e3, 7)
    sk = P.StoredKernel.from_matrix(k, block_size=16)
    a = k + shift * np.eye(n)
    s_idx = np.sort(np.random.default_rng(0).choice(n, size=rank, replace=False))  # seed 0, as the solver
    u = scipy.linalg.cholesky(a[np.ix_(s_idx, s_idx)], lower=False)
    lmat = scipy.linalg.solve_triangular(u, a[s_idx], trans="T", lower=False)
    d = np.maximum(np.diag(a) - np.sum(lmat**2, axis=0), 0.0)
    d[s_idx] = 0.0
    floor = np.finfo(np.float64).eps * np.mean(np.diag(a)) + np.finfo(np.float64).tiny
    r_idx = np.setdiff1d(np.arange(n), s_idx)
    d[r_idx] = np.maximum(d[r_idx], floor)
    p_mat = lmat.T @ lmat + np.diag(d)
    _, dev, _, _ = _host_and_device_preconditioners("nystrom", sk, shift, rank)
    r = np.random.default_rng(8).normal(size=(n, 2))
    z = np.asarray(dev(jnp.asarray(r)))
    assert max_rel(p_mat @ z, r) < 1e-10


@pytest.mark.parametrize("kind", ["nystrom", "none"])
def test_resident_iterates_equal_the_host_loop(x64, kind):
    k = spd(64, 1e3, 9)
    sk = P.StoredKernel.from_matrix(k, block_size=16)
    y = np.random.default_rng(10).normal(size=(64, 3))
    out = []
    for resident in (False, True):
        with pytest.warns(RuntimeWarning, match="did not converge"):
            out.append(
                P.stored_cg_solve(sk, y, shift=1e-3, preconditioner=kind, precond_rank=16, maxiter=6,
                                  on_nonconvergence="warn", return_info=True, resident=resident)
            )  # fmt: skip
    (xh, ih), (xd, idev) = out
    assert ih.iterations == idev.iterations == 6
    assert max_rel(xd, xh) < 1e-12
    assert abs(idev.residual - ih.residual) <= 1e-12 * ih.residual
    assert "device" in idev.precision and "device" not in ih.precision


@pytest.mark.parametrize("kind", ["nystrom", "pivoted_cholesky", "jacobi", "none"])
def test_resident_solve_meets_tol_against_the_dense_solve(x64, kind):
    n, shift = 80, 1e-4
    k = spd(n, 1e4, 11)
    sk = P.StoredKernel.from_matrix(k, block_size=24)
    y = np.random.default_rng(12).normal(size=(n, 4))
    x, info = P.stored_cg_solve(sk, y, shift=shift, tol=1e-11, preconditioner=kind, precond_rank=20,
                                maxiter=2000, return_info=True, resident=True)  # fmt: skip
    a = k + shift * np.eye(n)
    want = np.linalg.solve(a, y)
    assert info.converged and info.residual <= 1e-11
    assert np.linalg.norm(a @ x - y) / np.linalg.norm(y) <= 1e-11
    cond = np.linalg.cond(a)
    assert np.linalg.norm(x - want) / np.linalg.norm(want) <= 10 * cond * 1e-11


def test_resident_float32_storage_refines_to_tol_and_restores_x64_off():
    k = spd(72, 1e3, 13)
    with precision.x64(False):
        sk = P.StoredKernel.from_matrix(k, block_size=16)
        y = np.random.default_rng(14).normal(size=(72, 2))
        x, info = P.stored_cg_solve(sk, y, shift=1e-3, tol=1e-9, return_info=True, precond_rank=20, resident=True)
        assert not jax.config.read("jax_enable_x64")  # the solve's 64-bit scope is undone
        assert jnp.zeros(1).dtype == jnp.float32
    a = sk.to_dense() + 1e-3 * np.eye(72)  # the stored (float32-rounded) matrix
    assert x.dtype == np.float64
    assert np.linalg.norm(a @ x - y) / np.linalg.norm(y) <= 1e-9  # float64 refinement of float32 products
    assert info.refinements >= 1 and info.residual <= 1e-9


def test_resident_accepts_a_host_preconditioner_function(x64):
    k = spd(40, 1e2, 15)
    sk = P.StoredKernel.from_matrix(k, block_size=16)
    y = np.random.default_rng(16).normal(size=(40, 2))
    seen = []

    def jacobi(r):
        seen.append(type(r))
        return r / np.diag(k)[:, None]

    x = P.stored_cg_solve(sk, y, preconditioner=jacobi, tol=1e-11, resident=True)
    assert seen and all(t is np.ndarray for t in seen)
    assert max_rel(x, np.linalg.solve(k, y)) < 1e-8


def test_accelerator_tiles_choose_the_resident_loop_and_device_products(x64, monkeypatch):
    # What an accelerator would choose, forced on the CPU device: the auto choice and matvec.
    k = spd(48, 1e3, 17)
    sk = P.StoredKernel.from_matrix(k, block_size=16)
    y = np.random.default_rng(18).normal(size=(48, 3))
    host_exact = sk.matvec(y, exact=True)
    host_rounded = sk.matvec(y)
    monkeypatch.setattr(S, "on_accelerator", lambda tiles: True)
    _, info = P.stored_cg_solve(sk, y, shift=1e-3, return_info=True, precond_rank=10)
    assert "device" in info.precision
    assert max_rel(sk.matvec(y, exact=True), host_exact) < 1e-13
    assert max_rel(sk.matvec(y), host_rounded) < 1e-13
    assert max_rel(sk.matvec(y[:, 0]), k @ y[:, 0]) < 1e-12


def test_resident_argument_errors(x64):
    sk = P.StoredKernel.from_matrix(spd(10, 10, 19), block_size=4)
    with pytest.raises(TypeError, match="resident must be True, False or None"):
        P.stored_cg_solve(sk, np.ones(10), resident="yes")
    dist = S.StoredKernel(sk.n, sk.bounds, sk.tiles, distributed=True)  # one process: it holds every tile
    with pytest.raises(ValueError, match="resident=True needs a StoredKernel on one process"):
        P.stored_cg_solve(dist, np.ones(10), resident=True)


def test_tiled_predict_float64_product_on_the_device_equals_the_host_one(monkeypatch):
    # float32 kernels (x64 off): the accelerator branch multiplies each float32 test-train tile by the
    # float64 weights on the device; the host branch converts rows to float64 on the host.
    from nwcorrupt.kernels import MLP
    from nwcorrupt.predict import architecture as A

    rng = np.random.default_rng(20)
    xtr, xte = rng.normal(size=(50, 6)), rng.normal(size=(23, 6))
    w = rng.normal(size=(50, 3))
    arch = MLP(depth=2, activation="relu")
    host = P.tiled_predict(arch, xtr, xte, w, tile_size=10)
    monkeypatch.setattr(A, "platform_of", lambda a: "gpu")
    dev = P.tiled_predict(arch, xtr, xte, w, tile_size=10)
    assert not jax.config.read("jax_enable_x64")
    assert dev.dtype == np.float64 and max_rel(dev, host) < 1e-13
    with precision.x64():
        want = np.asarray(P.tiled_predict(arch, xtr, xte, w, tile_size=50))  # float64 kernel
    assert 1e-9 < max_rel(dev, want) < 1e-5  # the float32 kernel's rounding, nothing more
