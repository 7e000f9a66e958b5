"""Evaluating dual kernels: the validated public API (:func:`dual`, :func:`duals`, :func:`dual_pair`,
:func:`dual_diag`, :func:`has_closed_form`) and the unchecked forms used inside jitted kernel code."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_array, check_choice, check_positive_int, is_traced
from nwcorrupt.activations.quadrature import quadrature, quadrature_diag
from nwcorrupt.activations.registry import DEFAULT_ORDER, MAX_ORDER, METHODS, Activation, get

__all__ = ["duals", "dual", "dual_pair", "dual_diag", "duals_unchecked", "duals_diag_unchecked", "has_closed_form"]

Array = jax.Array

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
        for p, val in zip(todo, quadrature(act, todo, k11, k12, k22, order)):
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
        for p, val in zip(todo, quadrature_diag(act, todo, q, order)):
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


