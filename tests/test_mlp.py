"""Tests of nwcorrupt.mlp: shapes, parameter laws and a NumPy reference forward pass."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import scipy.special

from nwcorrupt import mlp
from nwcorrupt.kernels import MLP


def _numpy_forward(arch: MLP, params, x, width_scale=1):
    """Reference forward pass written from the neural-tangents Dense equations."""
    act = {"relu": lambda h: np.maximum(h, 0.0), "erf": scipy.special.erf}[arch.activation]
    h = np.asarray(x, np.float64)
    for i, layer in enumerate(params):
        w, b = np.asarray(layer["W"], np.float64), np.asarray(layer["b"], np.float64)
        if i > 0:
            h = act(h)
        if arch.parameterization == "ntk":
            h = arch.W_std / np.sqrt(h.shape[1]) * h @ w + arch.b_std * b
        else:
            s_in = 1 if i == 0 else width_scale
            h = h @ w / np.sqrt(s_in) + b
    return h


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("activation", ["relu", "erf"])
def test_apply_matches_numpy_reference(x64, parameterization, activation):
    arch = MLP(3, activation, W_std=1.3, b_std=0.4, parameterization=parameterization)
    s = 3 if parameterization == "standard" else 1
    params = mlp.init(jax.random.PRNGKey(1), arch, 7, 5, 4, width_scale=s)
    n = 7 * s
    assert [tuple(p["W"].shape) for p in params] == [(5, n), (n, n), (n, 4)]
    assert [tuple(p["b"].shape) for p in params] == [(n,), (n,), (4,)]
    x = np.random.default_rng(0).normal(size=(6, 5))
    out = mlp.apply(arch, params, x, width_scale=s)
    assert out.shape == (6, 4) and out.dtype == np.float64
    np.testing.assert_allclose(np.asarray(out), _numpy_forward(arch, params, x, s), rtol=1e-12, atol=1e-12)


def test_penultimate_is_readout_input(x64):
    arch = MLP(2, "erf", W_std=1.1, b_std=0.2)
    params = mlp.init(jax.random.PRNGKey(2), arch, 9, 4, 3)
    x = np.random.default_rng(1).normal(size=(5, 4))
    g = np.asarray(mlp.penultimate(arch, params, x))
    expected = scipy.special.erf(_numpy_forward(MLP(1, "erf", 1.1, 0.2), params[:1], x))
    np.testing.assert_allclose(g, expected, rtol=1e-12)
    assert mlp.penultimate(MLP(1), mlp.init(jax.random.PRNGKey(0), MLP(1), 3, 4, 2), x).shape == (5, 4)


def test_parameter_distributions_follow_neural_tangents():
    """NTK: W, b ~ N(0, 1). Standard: W ~ N(0, W_std²/(fan_in/s_in)), b ~ N(0, b_std²)."""
    n, d = 400, 300
    ntk = mlp.init(jax.random.PRNGKey(0), MLP(2, W_std=2.0, b_std=0.5), n, d, 10)
    w = np.asarray(ntk[0]["W"])
    # sample variance of 120000 N(0,1) draws: standard error sqrt(2/120000) ~ 0.004
    assert abs(w.var() - 1.0) < 0.02 and abs(w.mean()) < 0.01
    std = mlp.init(
        jax.random.PRNGKey(0), MLP(3, W_std=2.0, b_std=0.5, parameterization="standard"), n, d, 10, width_scale=2
    )
    assert abs(np.asarray(std[0]["W"]).var() / (4.0 / d) - 1) < 0.02
    # second layer: fan_in = n*s = 800 units, s_in = 2 -> variance W_std^2 / n
    assert std[1]["W"].shape == (800, 800)
    assert abs(np.asarray(std[1]["W"]).var() / (4.0 / n) - 1) < 0.02
    assert abs(np.asarray(std[1]["b"]).std() / 0.5 - 1) < 0.1  # 800 draws: s.e. ~ 2.5%


def test_init_is_deterministic_and_key_dependent():
    arch = MLP(2)
    a = mlp.init(jax.random.PRNGKey(3), arch, 8, 4, 2)
    b = mlp.init(jax.random.PRNGKey(3), arch, 8, 4, 2)
    c = mlp.init(jax.random.PRNGKey(4), arch, 8, 4, 2)
    np.testing.assert_array_equal(np.asarray(a[0]["W"]), np.asarray(b[0]["W"]))
    assert not np.allclose(np.asarray(a[0]["W"]), np.asarray(c[0]["W"]))
    assert mlp.num_params(a) == 4 * 8 + 8 + 8 * 2 + 2


def test_apply_works_under_jit_and_vmap():
    arch = MLP(2, "erf")
    keys = jax.random.split(jax.random.PRNGKey(0), 3)
    params = jax.vmap(lambda k: mlp.init(k, arch, 16, 4, 2))(keys)
    x = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    out = jax.jit(jax.vmap(lambda p: mlp.apply(arch, p, x)))(params)
    single = mlp.apply(arch, jax.tree_util.tree_map(lambda a: a[1], params), x)
    np.testing.assert_allclose(np.asarray(out[1]), np.asarray(single), rtol=1e-6, atol=1e-6)
    # traced inputs are validated by shape only
    traced = jax.jit(lambda p, xx: mlp.apply(arch, p, xx))(jax.tree_util.tree_map(lambda a: a[1], params), x)
    np.testing.assert_allclose(np.asarray(traced), np.asarray(single), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="x must be 2-dimensional"):
        jax.jit(lambda xx: mlp.apply(arch, jax.tree_util.tree_map(lambda a: a[1], params), xx))(x[0])


def test_errors_name_the_bad_argument():
    arch = MLP(2)
    key = jax.random.PRNGKey(0)
    with pytest.raises(ValueError, match="width must be >= 1"):
        mlp.init(key, arch, 0, 4, 2)
    with pytest.raises(ValueError, match="num_outputs must be >= 1"):
        mlp.init(key, arch, 4, 4, 0)
    with pytest.raises(ValueError, match="d_in must be >= 1"):
        mlp.init(key, arch, 4, 0, 2)
    with pytest.raises(TypeError, match="width must be an integer"):
        mlp.init(key, arch, 4.0, 4, 2)
    with pytest.raises(ValueError, match="width_scale applies to the standard parameterisation"):
        mlp.init(key, arch, 4, 4, 2, width_scale=2)
    with pytest.raises(TypeError, match="arch must be an nwcorrupt.arch.MLP"):
        mlp.init(key, "relu", 4, 4, 2)
    with pytest.raises(ValueError, match="width must be given"):
        mlp.init(key, arch, None, 4, 2)
    with pytest.raises(ValueError, match="width=5 but arch.width=4"):
        mlp.init(key, MLP(2, width=4), 5, 4, 2)
    assert mlp.init(key, MLP(2, width=4), None, 3, 2)[0]["W"].shape == (3, 4)
    params = mlp.init(key, arch, 4, 4, 2)
    with pytest.raises(ValueError, match="x has 3 features but the network expects d_in=4"):
        mlp.apply(arch, params, np.ones((2, 3)))
    with pytest.raises(ValueError, match="x must be 2-dimensional"):
        mlp.apply(arch, params, np.ones(4))
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        mlp.apply(arch, params, np.full((2, 4), np.nan))
    with pytest.raises(ValueError, match="params must be a list of 3 layers"):
        mlp.apply(MLP(3), params, np.ones((2, 4)))
    bad = [dict(params[0]), {"W": params[1]["W"][:3], "b": params[1]["b"]}]
    with pytest.raises(ValueError, match=r"params\[1\]"):
        mlp.apply(arch, bad, np.ones((2, 4)))
