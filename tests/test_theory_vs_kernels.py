"""The theory module's differentiable recursion against the kernels module (two implementations)."""

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
        ktt, kst = (np.asarray(k) for k in theory.kernels_from_overlaps(arch, ov, kernel=which))
        ref_tt = getattr(kernels.kernel_from_gram(arch, ov.train, ov.train_diag, ov.train_diag, get=which, symmetric=True), which)
        ref_st = getattr(kernels.kernel_from_gram(arch, ov.test_train, ov.test_diag, ov.train_diag, get=which), which)
        np.testing.assert_allclose(ktt, np.asarray(ref_tt), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(kst, np.asarray(ref_st), rtol=1e-10, atol=1e-12)
