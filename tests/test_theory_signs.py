"""Reduced sign sweep: T_* > 0 and Δ > 0, so the leading-order rule is the overlap prototype rule."""

from __future__ import annotations

import numpy as np

from nwcorrupt import theory


def test_reduced_sign_sweep(x64):
    rows = theory.transfer_signs(
        activations=("erf", "relu", "tanh"), depths=(1, 2, 4, 8), W_stds=(0.7, 1.5), b_stds=(0.0, 0.5),
        noises=((0.0, 1.0), (0.5, 1 / 3)), quad_order=100,
    )
    assert len(rows) == 3 * 4 * 2 * 2 * 2
    assert all(r["ok"] for r in rows), [r for r in rows if not r["ok"]]
    # depth 1 (linear model): T_* = C_w exactly and Δ = C_w (μ₂ − μ²)
    for r in rows:
        if r["depth"] == 1:
            np.testing.assert_allclose(r["T_star"], r["W_std"] ** 2, rtol=1e-12)
            np.testing.assert_allclose(r["Delta"], r["W_std"] ** 2 * (r["mu2"] - r["mu"] ** 2), rtol=1e-12)
