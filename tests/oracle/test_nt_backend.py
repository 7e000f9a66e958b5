"""The neural-tangents adapter itself: closed forms, predictor wiring, validation.

These checks do not involve nwcorrupt's native kernels: they pin down that
``nwcorrupt.nt_backend`` builds the network the spec describes, so that the oracle
comparisons (test_oracle.py) compare like with like. float64 throughout.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from nwcorrupt import activations, nt_backend
from nwcorrupt.kernels import MLP

TOL = 1e-12  # closed forms evaluated in float64 numpy vs neural-tangents


def _inputs(n1=6, n2=4, d=9, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n1, d)), rng.normal(size=(n2, d))


def _rel_err(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize("w,b", [(1.0, 0.0), (1.7, 0.4)])
def test_depth_one_is_the_input_kernel(param, w, b):
    x1, x2 = _inputs()
    d = x1.shape[1]
    k = nt_backend.kernel(MLP(1, "erf", w, b, param), x1, x2)
    nngp = b**2 + w**2 * x1 @ x2.T / d
    np.testing.assert_allclose(k.nngp, nngp, rtol=TOL, atol=0)
    if param == "ntk":
        np.testing.assert_allclose(k.ntk, nngp, rtol=TOL, atol=0)
    else:
        # standard: the NTK of one Dense layer is fan_in * <x, x'> + 1 (its bias gradient;
        # the bias is trainable even when b_std = 0)
        np.testing.assert_allclose(k.ntk, x1 @ x2.T + 1.0, rtol=TOL, atol=0)


@pytest.mark.parametrize("depth", [2, 4])
def test_identity_recursion_ntk_parameterisation(depth):
    x1, x2 = _inputs(seed=1)
    w, b = 1.3, 0.6
    g = x1 @ x2.T / x1.shape[1]
    nngp = b**2 + w**2 * g
    ntk = nngp.copy()
    for _ in range(depth - 1):
        nngp = b**2 + w**2 * nngp
        ntk = nngp + w**2 * ntk
    k = nt_backend.kernel(MLP(depth, "identity", w, b), x1, x2)
    assert _rel_err(k.nngp, nngp) < TOL
    assert _rel_err(k.ntk, ntk) < TOL


@pytest.mark.parametrize("hidden_width", [1, 7])
@pytest.mark.parametrize("b", [0.0, 0.5])
def test_standard_parameterisation_uses_hidden_width(hidden_width, b):
    # identity, depth 2, standard: Θ² = n·K¹ + W²·Θ¹ + 1 (bias), Θ¹ = x·x' + 1
    x1, x2 = _inputs(seed=2)
    w = 0.8
    k1 = b**2 + w**2 * x1 @ x2.T / x1.shape[1]
    theta1 = x1 @ x2.T + 1.0
    theta2 = hidden_width * k1 + w**2 * theta1 + 1.0
    kernel_fn = nt_backend.stax_mlp(MLP(2, "identity", w, b, "standard"), hidden_width=hidden_width)[2]
    k = kernel_fn(x1, x2, ("nngp", "ntk"))
    assert _rel_err(k.ntk, theta2) < TOL
    assert _rel_err(k.nngp, b**2 + w**2 * k1) < TOL


def test_standard_ntk_needs_a_width():
    arch = MLP(2, "relu", parameterization="standard")
    x = np.ones((2, 3))
    with pytest.raises(ValueError, match=r"set MLP\(width=n\)"):
        nt_backend.kernel(arch, x)
    with pytest.raises(ValueError, match=r"set MLP\(width=n\)"):
        nt_backend.ntk_predict(arch, x, np.eye(2), x)
    # the NNGP does not depend on the width
    assert nt_backend.kernel(arch, x, get="nngp").nngp.shape == (2, 2)


def _relu_duals(k11, k12, k22):
    norm = np.sqrt(k11 * k22)
    cos = np.clip(k12 / norm, -1.0, 1.0)
    theta = np.arccos(cos)
    ss = norm * (np.sin(theta) + (np.pi - theta) * cos) / (2 * np.pi)
    dd = (np.pi - theta) / (2 * np.pi)
    return ss, dd


def test_relu_depth_two_arc_cosine():
    x1, x2 = _inputs(seed=3)
    w, b = 1.4, 0.3
    d = x1.shape[1]
    k12 = b**2 + w**2 * x1 @ x2.T / d
    k11 = (b**2 + w**2 * np.sum(x1**2, 1) / d)[:, None]
    k22 = (b**2 + w**2 * np.sum(x2**2, 1) / d)[None, :]
    ss, dd = _relu_duals(k11, k12, k22)
    nngp = b**2 + w**2 * ss
    ntk = nngp + w**2 * dd * k12
    k = nt_backend.kernel(MLP(2, "relu", w, b), x1, x2)
    assert _rel_err(k.nngp, nngp) < 1e-10
    assert _rel_err(k.ntk, ntk) < 1e-10


def test_erf_depth_two_arcsin():
    x1, x2 = _inputs(seed=4)
    w, b = 1.1, 0.2
    d = x1.shape[1]
    k12 = b**2 + w**2 * x1 @ x2.T / d
    k11 = (b**2 + w**2 * np.sum(x1**2, 1) / d)[:, None]
    k22 = (b**2 + w**2 * np.sum(x2**2, 1) / d)[None, :]
    den = (1 + 2 * k11) * (1 + 2 * k22)
    ss = 2 / np.pi * np.arcsin(2 * k12 / np.sqrt(den))
    dd = 4 / np.pi / np.sqrt(den - 4 * k12**2)
    k = nt_backend.kernel(MLP(2, "erf", w, b), x1, x2)
    assert _rel_err(k.nngp, b**2 + w**2 * ss) < 1e-10
    assert _rel_err(k.ntk, b**2 + w**2 * ss + w**2 * dd * k12) < 1e-10


def test_leaky_relu_alpha_reaches_neural_tangents():
    # leaky_relu(alpha) = (1-alpha)/2 * |x| + (1+alpha)/2 * x  =>  it must differ from relu
    # and for alpha = 1 equal the identity network.
    x1, x2 = _inputs(seed=5)
    lin = nt_backend.kernel(MLP(3, "identity", 1.2, 0.1), x1, x2)
    one = nt_backend.kernel(MLP(3, activations.get("leaky_relu", alpha=1.0), 1.2, 0.1), x1, x2)
    assert _rel_err(one.nngp, lin.nngp) < 1e-12
    assert _rel_err(one.ntk, lin.ntk) < 1e-12
    relu = nt_backend.kernel(MLP(3, "relu", 1.2, 0.1), x1, x2)
    half = nt_backend.kernel(MLP(3, activations.get("leaky_relu", alpha=0.5), 1.2, 0.1), x1, x2)
    assert _rel_err(half.nngp, relu.nngp) > 1e-2


def test_symmetric_call_and_get_subsets():
    x1, _ = _inputs(seed=6)
    arch = MLP(3, "gelu", 1.0, 0.2)
    both = nt_backend.kernel(arch, x1)
    np.testing.assert_allclose(both.nngp, np.asarray(both.nngp).T, rtol=0, atol=1e-14)
    assert both.nngp.shape == (6, 6)
    only = nt_backend.kernel(arch, x1, x1, get="ntk")
    assert only.nngp is None
    assert _rel_err(only.ntk, both.ntk) < 1e-14
    only = nt_backend.kernel(arch, x1, None, get=("nngp",))
    assert only.ntk is None
    assert _rel_err(only.nngp, both.nngp) < 1e-14


def _reference_predict(kdd, ktd, y, t, diag_reg, lr=1.0):
    n = kdd.shape[0]
    kr = kdd + diag_reg * np.trace(kdd) / n * np.eye(n)
    if t is None:
        return ktd @ np.linalg.solve(kr, y)
    return ktd @ np.linalg.solve(kr, (np.eye(n) - scipy.linalg.expm(-lr * t * kr / y.size)) @ y)


@pytest.mark.parametrize("t", [None, 0.0, 3.0, 400.0])
@pytest.mark.parametrize("diag_reg", [0.0, 1e-2])
def test_ntk_predict_matches_the_formula(t, diag_reg):
    x_train, x_test = _inputs(8, 5, d=12, seed=7)
    y = np.eye(3)[np.arange(8) % 3]
    arch = MLP(3, "erf", 1.2, 0.3)
    kdd = np.asarray(nt_backend.kernel(arch, x_train, get="ntk").ntk)
    ktd = np.asarray(nt_backend.kernel(arch, x_test, x_train, get="ntk").ntk)
    expected = _reference_predict(kdd, ktd, y, t, diag_reg, lr=0.5)
    got = nt_backend.ntk_predict(arch, x_train, y, x_test, t=t, diag_reg=diag_reg, learning_rate=0.5)
    assert got.shape == (5, 3)
    if t == 0.0:
        np.testing.assert_allclose(got, 0.0, atol=1e-12)
    else:
        assert _rel_err(got, expected) < 1e-9


def test_nngp_predict_matches_the_formula():
    x_train, x_test = _inputs(10, 4, d=6, seed=8)
    y = np.eye(2)[np.arange(10) % 2]
    arch = MLP(2, "relu", 1.0, 0.0)
    kdd = np.asarray(nt_backend.kernel(arch, x_train, get="nngp").nngp)
    ktd = np.asarray(nt_backend.kernel(arch, x_test, x_train, get="nngp").nngp)
    got = nt_backend.nngp_predict(arch, x_train, y, x_test, diag_reg=1e-3)
    assert _rel_err(got, _reference_predict(kdd, ktd, y, None, 1e-3)) < 1e-9


def test_stax_mlp_layer_count_and_readout_width():
    import jax

    init_fn, apply_fn, _ = nt_backend.stax_mlp(MLP(3, "relu", 1.0, 0.5), num_outputs=4, hidden_width=5)
    _, params = init_fn(jax.random.PRNGKey(0), (-1, 7))
    dense = [p for p in params if p]
    assert [w.shape for w, _ in dense] == [(7, 5), (5, 5), (5, 4)]
    assert apply_fn(params, np.ones((2, 7))).shape == (2, 4)


# ----------------------------------------------------------------------------- errors


@pytest.mark.parametrize("name", ["tanh", "sigmoid", "softplus", "silu", "swish"])
def test_unsupported_activation_is_named(name):
    with pytest.raises(ValueError, match=f"activation '{name}' has no neural-tangents counterpart"):
        nt_backend.stax_mlp(MLP(2, name))


def test_approximate_gelu_is_unsupported():
    arch = MLP(2, activations.get("gelu", approximate=True))
    with pytest.raises(ValueError, match=r"gelu\(tanh\).*no neural-tangents counterpart"):
        nt_backend.kernel(arch, np.ones((2, 3)))


def test_user_registered_activation_is_unsupported():
    act = activations.Activation(name="my_cube", fn=lambda x: x**3)
    with pytest.raises(ValueError, match="my_cube"):
        nt_backend.kernel(MLP(2, act), np.ones((2, 3)))


def test_kernel_input_validation():
    arch = MLP(2, "relu")
    x = np.ones((3, 4))
    with pytest.raises(ValueError, match="same number of features"):
        nt_backend.kernel(arch, x, np.ones((2, 5)))
    with pytest.raises(ValueError, match="x1 must be 2-dimensional"):
        nt_backend.kernel(arch, np.ones(4))
    with pytest.raises(ValueError, match="x2 contains NaN"):
        nt_backend.kernel(arch, x, np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="get must contain only"):
        nt_backend.kernel(arch, x, get=("nngp", "cov"))
    with pytest.raises(ValueError, match="get must name at least one"):
        nt_backend.kernel(arch, x, get=())
    with pytest.raises(TypeError, match="arch must be an nwcorrupt.arch.MLP"):
        nt_backend.kernel("relu", x)
    with pytest.raises(ValueError, match="hidden_width must be >= 1"):
        nt_backend.stax_mlp(arch, hidden_width=0)
    with pytest.raises(ValueError, match="num_outputs must be >= 1"):
        nt_backend.stax_mlp(arch, num_outputs=0)


def test_overflow_is_reported():
    arch = MLP(6, "identity", W_std=1e60)
    with pytest.raises(FloatingPointError, match="non-finite"):
        nt_backend.kernel(arch, np.ones((2, 3)))


def test_predict_input_validation():
    arch = MLP(2, "relu")
    x = np.ones((3, 4))
    y = np.eye(3)
    with pytest.raises(ValueError, match="y_train has 2 rows but x_train has 3"):
        nt_backend.ntk_predict(arch, x, y[:2], x)
    with pytest.raises(ValueError, match="y_train must be 2-dimensional"):
        nt_backend.ntk_predict(arch, x, np.arange(3.0), x)
    with pytest.raises(ValueError, match="x_test has 5 features but x_train has 4"):
        nt_backend.nngp_predict(arch, x, y, np.ones((2, 5)))
    with pytest.raises(ValueError, match="diag_reg must be a finite number >= 0"):
        nt_backend.nngp_predict(arch, x, y, x, diag_reg=-1.0)
    with pytest.raises(ValueError, match="t must be a finite number >= 0"):
        nt_backend.ntk_predict(arch, x, y, x, t=-2.0)
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        nt_backend.ntk_predict(arch, x, y, x, t=1.0, learning_rate=0.0)
    with pytest.raises(ValueError, match="x_test contains NaN"):
        nt_backend.ntk_predict(arch, x, y, np.full((1, 4), np.inf))
