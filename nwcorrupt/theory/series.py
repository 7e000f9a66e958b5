"""Taylor series in ε = 1 − p of the mean-field predictor by automatic differentiation.

At ε = 0 every off-diagonal train pair sits at the same overlaps (μ₂, μ², μ₂) and
every test-train pair of a test point at (⟨x*, x*⟩, μ x̄*, μ₂). :func:`kernel_series`
takes derivative tensors of the scalar kernel map
(:func:`nwcorrupt.theory.pair_kernel`, nested ``jax.jacfwd``) there and composes them
with the overlap polynomials (:func:`nwcorrupt.theory.overlap_poly`);
:func:`series_coefficients` expands the solve around the exchangeable K0;
:func:`taylor` returns the predictor's coefficients (orders 0 and 1 by default through
the O((N + M) d C) structured path of :mod:`nwcorrupt.theory.first_order`).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_choice, check_positive_int
from nwcorrupt.theory.first_order import PureNoise, first_order
from nwcorrupt.theory.meanfield import as_targets, check_ridge
from nwcorrupt.theory.overlaps import overlap_poly
from nwcorrupt.theory.recursion import (
    SERIES_QUAD_ORDER,
    check_arch_get,
    check_quad_order,
    diag_kernel,
    pair_kernel,
    split_hyper,
)

__all__ = [
    "KernelSeries",
    "kernel_series",
    "leading_decision",
    "series_coefficients",
    "series_sum",
    "TAYLOR_MAX_ORDER",
    "check_series_order",
    "taylor",
    "taylor_predict",
]

#: Largest Taylor order computed unless the caller raises ``max_order``: the dense series differentiates
#: the kernel map ``order`` times by nested ``jax.jacfwd`` (3^order directions) and composes the tensors
#: in a traced program that grows combinatorially, so compile and run time grow about tenfold per order
#: (measured on digits, depth-3 ReLU MLP, N = 50, M = 20, 2-core CPU under load: 4, 22, 37 and 390 s for
#: orders 1 to 4).
TAYLOR_MAX_ORDER = 4


def check_series_order(order, max_order: int = TAYLOR_MAX_ORDER) -> int:
    """``order`` as an int in [0, max_order]; above it a ValueError states the cost and how to allow it."""
    order = check_positive_int("order", order, allow_zero=True)
    max_order = check_positive_int("max_order", max_order, allow_zero=True)
    if order > max_order:
        raise ValueError(
            f"order={order} exceeds max_order={max_order}: the cost of the Taylor series grows about tenfold per "
            "order (4, 22, 37, 390 s for orders 1-4 on digits with N = 50 on a 2-core CPU) and one compiled "
            f"computation cannot be interrupted; pass max_order={order} to run it anyway"
        )
    return order


def _derivative_tensors(fun, base, order: int) -> list:
    """[D^m fun(base) for m = 0..order], each of shape (k,)*m (fun: R^k -> R), by nested jacfwd."""
    out, f = [], fun
    for m in range(order + 1):
        out.append(f(base))
        f = jax.jacfwd(f)
    return out


def _compose_series(tensors: list, v, order: int):
    """Taylor coefficients (order + 1, *S) of F(base + v(ε)) given the derivative tensors of F at base.

    Args:
      tensors: [D^m F] for m = 0..order; D^m F has shape (k,)*m + B with B
        broadcastable against S (per-entry base points).
      v: (order + 1, k, *S) polynomial coefficients of the displacement, v[0] = 0.
    """
    ns = v.ndim - 2
    tensors = [
        jnp.reshape(t, t.shape[:m] + (1,) * (ns - (t.ndim - m)) + t.shape[m:]) for m, t in enumerate(tensors)
    ]
    shape = jnp.broadcast_shapes(jnp.shape(tensors[0]), v.shape[2:])
    out = [jnp.broadcast_to(tensors[0], shape)] + [jnp.zeros(shape, v.dtype) for _ in range(order)]
    for m in range(1, order + 1):
        # state[i]: coefficient of ε^i of D^m F[·, ..., ·] with r free slots left
        state = {0: tensors[m]}
        for r in range(m, 0, -1):
            new: dict = {}
            for i, s in state.items():
                for l in range(1, order + 1 - i):
                    # contract the last free slot (axis r - 1) with v[l]
                    vl = v[l].reshape((1,) * (r - 1) + v[l].shape)
                    term = jnp.sum(s * vl, axis=r - 1)
                    new[i + l] = new.get(i + l, 0) + term
            state = new
        fact = math.factorial(m)
        for i, s in state.items():
            out[i] = out[i] + s / fact
    return jnp.stack(out)


@dataclasses.dataclass(frozen=True)
class KernelSeries:
    """Taylor coefficients in ε of the output kernels (jnp arrays).

    Attributes:
      train: (order + 1, N, N) of K(X̃, X̃) (diagonal included, no ridge).
      test_train: (order + 1, M, N) of K(x*, X̃).
    """

    train: jax.Array
    test_train: jax.Array


def kernel_series(arch, noise, x_train, x_test, *, order: int = 1, get: str = "ntk",
                  quad_order: int = SERIES_QUAD_ORDER, test_chunk: int = 1024,
                  max_order: int = TAYLOR_MAX_ORDER) -> KernelSeries:
    """Taylor coefficients of the mean-field kernels in ε by automatic differentiation.

    Every off-diagonal train pair sits at the same pure-noise point (μ₂, μ², μ₂)
    at ε = 0, and every test-train pair of test point t at (⟨x*,x*⟩, μ x̄*, μ₂):
    derivative tensors of the scalar kernel map are taken there (nested
    ``jax.jacfwd``) and composed with the overlap polynomials entry by entry.
    Cost O((N² + M N)·3^order) plus O(M·quad_order²·3^order) kernel evaluations, and a
    compiled program whose size grows combinatorially with the order (see
    :data:`TAYLOR_MAX_ORDER`; orders above ``max_order`` are refused before any work);
    test points are processed in chunks of ``test_chunk`` to bound memory.
    """
    check_arch_get(arch, get)
    order = check_series_order(order, max_order)
    quad_order = check_quad_order(quad_order)
    chunk = check_positive_int("test_chunk", test_chunk)
    poly = overlap_poly(noise, x_train, x_test)
    dt = jnp.result_type(float)
    moments = jnp.asarray([poly.mu, poly.mu2], dt)
    canonical, hyper = split_hyper(arch)
    kw = dict(arch=canonical, get=get, order=order, quad_order=quad_order)
    pd = jnp.asarray(poly.train_diag, dt)
    train = _train_series_jit(moments, jnp.asarray(poly.train, dt), pd, hyper, **kw)
    m = poly.test_train.shape[1]
    parts = [
        _test_series_jit(moments, pd, jnp.asarray(poly.test_train[:, i:i + chunk], dt),
                         jnp.asarray(poly.test_diag[i:i + chunk], dt), hyper, **kw)
        for i in range(0, m, chunk)
    ]
    return KernelSeries(train=train, test_train=jnp.concatenate(parts, axis=1))


def _pair_fn(arch, get, quad_order, hyper):
    return lambda gvec: pair_kernel(arch, gvec[0], gvec[1], gvec[2], get=get, quad_order=quad_order, hyper=hyper)


_STATIC = ("arch", "get", "order", "quad_order")


@functools.partial(jax.jit, static_argnames=_STATIC)
def _train_series_jit(moments, pt, pd, hyper, *, arch, get, order, quad_order):
    dt = pt.dtype
    mu, mu2 = moments[0], moments[1]
    n = pt.shape[1]
    pair = _pair_fn(arch, get, quad_order, hyper)

    def diag(gvec):
        return diag_kernel(arch, gvec[0], get=get, quad_order=quad_order, hyper=hyper)

    base_off = jnp.stack([mu2, mu * mu, mu2])
    tens = _derivative_tensors(pair, base_off, order)
    pad = [jnp.zeros((n, n), dt)] * max(0, order + 1 - 3)
    v_off = jnp.stack(
        [
            jnp.stack([jnp.broadcast_to(pd[j][:, None], (n, n)), pt[j], jnp.broadcast_to(pd[j][None, :], (n, n))])
            if j > 0 else jnp.zeros((3, n, n), dt)
            for j in range(min(order, 2) + 1)
        ]
        + [jnp.zeros((3, n, n), dt)] * len(pad)
    )
    off = _compose_series(tens, v_off, order)
    tens_d = _derivative_tensors(diag, jnp.stack([mu2]), order)
    v_d = jnp.stack([pd[j][None] if 0 < j <= 2 else jnp.zeros((1, n), dt) for j in range(order + 1)])
    dg = _compose_series(tens_d, v_d, order)  # (order + 1, N)
    eye = jnp.eye(n, dtype=bool)
    return jnp.where(eye[None], dg[:, None, :], off)


@functools.partial(jax.jit, static_argnames=_STATIC)
def _test_series_jit(moments, pd, ptt, ptd, hyper, *, arch, get, order, quad_order):
    dt = pd.dtype
    mu2 = moments[1]
    n = pd.shape[1]
    pair = _pair_fn(arch, get, quad_order, hyper)
    m = ptt.shape[1]
    bases = jnp.stack([ptd, ptt[0][:, 0], jnp.full((m,), mu2, dt)], axis=1)  # (M, 3)
    tens_t = jax.vmap(lambda b: _derivative_tensors(pair, b, order))(bases)
    # move the test axis to the end and add a train axis: (3,)*k + (M, 1)
    tens_t = [jnp.moveaxis(t, 0, -1)[..., None] for t in tens_t]
    zeros = jnp.zeros((m, n), dt)
    v_t = jnp.stack(
        [jnp.stack([zeros, ptt[1], jnp.broadcast_to(pd[j][None, :], (m, n))]) if j == 1
         else jnp.stack([zeros, zeros, jnp.broadcast_to(pd[j][None, :], (m, n))]) if j == 2
         else jnp.zeros((3, m, n), dt)
         for j in range(order + 1)]
    )
    return _compose_series(tens_t, v_t, order)


def _pure_noise_from(train0, reg: float) -> PureNoise:
    k = np.asarray(train0, dtype=np.float64)
    n = k.shape[0]
    td = float(k[0, 0]) + reg
    to = float(k[0, 1]) if n > 1 else 0.0
    if not np.allclose(np.diagonal(k), k[0, 0], rtol=1e-10, atol=0) or (
        n > 1 and not np.allclose(k[~np.eye(n, dtype=bool)], to, rtol=1e-10, atol=1e-300)
    ):
        raise AssertionError("the ε = 0 train kernel is not exchangeable; this is a bug")
    return PureNoise(td, to, n).check_invertible()


def series_coefficients(series: KernelSeries, y, *, ridge: float = 0.0):
    """Taylor coefficients (order + 1, M, C) of k*(ε)ᵀ K(ε)⁻¹ Y from kernel coefficients.

    Uses B = K⁻¹Y = Σ ε^j B_j with B_0 = K0⁻¹Y, B_j = −K0⁻¹ Σ_{i=1..j} K_i B_{j−i},
    where K0 = θ_o 11ᵀ + Δ I (+ the absolute ``ridge`` on the diagonal) is inverted by
    Sherman–Morrison (no N×N solve). ``y``: (N, C) targets.
    """
    reg = check_ridge(ridge)
    pn = _pure_noise_from(series.train[0], reg)
    y = jnp.asarray(y, series.train.dtype)
    order = series.train.shape[0] - 1
    bs = [pn.solve(y)]
    for j in range(1, order + 1):
        acc = sum(series.train[i] @ bs[j - i] for i in range(1, j + 1))
        bs.append(-pn.solve(acc))
    f = [sum(series.test_train[i] @ bs[j - i] for i in range(j + 1)) for j in range(order + 1)]
    return jnp.stack(f)


def taylor(
    arch,
    noise,
    x_train,
    y_train,
    x_test,
    *,
    order: int = 1,
    get: str = "ntk",
    ridge: float = 0.0,
    num_classes: int | None = None,
    quad_order: int = SERIES_QUAD_ORDER,
    method: str = "auto",
    max_order: int = TAYLOR_MAX_ORDER,
) -> np.ndarray:
    """Taylor coefficients in ε = 1 − p of the mean-field predictor, (order + 1, M, C) float64.

    f̄(x*; ε) = Σ_j ε^j coeffs[j] + O(ε^{order+1}) around pure noise (ε = 0),
    computed by automatic differentiation of the kernel recursion. Arguments as in
    :func:`nwcorrupt.theory.meanfield_predict` (``ridge`` absolute), and

      method: ``"structured"`` (orders 0 and 1 only): the kernel's value and gradient
        at the pure-noise points by ``jax.jacfwd``, combined through the exchangeable
        structure (Sherman–Morrison for K0, rank-two K1, test–train products through
        Xᵀ A): cost O((N + M) d C), memory O((N + M) d), no N × N array.
        ``"dense"``: every order; the kernel coefficients of all N² pairs
        (:func:`kernel_series`) and the perturbation series of the solve
        (:func:`series_coefficients`): O(N² d) for the overlaps, O((N² + M N)·3^order) kernel
        evaluations, O(order² N² C) for the solve, and a compile time that grows about tenfold
        per order (:data:`TAYLOR_MAX_ORDER`).
        ``"auto"`` (default): structured for order ≤ 1, dense otherwise.
      max_order: orders above it are refused before any work (default :data:`TAYLOR_MAX_ORDER` = 4).
    """
    method = check_choice("method", method, ("auto", "structured", "dense"))
    order = check_series_order(order, max_order)
    if method == "structured" and order > 1:
        raise ValueError(f"method='structured' gives orders 0 and 1 only, got order={order}; use method='dense'")
    check_arch_get(arch, get)
    reg = check_ridge(ridge)
    n = np.shape(x_train)[0]
    y = as_targets(y_train, n, num_classes)
    if method != "dense" and order <= 1:
        fo = first_order(arch, noise, x_train, y, x_test, get=get, ridge=reg, quad_order=quad_order,
                         sensitivities="autodiff")
        return np.stack([fo.f0, fo.f1][: order + 1])
    series = kernel_series(arch, noise, x_train, x_test, order=order, get=get, quad_order=quad_order,
                           max_order=max_order)
    return np.asarray(series_coefficients(series, y, ridge=reg), dtype=np.float64)


def series_sum(coeffs, eps) -> np.ndarray:
    """Truncated sum Σ_j ε^j coeffs[j]: (M, C) for scalar ε, (E, M, C) for an (E,) array of ε."""
    c = np.asarray(coeffs, dtype=np.float64)
    e = np.asarray(eps, dtype=np.float64)
    powers = e[..., None] ** np.arange(c.shape[0])
    return np.tensordot(powers, c, axes=1)


def taylor_predict(arch, noise, x_train, y_train, x_test, eps, *, order: int = 1, **kwargs) -> np.ndarray:
    """Truncated Taylor predictor Σ_{j ≤ order} ε^j f_j (M, C) (or (E, M, C) for an array of ε)."""
    return series_sum(taylor(arch, noise, x_train, y_train, x_test, order=order, **kwargs), eps)


def leading_decision(coeffs, *, rtol: float = 1e-9) -> np.ndarray:
    """The ε → 0⁺ decision (M,) int32 of a Taylor series: lexicographic argmax over (f_0, f_1, ...).

    Classes tied in f_0 (within rtol of the row's scale, e.g. balanced classes at
    pure noise) are separated by f_1, and so on.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    alive = np.ones(c.shape[1:], dtype=bool)
    for j in range(c.shape[0]):
        vals = np.where(alive, c[j], -np.inf)
        best = vals.max(axis=1, keepdims=True)
        scale = np.max(np.abs(c[j]), axis=1, keepdims=True)
        alive &= vals >= best - rtol * scale
    return np.argmax(alive, axis=1).astype(np.int32)
