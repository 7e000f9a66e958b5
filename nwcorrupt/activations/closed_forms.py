"""Closed-form dual kernels of the built-in activations (identity, erf, GELU, sin, the relu family) and
their fused one-layer forms (:class:`~nwcorrupt.activations.LayerDuals`); formulas in
:mod:`nwcorrupt.activations`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from nwcorrupt.activations.numerics import acos, asin, correlation, price, safe_rsqrt, safe_sqrt
from nwcorrupt.activations.registry import DiagFn, DualFn, LayerDuals

__all__ = ["identity_dual", "erf_dual", "gelu_dual", "sin_dual", "sin_diag", "leaky_dual_fn", "leaky_diag_fn",
           "leaky_layer", "ERF_LAYER"]

Array = jax.Array

# ---------------------------------------------------------------------------
# Closed forms.

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)


def identity_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
    if (a, b) == (0, 0):
        return k12
    if (a, b) == (1, 1):
        return jnp.ones_like(k12)
    return jnp.zeros_like(k12)


def _erf_F(k11: Array, k12: Array, k22: Array) -> Array:
    return (2.0 / math.pi) * asin(2.0 * k12 * jax.lax.rsqrt(1.0 + 2.0 * k11) * jax.lax.rsqrt(1.0 + 2.0 * k22))


def erf_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
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
    return price(a, b, _erf_F, None)(k11, k12, k22)  # type: ignore[misc]


def _gelu_terms(k11: Array, k12: Array, k22: Array) -> tuple[Array, Array, Array, Array]:
    P = (1.0 + k11) * (1.0 + k22)
    delta = P - k12 * k12
    r = k12 * jax.lax.rsqrt(P)
    N = k11 * k22 + k12 * k12 * (1.0 - k11 * k22) / P
    return P, delta, r, N


def _gelu_F(k11: Array, k12: Array, k22: Array) -> Array:
    """E[gelu(u) gelu(v)] (exact GELU x Φ(x))."""
    _, delta, r, N = _gelu_terms(k11, k12, k22)
    return 0.25 * k12 + k12 * asin(r) / (2.0 * math.pi) + N * jax.lax.rsqrt(delta) / (2.0 * math.pi)


def _gelu_G(k11: Array, k12: Array, k22: Array) -> Array:
    """E[gelu'(u) gelu(v)]."""
    s11 = jax.lax.rsqrt(1.0 + k11)
    return (0.5 * _INV_SQRT_2PI) * (k12 * s11 + k22 * jax.lax.rsqrt(1.0 + k22) + k12 * s11 * s11 * s11)


def gelu_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
    if (a, b) == (0, 0):
        return _gelu_F(k11, k12, k22)
    if (a, b) == (1, 1):
        P, delta, r, N = _gelu_terms(k11, k12, k22)
        c = (1.0 - k11 * k22) / P
        inv = jax.lax.rsqrt(delta)
        return 0.25 + asin(r) / (2.0 * math.pi) + k12 * inv / (2.0 * math.pi) * (1.0 + 2.0 * c + N / delta)
    if (a, b) == (1, 0):
        return _gelu_G(k11, k12, k22)
    if (a, b) == (0, 1):
        return _gelu_G(k22, k12, k11)
    return price(a, b, _gelu_F, _gelu_G)(k11, k12, k22)  # type: ignore[misc]


_COS_QUARTER = (1.0, 0.0, -1.0, 0.0)  # cos(nπ/2) for n mod 4


def sin_dual(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array:
    # sin^(a)(x) = sin(x + aπ/2); product-to-sum and E[cos(w + c)] = e^{-Var w/2} cos c.
    s = k11 + k22
    out = jnp.zeros_like(s + k12)
    c_minus, c_plus = _COS_QUARTER[(a - b) % 4], _COS_QUARTER[(a + b) % 4]
    if c_minus:
        out = out + (0.5 * c_minus) * jnp.exp(-0.5 * (s - 2.0 * k12))
    if c_plus:
        out = out - (0.5 * c_plus) * jnp.exp(-0.5 * (s + 2.0 * k12))
    return out


def sin_diag(a: int, b: int, q: Array) -> Array:
    c_minus, c_plus = _COS_QUARTER[(a - b) % 4], _COS_QUARTER[(a + b) % 4]
    return 0.5 * c_minus - (0.5 * c_plus) * jnp.exp(-2.0 * q)


def leaky_dual_fn(alpha: float) -> DualFn:
    """Dual kernels of σ(x) = α x + (1 − α) relu(x) for orders a, b ≤ 1."""
    beta = 1.0 - alpha

    def dual_fn(a: int, b: int, k11: Array, k12: Array, k22: Array) -> Array | None:
        if a > 1 or b > 1:
            return None
        rho = correlation(k11, k12, k22)
        if (a, b) == (0, 1) or (a, b) == (1, 0):
            s = safe_sqrt(k11 if a == 0 else k22)
            return ((1.0 - alpha * alpha) * 0.5 * _INV_SQRT_2PI) * s * (1.0 + rho)
        theta = acos(rho)
        if (a, b) == (1, 1):
            out = (beta * beta / (2.0 * math.pi)) * (math.pi - theta)
            return out + alpha if alpha else out
        sin_theta = jnp.sqrt((1.0 - rho) * (1.0 + rho))
        r00 = (safe_sqrt(k11) * safe_sqrt(k22)) * (sin_theta + (math.pi - theta) * rho) / (2.0 * math.pi)
        out = (beta * beta) * r00
        return out + alpha * k12 if alpha else out

    return dual_fn


def leaky_diag_fn(alpha: float) -> DiagFn:
    beta = 1.0 - alpha

    def diag_fn(a: int, b: int, q: Array) -> Array | None:
        if (a, b) == (0, 0):
            return (alpha + 0.5 * beta * beta) * q
        if (a, b) == (1, 1):
            return jnp.full_like(q, 0.5 * (1.0 + alpha * alpha))
        if (a, b) in ((0, 1), (1, 0)):
            return ((1.0 - alpha * alpha) * _INV_SQRT_2PI) * safe_sqrt(q)
        return None

    return diag_fn


def _sqrt_rsqrt_point(q: Array) -> tuple[Array, Array]:
    """(√q, 1/√q) per point, both 0 where q <= 0 (so ρ = 0 against a zero-variance point)."""
    return safe_sqrt(q), safe_rsqrt(q)


def leaky_layer(alpha: float) -> LayerDuals:
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
        pmt = keep(asin(rho) + 0.5 * math.pi)  # π − θ
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
    ss = (2.0 / math.pi) * asin(u)
    if not want_dd:
        return ss, None
    return ss, (4.0 / math.pi) * cc * jax.lax.rsqrt((1.0 - u) * (1.0 + u))


ERF_LAYER = LayerDuals(point=_erf_point, pair=_erf_pair)


