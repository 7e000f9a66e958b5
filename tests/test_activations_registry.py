import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import activations as A
from nwcorrupt.kernels import MLP


def test_derivatives_match_closed_forms(x64):
    x = jnp.linspace(-2.0, 2.0, 9)
    t = A.get("tanh")
    np.testing.assert_allclose(t.derivative(1)(x), 1 - np.tanh(x) ** 2, rtol=1e-12)
    np.testing.assert_allclose(t.derivative(2)(x), -2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-12)
    s = A.get("sin")
    np.testing.assert_allclose(s.derivative(3)(x), -np.cos(x), rtol=1e-12)


def test_leaky_relu_param_and_register():
    a = A.get("leaky_relu", alpha=0.2)
    np.testing.assert_allclose(a(jnp.array([-1.0, 3.0])), [-0.2, 3.0])
    A.register("cube_test", lambda x: x**3, overwrite=True)
    np.testing.assert_allclose(A.get("cube_test").derivative(1)(jnp.array([2.0])), [12.0])
    with pytest.raises(ValueError, match="already registered"):
        A.register("cube_test", lambda x: x)


def test_unknown_activation_and_bad_spec():
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        A.get("nope")
    with pytest.raises(ValueError, match="depth"):
        MLP(0)
    with pytest.raises(ValueError, match="parameterization"):
        MLP(2, parameterization="mup")
    with pytest.raises(ValueError, match="W_std"):
        MLP(2, W_std=float("nan"))


def test_register_with_fused_layer_form(x64):
    """A user activation registered with a LayerDuals gets the fused path, with equal kernels."""
    from nwcorrupt import kernels as K

    relu = A.get("relu")
    A.register(
        "relu_fused_test", relu.fn, dual=relu.dual_fn, diag=relu.diag_fn, max_dual_order=1,
        layer=A.LayerDuals(point=relu.layer.point, pair=relu.layer.pair), overwrite=True,
    )  # fmt: skip
    A.register("relu_plain_test", relu.fn, dual=relu.dual_fn, diag=relu.diag_fn, max_dual_order=1, overwrite=True)
    assert A.get("relu_fused_test").layer is not None and A.get("relu_plain_test").layer is None
    rng = np.random.default_rng(2)
    x1, x2 = rng.standard_normal((12, 5)), rng.standard_normal((9, 5))
    fused = K.kernel(K.MLP(3, "relu_fused_test", b_std=0.1), x1, x2)
    plain = K.kernel(K.MLP(3, "relu_plain_test", b_std=0.1), x1, x2)
    np.testing.assert_allclose(fused.ntk, plain.ntk, rtol=1e-12)
    np.testing.assert_allclose(fused.nngp, plain.nngp, rtol=1e-12)
    with pytest.raises(TypeError, match="layer must be a LayerDuals"):
        A.register("bad_layer_test", relu.fn, layer=(relu.layer.point, relu.layer.pair), overwrite=True)
    with pytest.raises(ValueError, match="layer go with fn"):
        A.register("bad_factory_test", factory=lambda: relu, layer=relu.layer, overwrite=True)
