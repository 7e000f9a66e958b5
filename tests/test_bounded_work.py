"""Work that would not end in reasonable time is refused before it starts (reliability audit)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from nwcorrupt import corruption, theory
from nwcorrupt.arch import MLP


def test_a_taylor_order_beyond_the_limit_is_refused_at_once_with_its_cost():
    rng = np.random.default_rng(0)
    x, xt = rng.standard_normal((6, 5)), rng.standard_normal((2, 5))
    y = np.arange(6) % 2
    t = time.perf_counter()
    with pytest.raises(ValueError, match=r"order=50 exceeds max_order=4: .* tenfold per order .* max_order=50"):
        theory.taylor(MLP(2, "relu"), corruption.Replacement("gaussian"), x, y, xt, order=50, num_classes=2)
    assert time.perf_counter() - t < 5.0
    with pytest.raises(ValueError, match="max_order"):
        theory.kernel_series(MLP(2, "relu"), corruption.Replacement("gaussian"), x, xt, order=5)
    assert theory.TAYLOR_MAX_ORDER == 4
    # below the limit, and above it when asked for, it runs
    c = theory.taylor(MLP(2, "relu"), corruption.Replacement("gaussian"), x, y, xt, order=2, num_classes=2, max_order=2)
    assert c.shape == (3, 2, 2) and np.all(np.isfinite(c))
    with pytest.raises(ValueError, match="order=3 exceeds max_order=2"):
        theory.taylor(MLP(2, "relu"), corruption.Replacement("gaussian"), x, y, xt, order=3, num_classes=2, max_order=2)
