"""The built-in activations, registered by :func:`register_builtins` when :mod:`nwcorrupt.activations` loads.

Closed forms: identity, erf, gelu (exact), sin, relu, abs, leaky_relu(α); quadrature: tanh, swish/silu,
softplus, sigmoid, gelu(tanh).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from nwcorrupt._checks import check_real
from nwcorrupt.activations.closed_forms import (
    ERF_LAYER,
    erf_dual,
    gelu_dual,
    identity_dual,
    leaky_diag_fn,
    leaky_dual_fn,
    leaky_layer,
    sin_diag,
    sin_dual,
)
from nwcorrupt.activations.registry import Activation, names, register

__all__ = ["register_builtins"]

Array = jax.Array


def _relu_fn(x: Array) -> Array:
    return jnp.maximum(x, 0.0)


def _leaky_relu(alpha: float = 0.01) -> Activation:
    a = check_real("alpha", alpha)
    return Activation(
        name=f"leaky_relu({a!r})",
        fn=lambda x: jnp.where(x >= 0, x, a * x),
        params=(("alpha", a),),
        dual_fn=leaky_dual_fn(a),
        diag_fn=leaky_diag_fn(a),
        max_dual_order=1,
        layer=leaky_layer(a),
    )


def _gelu(approximate: bool = False) -> Activation:
    suffix = "(tanh)" if approximate else ""
    return Activation(
        name=f"gelu{suffix}",
        fn=lambda x: jax.nn.gelu(x, approximate=approximate),
        params=(("approximate", bool(approximate)),),
        dual_fn=None if approximate else gelu_dual,
    )


def register_builtins() -> None:
    """Register the built-in activations (idempotent: names already registered are left alone)."""
    if "erf" in names():
        return
    register("erf", jax.scipy.special.erf, dual=erf_dual, layer=ERF_LAYER)
    register("relu", _relu_fn, dual=leaky_dual_fn(0.0), diag=leaky_diag_fn(0.0), max_dual_order=1,
             layer=leaky_layer(0.0))
    register("abs", jnp.abs, dual=leaky_dual_fn(-1.0), diag=leaky_diag_fn(-1.0), max_dual_order=1,
             layer=leaky_layer(-1.0))
    register("identity", lambda x: x, dual=identity_dual)
    register("tanh", jnp.tanh)
    register("swish", jax.nn.silu)
    register("silu", jax.nn.silu)
    register("softplus", jax.nn.softplus)
    register("sigmoid", jax.nn.sigmoid)
    register("sin", jnp.sin, dual=sin_dual, diag=sin_diag)
    register("leaky_relu", factory=_leaky_relu)
    register("gelu", factory=_gelu)
