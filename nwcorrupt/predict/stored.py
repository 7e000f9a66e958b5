"""Stored kernel (``solver="stored_cg"``, large N such as all 60000 MNIST images).

The training kernel is computed once, tile by tile, into a :class:`StoredKernel` (the
tiles of its upper triangle, about N (N + b) / 2 entries of the working float, half of a
dense matrix) and solved by :func:`stored_cg_solve`: conjugate gradients whose products
``K p`` run in the storage dtype while the recurrences (x, r, p and all scalars) are
float64 -- on the host, or, on an accelerator, on the device that holds the tiles
(:mod:`nwcorrupt.predict.resident`) --, with float64 residual refinement (:data:`STORED_REFINEMENTS`
restarts at most) and a Nystrom preconditioner by default (:data:`STORED_PRECONDITIONERS`).
Its diagnostics are a :class:`StoredSolveInfo`. The memory plan and the block tiling are
in :mod:`nwcorrupt.predict.memory`; the test predictions in
:func:`nwcorrupt.predict.architecture.tiled_predict`.
"""

from __future__ import annotations

import dataclasses
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from nwcorrupt import distributed as _distributed
from nwcorrupt import kernels as _kernels
from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_array, check_choice, check_matrix, check_positive_float, check_positive_int
from nwcorrupt.predict.base import (
    Array,
    ConvergenceError,
    SolveInfo,
    as_float,
    check_nonneg_float,
    dtype_key,
    machine_eps,
    matmul,
    mm,
    single_get,
)
from nwcorrupt.predict.cg import PRECONDITIONERS, lanczos_cond, refined_cg
from nwcorrupt.predict.memory import STORED_BLOCK, STORED_PRECOND_RANK, block_bounds, stored_memory_plan, tile_owner
from nwcorrupt.predict.resident import (
    accumulate_tiles,
    device_nystrom_factor,
    device_partial_cholesky,
    device_products,
    on_accelerator,
    take_to_host,
)

__all__ = [
    "STORED_TOL",
    "STORED_PRECONDITIONERS",
    "STORED_REFINEMENTS",
    "STORED_PASS_REDUCTION",
    "StoredKernel",
    "StoredSolveInfo",
    "stored_cg_solve",
]

#: Default relative-residual tolerance of ``solver="stored_cg"``, by storage dtype. In
#: float32 the stored matrix itself carries relative errors of ~1e-7 (rounding) to ~1e-6
#: (kernel recursion), so solving much further buys nothing.
STORED_TOL = {"float64": 1e-10, "float32": 1e-6}
#: Preconditioners of :func:`stored_cg_solve`: those of :func:`cg_solve` and ``"nystrom"``.
STORED_PRECONDITIONERS = PRECONDITIONERS + ("nystrom",)
#: Default maximum number of float64 residual refinements (restarts) of ``"stored_cg"``.
STORED_REFINEMENTS = 4
#: Residual reduction one CG pass aims for before its float64 residual check, by storage
#: dtype. Products with a float32 matrix reach a true relative residual of only ~eps32 x
#: cond (5e-4 measured on the N = 20 000 MNIST NTK while the recursive residual read 1e-5),
#: so iterating further within a pass is wasted: each pass stops at this reduction of its
#: starting residual (or at tol) and the float64 check restarts it (mixed-precision
#: iterative refinement; 40 -> 31 and 47 -> 37 iterations for relu and erf at N = 20 000).
STORED_PASS_REDUCTION = {"float64": 0.0, "float32": 1e-3}


