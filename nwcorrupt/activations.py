"""Registry of activation functions and their dual kernels.

Each :class:`Activation` carries the elementwise function, its derivatives (by
autodiff) and, where one is known, a closed form of its *dual kernels*

    E[σ^(a)(u) σ^(b)(v)],   (u, v) ~ N(0, [[k11, k12], [k12, k22]]),

the Gaussian expectations that drive the infinite-width NNGP/NTK recursions
(a = b = 0 gives ⟨σσ⟩, a = b = 1 gives ⟨σ'σ'⟩; the perturbative theory also
needs a, b ≤ 3). :func:`dual` evaluates them elementwise over arrays,
:func:`duals` several orders in one pass, :func:`dual_pair` returns
(⟨σσ⟩, ⟨σ'σ'⟩), :func:`dual_diag` is the special case u = v
(k11 = k12 = k22 = q) and :func:`has_closed_form` says which method is used.

Closed forms (exact up to rounding):

* ``identity``: every order.
* ``erf``: arcsin formula for ⟨σσ⟩; ⟨σ'σ'⟩ = (4/π) D^{-1/2},
  ⟨σ''σ''⟩ = (16/π) k12 D^{-3/2}, ⟨σ'''σ'''⟩ = (16/π)(D^{-3/2} + 12 k12² D^{-5/2}) with
  D = (1 + 2k11)(1 + 2k22) − 4k12²; mixed orders by Price's theorem (below).
* ``gelu`` (exact erf GELU, x Φ(x)): closed forms for ⟨σσ⟩, ⟨σ'σ'⟩ and
  E[σ'(u)σ(v)] derived with Stein's lemma (see ``docs/kernels.md``); every
  other order by Price's theorem. ``gelu(tanh)`` uses quadrature.
* ``relu``, ``leaky_relu(α)``, ``abs``: arc-cosine kernels of orders 0 and 1
  (abs and leaky ReLU are α·identity + (1 − α)·relu). Their second derivative is
  a Dirac delta, so any order ≥ 2 raises ``ValueError``.
* ``sin``: E[sin(u + aπ/2) sin(v + bπ/2)] =
  ½[e^{−(k11+k22−2k12)/2} cos((a−b)π/2) − e^{−(k11+k22+2k12)/2} cos((a+b)π/2)].

Price's theorem: ∂/∂k12 E[f(u)g(v)] = E[f'(u)g'(v)] and
∂/∂k11 E[f(u)g(v)] = ½ E[f''(u)g(v)], so mixed orders follow from ⟨σσ⟩ (and
E[σ'σ]) by forward-mode autodiff of the closed forms.

Everything else (``tanh``, ``swish``/``silu``, ``softplus``, ``sigmoid``,
``gelu(tanh)``, user-registered functions) uses a 2-D Gauss–Hermite product rule
of ``order`` nodes per dimension after the change of variables
(u, v) = Σ^{1/2} z with the *symmetric* square root Σ^{1/2} = (Σ + sI)/t,
s = √det Σ, t = √(k11 + k22 + 2s) (ρ = k12/√(k11 k22) clipped to [−1, 1]). It
stays stable as |ρ| → 1 and as k11 or k22 → 0, is exactly symmetric under
exchanging u and v (so kernels stay symmetric) and, near |ρ| = 1, is far more
accurate than a Cholesky factor. Measured float64 errors (max over ρ ∈ [−1, 1]):

* erf, gelu, sin vs their closed forms, all orders a, b ≤ 3, variances ≤ 1:
  order 32: ≤ 1e-8 (erf; its derivatives are narrow Gaussian bumps),
  ≤ 1e-13 (gelu, sin); order 64: ≤ 1e-11.
* tanh-like (tanh, sigmoid, swish, softplus), variances ≤ 1: order 32 ~1e-7
  (⟨σσ⟩) and ~2e-6 (⟨σ'σ'⟩), order 64 ≲ 2e-9. Convergence is geometric but
  slows with the variance (poles of tanh at ±iπ/2): at variance 4, order 64
  gives ~4e-5 (table in docs/kernels.md).
* relu family (closed forms are used; quadrature only on request): the kink
  limits convergence to ~1/order for ⟨σσ⟩ (2e-3 at order 64), and the step
  function ⟨σ'σ'⟩ stalls at 1e-2–1e-1 near |ρ| = 1.

The cost is 2·order² evaluations of σ^(a) per entry (nested ``lax.scan``, so
the memory is a few arrays of the output's size). In float32 expect ~1e-7
relative error for the closed forms and ~1e-6 for quadrature.

Use :func:`get` to look an activation up by name (``"relu"``, ``"erf"``, ...),
and :func:`register` to add a new one from any elementwise ``jnp`` function
(its dual kernels then come from quadrature unless you pass a closed form).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_array, check_choice, check_positive_int, check_real, is_traced

__all__ = [
    "Activation",
    "LayerDuals",
    "DualFn",
    "DiagFn",
    "PointFn",
    "PairFn",
    "METHODS",
    "DEFAULT_ORDER",
    "MAX_ORDER",
    "register",
    "names",
    "get",
    "duals",
    "dual",
    "dual_pair",
    "dual_diag",
    "duals_unchecked",
    "duals_diag_unchecked",
    "has_closed_form",
]

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


# ---------------------------------------------------------------------------
# Numerical helpers (all elementwise, broadcasting, autodiff-safe).


def _safe_rsqrt(k: Array) -> Array:
    """1/√k for k > 0 and 0 for k <= 0, with finite derivatives everywhere."""
    pos = k > 0
    return jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, k, 1.0)), 0.0)


def _safe_sqrt(k: Array) -> Array:
    """√max(k, 0) whose derivative at 0 is 0 instead of inf (avoids NaN tangents)."""
    pos = k > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, k, 1.0)), 0.0)


def _correlation(k11: Array, k12: Array, k22: Array) -> Array:
    """ρ = k12/√(k11 k22) clipped to [−1, 1]; 0 where a variance vanishes.

    Computed as one correctly rounded sqrt and division, so ρ = ±1 exactly when
    k12 = ±k11 = ±k22 (√(q²) = q in IEEE arithmetic): the arc-cosine kernels have
    a √(1 − ρ) singularity there, where an error of one ulp in ρ would cost ~1e-8
    (float64) or ~3e-4 (float32). Falls back to √k11 √k22 if k11 k22 overflows.
    """
    prod = k11 * k22
    den = jnp.where(prod < jnp.inf, jnp.sqrt(jnp.where(prod > 0, prod, 1.0)), _safe_sqrt(k11) * _safe_sqrt(k22))
    pos = prod > 0
    return jnp.clip(jnp.where(pos, k12 / jnp.where(pos, den, 1.0), 0.0), -1.0, 1.0)


@functools.lru_cache(maxsize=None)
def _asin_poly(degree: int) -> tuple[float, ...]:
    """Monomial coefficients (in t = 8z − 1) of r(z) = (arcsin √z − √z)/z^{3/2} on z ∈ [0, 1/4].

    r is summed from its Taylor series Σ_k (2k)!/(4^k (k!)² (2k+1)) z^{k−1}
    (positive terms, exact to rounding), interpolated at Chebyshev points in
    t ∈ [−1, 1] and converted to monomials in t (coefficients ≤ 0.18, so Horner
    in t is stable). Degree 11 reaches float64 rounding, degree 6 float32.
    """
    coeffs = [math.factorial(2 * k) / (4**k * math.factorial(k) ** 2 * (2 * k + 1)) for k in range(1, 60)]

    def r(t: np.ndarray) -> np.ndarray:
        z = (t + 1.0) / 8.0
        out = np.full_like(z, coeffs[-1])
        for c in reversed(coeffs[:-1]):
            out = out * z + c
        return out

    cheb = np.polynomial.chebyshev.chebinterpolate(r, degree)
    return tuple(float(v) for v in np.polynomial.chebyshev.cheb2poly(cheb))


def _asin_small(y: Array) -> Array:
    """arcsin(y) for |y| <= 1/2 (≤ 1 ulp in float64): y + y³ r(y²) with r a polynomial."""
    coeffs = _asin_poly(11 if jnp.dtype(y.dtype).itemsize >= 8 else 6)
    z = y * y
    t = 8.0 * z - 1.0
    p = jnp.full_like(z, coeffs[-1])
    for c in reversed(coeffs[:-1]):
        p = p * t + c
    return y + y * z * p


def _asin_acos(x: Array) -> tuple[Array, Array]:
    """(arcsin x, arccos x) for x in [−1, 1], accurate to a few ulps and vectorisable.

    For |x| > 1/2 uses arcsin|x| = π/2 − 2 arcsin √((1 − |x|)/2), where 1 − |x| is
    exact, so arccos stays accurate near x = ±1. (XLA's own acos/asin are ~3x
    slower on CPU and dominate the relu/erf kernel time.)
    """
    ax = jnp.abs(x)
    small = ax <= 0.5
    y = jnp.where(small, x, jnp.sqrt(0.5 * (1.0 - ax)))
    s = _asin_small(y)
    half_pi = 0.5 * math.pi
    asin = jnp.where(small, s, jnp.where(x > 0, half_pi - 2.0 * s, 2.0 * s - half_pi))
    acos = jnp.where(small, half_pi - s, jnp.where(x > 0, 2.0 * s, math.pi - 2.0 * s))
    return asin, acos


def _asin(x: Array) -> Array:
    return _asin_acos(x)[0]


def _acos(x: Array) -> Array:
    return _asin_acos(x)[1]


def _partial(h: Callable[..., Array], idx: int, scale: float = 1.0) -> Callable[..., Array]:
    """Elementwise partial derivative of h(k11, k12, k22) in argument ``idx`` (times scale)."""

    def dh(k11: Array, k12: Array, k22: Array) -> Array:
        args = (k11, k12, k22)
        tangents = tuple(jnp.ones_like(x) if i == idx else jnp.zeros_like(x) for i, x in enumerate(args))
        return scale * jax.jvp(h, args, tangents)[1]

    return dh


def _swap(h: Callable[..., Array]) -> Callable[..., Array]:
    """(k11, k12, k22) -> h(k22, k12, k11): exchanges the roles of u and v."""
    return lambda k11, k12, k22: h(k22, k12, k11)


def _price(
    a: int, b: int, F: Callable[..., Array], G: Callable[..., Array] | None
) -> Callable[..., Array] | None:
    """E[σ^(a)(u)σ^(b)(v)] from F = E[σσ] and G = E[σ'(u)σ(v)] by Price's theorem.

    With m = min(a, b) and j = |a − b|: apply (2∂/∂k11)^⌊j/2⌋ (or k22 if b > a)
    to F (j even) or G (j odd), then ∂^m/∂k12^m. Returns None if G is needed
    but not known.
    """
    m = min(a, b)
    j = abs(a - b)
    if j % 2:
        if G is None:
            return None
        h = G if a > b else _swap(G)
    else:
        h = F
    var_idx = 0 if a > b else 2
    for _ in range(j // 2):
        h = _partial(h, var_idx, 2.0)
    for _ in range(m):
        h = _partial(h, 1)
    return h


# ---------------------------------------------------------------------------
# Closed forms.

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def _identity_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
    if (a, b) == (0, 0):
        return k12
    if (a, b) == (1, 1):
        return jnp.ones_like(k12)
    return jnp.zeros_like(k12)


def _erf_F(k11: Array, k12: Array, k22: Array) -> Array:
    return (2.0 / math.pi) * _asin(2.0 * k12 * jax.lax.rsqrt(1.0 + 2.0 * k11) * jax.lax.rsqrt(1.0 + 2.0 * k22))


def _erf_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
    if (a + b) % 2:  # erf^(a) has parity (−1)^(a+1): odd total order integrates to 0
        return jnp.zeros_like(k12 + k11 + k22)
    if a == b and a >= 1:
        D = (1.0 + 2.0 * k11) * (1.0 + 2.0 * k22) - 4.0 * k12 * k12
        if a == 1:
            return (4.0 / math.pi) * jax.lax.rsqrt(D)
        if a == 2:
            return (16.0 / math.pi) * k12 * D ** -1.5
        if a == 3:
            return (16.0 / math.pi) * (D ** -1.5 + 12.0 * k12 * k12 * D ** -2.5)
    if (a, b) == (0, 0):
        return _erf_F(k11, k12, k22)
    return _price(a, b, _erf_F, None)(k11, k12, k22)  # type: ignore[misc]


def _gelu_terms(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array, Array, Array]:
    P = (1.0 + k11) * (1.0 + k22)
    delta = P - k12 * k12
    r = k12 * jax.lax.rsqrt(P)
    N = k11 * k22 + k12 * k12 * (1.0 - k11 * k22) / P
    return P, delta, r, N


def _gelu_F(k11: Array, k12: Array, k22: Array) -> Array:
    """E[gelu(u) gelu(v)] (exact GELU x Φ(x))."""
    _, delta, r, N = _gelu_terms(k11, k12, k22)
    return 0.25 * k12 + k12 * _asin(r) / (2.0 * math.pi) + N * jax.lax.rsqrt(delta) / (2.0 * math.pi)


def _gelu_G(k11: Array, k12: Array, k22: Array) -> Array:
    """E[gelu'(u) gelu(v)]."""
    s11 = jax.lax.rsqrt(1.0 + k11)
    return (0.5 * _INV_SQRT_2PI) * (k12 * s11 + k22 * jax.lax.rsqrt(1.0 + k22) + k12 * s11 * s11 * s11)


def _gelu_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
    if (a, b) == (0, 0):
        return _gelu_F(k11, k12, k22)
    if (a, b) == (1, 1):
        P, delta, r, N = _gelu_terms(k11, k12, k22)
        c = (1.0 - k11 * k22) / P
        inv = jax.lax.rsqrt(delta)
        return 0.25 + _asin(r) / (2.0 * math.pi) + k12 * inv / (2.0 * math.pi) * (1.0 + 2.0 * c + N / delta)
    if (a, b) == (1, 0):
        return _gelu_G(k11, k12, k22)
    if (a, b) == (0, 1):
        return _gelu_G(k22, k12, k11)
    return _price(a, b, _gelu_F, _gelu_G)(k11, k12, k22)  # type: ignore[misc]


_COS_QUARTER = (1.0, 0.0, -1.0, 0.0)  # cos(nπ/2) for n mod 4


def _sin_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
    # sin^(a)(x) = sin(x + aπ/2); product-to-sum and E[cos(w + c)] = e^{-Var w/2} cos c.
    s = k11 + k22
    out = jnp.zeros_like(s + k12)
    c_minus, c_plus = _COS_QUARTER[(a - b) % 4], _COS_QUARTER[(a + b) % 4]
    if c_minus:
        out = out + (0.5 * c_minus) * jnp.exp(-0.5 * (s - 2.0 * k12))
    if c_plus:
        out = out - (0.5 * c_plus) * jnp.exp(-0.5 * (s + 2.0 * k12))
    return out


def _sin_diag(a: int, b: int, q: Array) -> Array:
    c_minus, c_plus = _COS_QUARTER[(a - b) % 4], _COS_QUARTER[(a + b) % 4]
    return 0.5 * c_minus - (0.5 * c_plus) * jnp.exp(-2.0 * q)


def _leaky_dual_fn(alpha: float) -> DualFn:
    """Dual kernels of σ(x) = α x + (1 − α) relu(x) for orders a, b ≤ 1."""
    beta = 1.0 - alpha

    def dual_fn(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array | None:
        if a > 1 or b > 1:
            return None
        rho = _correlation(k11, k12, k22)
        if (a, b) == (0, 1) or (a, b) == (1, 0):
            s = _safe_sqrt(k11 if a == 0 else k22)
            return ((1.0 - alpha * alpha) * 0.5 * _INV_SQRT_2PI) * s * (1.0 + rho)
        theta = _acos(rho)
        if (a, b) == (1, 1):
            out = (beta * beta / (2.0 * math.pi)) * (math.pi - theta)
            return out + alpha if alpha else out
        sin_theta = jnp.sqrt((1.0 - rho) * (1.0 + rho))
        r00 = (_safe_sqrt(k11) * _safe_sqrt(k22)) * (sin_theta + (math.pi - theta) * rho) / (2.0 * math.pi)
        out = (beta * beta) * r00
        return out + alpha * k12 if alpha else out

    return dual_fn


def _leaky_diag_fn(alpha: float) -> DiagFn:
    beta = 1.0 - alpha

    def diag_fn(a: int, b: int, q: Array) -> Array | None:
        if (a, b) == (0, 0):
            return (alpha + 0.5 * beta * beta) * q
        if (a, b) == (1, 1):
            return jnp.full_like(q, 0.5 * (1.0 + alpha * alpha))
        if (a, b) in ((0, 1), (1, 0)):
            return ((1.0 - alpha * alpha) * _INV_SQRT_2PI) * _safe_sqrt(q)
        return None

    return diag_fn


def _sqrt_rsqrt_point(q: Array) -> tuple[Array, Array]:
    """(√q, 1/√q) per point, both 0 where q <= 0 (so ρ = 0 against a zero-variance point)."""
    return _safe_sqrt(q), _safe_rsqrt(q)


def _leaky_layer(alpha: float) -> LayerDuals:
    """Fused duals of σ(x) = α x + (1 − α) relu(x): one arcsine per entry for both.

    With ρ = k12/√(k11 k22) (from per-point 1/√k) and π − θ = π/2 + arcsin ρ:
    ⟨σσ⟩ = α k12 + (1 − α)² √(k11 k22) (√(1 − ρ²) + (π − θ) ρ)/(2π) and
    ⟨σ'σ'⟩ = α + (1 − α)² (π − θ)/(2π). ρ carries a few ulps of rounding (not
    exactly ±1 at coincident points), like any ρ from a computed Gram matrix.
    """
    beta2 = (1.0 - alpha) ** 2
    inv_2pi = 1.0 / (2.0 * math.pi)

    def pair(k12, p1, p2, want_dd, keep):
        (s1, r1), (s2, r2) = p1, p2
        rho = jnp.clip(k12 * r1 * r2, -1.0, 1.0)
        pmt = keep(_asin(rho) + 0.5 * math.pi)  # π − θ
        sin_t = jnp.sqrt((1.0 - rho) * (1.0 + rho))
        ss = (beta2 * inv_2pi) * (s1 * s2) * (sin_t + pmt * rho)
        if alpha:
            ss = ss + alpha * k12
        if not want_dd:
            return ss, None
        dd = (beta2 * inv_2pi) * pmt
        return ss, (dd + alpha if alpha else dd)

    return LayerDuals(point=_sqrt_rsqrt_point, pair=pair)


def _erf_point(q: Array) -> tuple[Array]:
    return (jax.lax.rsqrt(1.0 + 2.0 * q),)


def _erf_pair(k12, p1, p2, want_dd, keep):
    """Fused erf duals from c = 1/√(1 + 2k) per point: with u = 2 k12 c1 c2,
    ⟨σσ⟩ = (2/π) arcsin u and ⟨σ'σ'⟩ = (4/π) c1 c2 / √(1 − u²)."""
    (c1,), (c2,) = p1, p2
    cc = c1 * c2
    u = jnp.clip(2.0 * k12 * cc, -1.0, 1.0)
    ss = (2.0 / math.pi) * _asin(u)
    if not want_dd:
        return ss, None
    return ss, (4.0 / math.pi) * cc * jax.lax.rsqrt((1.0 - u) * (1.0 + u))


_ERF_LAYER = LayerDuals(point=_erf_point, pair=_erf_pair)


# ---------------------------------------------------------------------------
# Gauss–Hermite quadrature.


@functools.lru_cache(maxsize=None)
def _gauss_hermite(order: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Probabilists' Gauss–Hermite nodes and weights normalised to sum to 1."""
    x, w = np.polynomial.hermite_e.hermegauss(order)
    w = w / w.sum()
    return tuple(float(v) for v in x), tuple(float(v) for v in w)


def _quadrature_core(
    act: Activation,
    pairs: tuple[tuple[int, int], ...],
    a11: Array,
    a12: Array,
    a22: Array,
    shape: tuple[int, ...],
    dtype: jnp.dtype,
    order: int,
) -> tuple[Array, ...]:
    """Σ_ij w_i w_j σ^(a)(u_ij) σ^(b)(v_ij) with u = a11 z1 + a12 z2, v = a12 z1 + a22 z2.

    Both sums run in nested ``lax.scan`` loops, so the working memory is a few
    arrays of the broadcast shape whatever the order.
    """
    x, w = _gauss_hermite(order)
    f = {k: act.derivative(k) for k in sorted({p[0] for p in pairs})}
    g = {k: act.derivative(k) for k in sorted({p[1] for p in pairs})}
    nodes = (jnp.asarray(x, dtype), jnp.asarray(w, dtype))

    def outer(acc: tuple[Array, ...], node_i: tuple[Array, Array]) -> tuple[tuple[Array, ...], None]:
        xi, wi = node_i
        u0, v0 = a11 * xi, a12 * xi

        def inner(inn: tuple[Array, ...], node_j: tuple[Array, Array]) -> tuple[tuple[Array, ...], None]:
            xj, wj = node_j
            u, v = u0 + a12 * xj, v0 + a22 * xj
            fu = {k: fk(u) for k, fk in f.items()}
            gv = {k: gk(v) for k, gk in g.items()}
            return tuple(acc_p + wj * fu[pa] * gv[pb] for acc_p, (pa, pb) in zip(inn, pairs)), None

        inner0 = tuple(jnp.zeros(shape, dtype) for _ in pairs)
        inn, _ = jax.lax.scan(inner, inner0, nodes)
        return tuple(acc_p + wi * val for acc_p, val in zip(acc, inn)), None

    acc0 = tuple(jnp.zeros(shape, dtype) for _ in pairs)
    acc, _ = jax.lax.scan(outer, acc0, nodes)
    return acc


def _quadrature(
    act: Activation, pairs: tuple[tuple[int, int], ...], k11: Array, k12: Array, k22: Array, order: int
) -> tuple[Array, ...]:
    """E[σ^(a)(u)σ^(b)(v)] for each (a, b) in ``pairs`` with one shared 2-D product rule.

    Uses the symmetric square root of the covariance, Σ^{1/2} = (Σ + s I)/t with
    s = √det Σ and t = √(k11 + k22 + 2s): the rule is then exactly symmetric
    under exchanging (u, k11) and (v, k22) (so kernels stay symmetric), and it is
    much more accurate than a Cholesky factor when |ρ| → 1 (the integrand's
    ridge spreads over both coordinates).
    """
    shape = jnp.broadcast_shapes(jnp.shape(k11), jnp.shape(k12), jnp.shape(k22))
    dtype = jnp.result_type(k11, k12, k22)
    rho = _correlation(k11, k12, k22)
    s1, s2 = _safe_sqrt(k11), _safe_sqrt(k22)
    cov = rho * (s1 * s2)
    s = (s1 * s2) * _safe_sqrt((1.0 - rho) * (1.0 + rho))
    inv_t = _safe_rsqrt(k11 + k22 + 2.0 * s)
    return _quadrature_core(act, pairs, (k11 + s) * inv_t, cov * inv_t, (k22 + s) * inv_t, shape, dtype, order)


def _quadrature_diag(act: Activation, pairs: tuple[tuple[int, int], ...], q: Array, order: int) -> tuple[Array, ...]:
    """E[σ^(a)(u)σ^(b)(u)], u ~ N(0, q): the 2-D rule of :func:`_quadrature` at ρ = 1.

    (u = √(q/2)(z1 + z2); the same rule as the off-diagonal entries, so a
    symmetric kernel's diagonal is consistent with its neighbours, and more
    accurate than a 1-D rule of the same order.)
    """
    h = _safe_sqrt(0.5 * q)
    return _quadrature_core(act, pairs, h, h, h, jnp.shape(q), q.dtype, order)


# ---------------------------------------------------------------------------
# Unchecked evaluation (used inside jitted kernel code).


def _check_orders(act: Activation, a: int, b: int) -> None:
    if act.max_dual_order is not None and max(a, b) > act.max_dual_order:
        raise ValueError(
            f"the dual kernel E[σ^({a})(u) σ^({b})(v)] is undefined for activation {act.name!r}: "
            f"its derivatives of order > {act.max_dual_order} are Dirac deltas (piecewise-linear function), "
            f"so only orders a, b <= {act.max_dual_order} are available"
        )


def _closed(act: Activation, a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array | None:
    return None if act.dual_fn is None else act.dual_fn(a, b, k11, k12, k22)


def _closed_diag(act: Activation, a: int, b: int, q: Array) -> Array | None:
    if act.diag_fn is not None:
        out = act.diag_fn(a, b, q)
        if out is not None:
            return out
    return _closed(act, a, b, q, q, q)


def _no_closed_form(act: Activation, a: int, b: int) -> ValueError:
    return ValueError(
        f"activation {act.name!r} has no closed-form dual kernel for orders (a, b) = ({a}, {b}); "
        "use method='auto' or 'quadrature'"
    )


def duals_unchecked(
    act: Activation,
    pairs: tuple[tuple[int, int], ...],
    k11: Array,
    k12: Array,
    k22: Array,
    method: str = "auto",
    order: int = DEFAULT_ORDER,
) -> tuple[Array, ...]:
    """E[σ^(a)(u)σ^(b)(v)] for each (a, b) in ``pairs``; no input validation.

    Inputs are broadcastable arrays of one float dtype; outputs have the
    broadcast shape. Closed forms are used where available (unless
    ``method='quadrature'``); the remaining pairs share one quadrature pass.
    """
    shape = jnp.broadcast_shapes(jnp.shape(k11), jnp.shape(k12), jnp.shape(k22))
    results: dict[tuple[int, int], Array] = {}
    for a, b in pairs:
        _check_orders(act, a, b)
        if method != "quadrature":
            out = _closed(act, a, b, k11, k12, k22)
            if out is not None:
                results[(a, b)] = jnp.broadcast_to(out, shape)
            elif method == "closed":
                raise _no_closed_form(act, a, b)
    todo = tuple(p for p in dict.fromkeys(pairs) if p not in results)
    if todo:
        for p, val in zip(todo, _quadrature(act, todo, k11, k12, k22, order)):
            results[p] = val
    return tuple(results[p] for p in pairs)


def duals_diag_unchecked(
    act: Activation,
    pairs: tuple[tuple[int, int], ...],
    q: Array,
    method: str = "auto",
    order: int = DEFAULT_ORDER,
) -> tuple[Array, ...]:
    """Diagonal duals E[σ^(a)(u)σ^(b)(u)], u ~ N(0, q), for each pair; no validation."""
    results: dict[tuple[int, int], Array] = {}
    for a, b in pairs:
        _check_orders(act, a, b)
        if method != "quadrature":
            out = _closed_diag(act, a, b, q)
            if out is not None:
                results[(a, b)] = jnp.broadcast_to(out, jnp.shape(q))
            elif method == "closed":
                raise _no_closed_form(act, a, b)
    todo = tuple(p for p in dict.fromkeys(pairs) if p not in results)
    if todo:
        for p, val in zip(todo, _quadrature_diag(act, todo, q, order)):
            results[p] = val
    return tuple(results[p] for p in pairs)


@functools.partial(jax.jit, static_argnames=("act", "pairs", "method", "order"))
def _duals_jit(k11: Array, k12: Array, k22: Array, *, act: Activation, pairs, method: str, order: int):
    return duals_unchecked(act, pairs, k11, k12, k22, method, order)


@functools.partial(jax.jit, static_argnames=("act", "pairs", "method", "order"))
def _duals_diag_jit(q: Array, *, act: Activation, pairs, method: str, order: int):
    return duals_diag_unchecked(act, pairs, q, method, order)


# ---------------------------------------------------------------------------
# Public dual-kernel API.


def _float_dtype(*xs: Array) -> jnp.dtype:
    dtype = jnp.result_type(*xs)
    if not jnp.issubdtype(dtype, jnp.floating):
        dtype = jnp.float64 if jax.config.read("jax_enable_x64") else jnp.float32
    return dtype


def _validate_common(act: str | Activation, orders: tuple[tuple[str, int], ...], method: str, order: int) -> Activation:
    act = get(act)
    for name, value in orders:
        check_positive_int(name, value, allow_zero=True)
    check_choice("method", method, METHODS)
    check_positive_int("order", order)
    if order > MAX_ORDER:
        raise ValueError(f"order must be <= {MAX_ORDER} (Gauss–Hermite nodes per dimension), got {order}")
    return act


def _validate_covariances(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array, Array]:
    arrs = []
    for name, k in (("k11", k11), ("k12", k12), ("k22", k22)):
        if not hasattr(k, "shape"):
            k = np.asarray(k)
        if not is_traced(k):  # (check_array cannot inspect tracers)
            check_array(name, k)
        arrs.append(k)
    try:
        np.broadcast_shapes(*(np.shape(k) for k in arrs))
    except ValueError:
        raise ValueError(
            "k11, k12, k22 must have broadcastable shapes, got "
            f"{tuple(np.shape(arrs[0]))}, {tuple(np.shape(arrs[1]))}, {tuple(np.shape(arrs[2]))}"
        ) from None
    dtype = _float_dtype(*arrs)
    k11, k12, k22 = (jnp.asarray(k, dtype) for k in arrs)
    if not any(is_traced(k) for k in (k11, k12, k22)):
        n11, n12, n22 = (np.asarray(k, np.float64) for k in (k11, k12, k22))
        for name, k in (("k11", n11), ("k22", n22)):
            if np.any(k < 0):
                raise ValueError(f"{name} is a variance and must be >= 0, got minimum {k.min()}")
        bound = np.sqrt(n11 * n22)
        tol = 1e-4 * bound + 1e-12
        if np.any(np.abs(n12) > bound + tol):
            raise ValueError(
                "k12 must satisfy |k12| <= sqrt(k11 k22) (a valid 2x2 covariance); "
                f"worst violation |k12| - sqrt(k11 k22) = {float(np.max(np.abs(n12) - bound))}"
            )
    return k11, k12, k22


def duals(
    act: str | Activation,
    k11: Array,
    k12: Array,
    k22: Array,
    pairs: tuple[tuple[int, int], ...] = ((0, 0), (1, 1)),
    *,
    method: str = "auto",
    order: int = DEFAULT_ORDER,
) -> tuple[Array, ...]:
    """E[σ^(a)(u) σ^(b)(v)] for every (a, b) in ``pairs``, in one jitted pass.

    Pairs without a closed form share one quadrature pass (cheaper than
    separate :func:`dual` calls). Arguments and errors as in :func:`dual`.
    """
    act = _validate_common(act, (), method, order)
    try:
        pairs = tuple(
            (check_positive_int("a", a, allow_zero=True), check_positive_int("b", b, allow_zero=True))
            for a, b in pairs
        )
    except (TypeError, ValueError) as err:
        if "must be" in str(err):
            raise
        raise ValueError(f"pairs must be a sequence of (a, b) derivative orders, got {pairs!r}") from None
    if not pairs:
        raise ValueError("pairs must contain at least one (a, b) pair")
    k11, k12, k22 = _validate_covariances(k11, k12, k22)
    one = jnp.ones((), k11.dtype)
    for a, b in pairs:
        _check_orders(act, a, b)
        if method == "closed" and _closed(act, a, b, one, one, one) is None:
            raise _no_closed_form(act, a, b)
    return _duals_jit(k11, k12, k22, act=act, pairs=pairs, method=method, order=order)


def dual(
    act: str | Activation,
    k11: Array,
    k12: Array,
    k22: Array,
    a: int = 0,
    b: int = 0,
    *,
    method: str = "auto",
    order: int = DEFAULT_ORDER,
) -> Array:
    """Dual kernel E[σ^(a)(u) σ^(b)(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]).

    Args:
      act: activation name or :class:`Activation`.
      k11, k12, k22: broadcastable arrays (any shape) of variances k11, k22 >= 0
        and covariance k12 with |k12| <= √(k11 k22) (the correlation is clipped
        to [−1, 1] to absorb rounding; gross violations raise).
      a, b: derivative orders of σ applied to u and v (0 = σ itself).
      method: ``"auto"`` (closed form if known, else quadrature), ``"closed"``
        (raise if no closed form), ``"quadrature"`` (always Gauss–Hermite).
      order: Gauss–Hermite nodes per dimension (cost ∝ order²).

    Returns:
      Array of the broadcast shape in the promoted float dtype (float64 with x64
      on for float inputs). Units: those of σ^(a)σ^(b).

    Raises:
      ValueError: unknown activation/method, negative orders, non-finite or
        non-broadcastable inputs, invalid covariances, orders a, b >= 2 for the
        relu family (σ'' is a delta), ``method="closed"`` without a closed form.
    """
    act = _validate_common(act, (("a", a), ("b", b)), method, order)
    return duals(act, k11, k12, k22, ((a, b),), method=method, order=order)[0]


def dual_pair(
    act: str | Activation,
    k11: Array,
    k12: Array,
    k22: Array,
    *,
    method: str = "auto",
    order: int = DEFAULT_ORDER,
) -> tuple[Array, Array]:
    """(⟨σσ⟩, ⟨σ'σ'⟩) = (E[σ(u)σ(v)], E[σ'(u)σ'(v)]) in one pass; see :func:`dual`."""
    out = duals(act, k11, k12, k22, ((0, 0), (1, 1)), method=method, order=order)
    return out[0], out[1]


def dual_diag(
    act: str | Activation,
    q: Array,
    a: int = 0,
    b: int = 0,
    *,
    method: str = "auto",
    order: int = DEFAULT_ORDER,
) -> Array:
    """Diagonal dual kernel E[σ^(a)(u) σ^(b)(u)] for u ~ N(0, q), elementwise over ``q``.

    Equal to ``dual(act, q, q, q, a, b)`` but evaluated without the correlation
    (exact at ρ = 1, 1-D quadrature of ``order`` nodes, smooth under autodiff).
    """
    act = _validate_common(act, (("a", a), ("b", b)), method, order)
    if not hasattr(q, "shape"):
        q = np.asarray(q)
    if not is_traced(q):
        check_array("q", q)
    q = jnp.asarray(q, _float_dtype(q))
    if not is_traced(q) and bool(np.any(np.asarray(q) < 0)):
        raise ValueError(f"q is a variance and must be >= 0, got minimum {float(np.min(np.asarray(q)))}")
    _check_orders(act, a, b)
    if method == "closed" and _closed_diag(act, a, b, jnp.ones((), q.dtype)) is None:
        raise _no_closed_form(act, a, b)
    return _duals_diag_jit(q, act=act, pairs=((a, b),), method=method, order=order)[0]


def has_closed_form(act: str | Activation, a: int = 0, b: int = 0) -> bool:
    """Whether :func:`dual` evaluates E[σ^(a)σ^(b)] in closed form (else quadrature)."""
    act = _validate_common(act, (("a", a), ("b", b)), "auto", DEFAULT_ORDER)
    _check_orders(act, a, b)
    one = jnp.ones(())
    return _closed(act, a, b, one, 0.5 * one, one) is not None


# ---------------------------------------------------------------------------
# Built-in activations.


def _simple(name: str, fn: Callable[[Array], Array], **kwargs) -> None:
    made = Activation(name=name, fn=fn, **kwargs)
    _REGISTRY[name] = lambda: made


def _relu_fn(x: Array) -> Array:
    return jnp.maximum(x, 0.0)


def _leaky_relu(alpha: float = 0.01) -> Activation:
    a = check_real("alpha", alpha)
    return Activation(
        name=f"leaky_relu({a!r})",
        fn=lambda x: jnp.where(x >= 0, x, a * x),
        params=(("alpha", a),),
        dual_fn=_leaky_dual_fn(a),
        diag_fn=_leaky_diag_fn(a),
        max_dual_order=1,
        layer=_leaky_layer(a),
    )


def _gelu(approximate: bool = False) -> Activation:
    suffix = "(tanh)" if approximate else ""
    return Activation(
        name=f"gelu{suffix}",
        fn=lambda x: jax.nn.gelu(x, approximate=approximate),
        params=(("approximate", bool(approximate)),),
        dual_fn=None if approximate else _gelu_dual,
    )


_simple("erf", jax.scipy.special.erf, dual_fn=_erf_dual, layer=_ERF_LAYER)
_simple(
    "relu", _relu_fn, dual_fn=_leaky_dual_fn(0.0), diag_fn=_leaky_diag_fn(0.0), max_dual_order=1,
    layer=_leaky_layer(0.0),
)
_simple(
    "abs", jnp.abs, dual_fn=_leaky_dual_fn(-1.0), diag_fn=_leaky_diag_fn(-1.0), max_dual_order=1,
    layer=_leaky_layer(-1.0),
)
_simple("identity", lambda x: x, dual_fn=_identity_dual)
_simple("tanh", jnp.tanh)
_simple("swish", jax.nn.silu)
_simple("silu", jax.nn.silu)
_simple("softplus", jax.nn.softplus)
_simple("sigmoid", jax.nn.sigmoid)
_simple("sin", jnp.sin, dual_fn=_sin_dual, diag_fn=_sin_diag)
_REGISTRY["leaky_relu"] = _leaky_relu
_REGISTRY["gelu"] = _gelu
