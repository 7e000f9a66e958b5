"""The activation registry: :class:`Activation`, :class:`LayerDuals`, :func:`register`, :func:`get`, :func:`names`."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp

from nwcorrupt._checks import check_positive_int

__all__ = ["Activation", "LayerDuals", "DualFn", "DiagFn", "PointFn", "PairFn", "METHODS", "DEFAULT_ORDER",
           "MAX_ORDER", "register", "names", "get"]

Array = jax.Array

#: Signature of a closed-form dual kernel: ``dual_fn(a, b, k11, k12, k22)``
#: returns E[σ^(a)(u) σ^(b)(v)] elementwise (broadcastable arrays in, array
#: out), or None when no closed form is known for these orders.
DualFn = Callable[[int, int, Array, Array, Array], "Array | None"]
#: Signature of a closed-form diagonal dual: ``diag_fn(a, b, q)`` returns
#: E[σ^(a)(u) σ^(b)(u)] for u ~ N(0, q), or None.
DiagFn = Callable[[int, int, Array], "Array | None"]

METHODS = ("auto", "closed", "quadrature")
#: Default number of Gauss–Hermite nodes per dimension.
DEFAULT_ORDER = 32
MAX_ORDER = 200


@dataclasses.dataclass(frozen=True)
class Activation:
    """An elementwise activation and (optionally) its closed-form dual kernels.

    Attributes:
      name: registry name, with parameters where it has any (``"leaky_relu(0.1)"``).
      fn: elementwise function ``jnp array -> jnp array`` of the same shape.
      params: hashable parameters (e.g. ``(("alpha", 0.1),)``).
      dual_fn: optional closed form of E[σ^(a)(u)σ^(b)(v)] (see :data:`DualFn`);
        None means quadrature for every order.
      diag_fn: optional closed form on the diagonal u = v (see :data:`DiagFn`);
        None means ``dual_fn(a, b, q, q, q)`` (or quadrature).
      max_dual_order: highest derivative order whose dual kernel exists as an
        ordinary expectation (1 for piecewise-linear functions, whose second
        derivative is a Dirac delta); None means no limit.
      layer: optional fused form of one layer of the kernel recursion (see
        :class:`LayerDuals`); used by :mod:`nwcorrupt.kernels` instead of
        ``dual_fn`` for the pair (⟨σσ⟩, ⟨σ'σ'⟩). Must agree with ``dual_fn``.

    Instances are frozen and hashable (functions do not take part in equality),
    so they can be static arguments of jitted functions.
    """

    name: str
    fn: Callable[[Array], Array] = dataclasses.field(compare=False)
    params: tuple = ()
    dual_fn: DualFn | None = dataclasses.field(default=None, compare=False, repr=False)
    diag_fn: DiagFn | None = dataclasses.field(default=None, compare=False, repr=False)
    max_dual_order: int | None = None
    layer: "LayerDuals | None" = dataclasses.field(default=None, compare=False, repr=False)

    def __call__(self, x: Array) -> Array:
        return self.fn(x)

    def derivative(self, order: int = 1) -> Callable[[Array], Array]:
        """The ``order``-th derivative as an elementwise function (order 0 is ``fn``)."""
        check_positive_int("order", order, allow_zero=True)
        f = self.fn
        for _ in range(order):
            f = _elementwise_derivative(f)
        return f


#: ``point(q)``: per-point quantities (a tuple of arrays shaped like q) from the variances q.
PointFn = Callable[[Array], tuple]
#: ``pair(k12, p1, p2, want_dd, keep)`` -> (⟨σσ⟩, ⟨σ'σ'⟩ or None), see :class:`LayerDuals`.
PairFn = Callable[[Array, tuple, tuple, bool, Callable[[Array], Array]], tuple]


@dataclasses.dataclass(frozen=True)
class LayerDuals:
    """A fused, cheaper form of the dual pair (⟨σσ⟩, ⟨σ'σ'⟩) for the kernel recursion.

    The recursion evaluates the duals on every entry of an (N1, N2) kernel, but
    everything that depends on the variances k11 = K(x, x), k22 = K(x', x')
    alone is per point. ``point(q)`` computes those per-point quantities once
    (O(N1 + N2) work); ``pair(k12, point(k11), point(k22), want_dd, keep)``
    returns (⟨σσ⟩, ⟨σ'σ'⟩) (the second None unless ``want_dd``) from the
    covariances k12, sharing intermediate results between the two duals.
    ``keep(x)`` returns x unchanged but materialised (XLA on CPU would otherwise
    recompute an intermediate once per consumer); ``pair`` wraps the
    intermediates both duals use in it.
    """

    point: PointFn
    pair: PairFn


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
    dual: DualFn | None = None,
    diag: DiagFn | None = None,
    max_dual_order: int | None = None,
    layer: LayerDuals | None = None,
) -> None:
    """Register an activation under ``name``.

    Give either ``fn``, an elementwise jnp function (derivatives come from
    autodiff, dual kernels from quadrature unless ``dual``/``diag`` give closed
    forms, see :data:`DualFn`), or ``factory``, a function of keyword parameters
    returning an :class:`Activation` (for parametrised families such as leaky
    ReLU). ``max_dual_order=1`` marks a piecewise-linear ``fn`` (its σ'' is a
    delta, so higher-order duals raise instead of returning wrong quadrature).
    ``layer`` optionally gives a fused form of (⟨σσ⟩, ⟨σ'σ'⟩) for the kernel
    recursion (see :class:`LayerDuals`); it must agree with ``dual``.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True to replace it")
    replacing = name in _REGISTRY
    if (fn is None) == (factory is None):
        raise ValueError("give exactly one of fn (elementwise function) or factory")
    if max_dual_order is not None:
        max_dual_order = check_positive_int("max_dual_order", max_dual_order, allow_zero=True)
    for arg_name, arg in (("dual", dual), ("diag", diag)):
        if arg is not None and not callable(arg):
            raise TypeError(f"{arg_name} must be callable, got {arg!r}")
    if layer is not None and not isinstance(layer, LayerDuals):
        raise TypeError(f"layer must be a LayerDuals (point, pair), got {layer!r}")
    if fn is not None:
        if not callable(fn):
            raise TypeError(f"fn must be callable, got {fn!r}")
        made = Activation(
            name=name, fn=fn, dual_fn=dual, diag_fn=diag, max_dual_order=max_dual_order, layer=layer
        )
        _REGISTRY[name] = lambda: made
    else:
        if not callable(factory):
            raise TypeError(f"factory must be callable, got {factory!r}")
        if dual is not None or diag is not None or max_dual_order is not None or layer is not None:
            raise ValueError(
                "dual, diag, max_dual_order and layer go with fn; a factory sets them on its Activation"
            )
        _REGISTRY[name] = factory
    if replacing:
        # Jitted code is cached per activation *name*: drop it so the new function is used.
        jax.clear_caches()


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


