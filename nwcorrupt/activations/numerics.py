"""Elementwise numerical helpers of the dual kernels (broadcasting, autodiff-safe): safe roots, the
correlation ρ, a fast accurate arcsin/arccos, partial derivatives and Price's theorem."""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["safe_rsqrt", "safe_sqrt", "correlation", "asin_acos", "asin", "acos", "partial_derivative",
           "swap_arguments", "price"]

Array = jax.Array

# ---------------------------------------------------------------------------
# Numerical helpers (all elementwise, broadcasting, autodiff-safe).


def safe_rsqrt(k: Array) -> Array:
    """1/√k for k > 0 and 0 for k <= 0, with finite derivatives everywhere."""
    pos = k > 0
    return jnp.where(pos, jax.lax.rsqrt(jnp.where(pos, k, 1.0)), 0.0)


def safe_sqrt(k: Array) -> Array:
    """√max(k, 0) whose derivative at 0 is 0 instead of inf (avoids NaN tangents)."""
    pos = k > 0
    return jnp.where(pos, jnp.sqrt(jnp.where(pos, k, 1.0)), 0.0)


def correlation(k11: Array, k12: Array, k22: Array) -> Array:
    """ρ = k12/√(k11 k22) clipped to [−1, 1]; 0 where a variance vanishes.

    Computed as one correctly rounded sqrt and division, so ρ = ±1 exactly when
    k12 = ±k11 = ±k22 (√(q²) = q in IEEE arithmetic): the arc-cosine kernels have
    a √(1 − ρ) singularity there, where an error of one ulp in ρ would cost ~1e-8
    (float64) or ~3e-4 (float32). Falls back to √k11 √k22 if k11 k22 overflows.
    """
    prod = k11 * k22
    den = jnp.where(prod < jnp.inf, jnp.sqrt(jnp.where(prod > 0, prod, 1.0)), safe_sqrt(k11) * safe_sqrt(k22))
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


def asin_acos(x: Array) -> tuple[Array, Array]:
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


def asin(x: Array) -> Array:
    return asin_acos(x)[0]


def acos(x: Array) -> Array:
    return asin_acos(x)[1]


def partial_derivative(h: Callable[..., Array], idx: int, scale: float = 1.0) -> Callable[..., Array]:
    """Elementwise partial derivative of h(k11, k12, k22) in argument ``idx`` (times scale)."""

    def dh(k11: Array, k12: Array, k22: Array) -> Array:
        args = (k11, k12, k22)
        tangents = tuple(jnp.ones_like(x) if i == idx else jnp.zeros_like(x) for i, x in enumerate(args))
        return scale * jax.jvp(h, args, tangents)[1]

    return dh


def swap_arguments(h: Callable[..., Array]) -> Callable[..., Array]:
    """(k11, k12, k22) -> h(k22, k12, k11): exchanges the roles of u and v."""
    return lambda k11, k12, k22: h(k22, k12, k11)


def price(
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
        h = G if a > b else swap_arguments(G)
    else:
        h = F
    var_idx = 0 if a > b else 2
    for _ in range(j // 2):
        h = partial_derivative(h, var_idx, 2.0)
    for _ in range(m):
        h = partial_derivative(h, 1)
    return h


