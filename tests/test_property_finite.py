"""Property-based checks (hypothesis): random finite inputs to the public kernel, predict and theory entry
points give finite outputs or a clear ValueError/TypeError, never NaN/inf or another exception."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nwcorrupt import corruption, kernels, predict, theory
from nwcorrupt.arch import MLP

SETTINGS = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FINITE = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=32)
ACTS = st.sampled_from(["relu", "erf", "tanh", "gelu", "identity"])


def _finite_or_clear(fn):
    try:
        out = fn()
    except (ValueError, TypeError) as err:
        assert str(err), "an error must say what is wrong"
        return None
    arrs = out if isinstance(out, tuple) else (out,)
    for a in arrs:
        assert np.all(np.isfinite(np.asarray(a))), "non-finite output from finite input"
    return out


@SETTINGS
@given(x1=arrays(np.float32, (5, 4), elements=FINITE), x2=arrays(np.float32, (3, 4), elements=FINITE),
       act=ACTS, depth=st.integers(1, 3), get=st.sampled_from(["nngp", "ntk"]))
def test_kernel_fn_is_finite_on_finite_inputs(x1, x2, act, depth, get):
    fn = kernels.kernel_fn(MLP(depth, act, W_std=1.5, b_std=0.1))
    out = _finite_or_clear(lambda: fn(x1, x2, get))
    assert out is None or np.asarray(out).shape == (5, 3)


@SETTINGS
@given(a=arrays(np.float64, (6, 6), elements=FINITE), y=arrays(np.float64, (6, 2), elements=FINITE),
       kt=arrays(np.float64, (3, 6), elements=FINITE), reg=st.sampled_from([0.0, 1e-6, 1e-2]),
       solver=st.sampled_from(["cholesky", "eigh", "auto"]))
def test_gp_mean_is_finite_or_refuses(a, y, kt, reg, solver):
    k = a @ a.T  # symmetric PSD, possibly singular
    _finite_or_clear(lambda: predict.gp_mean(kt, k, y, diag_reg=reg, solver=solver))


@SETTINGS
@given(x=arrays(np.float64, (8, 5), elements=st.floats(-3, 3, allow_nan=False)),
       xt=arrays(np.float64, (3, 5), elements=st.floats(-3, 3, allow_nan=False)),
       kind=st.sampled_from(["replacement", "additive"]))
def test_first_order_theory_is_finite_or_refuses(x, xt, kind):
    y = np.arange(8) % 2
    noise = corruption.get(kind)
    _finite_or_clear(lambda: theory.taylor(MLP(2, "relu"), noise, x, y, xt, order=1, num_classes=2))


def test_the_property_helper_rejects_nan():
    with pytest.raises(AssertionError, match="non-finite"):
        _finite_or_clear(lambda: np.array([1.0, np.nan]))
