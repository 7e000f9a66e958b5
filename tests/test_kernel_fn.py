"""nwcorrupt.kernels.kernel_fn: the neural-tangents-shaped kernel function.

Checks: the traced path (under jit) equals the eager tiled path; jax.grad with respect
to the inputs and to W_std/b_std matches central finite differences; vmap equals a
loop; the forms of ``get``; errors before compute.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import kernels
from nwcorrupt.arch import MLP, Kernels

ARCHS = [
    MLP(3, "erf", W_std=1.3, b_std=0.2),
    MLP(2, "relu", W_std=1.1, b_std=0.1),
    MLP(3, "tanh", W_std=0.9, b_std=0.3, parameterization="standard", width=16),
    MLP(1, "relu", W_std=1.4, b_std=0.5),
]


def _data(seed=0, n1=7, n2=4, d=5):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n1, d)), rng.normal(size=(n2, d))


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.activation}-L{a.depth}-{a.parameterization}")
@pytest.mark.parametrize("symmetric", [False, True])
def test_jit_equals_eager(x64, arch, symmetric):
    x1, x2 = _data()
    x2 = None if symmetric else x2
    fn = kernels.kernel_fn(arch)
    eager = fn(x1, x2, ("nngp", "ntk"))
    jitted = jax.jit(fn, static_argnames="get")(x1, x2, ("nngp", "ntk"))
    for name in ("nngp", "ntk"):
        a, b = np.asarray(getattr(eager, name)), np.asarray(getattr(jitted, name))
        assert a.dtype == np.float64
        np.testing.assert_allclose(b, a, rtol=1e-12, atol=1e-12 * np.abs(a).max())
    # the eager path is kernels.kernel itself (tiled); a tiny tile changes nothing
    tiled = kernels.kernel_fn(arch, tile_size=(3, 2))(x1, x2, "nngp")
    np.testing.assert_allclose(tiled, eager.nngp, rtol=1e-13, atol=1e-13)


def _central_difference(f, x, h=1e-6):
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[idx] = h
        grad[idx] = (float(f(x + e)) - float(f(x - e))) / (2 * h)
    return grad


@pytest.mark.parametrize("arch,symmetric", [(ARCHS[0], True), (ARCHS[0], False), (ARCHS[1], False), (ARCHS[2], True)])
@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_grad_wrt_inputs_matches_finite_differences(x64, arch, symmetric, get):
    x1, x2 = _data(1, n1=4, n2=3, d=3)
    fn = kernels.kernel_fn(arch)
    weights = np.random.default_rng(2).normal(size=(4, 4 if symmetric else 3))

    def scalar(x):
        return jnp.sum(weights * fn(x, None if symmetric else x2, get))

    grad = jax.grad(scalar)(x1)
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad, _central_difference(scalar, x1), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("arch", ARCHS[:3], ids=lambda a: a.activation)
@pytest.mark.parametrize("name", ["W_std", "b_std"])
def test_grad_wrt_hyperparameters_matches_finite_differences(x64, arch, name):
    x1, x2 = _data(3)
    fn = kernels.kernel_fn(arch)
    value = float(getattr(arch, name))

    def scalar(v, get):
        return jnp.sum(fn(x1, x2, get, **{name: v}) ** 2)

    for get in ("nngp", "ntk"):
        grad = float(jax.grad(scalar)(value, get))
        fd = _central_difference(lambda v: scalar(float(v), get), np.array(value))
        assert grad == pytest.approx(float(fd), rel=1e-6)
    # a concrete override equals the spec with that value
    other = value + 0.25
    spec = MLP(arch.depth, arch.activation, **{**{"W_std": arch.W_std, "b_std": arch.b_std}, name: other},
               parameterization=arch.parameterization, width=arch.width)
    np.testing.assert_allclose(fn(x1, x2, "ntk", **{name: other}), kernels.kernel(spec, x1, x2, "ntk").ntk, rtol=1e-13)


def test_grad_through_jit_and_hyperparameter_array(x64):
    x1, x2 = _data(4)
    fn = kernels.kernel_fn(ARCHS[0])
    f = jax.jit(lambda w, b: jnp.sum(fn(x1, x2, "ntk", W_std=w, b_std=b)))
    gw, gb = jax.grad(f, argnums=(0, 1))(jnp.asarray(1.3), jnp.asarray(0.2))
    fd_w = _central_difference(lambda w: f(float(w), 0.2), np.array(1.3))
    fd_b = _central_difference(lambda b: f(1.3, float(b)), np.array(0.2))
    assert float(gw) == pytest.approx(float(fd_w), rel=1e-6)
    assert float(gb) == pytest.approx(float(fd_b), rel=1e-6)


@pytest.mark.parametrize("symmetric", [False, True])
def test_vmap_equals_loop(x64, symmetric):
    rng = np.random.default_rng(5)
    batch = rng.normal(size=(3, 6, 4))
    x2 = rng.normal(size=(5, 4))
    fn = kernels.kernel_fn(ARCHS[0])
    out = jax.vmap(lambda x: fn(x, None if symmetric else x2, ("nngp", "ntk")))(batch)
    for i in range(3):
        ref = fn(batch[i], None if symmetric else x2)
        np.testing.assert_allclose(out.nngp[i], ref.nngp, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out.ntk[i], ref.ntk, rtol=1e-12, atol=1e-14)


def test_get_forms(x64):
    x1, x2 = _data(6)
    fn = kernels.kernel_fn(ARCHS[0])
    both = fn(x1, x2)
    assert isinstance(both, Kernels)
    ntk, nngp = fn(x1, x2, ("ntk", "nngp"))  # named tuple in the requested order
    np.testing.assert_allclose(ntk, both.ntk, rtol=1e-13)
    np.testing.assert_allclose(nngp, both.nngp, rtol=1e-13)
    assert fn(x1, x2, ("ntk", "nngp")).nngp is not None
    np.testing.assert_allclose(fn(x1, x2, "nngp"), both.nngp, rtol=1e-13, atol=1e-15)
    assert fn(x1, x2, "nngp").shape == (7, 4)


def test_errors_before_compute():
    x1, x2 = _data(7)
    fn = kernels.kernel_fn(ARCHS[0])
    with pytest.raises(ValueError, match="get"):
        fn(x1, x2, "ntk2")
    with pytest.raises(ValueError, match="same number of features"):
        fn(x1, x2[:, :3])
    with pytest.raises(ValueError, match="W_std must be a finite number > 0"):
        fn(x1, x2, "nngp", W_std=-1.0)
    with pytest.raises(ValueError, match="b_std must be a scalar"):
        fn(x1, x2, "nngp", b_std=np.ones(2))
    with pytest.raises(TypeError, match="arch must be an nwcorrupt.arch.MLP"):
        kernels.kernel_fn("relu")
    with pytest.raises(ValueError, match="x1 must be 2-dimensional"):
        fn(x1[0])
    with pytest.raises(ValueError, match="width"):
        kernels.kernel_fn(MLP(2, "erf", parameterization="standard"))(x1, x2, "ntk")
