"""Spatial bookkeeping of convolutional kernels: output sizes, padding and window sums.

A covariance over images keeps, after its batch axes, either

* the **diagonal** layout: one axis per spatial dimension, ``(..., H, W)``, the
  covariance of a position with the same position; or
* the **full** layout: two interleaved axes per spatial dimension,
  ``(..., H, H', W, W')``, the covariance of position (h, w) with (h', w')
  (neural-tangents' layout).

A convolution maps the covariance by averaging it over the filter window *along
the diagonal* of each (h, h') pair (both positions shift together); a pooling
averages it over the whole window × window block. Both are separable over the
spatial dimensions, so each is applied axis by axis as a sum of k strided
slices: O(k) passes per dimension instead of O(k^d).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

Array = jax.Array

__all__ = [
    "PADDINGS",
    "diagonal_window_sum",
    "out_size",
    "pad_amounts",
    "spatial_diagonal",
    "window_counts",
    "window_sum",
]

#: The padding modes of convolutions and pooling (neural-tangents' names).
PADDINGS = ("VALID", "SAME", "CIRCULAR")


def pad_amounts(size: int, k: int, s: int, padding: str) -> tuple[int, int]:
    """(low, high) padding of one spatial axis of length ``size``, window ``k``, stride ``s``.

    ``SAME`` and ``CIRCULAR`` pad so that the output has ceil(size / s) positions,
    the low side getting the smaller half (XLA's rule); ``VALID`` pads nothing.
    """
    if padding == "VALID":
        return (0, 0)
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return (total // 2, total - total // 2)


def out_size(size: int, k: int, s: int, padding: str) -> int:
    """Number of output positions along an axis of length ``size`` (0 if the window does not fit)."""
    lo, hi = pad_amounts(size, k, s, padding)
    padded = size + lo + hi
    return 0 if padded < k else (padded - k) // s + 1


def _pad(a: Array, axes: tuple[int, ...], pads: tuple[int, int], padding: str) -> Array:
    if pads == (0, 0):
        return a
    widths = [(0, 0)] * a.ndim
    for ax in axes:
        widths[ax] = pads
    return jnp.pad(a, widths, mode="wrap" if padding == "CIRCULAR" else "constant")


def window_sum(a: Array, axis: int, k: int, s: int, padding: str) -> Array:
    """Σ_{j<k} of the padded ``a`` at positions o·s + j along ``axis`` (zero or wrap padding)."""
    size = a.shape[axis]
    n = out_size(size, k, s, padding)
    a = _pad(a, (axis,), pad_amounts(size, k, s, padding), padding)
    total = None
    for j in range(k):
        part = jax.lax.slice_in_dim(a, j, j + s * (n - 1) + 1, s, axis)
        total = part if total is None else total + part
    return total


def diagonal_window_sum(a: Array, axis: int, k: int, s: int, padding: str) -> Array:
    """Σ_{j<k} of the padded ``a`` at (o·s + j, o'·s + j) on the axis pair (axis, axis + 1).

    The covariance of a convolution's outputs at positions (o, o'), given the
    covariance ``a`` of its inputs on that pair of axes (before normalisation).
    """
    size = a.shape[axis]
    n = out_size(size, k, s, padding)
    a = _pad(a, (axis, axis + 1), pad_amounts(size, k, s, padding), padding)
    total = None
    for j in range(k):
        part = jax.lax.slice_in_dim(a, j, j + s * (n - 1) + 1, s, axis)
        part = jax.lax.slice_in_dim(part, j, j + s * (n - 1) + 1, s, axis + 1)
        total = part if total is None else total + part
    return total


def window_counts(size: int, k: int, s: int, padding: str) -> Array:
    """Number of real (unpadded) positions in each output window along one axis, shape (out,)."""
    return window_sum(jnp.ones((size,)), 0, k, s, "VALID" if padding == "VALID" else "SAME")


def spatial_diagonal(a: Array, batch_ndim: int, nd: int) -> Array:
    """The same-position entries of a full-layout covariance: (..., H, H', W, W') -> (..., H, W)."""
    for _ in range(nd):
        a = jnp.diagonal(a, axis1=batch_ndim, axis2=batch_ndim + 1)
    return a
