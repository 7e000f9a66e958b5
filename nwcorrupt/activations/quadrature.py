"""Gauss–Hermite quadrature of dual kernels with the symmetric square root of the covariance."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt.activations.numerics import correlation, safe_rsqrt, safe_sqrt
from nwcorrupt.activations.registry import Activation

__all__ = ["gauss_hermite", "quadrature", "quadrature_diag"]

Array = jax.Array

# ---------------------------------------------------------------------------
# Gauss–Hermite quadrature.


@functools.lru_cache(maxsize=None)
def gauss_hermite(order: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
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
    x, w = gauss_hermite(order)
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


def quadrature(
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
    rho = correlation(k11, k12, k22)
    s1, s2 = safe_sqrt(k11), safe_sqrt(k22)
    cov = rho * (s1 * s2)
    s = (s1 * s2) * safe_sqrt((1.0 - rho) * (1.0 + rho))
    inv_t = safe_rsqrt(k11 + k22 + 2.0 * s)
    return _quadrature_core(act, pairs, (k11 + s) * inv_t, cov * inv_t, (k22 + s) * inv_t, shape, dtype, order)


def quadrature_diag(act: Activation, pairs: tuple[tuple[int, int], ...], q: Array, order: int) -> tuple[Array, ...]:
    """E[σ^(a)(u)σ^(b)(u)], u ~ N(0, q): the 2-D rule of :func:`quadrature` at ρ = 1.

    (u = √(q/2)(z1 + z2); the same rule as the off-diagonal entries, so a
    symmetric kernel's diagonal is consistent with its neighbours, and more
    accurate than a 1-D rule of the same order.)
    """
    h = safe_sqrt(0.5 * q)
    return _quadrature_core(act, pairs, h, h, h, jnp.shape(q), q.dtype, order)