@dataclasses.dataclass(frozen=True, eq=False)
class StoredKernel:
    """A symmetric N x N kernel matrix held in memory as the tiles of its upper triangle.

    Row blocks B_0, ..., B_{m-1} (near-equal sizes, at most ``block_size`` rows) tile
    [0, N); ``tiles[i][j - i]`` is ``K[B_i, B_j]`` for j >= i (a JAX array on the
    default device; the diagonal tiles are full and exactly symmetric). Memory is about
    N (N + b) / 2 entries, half of a dense matrix. Products ``K @ V`` read every tile
    once and use it twice (for ``K[B_i, B_j] V[B_j]`` and its mirror ``K[B_j, B_i] V[B_i]``),
    in the storage dtype; :meth:`matvec` with ``exact=True`` accumulates in float64 on the
    host instead.

    Build it with :meth:`from_matrix` (a dense matrix) or :meth:`from_arch` (the kernel of
    an architecture, computed tile by tile, never dense).

    Spread over processes (``distributed=True``, see :mod:`nwcorrupt.distributed`), each
    process holds only the tiles :func:`~nwcorrupt.predict.memory.tile_owner` gives it (the
    others are None); every access (:meth:`matvec`, :meth:`diag`, :meth:`rows`, :meth:`row`,
    :meth:`to_dense`) is then a collective that every process calls together: each adds what
    its tiles contribute and the parts are summed over processes. :attr:`nbytes` is this
    process's share.

    Attributes:
      n: N.
      bounds: (m + 1,) block starts, ``bounds[0] = 0``, ``bounds[-1] = N``.
      tiles: ``tiles[i]`` is the tuple of the m - i tiles of block row i (None where another
        process holds the tile).
      distributed: the tiles are spread over the processes of a multi-process run.
    """

    n: int
    bounds: tuple[int, ...]
    tiles: tuple[tuple[Any, ...], ...] = dataclasses.field(repr=False)
    distributed: bool = False

    def __post_init__(self) -> None:
        check_positive_int("n", self.n)
        b = tuple(int(v) for v in self.bounds)
        if len(b) < 2 or b[0] != 0 or b[-1] != self.n or any(e <= s for s, e in zip(b, b[1:])):
            raise ValueError(f"bounds must increase strictly from 0 to n={self.n}, got {self.bounds!r}")
        m = len(b) - 1
        if len(self.tiles) != m:
            raise ValueError(f"tiles must have one row per block ({m}), got {len(self.tiles)}")
        dtypes = set()
        count, index = (jax.process_count(), jax.process_index()) if self.distributed else (1, 0)
        for i, row in enumerate(self.tiles):
            if len(row) != m - i:
                raise ValueError(f"tiles[{i}] must hold the {m - i} tiles K[B_{i}, B_j], j >= {i}; got {len(row)}")
            for k, t in enumerate(row):
                mine = tile_owner(i, i + k, m, count) == index
                if (t is None) == mine:
                    raise ValueError(
                        f"tile ({i}, {i + k}) must be "
                        + ("given" if mine else f"None here (process {index} of {count} does not hold it)")
                    )
                if t is None:
                    continue
                want = (b[i + 1] - b[i], b[i + k + 1] - b[i + k])
                if tuple(t.shape) != want:
                    raise ValueError(f"tile ({i}, {i + k}) must have shape {want}, got {tuple(t.shape)}")
                dtypes.add(jnp.dtype(t.dtype))
        if len(dtypes) > 1 or (dtypes and next(iter(dtypes)).kind != "f"):
            raise TypeError(f"all tiles must share one float dtype, got {sorted(str(d) for d in dtypes)}")

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_matrix(cls, k: Any, *, block_size: int = STORED_BLOCK, distributed: bool = False) -> "StoredKernel":
        """Tiles of the upper triangle of a dense symmetric (N, N) matrix.

        Only the upper triangle is read (the lower one is taken as its mirror image, as a
        Cholesky factorisation would). The storage dtype is the current JAX float. With
        ``distributed=True`` this process keeps only its own tiles.
        """
        check_array("k", k, ndim=2)
        n1, n2 = k.shape
        if n1 != n2 or n1 < 1:
            raise ValueError(f"k must be a square N x N matrix with N >= 1, got shape {(n1, n2)}")
        block_size = check_positive_int("block_size", block_size)
        dt = _precision.default_float()
        a = np.asarray(k)
        bounds = block_bounds(n1, block_size)
        m = len(bounds) - 1
        mine = _owned(m, distributed)
        rows = []
        for i in range(m):
            s, e = bounds[i], bounds[i + 1]
            row = []
            for j in range(i, m):
                if not mine(i, j):
                    row.append(None)
                    continue
                t = np.asarray(a[s:e, bounds[j] : bounds[j + 1]], dtype=np.float64)
                if j == i:
                    t = np.triu(t) + np.triu(t, 1).T
                row.append(jnp.asarray(t, dtype=dt))
            rows.append(tuple(row))
        return cls(n1, bounds, tuple(rows), distributed=bool(distributed))

    @classmethod
    def from_arch(
        cls,
        arch: Any,
        x: Any,
        get: str = "ntk",
        *,
        block_size: int = STORED_BLOCK,
        check_memory: bool = True,
        progress: Callable[[int, int], None] | None = None,
        which: str | None = None,
        distributed: bool = False,
    ) -> "StoredKernel":
        """The NTK (or NNGP) of ``arch`` on the rows of x, computed tile by tile.

        Each tile is one :func:`nwcorrupt.kernels.kernel` call: ``kernel(arch, x[B_i])``
        (symmetric, exact diagonal) on the diagonal and ``kernel(arch, x[B_i], x[B_j])``
        above it; the N x N matrix is never formed densely. In the current JAX float
        (float32 with HIGHEST-precision Gram products unless x64 is enabled).

        Args:
          arch: :class:`nwcorrupt.arch.MLP`.
          x: (N, d) inputs.
          get: ``"ntk"`` or ``"nngp"`` (or a one-element tuple of it).
          block_size: rows per block (tiles are at most block_size x block_size).
          check_memory: check :func:`stored_memory_plan` against the available memory
            first (``MemoryError`` if it does not fit).
          progress: called as ``progress(tiles_done, tiles_total)`` after every tile (of
            this process's tiles when distributed).
          which: deprecated name of ``get`` (warns).
          distributed: spread the tiles over the processes (every process calls this with
            the same arguments and computes only its own tiles, on its own devices).
        """
        get = single_get(get, which)
        check_matrix("x", x)
        block_size = check_positive_int("block_size", block_size)
        n = int(x.shape[0])
        if check_memory:
            depth = getattr(arch, "depth", 3)
            processes = jax.process_count() if distributed else 1
            stored_memory_plan(n, depth=depth, block_size=block_size, precond_rank=0, processes=processes).check()
        xf = as_float(x)
        bounds = block_bounds(n, block_size)
        m = len(bounds) - 1
        mine = _owned(m, distributed)
        xb = [xf[bounds[i] : bounds[i + 1]] for i in range(m)]
        total = sum(mine(i, j) for i in range(m) for j in range(i, m))
        done = 0
        rows = []
        for i in range(m):
            row = []
            for j in range(i, m):
                if not mine(i, j):
                    row.append(None)
                    continue
                ks = _kernels.kernel(arch, xb[i], None if j == i else xb[j], get=(get,))
                tile = getattr(ks, get)
                del ks
                row.append(tile)
                done += 1
                if progress is not None:
                    progress(done, total)
            rows.append(tuple(row))
        return cls(n, bounds, tuple(rows), distributed=bool(distributed))

    # -- properties -----------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def dtype(self) -> np.dtype:
        for row in self.tiles:
            for t in row:
                if t is not None:
                    return np.dtype(t.dtype)
        return np.dtype(_precision.default_float())  # a process that holds no tile

    @property
    def n_blocks(self) -> int:
        return len(self.bounds) - 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the tiles (of this process, when distributed)."""
        return int(sum(t.size for row in self.tiles for t in row if t is not None)) * self.dtype.itemsize

    def _sum(self, part: np.ndarray) -> np.ndarray:
        """This process's contribution summed over processes (itself when not distributed)."""
        return _distributed.allreduce_sum(part) if self.distributed else part

    def _block_of(self, i: int) -> int:
        return int(np.searchsorted(np.asarray(self.bounds), i, side="right")) - 1

    # -- access ---------------------------------------------------------------------

    def diag(self) -> np.ndarray:
        """The (N,) diagonal, float64 numpy."""
        b = self.bounds
        out = np.zeros(self.n, dtype=np.float64)
        for i, row in enumerate(self.tiles):
            if row[0] is not None:  # the diagonal alone crosses from an accelerator
                out[b[i] : b[i + 1]] = np.asarray(jnp.diagonal(row[0]), dtype=np.float64)
        return self._sum(out)

    def row(self, i: int) -> np.ndarray:
        """Row i of K, (N,) float64 numpy (gathered from the tiles above and right of it)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n:
            raise ValueError(f"row index must be an integer in [0, {self.n}), got {i!r}")
        return self.rows(np.array([int(i)]))[0]

    def rows(self, idx: Any) -> np.ndarray:
        """``K[idx, :]`` as (len(idx), N) float64 numpy; gathers block by block (vectorised)."""
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= self.n)):
            raise ValueError(f"idx must be a 1-D integer array of row indices in [0, {self.n})")
        out = np.zeros((idx.size, self.n), dtype=np.float64)
        blocks = np.searchsorted(np.asarray(self.bounds), idx, side="right") - 1
        b = self.bounds
        for bi in np.unique(blocks):
            sel = np.nonzero(blocks == bi)[0]
            local = idx[sel] - b[bi]
            for j in range(bi):  # tiles above: K[B_j, B_bi] columns, transposed
                if self.tiles[j][bi - j] is not None:
                    out[sel, b[j] : b[j + 1]] = take_to_host(self.tiles[j][bi - j], local, axis=1).T
            for k, t in enumerate(self.tiles[bi]):
                if t is not None:
                    out[sel, b[bi + k] : b[bi + k + 1]] = take_to_host(t, local, axis=0)
        return self._sum(out)

    def to_dense(self) -> np.ndarray:
        """The full (N, N) matrix as float64 numpy (for small N and tests only)."""
        out = np.zeros((self.n, self.n), dtype=np.float64)
        b = self.bounds
        for i, row in enumerate(self.tiles):
            for k, t in enumerate(row):
                if t is None:
                    continue
                j = i + k
                blk = np.asarray(t, dtype=np.float64)
                out[b[i] : b[i + 1], b[j] : b[j + 1]] = blk
                out[b[j] : b[j + 1], b[i] : b[i + 1]] = blk.T
        return self._sum(out)

    def matvec(self, v: Any, *, exact: bool = False) -> np.ndarray:
        """``K @ v`` for v of shape (N,) or (N, C); float64 numpy result.

        Default: products in the storage dtype (v rounded to it), one pass over the tiles.
        ``exact=True``: every tile converted to float64 and multiplied with float64 v
        (float64 accumulation; ~2-4x slower), used for the residuals of
        :func:`stored_cg_solve`. With the tiles on the host, that runs on the host through
        one reused float64 tile buffer; on an accelerator both kinds of product run there
        (:func:`~nwcorrupt.predict.resident.device_products`) and only v and the result cross.
        """
        v = np.asarray(v, dtype=np.float64)
        vector = v.ndim == 1
        if vector:
            v = v[:, None]
        if v.ndim != 2 or v.shape[0] != self.n:
            raise ValueError(f"v must have shape ({self.n},) or ({self.n}, C), got {tuple(np.shape(v))}")
        b = self.bounds
        m = self.n_blocks
        if on_accelerator(self.tiles):
            with _precision.x64():
                out = np.asarray(device_products(self.tiles, b, jnp.asarray(v), exact=exact), dtype=np.float64)
        elif exact:
            out = np.zeros_like(v)
            size = int(np.max(np.diff(b)))
            buf = np.empty(size * size, dtype=np.float64)  # reused float64 copy of one tile
            for i, row in enumerate(self.tiles):
                for k, t in enumerate(row):
                    if t is None:
                        continue
                    j = i + k
                    blk = buf[: t.shape[0] * t.shape[1]].reshape(t.shape)
                    np.copyto(blk, np.asarray(t))
                    out[b[i] : b[i + 1]] += blk @ v[b[j] : b[j + 1]]
                    if j != i:
                        out[b[j] : b[j + 1]] += blk.T @ v[b[i] : b[i + 1]]
        else:
            dt = self.dtype
            y = accumulate_tiles(self.tiles, [jnp.asarray(v[b[i] : b[i + 1]], dtype=dt) for i in range(m)])
            out = np.concatenate([np.asarray(yi, dtype=np.float64) for yi in y])
        out = self._sum(out)
        return out[:, 0] if vector else out


def _owned(n_blocks: int, distributed: bool) -> Callable[[int, int], bool]:
    """``(i, j) -> True`` for the tiles this process holds (all of them unless distributed)."""
    if not distributed:
        return lambda i, j: True
    count, index = jax.process_count(), jax.process_index()
    return lambda i, j: tile_owner(i, j, n_blocks, count) == index


@dataclasses.dataclass(frozen=True)
class StoredSolveInfo(SolveInfo):
    """:class:`SolveInfo` of ``solver="stored_cg"``, with precision and timing details.

    Extra attributes:
      precision: what ran in which dtype, e.g. ``"float32 matrix and products, float64
        CG vectors and scalars, float64 residuals"``.
      storage_dtype: dtype of the stored tiles.
      refinements: float64 residual refinements (CG restarts from the current iterate).
      matrix_bytes: bytes of the stored upper triangle.
      block_size: largest block of the tiling.
      precond_rank: pivots of the pivoted-Cholesky preconditioner actually used.
      time_kernel: seconds to compute the stored training kernel (0 if given).
      time_precond: seconds to build the preconditioner.
      time_solve: seconds of the CG iterations and residual checks.
      time_predict: seconds for the test-train kernel times the weights (0 if none).
    """

    precision: str = ""
    storage_dtype: str = ""
    refinements: int = 0
    matrix_bytes: int = 0
    block_size: int = 0
    precond_rank: int = 0
    time_kernel: float = 0.0
    time_precond: float = 0.0
    time_solve: float = 0.0
    time_predict: float = 0.0


def _np_pivoted_cholesky(
    diag: np.ndarray, row: Callable[[int], np.ndarray], rank: int, stop_rtol: float
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Greedy pivoted partial Cholesky ``A ~ L^T L`` in float64 numpy.

    The same pivoting as the ``"pivoted_cholesky"`` preconditioner of
    :func:`~nwcorrupt.predict.cg.cg_solve`.
    """
    n = diag.shape[0]
    k_max = min(rank, n)
    lmat = np.zeros((k_max, n), dtype=np.float64)
    d = diag.astype(np.float64).copy()
    pivots: list[int] = []
    stop = stop_rtol * float(np.max(diag))
    for k in range(k_max):
        i = int(np.argmax(d))
        if not d[i] > stop:
            break
        r = row(i) - lmat[:k, i] @ lmat[:k]
        li = r / math.sqrt(d[i])
        lmat[k] = li
        d = np.maximum(d - li * li, 0.0)
        d[i] = 0.0
        pivots.append(i)
    return lmat[: len(pivots)], pivots, d


