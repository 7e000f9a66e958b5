"""Mean-field theory of convolutional networks (any :mod:`nwcorrupt.stax` network) on corrupted images.

Per-pixel corruption acts on the first layer through the **pixel overlaps** P(s, s') = (1/C) Σ_c
x_α(s, c) x_β(s', c) of every pair of positions (s, s'). As for MLPs, their noise average replaces the
random ones (each pixel is corrupted independently; ε = 1 − p; μ, μ₂ the noise moments):

* two corrupted images, or two different pixels of one image:
  E[x̃_α(s) x̃_β(s')] = ε² x_α(s) x_β(s') + ε(1 − ε) μ (x_α(s) + x_β(s')) + (1 − ε)² μ²;
* the same pixel of the same image: ε x(s)² + (1 − ε) μ₂ (replacement) or
  ε² x(s)² + 2ε(1 − ε) μ x(s) + (1 − ε)² μ₂ (additive, x̃ = εx + (1 − ε)ξ);
* a clean test image against a corrupted one: x*(s) (ε x_α(s') + (1 − ε) μ).

Propagated through the network's kernel (:func:`nwcorrupt.stax.state.covariance_state`, then the
layers) they give the **exact mean-field predictor** K(x*, X̃) [K(X̃, X̃) + r I]⁻¹ Y
(:func:`conv_meanfield_predict`, absolute ridge r as in :mod:`nwcorrupt.theory`) and, by forward-mode
differentiation in ε, its first Taylor coefficients around pure noise (:func:`conv_taylor`).

**The leading-order rule** (:func:`conv_leading_rule`; derivation in docs/theory.md). For zero-mean noise
(μ = 0), balanced classes and training images of equal norm, the pure-noise training kernel is
exchangeable and the first order of the predictor in ε decides by

    argmax_c Σ_{s, s'} W_{x*}(s, s') x*(s) μ_c(s'),    W_{x*}(s, s') = ∂K(x*, x̃) / ∂P(s, s') at pure noise,

a prototype rule whose overlap is weighted pixel pair by pixel pair by the network's sensitivity to
that pair at the pure-noise point. W depends on the architecture: for an MLP (one "pixel") it is a
positive scalar and the rule is argmax ⟨x*, μ_c⟩; a convolutional network with a Flatten readout
sees only same-position products (W is diagonal: a per-pixel weighted overlap); global average pooling
couples positions up to twice the receptive field apart (W is a band in s − s': an overlap with
blurred, translation-averaged class means).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_matrix, check_probability
from nwcorrupt.arch import GET_NAMES
from nwcorrupt.stax import Layer
from nwcorrupt.stax.state import KernelState, covariance_state, pixel_eye
from nwcorrupt.theory.meanfield import as_targets, check_ridge
from nwcorrupt.theory.overlaps import noise_kind

Array = jax.Array

__all__ = [
    "conv_leading_rule",
    "conv_meanfield_kernels",
    "conv_meanfield_predict",
    "conv_taylor",
    "pixel_weights",
    "pure_noise_state",
]


def _check_layer(layer: Any) -> Layer:
    if not isinstance(layer, Layer):
        raise TypeError(f"layer must be an nwcorrupt.stax network (e.g. stax.serial(...)), got {type(layer).__name__}")
    return layer


def _check_get(get: str) -> str:
    if get not in GET_NAMES:
        raise ValueError(f"get must be one of {GET_NAMES}, got {get!r}")
    return get


def _images(name: str, x: Any, image_shape: tuple[int, ...]) -> np.ndarray:
    x = np.asarray(check_matrix(name, x), np.float64)
    shape = tuple(int(v) for v in image_shape)
    if len(shape) == 2:
        shape = shape + (1,)
    if math.prod(shape) != x.shape[1]:
        raise ValueError(f"image_shape {tuple(image_shape)} holds {math.prod(shape)} values but {name} has {x.shape[1]} features")
    return x.reshape((x.shape[0],) + shape)


def _products(a: Array, b: Array, full: bool) -> Array:
    """(1/C) Σ_c a(s, c) b(s', c) in the full (Na, Nb, H, H', W, W') or diagonal (Na, Nb, H, W) layout."""
    nd = a.ndim - 2
    letters, primes = "hwd"[:nd], "HWD"[:nd]
    if full:
        out = "ab" + "".join(x + y for x, y in zip(letters, primes))
        spec = f"a{letters}c,b{primes}c->{out}"
    else:
        spec = f"a{letters}c,b{letters}c->ab{letters}"
    return jnp.einsum(spec, a, b, precision=jax.lax.Precision.HIGHEST) / a.shape[-1]


def _self_products(a: Array, full: bool) -> Array:
    nd = a.ndim - 2
    letters, primes = "hwd"[:nd], "HWD"[:nd]
    if full:
        out = "a" + "".join(x + y for x, y in zip(letters, primes))
        spec = f"a{letters}c,a{primes}c->{out}"
    else:
        spec = f"a{letters}c,a{letters}c->a{letters}"
    return jnp.einsum(spec, a, a, precision=jax.lax.Precision.HIGHEST) / a.shape[-1]


def _pair_expand(m: Array, nd: int, which: int) -> Array:
    """Per-pixel values (N, *S) broadcast into the full pair layout at the first (0) or second (1) position."""
    idx = tuple(slice(None) if (i % 2 == which) else None for i in range(2 * nd))
    return m[(slice(None),) + idx]


def _corrupted_self(kind: str, eps: Array, mu: float, mu2: float, a: Array, full: bool) -> Array:
    """E[x̃(s) x̃(s')] of corrupted images a (N, *S, C) with themselves, in the layout ``full``."""
    nd = a.ndim - 2
    sq = jnp.mean(a * a, axis=-1)
    mean = jnp.mean(a, axis=-1)
    if kind == "replacement":
        same = eps * sq + (1 - eps) * mu2
    else:
        same = eps**2 * sq + 2 * eps * (1 - eps) * mu * mean + (1 - eps) ** 2 * mu2
    if not full:
        return same
    off = (eps**2 * _self_products(a, True)
           + eps * (1 - eps) * mu * (_pair_expand(mean, nd, 0) + _pair_expand(mean, nd, 1)) + (1 - eps) ** 2 * mu**2)
    return jnp.where(pixel_eye(a.shape[1:-1]), _pair_expand(same, nd, 0), off)


def _train_state(kind, eps, mu, mu2, a, b, same, full, want_ntk) -> KernelState:
    """Noise-averaged input state of corrupted images a (Na, *S, C) against corrupted images b."""
    nd = a.ndim - 2
    ma, mb = jnp.mean(a, axis=-1), jnp.mean(b, axis=-1)
    if full:
        ea, eb = _pair_expand(ma, nd, 0)[:, None], _pair_expand(mb, nd, 1)[None, :]
    else:
        ea, eb = ma[:, None], mb[None, :]
    g = eps**2 * _products(a, b, full) + eps * (1 - eps) * mu * (ea + eb) + (1 - eps) ** 2 * mu**2
    cov_a = _corrupted_self(kind, eps, mu, mu2, a, full)
    cov_b = _corrupted_self(kind, eps, mu, mu2, b, full)
    if same is not None:  # a pixel with itself: the self value
        mask = same.reshape(same.shape + (1,) * (g.ndim - 2))
        g = jnp.where(mask, cov_a[:, None], g)
    return covariance_state(g, cov_a, cov_b, tuple(a.shape[1:]), full, want_ntk, same)


def _test_state(kind, eps, mu, mu2, t, b, full, want_ntk) -> KernelState:
    """Noise-averaged input state of clean images t against corrupted images b."""
    nd = t.ndim - 2
    mt = jnp.mean(t, axis=-1)
    et = _pair_expand(mt, nd, 0)[:, None] if full else mt[:, None]
    g = eps * _products(t, b, full) + (1 - eps) * mu * et
    return covariance_state(g, _self_products(t, full), _corrupted_self(kind, eps, mu, mu2, b, full),
                            tuple(t.shape[1:]), full, want_ntk, None)


@functools.partial(jax.jit, static_argnames=("spec", "kind", "mu", "mu2", "full", "get", "symmetric", "test"))
def _block(eps, a, b, same_rows, same_cols, *, spec, kind, mu, mu2, full, get, symmetric, test):
    want_ntk = get == "ntk"
    if test:
        state = _test_state(kind, eps, mu, mu2, a, b, full, want_ntk)
    else:
        same = (same_rows[:, None] == same_cols[None, :]) if symmetric else None
        state = _train_state(kind, eps, mu, mu2, a, b, same, full, want_ntk)
    out = spec.transform(state)
    return out.ntk if want_ntk else out.nngp


@functools.partial(jax.jit, static_argnames=("order", "spec", "kind", "mu", "mu2", "full", "get", "symmetric", "test"))
def _series_block(eps, a, b, rows, cols, order, **static):
    """[K, dK/dε, ½ d²K/dε²][: order + 1] of one block at ε (nested forward-mode derivatives), compiled once
    per block shape (jvp of a jitted function outside jit would be traced and compiled again at every call)."""

    def f(e):
        return _block(e, a, b, rows, cols, **static)

    def d1(e):
        return jax.jvp(f, (e,), (jnp.ones_like(e),))[1]

    out = [f(eps)]
    if order >= 1:
        out.append(d1(eps))
    if order >= 2:
        out.append(0.5 * jax.jvp(d1, (eps,), (jnp.ones_like(eps),))[1])
    return out


def _pad_rows(x: np.ndarray, block: int) -> np.ndarray:
    """``x`` with its last row repeated up to a multiple of ``block`` rows."""
    extra = -x.shape[0] % block
    return np.concatenate([x, np.repeat(x[-1:], extra, axis=0)]) if extra else x


def _kernel_pair(layer: Layer, kind, mu, mu2, eps, xa, xb, *, get, test, symmetric, block, order):
    """Coefficients [K, K₁, K₂][: order + 1] (na, nb) of the kernel's expansion in ε around ``eps``."""
    spec = layer.spec
    out_shape = spec.output_shape(tuple(xa.shape[1:]))
    if isinstance(out_shape, list) or len(out_shape) != 1:
        raise ValueError(f"the network must end in one vector per example, got per-example output shape {out_shape}")
    full = bool(spec.input_full(False))
    na, nb = xa.shape[0], xb.shape[0]
    out = [np.zeros((na, nb)) for _ in range(order + 1)]
    e = jnp.asarray(eps, jnp.float64)
    static = dict(spec=spec, kind=kind, mu=mu, mu2=mu2, full=full, get=get, symmetric=symmetric, test=test)
    # every block has the same shape (the last images repeated to fill it), so the derivative program
    # compiles once per call, not once per distinct edge-block shape
    pa, pb = _pad_rows(xa, block), _pad_rows(xb, block)
    for i in range(0, na, block):
        for j in range(0, nb, block):
            if symmetric and j < i:
                continue
            a, b = jnp.asarray(pa[i : i + block]), jnp.asarray(pb[j : j + block])
            rows, cols = jnp.arange(i, i + block), jnp.arange(j, j + block)
            ra, rb = min(block, na - i), min(block, nb - j)
            for dst, val in zip(out, _series_block(e, a, b, rows, cols, order, **static)):
                dst[i : i + ra, j : j + rb] = np.asarray(val)[:ra, :rb]
    if symmetric:
        upper = np.triu(np.ones((na, nb), bool))
        out = [np.where(upper, k, k.T) for k in out]
        out = [0.5 * (k + k.T) for k in out]
    return out


def _setup(layer, noise, x_train, x_test, image_shape, get):
    _check_layer(layer)
    kind = noise_kind(noise)
    _check_get(get)
    mu, mu2 = (float(m) for m in noise.moments)
    return kind, mu, mu2, _images("x_train", x_train, image_shape), _images("x_test", x_test, image_shape)


def conv_meanfield_kernels(
    layer: Layer, noise, p: float, x_train, x_test, image_shape, *, get: str = "ntk", block: int = 16,
    order: int = 0,
) -> tuple[list, list]:
    """Mean-field kernels at p and their Taylor coefficients in ε = 1 − p, float64 (x64 must be enabled).

    Returns (train, test): lists [K, K₁, ..., K_order] of (N, N) and (M, N) arrays, K_j the coefficient
    of (ε − ε_p)^j (order ≤ 2). ``x_train`` (N, d), ``x_test`` (M, d) are clean flat images of
    ``image_shape`` ((H, W) or (H, W, C)); the pairs are computed in blocks of ``block`` images.
    """
    if not jax.config.read("jax_enable_x64"):
        raise RuntimeError("the convolutional mean-field theory needs float64: call nwcorrupt.precision.enable_x64()")
    if order not in (0, 1, 2):
        raise ValueError(f"order must be 0, 1 or 2, got {order!r}")
    kind, mu, mu2, xa, xt = _setup(layer, noise, x_train, x_test, image_shape, get)
    eps = 1.0 - check_probability("p", p)
    train = _kernel_pair(layer, kind, mu, mu2, eps, xa, xa, get=get, test=False, symmetric=True, block=block,
                         order=order)
    test = _kernel_pair(layer, kind, mu, mu2, eps, xt, xa, get=get, test=True, symmetric=False, block=block,
                        order=order)
    return train, test


def _solve(k: np.ndarray, rhs: np.ndarray, ridge: float) -> np.ndarray:
    a = k + ridge * np.eye(k.shape[0])
    out = np.linalg.solve(a, rhs)
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the mean-field train kernel is singular; pass a ridge > 0")
    return out


def conv_meanfield_predict(
    layer: Layer, noise, p: float, x_train, y_train, x_test, image_shape, *, get: str = "ntk", ridge: float = 0.0,
    num_classes: int | None = None, block: int = 16,
) -> np.ndarray:
    """The exact mean-field predictor (M, C) float64 of a stax network (module docstring); ``ridge`` absolute."""
    reg = check_ridge(ridge)
    y = as_targets(y_train, np.shape(x_train)[0], num_classes)
    (k,), (ks,) = conv_meanfield_kernels(layer, noise, p, x_train, x_test, image_shape, get=get, block=block)
    return ks @ _solve(k, y, reg)


def conv_taylor(
    layer: Layer, noise, x_train, y_train, x_test, image_shape, *, order: int = 1, get: str = "ntk",
    ridge: float = 0.0, num_classes: int | None = None, block: int = 16,
) -> np.ndarray:
    """Taylor coefficients (order + 1, M, C) of the mean-field predictor in ε = 1 − p at pure noise:
    f = Σ_j ε^j f_j + O(ε^{order+1}), order ≤ 2, from the kernels' coefficients (forward-mode
    derivatives in ε) and the perturbation series of the solve with A = K₀ + r I, α = A⁻¹Y:
    f₀ = k₀α, f₁ = k₁α − k₀A⁻¹K₁α, f₂ = k₂α − k₁A⁻¹K₁α − k₀A⁻¹K₂α + k₀A⁻¹K₁A⁻¹K₁α."""
    reg = check_ridge(ridge)
    y = as_targets(y_train, np.shape(x_train)[0], num_classes)
    train, test = conv_meanfield_kernels(layer, noise, 1.0, x_train, x_test, image_shape, get=get, block=block,
                                         order=order)
    a0 = train[0]

    def solve(rhs: np.ndarray) -> np.ndarray:
        return _solve(a0, rhs, reg)

    alpha = solve(y)
    coeffs = [test[0] @ alpha]
    if order >= 1:
        b1 = solve(train[1] @ alpha)  # A⁻¹K₁α
        coeffs.append(test[1] @ alpha - test[0] @ b1)
    if order >= 2:
        coeffs.append(test[2] @ alpha - test[1] @ b1 - test[0] @ solve(train[2] @ alpha)
                      + test[0] @ solve(train[1] @ b1))
    return np.stack(coeffs)


def pure_noise_state(layer: Layer, noise, x_test, image_shape, *, get: str = "ntk") -> KernelState:
    """The input state of clean test images against one pure-noise training image (ε = 0)."""
    kind, mu, mu2, _, xt = _setup(layer, noise, np.zeros((1, np.shape(x_test)[1])), x_test, image_shape, get)
    full = bool(layer.spec.input_full(False))
    return _test_state(kind, jnp.asarray(0.0), mu, mu2, jnp.asarray(xt), jnp.zeros((1,) + xt.shape[1:]), full,
                       get == "ntk")


def pixel_weights(layer: Layer, noise, x_test, image_shape, *, get: str = "ntk") -> np.ndarray:
    """W_{x*}(s, s') = ∂K(x*, x̃)/∂P(s, s') at pure noise, (M, *S·S) in the pair layout of the network
    (full: (M, H, H', W, W'); a Flatten readout: diagonal (M, H, W))."""
    state = pure_noise_state(layer, noise, x_test, image_shape, get=get)
    spec = layer.spec

    def out(g: Array) -> Array:
        s = covariance_state(g, state.cov1, state.cov2, state.shape, state.full, get == "ntk", None)
        o = spec.transform(s)
        return jnp.sum(o.ntk if get == "ntk" else o.nngp)

    return np.asarray(jax.grad(out)(state.nngp))[:, 0]


def conv_leading_rule(layer: Layer, noise, x_train, y_train, x_test, image_shape, *, get: str = "ntk",
                      num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(scores (M, C), decisions (M,)) of the leading-order rule Σ W_{x*}(s, s') x*(s) μ_c(s') (module docstring).

    μ_c are the class means of the clean training images; W from :func:`pixel_weights`.
    """
    kind, mu, mu2, xa, xt = _setup(layer, noise, x_train, x_test, image_shape, get)
    y = as_targets(y_train, xa.shape[0], num_classes)
    means = np.einsum("nc,n...->c...", y, xa) / y.sum(0).reshape((-1,) + (1,) * (xa.ndim - 1))
    w = pixel_weights(layer, noise, x_test, image_shape, get=get)
    full = bool(layer.spec.input_full(False))
    prods = np.asarray(_products(jnp.asarray(xt), jnp.asarray(means), full))  # (M, C, *pair layout)
    m, c = prods.shape[:2]
    scores = np.einsum("mcp,mp->mc", prods.reshape(m, c, -1), w.reshape(m, -1))
    return scores, scores.argmax(1).astype(np.int32)
