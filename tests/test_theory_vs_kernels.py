"""The theory's kernels of overlaps (untiled kernels.kernel_layers, jitted) against the tiled kernel_from_gram."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import corruption, data, kernels, theory


@pytest.mark.parametrize("act,depth,w,b", [("erf", 3, 1.0, 0.0), ("relu", 2, 1.3, 0.2), ("sin", 4, 0.8, 0.5), ("gelu", 3, 1.1, 0.1)])
@pytest.mark.parametrize("noise", [corruption.Additive(), corruption.Replacement("uniform", low=0.0, high=1.0)], ids=["add", "rep"])
def test_meanfield_kernels_equal_kernel_from_gram(x64, act, depth, w, b, noise):
    ds = data.load("digits", n_train=30, normalize="none")
    x, xt = ds.x_train.astype(np.float64), ds.x_test[:7].astype(np.float64)
    ov = theory.meanfield_overlaps(noise, 0.8, x, xt)
    arch = kernels.MLP(depth, act, W_std=w, b_std=b)
    for which in ("ntk", "nngp"):
        ktt, kst = (np.asarray(k) for k in theory.kernels_from_overlaps(arch, ov, get=which))
        ref_tt = getattr(kernels.kernel_from_gram(arch, ov.train, ov.train_diag, ov.train_diag, get=which, symmetric=True), which)
        ref_st = getattr(kernels.kernel_from_gram(arch, ov.test_train, ov.test_diag, ov.train_diag, get=which), which)
        np.testing.assert_allclose(ktt, np.asarray(ref_tt), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(kst, np.asarray(ref_st), rtol=1e-10, atol=1e-12)


def test_meanfield_predict_uses_the_tiled_kernels_and_matches_the_private_recursion(x64, monkeypatch):
    # regression: meanfield_predict held N² · quad_order² quadrature values (tanh at N = 1000 needed ~50 GB)
    ds = data.load("digits", n_train=40, seed=1)
    x, y, xt = ds.x_train.astype(np.float64), ds.y_train, ds.x_test[:9].astype(np.float64)
    arch = kernels.MLP(3, "tanh", W_std=1.1, b_std=0.2)
    noise = corruption.Additive()
    ov = theory.meanfield_overlaps(noise, 0.7, x, xt)
    ktt, kst = (np.asarray(k) for k in theory.kernels_from_overlaps(arch, ov, get="ntk", quad_order=150))
    ref = kst @ np.linalg.solve(ktt + 1e-4 * np.eye(len(x)), np.eye(10)[y])

    def forbidden(*args, **kwargs):
        raise AssertionError("meanfield_predict must not use the untiled private recursion")

    monkeypatch.setattr(theory, "kernels_from_overlaps", forbidden)
    got = theory.meanfield_predict(arch, noise, 0.7, x, y, xt, ridge=1e-4, quad_order=150)
    # both quadratures are ~1e-11 accurate at 150 nodes; the solve amplifies kernel differences (cond ~1e4)
    np.testing.assert_allclose(got, ref, rtol=1e-6, atol=1e-8 * np.abs(ref).max())


def test_pair_and_diag_kernels_are_the_kernels_module_entry_by_entry(x64):
    # elementwise scalar maps of the theory against the kernels module evaluated from the inputs
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 2, size=(6, 30))
    d = x.shape[1]
    g, sq = x @ x.T / d, np.sum(x * x, axis=1) / d
    arch = kernels.MLP(3, "tanh", W_std=1.2, b_std=0.3)
    for which in ("ntk", "nngp"):
        full = np.asarray(getattr(kernels.kernel(arch, x, get=which, quad_order=40), which))
        pair = np.asarray(theory.pair_kernel(arch, sq[:, None], g, sq[None, :], get=which, quad_order=40))
        off = ~np.eye(6, dtype=bool)
        np.testing.assert_allclose(pair[off], full[off], rtol=1e-10)
        diag = np.asarray(theory.diag_kernel(arch, sq, get=which, quad_order=40))
        np.testing.assert_allclose(diag, np.asarray(getattr(kernels.kernel_diag(arch, x, get=which, quad_order=40), which)),
                                   rtol=1e-12)


def test_pair_kernel_partials_match_central_differences(x64):
    arch = kernels.MLP(4, "erf", W_std=1.3, b_std=0.2)
    base = np.array([1.1, 0.3, 0.7])
    val, *grads = (float(v) for v in theory.pair_kernel_partials(arch, *base))
    assert val == pytest.approx(float(theory.pair_kernel(arch, *base)), rel=1e-14)
    h = 1e-5
    for i, got in enumerate(grads):
        e = np.eye(3)[i] * h
        fd = (float(theory.pair_kernel(arch, *(base + e))) - float(theory.pair_kernel(arch, *(base - e)))) / (2 * h)
        assert got == pytest.approx(fd, rel=1e-7), i


def test_theory_arch_checks():
    with pytest.raises(TypeError, match="arch must be an nwcorrupt.arch.MLP"):
        theory.check_arch_get("relu", "ntk")
    with pytest.raises(ValueError, match="get must be one of"):
        theory.check_arch_get(kernels.MLP(2), ("nngp", "ntk"))
    with pytest.raises(ValueError, match="quad_order must be <= 200"):
        theory.check_quad_order(240)
