"""Registry of activation functions.

Each :class:`Activation` carries the elementwise function and its derivatives.
Dual kernels (Gaussian expectations used by the infinite-width recursions) are
attached by the kernel machinery of :mod:`nwcorrupt.kernels`.

Use :func:`get` to look one up by name (``"relu"``, ``"erf"``, ...), and
:func:`register` to add a new one from any elementwise ``jnp`` function.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise activation.

    Attributes:
      name: registry name, with parameters where it has any (``"leaky_relu(0.1)"``).
      fn: elementwise function ``jnp array -> jnp array`` of the same shape.
      params: hashable parameters (e.g. ``(("alpha", 0.1),)``).
    """

    name: str
    fn: Callable[[Array], Array] = dataclasses.field(compare=False)
    params: tuple = ()

    def __call__(self, x: Array) -> Array:
        return self.fn(x)

    def derivative(self, order: int = 1) -> Callable[[Array], Array]:
        """The ``order``-th derivative as an elementwise function (order 0 is ``fn``)."""
        if order < 0:
            raise ValueError(f"order must be >= 0, got {order}")
        f = self.fn
        for _ in range(order):
            f = _elementwise_derivative(f)
        return f


def _elementwise_derivative(f: Callable[[Array], Array]) -> Callable[[Array], Array]:
    def df(x: Array) -> Array:
        x = jnp.asarray(x)
        return jax.jvp(f, (x,), (jnp.ones_like(x),))[1]

    return df


_REGISTRY: dict[str, Callable[..., Activation]] = {}


def register(
    name: str,
    fn: Callable[[Array], Array] | None = None,
    *,
    factory: Callable[..., Activation] | None = None,
    overwrite: bool = False,
) -> None:
    """Register an activation under ``name``.

    Give either ``fn``, an elementwise jnp function (derivatives come from
    autodiff, dual kernels from quadrature), or ``factory``, a function of
    keyword parameters returning an :class:`Activation` (for parametrised
    families such as leaky ReLU).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True to replace it")
    if (fn is None) == (factory is None):
        raise ValueError("give exactly one of fn (elementwise function) or factory")
    if fn is not None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        _REGISTRY[name] = lambda: Activation(name=name, fn=fn)
    else:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {factory!r}")
        _REGISTRY[name] = factory


def names() -> tuple[str, ...]:
    """Names of all registered activations."""
    return tuple(sorted(_REGISTRY))


def get(activation: str | Activation, **params: float) -> Activation:
    """Look up an activation by name (with optional parameters) or pass one through."""
    if isinstance(activation, Activation):
        if params:
            raise ValueError("params can only be given with an activation name")
        return activation
    if not isinstance(activation, str):
        raise TypeError(f"activation must be a name or an Activation, got {activation!r}")
    if activation not in _REGISTRY:
        raise ValueError(f"unknown activation {activation!r}; expected one of {list(names())}")
    try:
        made = _REGISTRY[activation](**params)
    except TypeError as err:
        raise ValueError(f"bad parameters {params} for activation {activation!r}: {err}") from None
    if not isinstance(made, Activation):
        raise TypeError(f"the factory of activation {activation!r} must return an Activation, got {made!r}")
    return made


def _simple(name: str, fn: Callable[[Array], Array]) -> None:
    _REGISTRY[name] = lambda: Activation(name=name, fn=fn)


def _leaky_relu(alpha: float = 0.01) -> Activation:
    a = float(alpha)
    return Activation(name=f"leaky_relu({a!r})", fn=lambda x: jnp.where(x >= 0, x, a * x), params=(("alpha", a),))


def _gelu(approximate: bool = False) -> Activation:
    suffix = "(tanh)" if approximate else ""
    return Activation(
        name=f"gelu{suffix}",
        fn=lambda x: jax.nn.gelu(x, approximate=approximate),
        params=(("approximate", bool(approximate)),),
    )


_simple("erf", jax.scipy.special.erf)
_simple("relu", lambda x: jnp.maximum(x, 0.0))
_simple("abs", jnp.abs)
_simple("identity", lambda x: x)
_simple("tanh", jnp.tanh)
_simple("swish", jax.nn.silu)
_simple("silu", jax.nn.silu)
_simple("softplus", jax.nn.softplus)
_simple("sigmoid", jax.nn.sigmoid)
_simple("sin", jnp.sin)
_REGISTRY["leaky_relu"] = _leaky_relu
_REGISTRY["gelu"] = _gelu