@jax.jit
def _gt_mm(g: Array, v: Array) -> Array:
    return mm(g.T, v)


def _np_partial_cholesky_preconditioner(
    lmat: np.ndarray, pivots: list[int], dres: np.ndarray, floor: float, dtype: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """Host version of the partial-Cholesky preconditioner of :func:`~nwcorrupt.predict.cg.cg_solve`
    (same P) for float64 vectors.

    The k x k triangular solves run in float64; the thin (k, N - k) factor ``g`` is held as
    a JAX array of ``dtype`` (the stored kernel's) and its two products per application run
    in that dtype. P is defined by the rounded ``g`` and stays symmetric positive definite.
    """
    n = lmat.shape[1]
    s_idx = np.asarray(pivots, dtype=np.int64)
    r_idx = np.setdiff1d(np.arange(n), s_idx)
    u_work = lmat[:, s_idx]
    # The (k, N - k) triangular solve runs in lmat's dtype (float32 for a float32 kernel: half
    # the time); P is defined by the rounded U and g, so it stays symmetric positive definite.
    g_host = scipy.linalg.solve_triangular(u_work, lmat[:, r_idx], lower=False, overwrite_b=True)
    g = jnp.asarray(g_host, dtype=dtype)
    del g_host
    u = u_work.astype(np.float64)
    d_r = np.maximum(dres[r_idx], floor)

    def apply(v: np.ndarray) -> np.ndarray:
        v_s, v_r = v[s_idx], v[r_idx]
        w_r = v_r - np.asarray(_gt_mm(g, jnp.asarray(v_s, dtype=g.dtype)), dtype=np.float64)
        u_s = scipy.linalg.solve_triangular(u, scipy.linalg.solve_triangular(u, v_s, trans="T", lower=False))
        x_r = w_r / d_r[:, None]
        out = np.empty_like(v)
        out[r_idx] = x_r
        out[s_idx] = u_s - np.asarray(matmul(g, jnp.asarray(x_r, dtype=g.dtype)), dtype=np.float64)
        return out

    return apply


def _nystrom_rows(k: StoredKernel, shift: float, rank: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``rank`` uniformly random pivots S (sorted) and the rows ``A[S, :]`` (float64 host) of ``A = K + shift I``."""
    s_idx = np.sort(np.random.default_rng(seed).choice(k.n, size=min(rank, k.n), replace=False))
    a_s = k.rows(s_idx)
    a_s[np.arange(s_idx.size), s_idx] += shift
    return s_idx, a_s


def _np_nystrom_factor(
    k: StoredKernel, diag: np.ndarray, shift: float, rank: int, seed: int
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Partial Cholesky ``L`` (rank, N) of ``A = K + shift I`` on ``rank`` uniformly random pivots.

    ``A[S, S] = U^T U``, ``L = U^{-T} A[S, :]`` (so ``L[:, S] = U``), computed with level-3
    BLAS (one triangular solve) instead of the rank sequential steps of the greedy
    pivoted Cholesky. Returns (L, sorted pivots S, residual diagonal ``diag(A - L^T L)``).
    """
    n = k.n
    s_idx, a_s = _nystrom_rows(k, shift, rank, seed)
    u = scipy.linalg.cholesky(a_s[:, s_idx], lower=False)
    # The (rank, N) triangular solve (the setup's cost: rank^2 N flops) runs in the kernel's
    # storage dtype: a float32 kernel carries ~1e-7 relative errors anyway, and any L keeps P
    # positive definite (it only changes how well P approximates K).
    work = np.float32 if np.dtype(k.dtype) == np.float32 else np.float64
    lmat = scipy.linalg.solve_triangular(u.astype(work), a_s.astype(work, copy=False), trans="T", lower=False,
                                         overwrite_b=True)
    del a_s
    sq = np.zeros(n)
    for i in range(0, lmat.shape[0], 256):  # float64 sums of squares, in slabs (no float64 copy of lmat)
        sq += np.einsum("kn,kn->n", lmat[i : i + 256], lmat[i : i + 256], dtype=np.float64)
    dres = np.maximum(diag - sq, 0.0)
    dres[s_idx] = 0.0
    return lmat, [int(i) for i in s_idx], dres


def _stored_preconditioner(
    kind: Any, k: StoredKernel, shift: float, rank: int, seed: int = 0, resident: bool = False
) -> tuple[Callable[[Any], Any], int]:
    """(P^{-1} as a function of (N, C) float64 arrays, number of pivots used).

    The arrays are host numpy, or device arrays with ``resident=True`` (then the factor is
    built and applied on the tiles' device; a user function still runs on the host).
    """
    if callable(kind) and not isinstance(kind, str):
        if resident:
            return (lambda r: jnp.asarray(np.asarray(kind(np.asarray(r)), dtype=np.float64))), 0
        return (lambda r: np.asarray(kind(r), dtype=np.float64)), 0
    check_choice("preconditioner", kind, STORED_PRECONDITIONERS)
    if kind == "none":
        return (lambda r: r), 0
    diag = k.diag() + shift
    eps = machine_eps(k.dtype)
    floor = eps * float(np.mean(np.abs(diag))) + float(np.finfo(np.float64).tiny)
    partial = device_partial_cholesky if resident else _np_partial_cholesky_preconditioner
    if kind == "nystrom" and rank > 0:
        try:
            if resident:
                s_idx, a_s = _nystrom_rows(k, shift, rank, seed)
                lmat, dres = device_nystrom_factor(a_s, s_idx, diag, k.dtype)
                del a_s
                pivots = [int(i) for i in s_idx]
            else:
                lmat, pivots, dres = _np_nystrom_factor(k, diag, shift, rank, seed)
        except np.linalg.LinAlgError as err:
            raise ValueError(
                f"the Nystrom preconditioner failed: K[S, S] + shift I of the {min(rank, k.n)} random pivots is "
                "not positive definite; the kernel is not PSD or is singular (add diag_reg, or use "
                "preconditioner='pivoted_cholesky')"
            ) from err
        return partial(lmat, pivots, dres, floor, k.dtype), len(pivots)
    if kind == "pivoted_cholesky" and rank > 0:

        def row(i: int) -> np.ndarray:
            r = k.row(i)
            r[i] += shift
            return r

        lmat, pivots, dres = _np_pivoted_cholesky(diag, row, rank, stop_rtol=math.sqrt(eps))
        if pivots:
            return partial(lmat, pivots, dres, floor, k.dtype), len(pivots)
    inv = 1.0 / np.maximum(diag, floor)
    inv_x = jnp.asarray(inv) if resident else inv
    return (lambda r: inv_x[:, None] * r), 0


def stored_cg_solve(
    k: StoredKernel,
    rhs: Any,
    *,
    shift: float = 0.0,
    tol: float | None = None,
    maxiter: int | None = None,
    preconditioner: Union[str, Callable[[np.ndarray], np.ndarray]] = "nystrom",
    precond_rank: int = STORED_PRECOND_RANK,
    max_refinements: int = STORED_REFINEMENTS,
    on_nonconvergence: str = "raise",
    callback: Callable[[int, float], None] | None = None,
    return_info: bool = False,
    resident: bool | None = None,
) -> Union[np.ndarray, tuple[np.ndarray, StoredSolveInfo]]:
    """Solve ``(K + shift I) X = B`` with K a :class:`StoredKernel`, by preconditioned CG.

    All C columns run their own CG recurrence and share each pass over the tiles. The
    recurrences (x, r, p, the scalars) are float64 -- on the host, or on the tiles' device
    (``resident``) --; the products ``K p`` run in the storage dtype (p rounded to it). When every column's recursive residual is at
    most ``tol`` -- or, for float32 storage, has fallen by :data:`STORED_PASS_REDUCTION`
    (1e-3) since the pass began, about what float32 products can resolve -- the true
    residual ``B - (K + shift I) X`` is recomputed with float64 accumulation
    (:meth:`StoredKernel.matvec` ``exact=True``), and CG restarts from X on that residual
    if some column still exceeds ``tol`` -- mixed-precision iterative refinement, at most
    ``max_refinements`` times. The reported residual is this float64
    one, relative to the stored (possibly float32-rounded) matrix.

    Args:
      k: the stored matrix.
      rhs: B, (N,) or (N, C).
      shift: s >= 0 added to the diagonal (absolute regulariser).
      tol: relative residual tolerance per column (default :data:`STORED_TOL`: 1e-10 for
        float64 storage, 1e-6 for float32).
      maxiter: maximum CG iterations over all restarts (default 2 N + 10).
      preconditioner: ``"nystrom"`` (default: partial Cholesky on ``precond_rank``
        uniformly random pivots, its triangular solve in the storage dtype),
        ``"pivoted_cholesky"`` (rank ``precond_rank``, greedy pivots, float64; see
        :func:`cg_solve`), ``"jacobi"``, ``"none"`` or a function R -> P^{-1} R on
        float64 (N, C) numpy arrays (called on the host, also when ``resident``).
      max_refinements: restarts allowed after float64 residual checks.
      on_nonconvergence: ``"raise"`` (:class:`ConvergenceError`) or ``"warn"``.
      callback: called as ``callback(iterations, max relative recursive residual)``
        after every iteration.
      return_info: also return a :class:`StoredSolveInfo`.
      resident: where the CG vectors live. False: float64 numpy on the host, the products
        on the tiles' device (each iteration moves p there and K p back). True: float64
        arrays on the tiles' device (64-bit types are enabled for the solve), with the
        preconditioner built and applied there and the float64 residuals computed there
        (:mod:`nwcorrupt.predict.resident`); per iteration only the C-vectors of CG
        scalars reach the host. None (default): True when the tiles live on an
        accelerator (and the kernel is not distributed), else False. Both give the same
        iterates up to rounding (tested at 1e-12 in float64).

    Returns:
      X, float64 numpy of the shape of rhs, or ``(X, info)``.
    """
    if not isinstance(k, StoredKernel):
        raise TypeError(f"k must be a StoredKernel, got {type(k).__name__}")
    check_choice("on_nonconvergence", on_nonconvergence, ("raise", "warn"))
    check_array("rhs", rhs)
    b = np.asarray(rhs, dtype=np.float64)
    if b.ndim not in (1, 2):
        raise ValueError(f"rhs must have shape (N,) or (N, C), got {tuple(b.shape)}")
    vector = b.ndim == 1
    if vector:
        b = b[:, None]
    n = b.shape[0]
    if n != k.n:
        raise ValueError(f"k is {k.n} x {k.n} but rhs has {n} rows; they must match")
    shift = check_nonneg_float("shift", shift)
    key = dtype_key(k.dtype)
    tol = STORED_TOL[key] if tol is None else check_positive_float("tol", tol)
    pass_reduction = STORED_PASS_REDUCTION.get(key, 0.0)
    maxiter = 2 * n + 10 if maxiter is None else check_positive_int("maxiter", maxiter)
    rank = check_positive_int("precond_rank", precond_rank, allow_zero=True)
    max_refinements = check_positive_int("max_refinements", max_refinements, allow_zero=True)

    if resident is None:
        resident = on_accelerator(k.tiles) and not k.distributed
    elif not isinstance(resident, bool):
        raise TypeError(f"resident must be True, False or None, got {resident!r}")
    elif resident and k.distributed:
        raise ValueError("resident=True needs a StoredKernel on one process (distributed=False); "
                         "a distributed kernel sums its products over processes on the host")

    t0 = time.perf_counter()
    if resident:
        with _precision.x64():  # float64 vectors on the device; the tiles keep their dtype
            precond, used_rank = _stored_preconditioner(preconditioner, k, shift, rank, resident=True)
            t1 = time.perf_counter()

            def apply_device(v: Array, exact: bool = False) -> Array:
                out = device_products(k.tiles, k.bounds, v, exact=exact)
                return out + shift * v if shift else out

            state = refined_cg(jnp, apply_device, precond, jnp.asarray(b), tol, pass_reduction, maxiter,
                               max_refinements, callback)
            state.x, state.r, state.rel = (np.asarray(a, dtype=np.float64) for a in (state.x, state.r, state.rel))
            state.alphas = [np.asarray(a) for a in state.alphas]
            state.betas = [np.asarray(a) for a in state.betas]
    else:
        precond, used_rank = _stored_preconditioner(preconditioner, k, shift, rank)
        t1 = time.perf_counter()

        def apply_host(v: np.ndarray, exact: bool = False) -> np.ndarray:
            out = k.matvec(v, exact=exact)
            return out + shift * v if shift else out

        state = refined_cg(np, apply_host, precond, b, tol, pass_reduction, maxiter, max_refinements, callback)
    x, r, rel = state.x, state.r, state.rel
    iterations, refinements, converged = state.iterations, state.refinements, state.converged
    t2 = time.perf_counter()
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(
            "the stored-CG solution contains NaN or inf; the kernel is probably singular or badly "
            "conditioned for this dtype: add diag_reg or enable float64"
        )
    y_norm = float(np.linalg.norm(b))
    residual = float(np.linalg.norm(r) / y_norm) if y_norm > 0 else 0.0
    info = StoredSolveInfo(
        solver="stored_cg",
        diag_reg=shift,
        residual=residual,
        iterations=iterations,
        converged=converged,
        cond=lanczos_cond(state.alphas, state.betas),
        cond_method="lanczos",
        precision=_stored_precision(k.dtype, resident),
        storage_dtype=str(k.dtype),
        refinements=refinements,
        matrix_bytes=k.nbytes,
        block_size=int(np.max(np.diff(k.bounds))),
        precond_rank=used_rank,
        time_precond=t1 - t0,
        time_solve=t2 - t1,
    )
    if not converged:
        msg = (
            f"stored-kernel conjugate gradients did not converge: max relative column residual "
            f"{float(np.max(rel)):.3g} > tol={tol:g} after {iterations} iterations and {refinements} "
            f"refinements (maxiter={maxiter}); increase maxiter, tol or diag_reg, or precond_rank"
        )
        if on_nonconvergence == "raise":
            raise ConvergenceError(msg, info)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    out = x[:, 0] if vector else x
    return (out, info) if return_info else out


def _stored_precision(dtype: Any, resident: bool = False) -> str:
    name = str(np.dtype(dtype))
    where = " (all on the device)" if resident else ""
    if name == "float64":
        return "float64 matrix, products, CG vectors and residuals" + where
    return f"{name} matrix and CG products, float64 CG vectors/scalars and refinement residuals" + where
