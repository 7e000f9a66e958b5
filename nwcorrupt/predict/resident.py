"""Stored-kernel operations on the device that holds the tiles (the GPU path of ``"stored_cg"``).

A :class:`~nwcorrupt.predict.stored.StoredKernel` keeps its tiles as JAX arrays on the
default device. On a GPU, the host loop of :func:`~nwcorrupt.predict.stored.stored_cg_solve`
would move the (N, C) CG vectors across the bus twice per iteration, apply the preconditioner
with host triangular solves, and copy every tile to the host for each float64 residual. The
functions here keep all of that on the device, so that ``stored_cg_solve(..., resident=True)``
(the default when the tiles live on an accelerator) moves only the C-vectors of CG scalars
per iteration:

* :func:`device_products`: ``K @ V`` for a float64 (N, C) device array, with the products in
  the storage dtype (as the host loop) or, ``exact=True``, in float64 (each tile converted on
  the device, one at a time: a transient float64 copy of one tile);
* :func:`take_to_host`: rows or columns of a tile gathered on the device before they cross
  to the host (so :meth:`StoredKernel.rows` and :meth:`StoredKernel.diag` move slabs, not
  tiles);
* :func:`device_partial_cholesky`: the partial-Cholesky preconditioner (pivoted Cholesky or
  Nystrom) applied on the device;
* :func:`device_nystrom_factor`: the Nystrom factor's triangular solve on the device;
* :func:`float64_product`: a test-train kernel tile times the float64 weights, on the device
  (:func:`~nwcorrupt.predict.architecture.tiled_predict` on an accelerator).

Everything here takes float64 vectors, so it must run with 64-bit types enabled (the
stored solver enters :func:`nwcorrupt.precision.x64` around the resident loop; the tiles keep
their own dtype).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.linalg

from nwcorrupt.predict.base import Array, mm

__all__ = [
    "tile_diag_product",
    "tile_pair_product",
    "platform_of",
    "tiles_platform",
    "float64_product",
    "on_accelerator",
    "take_to_host",
    "accumulate_tiles",
    "device_products",
    "device_partial_cholesky",
    "device_nystrom_factor",
]


@jax.jit
def tile_diag_product(t: Array, v: Array, y: Array) -> Array:
    """``y + t @ v`` for a diagonal tile t (b, b), v and y (b, C); in the dtype of t and v."""
    return y + mm(t, v)


@jax.jit
def tile_pair_product(t: Array, vi: Array, vj: Array, yi: Array, yj: Array) -> tuple[Array, Array]:
    """``(yi + t @ vj, yj + t^T @ vi)``: ``K[Bi, Bj] V[Bj]`` and its mirror ``K[Bj, Bi] V[Bi]`` from one tile."""
    return yi + mm(t, vj), yj + mm(vi.T, t).T


@jax.jit
def _exact_diag_product(t: Array, v: Array, y: Array) -> Array:
    return y + mm(t.astype(v.dtype), v)


@jax.jit
def _exact_pair_product(t: Array, vi: Array, vj: Array, yi: Array, yj: Array) -> tuple[Array, Array]:
    w = t.astype(vi.dtype)
    return yi + mm(w, vj), yj + mm(vi.T, w).T


def platform_of(a: Any) -> str:
    """Platform (``"cpu"``, ``"gpu"``, ``"tpu"``, ...) of a JAX array; ``"cpu"`` for anything else."""
    return next(iter(a.devices())).platform if isinstance(a, jax.Array) else "cpu"


def tiles_platform(tiles: Sequence[Sequence[Any]]) -> str:
    """Platform of the first tile held here (``"cpu"`` if none)."""
    for row in tiles:
        for t in row:
            if t is not None:
                return platform_of(t)
    return "cpu"


def on_accelerator(tiles: Sequence[Sequence[Any]]) -> bool:
    """Whether the tiles live on an accelerator (not the host CPU)."""
    return tiles_platform(tiles) != "cpu"


def _padded(index: np.ndarray) -> np.ndarray:
    """index padded (with its first entry) to the next power of two: few gather shapes, few compilations."""
    size = 1 << max(int(index.size) - 1, 0).bit_length()
    return np.concatenate([index, np.full(size - index.size, index[0], dtype=index.dtype)])


def take_to_host(t: Any, index: np.ndarray, axis: int, *, gather_on_device: bool | None = None) -> np.ndarray:
    """``t`` restricted to ``index`` along ``axis`` (0: rows, 1: columns), as host numpy of t's dtype.

    With ``gather_on_device`` (default: when t lives on an accelerator) the slab is gathered
    on the device first (index padded to a power of two, so that a whole solve compiles
    only a few gathers) and only it crosses to the host; otherwise the tile is read in
    place on the host.
    """
    index = np.asarray(index)
    if index.size == 0:
        shape = list(t.shape)
        shape[axis] = 0
        return np.zeros(shape, dtype=np.dtype(t.dtype))
    if gather_on_device is None:
        gather_on_device = platform_of(t) != "cpu"
    if gather_on_device:
        slab = np.asarray(jnp.take(t, jnp.asarray(_padded(index)), axis=axis))
        return slab[: index.size] if axis == 0 else slab[:, : index.size]
    return np.take(np.asarray(t), index, axis=axis)


@jax.jit
def float64_product(a: Array, b: Array) -> Array:
    """``a @ b`` with a converted to b's dtype (float64) on a's device: a (M, N) in any float, b (N, C)."""
    return mm(a.astype(b.dtype), b)


def accumulate_tiles(tiles: Sequence[Sequence[Any]], vb: list[Array], *, exact: bool = False) -> list[Array]:
    """The blocks ``(K V)[B_i]`` from the upper-triangle tiles, each tile read once and used twice.

    Args:
      tiles: ``tiles[i][j - i] = K[B_i, B_j]`` (None: held by another process, skipped).
      vb: the blocks ``V[B_i]`` as device arrays, in the dtype the products run in.
      exact: convert each tile to ``vb``'s dtype first (float64 products of lower-precision tiles).

    Returns:
      The m blocks of the product, in ``vb``'s dtype, on the tiles' device.
    """
    y = [jnp.zeros_like(vi) for vi in vb]
    diag, pair = (_exact_diag_product, _exact_pair_product) if exact else (tile_diag_product, tile_pair_product)
    for i, row in enumerate(tiles):
        if row[0] is not None:
            y[i] = diag(row[0], vb[i], y[i])
        for k in range(1, len(row)):
            if row[k] is None:
                continue
            j = i + k
            y[i], y[j] = pair(row[k], vb[i], vb[j], y[i], y[j])
    return y


def device_products(tiles: Sequence[Sequence[Any]], bounds: Sequence[int], v: Array, *, exact: bool = False) -> Array:
    """``K @ V`` from the upper-triangle tiles of K, on their device.

    Args:
      tiles: ``tiles[i][j - i] = K[B_i, B_j]`` (None for tiles another process holds: they
        contribute nothing here).
      bounds: (m + 1,) block starts.
      v: (N, C) float64 device array.
      exact: False: v rounded to the storage dtype and the products in it (one pass over the
        tiles, each used twice); True: each tile converted to float64 on the device and
        multiplied in float64 (float64 accumulation, for residuals).

    Returns:
      (N, C) float64 device array (this process's part when some tiles are None).
    """
    b = tuple(int(e) for e in bounds)
    m = len(b) - 1
    dt = next((t.dtype for row in tiles for t in row if t is not None), None)
    work = v.dtype if exact or dt is None else dt
    y = accumulate_tiles(tiles, [v[b[i] : b[i + 1]].astype(work) for i in range(m)], exact=exact)
    return jnp.concatenate(y).astype(v.dtype)


@jax.jit
def _apply_partial(
    v: Array, g: Array, u: Array, d_r: Array, s_idx: Array, r_idx: Array
) -> Array:
    v_s, v_r = v[s_idx], v[r_idx]
    u_s = jsl.solve_triangular(u, jsl.solve_triangular(u, v_s, trans="T", lower=False), lower=False)
    x_r = (v_r - mm(g.T, v_s.astype(g.dtype)).astype(v.dtype)) / d_r[:, None]
    out = jnp.zeros_like(v).at[r_idx].set(x_r)
    return out.at[s_idx].set(u_s - mm(g, x_r.astype(g.dtype)).astype(v.dtype))


@jax.jit
def _upper_solve(u: Array, rhs: Array) -> Array:
    return jsl.solve_triangular(u, rhs, lower=False)


def device_partial_cholesky(
    lmat: Any, pivots: Sequence[int], dres: np.ndarray, floor: float, dtype: Any
) -> Callable[[Array], Array]:
    """The partial-Cholesky preconditioner ``P = L^T L + diag(d)`` applied on the device.

    The same P as the host version in :mod:`nwcorrupt.predict.stored`: with ``U = L[:, S]``
    (upper triangular) and ``G = U^{-1} L[:, R]`` (the thin factor, held in ``dtype``, the
    stored kernel's), P^{-1} v is computed by block elimination with two k x k float64
    triangular solves and two products with G in ``dtype``.

    Args:
      lmat: (k, N) factor L (host numpy or a device array); pivots: the k pivot indices S;
      dres: (N,) residual diagonal d (host); floor: lower bound on d_R; dtype: G's dtype.

    Returns:
      ``apply(v)`` for (N, C) float64 device arrays.
    """
    lm = jnp.asarray(lmat)
    n = lm.shape[1]
    s_idx = np.asarray(pivots, dtype=np.int64)
    r_idx = np.setdiff1d(np.arange(n), s_idx)
    s_dev, r_dev = jnp.asarray(s_idx), jnp.asarray(r_idx)
    u_work = lm[:, s_dev]
    g = _upper_solve(u_work, lm[:, r_dev]).astype(dtype)
    del lm
    u = u_work.astype(jnp.float64)
    d_r = jnp.asarray(np.maximum(np.asarray(dres, dtype=np.float64)[r_idx], floor))
    return lambda v: _apply_partial(v, g, u, d_r, s_dev, r_dev)


@jax.jit
def _nystrom_solve(u: Array, a_s: Array) -> tuple[Array, Array]:
    lmat = jsl.solve_triangular(u.astype(a_s.dtype), a_s, trans="T", lower=False)
    return lmat, jnp.sum(jnp.square(lmat.astype(jnp.float64)), axis=0)


def device_nystrom_factor(
    a_s: np.ndarray, s_idx: np.ndarray, diag: np.ndarray, dtype: Any
) -> tuple[Array, np.ndarray]:
    """Nystrom factor ``L = U^{-T} A[S, :]`` (``A[S, S] = U^T U``) with its solve on the device.

    Args:
      a_s: (k, N) float64 host rows ``A[S, :]`` of ``A = K + shift I`` (shift included);
      s_idx: the k sorted pivots S; diag: (N,) float64 diagonal of A; dtype: the storage
        dtype, in which the (k, N) triangular solve runs (P stays positive definite).

    Returns:
      (L as a (k, N) device array of ``dtype``, residual diagonal ``diag(A - L^T L)`` (N,)
      host float64, zero on S).

    Raises:
      numpy.linalg.LinAlgError: ``A[S, S]`` is not positive definite.
    """
    u = scipy.linalg.cholesky(a_s[:, s_idx], lower=False)  # k x k, float64 on the host
    lmat, sq = _nystrom_solve(jnp.asarray(u), jnp.asarray(a_s, dtype=dtype))
    dres = np.maximum(np.asarray(diag, dtype=np.float64) - np.asarray(sq), 0.0)
    dres[s_idx] = 0.0
    return lmat, dres
