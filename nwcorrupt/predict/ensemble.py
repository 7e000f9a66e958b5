"""The predictor closure of neural-tangents' ``predict.gradient_descent_mse_ensemble``.

``predict_fn = gradient_descent_mse_ensemble(kernel_fn, x_train, y_train, diag_reg=...)``
computes the train-train kernels once (on first use, per kernel) and returns
``predict_fn(t=None, x_test=None, get=None, compute_cov=False)``: the mean, and with
``compute_cov=True`` the covariance, of the outputs of an infinite ensemble of
infinitely wide networks.

Notation: N training points with targets Y (N, C), M test points, K the NNGP and Θ the
NTK (train-train ``nn``, test-train ``*n``, test-test ``**``); for the kernel ``G`` whose
regime is asked (K for ``"nngp"``, Θ for ``"ntk"``), ``G_r = G_nn + r I`` with the
regulariser ``r`` of :func:`~nwcorrupt.predict.absolute_regularizer`
(relative by default: ``r = diag_reg · trace(G_nn) / N``). Time enters as
``s = η t / Y.size`` (gradient flow on ``|f(X) − Y|² / (2 · Y.size)`` with learning
rate η), through ``φ_s(G_r) = G_r⁻¹ (I − exp(−s G_r))`` (``G_r⁻¹`` at t = ∞).

Test set (``x_test`` given), at time t:

* mean, both regimes: ``G_*n φ_s(G_r) Y``;
* ``"nngp"`` covariance (the network trained in its readout layer only; at t = ∞ the
  exact GP posterior): ``K_** − K_*n φ_{2s}(K_r) K_n*``;
* ``"ntk"`` covariance (the full network, initial outputs ~ GP(0, K)):
  ``K_** + Bᵀ K_nn B − (Θ_*n φ_s(Θ_r) K_n* + its transpose)`` with
  ``B = φ_s(Θ_r) Θ_n*``.

Training set (``x_test=None``): at t = ∞ the mean is Y and the covariance zero; at
finite t the mean is ``(I − exp(−s G_r)) Y``, the ``"nngp"`` covariance
``exp(−2 s K_r) K_r`` and the ``"ntk"`` covariance ``E K_nn E`` with ``E = exp(−s Θ_r)``.

These are neural-tangents' formulas (checked against it in the oracle suite). Outputs
share one covariance across the C output channels (the kernels are ``G ⊗ I_C``): the
covariance has shape (M, M), or (T, M, M) for T times.

Solves: t = ∞ uses :func:`~nwcorrupt.predict.kernel_solve` (Cholesky with the jitter
fallback, or CG for very large N under ``solver="auto"``); finite t uses one
eigendecomposition per kernel (cached), with the eigenvalue rule of
:mod:`nwcorrupt.predict.dense` (directions below ``rcond · λ_max`` dropped;
negative rounding eigenvalues clipped at 0 in the exponentials).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_array
from nwcorrupt.arch import normalize_get
from nwcorrupt.predict.base import Array, as_float, mm, check_learning_rate, check_nonneg_float, check_times
from nwcorrupt.predict.dense import eigen_decomposition, flow_coefficients
from nwcorrupt.predict.matrix import absolute_regularizer, kernel_solve

__all__ = ["Gaussian", "gradient_descent_mse_ensemble"]

_HI = _precision.MATMUL_PRECISION


class Gaussian(NamedTuple):
    """Mean (M, C) — or (T, M, C) — and covariance (M, M) — or (T, M, M) — of the outputs."""

    mean: Array
    covariance: Array


@jax.jit
def _apply_exp(lam: Array, vec: Array, rhs: Array, scaled_t: Array, power: Array) -> Array:
    """V diag(λ₊^power · exp(−λ₊ s)) Vᵀ rhs for each s (T,), λ₊ = max(λ, 0)."""
    lam0 = jnp.maximum(lam, 0.0)
    s = scaled_t[:, None]
    g = jnp.where(jnp.isinf(s), 0.0, jnp.exp(-lam0 * s)) * lam0**power
    return jnp.einsum("ij,tj,jk->tik", vec, g, mm(vec.T, rhs), precision=_HI)


def gradient_descent_mse_ensemble(
    kernel_fn: Callable[..., Any],
    x_train: Any,
    y_train: Any,
    *,
    learning_rate: float = 1.0,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    rcond: float | None = None,
) -> Callable[..., Any]:
    """Infinite ensemble of infinite-width networks trained by gradient flow on the MSE.

    Args:
      kernel_fn: ``kernel_fn(x1, x2, get)`` returning the (N1, N2) kernel for
        ``get="nngp"``/``"ntk"`` — e.g. :func:`nwcorrupt.kernels.kernel_fn` of an
        architecture, or neural-tangents' ``kernel_fn``.
      x_train: (N, d) training inputs.
      y_train: (N, C) targets (or (N,), treated as C = 1 and returned as (M,)).
      learning_rate: η > 0; only η t matters.
      diag_reg: regulariser of the train-train kernel (relative to its mean diagonal
        unless ``diag_reg_absolute_scale``), as in neural-tangents.
      rcond: eigenvalue cut-off of the finite-time path (None: N · eps).

    Returns:
      ``predict_fn(t=None, x_test=None, get=None, compute_cov=False)``:

      * ``t``: None (t = ∞, by a linear solve), a time ≥ 0 or a 1-D array of T times
        (adds a leading axis of length T);
      * ``x_test``: (M, d) test inputs, or None for the training inputs;
      * ``get``: ``"nngp"``, ``"ntk"``, a tuple of them (a named tuple in that order is
        returned) or None for both;
      * ``compute_cov``: also return the covariance, as a :class:`Gaussian`.

      The formulas are in the module docstring. Kernels of the training set (and the
      eigendecompositions for finite t) are computed on first use and cached.

    Raises:
      ValueError: bad shapes or parameters, named, before any kernel is computed.
    """
    if not callable(kernel_fn):
        raise TypeError(f"kernel_fn must be callable as kernel_fn(x1, x2, get), got {type(kernel_fn).__name__}")
    x_train = as_float(x_train)
    if x_train.ndim != 2:
        raise ValueError(f"x_train must be 2-dimensional (N, d), got shape {tuple(x_train.shape)}")
    y_arr = as_float(y_train)
    vector_targets = y_arr.ndim == 1
    if vector_targets:
        y_arr = y_arr[:, None]
    if y_arr.ndim != 2 or y_arr.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"y_train must have shape (N, C) or (N,) with N = {x_train.shape[0]} rows of x_train, "
            f"got {tuple(np.shape(y_train))}"
        )
    check_array("y_train", y_arr)
    lr = check_learning_rate(learning_rate)
    reg_value = check_nonneg_float("diag_reg", diag_reg)
    absolute = bool(diag_reg_absolute_scale)
    if rcond is not None:
        check_nonneg_float("rcond", rcond)
    y_size = y_arr.size

    train_cache: dict[str, Array] = {}
    eig_cache: dict[str, tuple] = {}

    def k_train(g: str) -> Array:
        if g not in train_cache:
            train_cache[g] = as_float(kernel_fn(x_train, None, g))
        return train_cache[g]

    def reg_of(g: str) -> float:
        return absolute_regularizer(k_train(g), reg_value, diag_reg_absolute_scale=absolute)

    def eig(g: str) -> tuple:
        if g not in eig_cache:
            lam, vec, keep, _, _ = eigen_decomposition(k_train(g), reg_of(g), rcond)
            eig_cache[g] = (lam, vec, keep)
        return eig_cache[g]

    def solve(g: str, rhs: Array) -> Array:
        return kernel_solve(k_train(g), rhs, diag_reg=reg_value, diag_reg_absolute_scale=absolute, estimate_cond=False)

    def one(g: str, t: Any, x_test: Any, compute_cov: bool) -> Any:
        finite = t is not None
        if finite:
            times, scalar = check_times(t)
            s = jnp.asarray(times * lr / y_size, k_train(g).dtype)
        if x_test is None:
            mean, cov = _train_set(g, finite, s if finite else None, compute_cov)
        else:
            mean, cov = _test_set(g, finite, s if finite else None, x_test, compute_cov)
        if finite and scalar:
            mean = mean[0]
            cov = None if cov is None else cov[0]
        if vector_targets:
            mean = mean[..., 0]
        return Gaussian(mean, cov) if compute_cov else mean

    def _train_set(g: str, finite: bool, s: Array | None, compute_cov: bool) -> tuple[Array, Array | None]:
        y = y_arr.astype(k_train(g).dtype)
        n = y.shape[0]
        if not finite:
            return y, (jnp.zeros((n, n), y.dtype) if compute_cov else None)
        lam, vec, _ = eig(g)
        mean = y[None] - _apply_exp(lam, vec, y, s, jnp.asarray(0.0, y.dtype))
        cov = None
        if compute_cov:
            eye = jnp.eye(n, dtype=y.dtype)
            if g == "nngp":
                cov = _apply_exp(lam, vec, eye, 2 * s, jnp.asarray(1.0, y.dtype))
            else:
                e = _apply_exp(lam, vec, eye, s, jnp.asarray(0.0, y.dtype))
                cov = jnp.einsum("tij,jk,tlk->til", e, k_train("nngp"), e, precision=_HI)
        return mean, cov

    def _test_set(g: str, finite: bool, s: Array | None, x_test: Any, compute_cov: bool) -> tuple[Array, Array | None]:
        xt = x_test
        kd = k_train(g)
        y = y_arr.astype(kd.dtype)
        k_td = as_float(kernel_fn(xt, x_train, g))
        if finite:
            lam, vec, keep = eig(g)
            mean = mm(k_td, flow_coefficients(lam, vec, keep, y, s))  # (T, M, C)
        else:
            mean = mm(k_td, solve(g, y))
        if not compute_cov:
            return mean, None
        nngp_td = k_td if g == "nngp" else as_float(kernel_fn(xt, x_train, "nngp"))
        nngp_tt = as_float(kernel_fn(xt, None, "nngp"))
        if g == "nngp":
            if finite:
                lam, vec, keep = eig(g)
                w = flow_coefficients(lam, vec, keep, k_td.T, 2 * s)  # (T, N, M)
            else:
                w = solve(g, k_td.T)
            cov = nngp_tt - mm(k_td, w)
        else:
            if finite:
                lam, vec, keep = eig(g)
                b = flow_coefficients(lam, vec, keep, k_td.T, s)  # (T, N, M) = φ_s(Θ_r) Θ_n*
            else:
                b = solve(g, k_td.T)
            cross = jnp.einsum("...nm,ln->...ml", b, nngp_td, precision=_HI)  # Θ_*n φ K_n*
            quad = jnp.einsum("...nm,nk,...kl->...ml", b, k_train("nngp"), b, precision=_HI)
            cov = nngp_tt + quad - cross - jnp.swapaxes(cross, -1, -2)
        return mean, cov

    def predict_fn(t: Any = None, x_test: Any = None, get: Any = None, compute_cov: bool = False) -> Any:
        names = ("nngp", "ntk") if get is None else normalize_get(get)
        if t is not None:
            check_times(t)
        if x_test is not None:
            x_test = as_float(x_test)
            if x_test.ndim != 2 or x_test.shape[1] != x_train.shape[1]:
                raise ValueError(
                    f"x_test must have shape (M, {x_train.shape[1]}) to match x_train, got {tuple(x_test.shape)}"
                )
            check_array("x_test", x_test)
        results = tuple(one(g, t, x_test, bool(compute_cov)) for g in names)
        if isinstance(get, str):
            return results[0]
        return _predictions(names)(*results)

    return predict_fn


_TUPLES: dict[tuple[str, ...], type] = {}


def _predictions(names: tuple[str, ...]) -> type:
    if names not in _TUPLES:
        _TUPLES[names] = NamedTuple("Predictions", [(name, Any) for name in names])
    return _TUPLES[names]
