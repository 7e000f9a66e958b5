"""Tiling and memory plan of the stored-kernel predictor (``solver="stored_cg"``).

A stored kernel splits [0, N) into ``ceil(N / block_size)`` near-equal row blocks
(:func:`block_bounds`, default :data:`STORED_BLOCK` rows) and keeps the tiles of its upper
triangle, about N (N + b) / 2 entries. :func:`stored_memory_plan` estimates the memory of
the whole predictor from that tiling -- the matrix plus the largest of the kernel-tile
build, the preconditioner set-up and the test tiles -- and :meth:`StoredPlan.check`
compares it with :func:`available_memory_bytes` (``MemAvailable``, or the free memory of an
accelerator that holds the tiles), raising
``MemoryError`` above :data:`MEMORY_HEADROOM` of it before any kernel is computed.

The dense solvers get the same check: :func:`check_dense_memory` compares the N x N matrices a
dense solve holds at once (:data:`DENSE_MATRICES`) with the free memory before the
architecture-level predictors compute the training kernel.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import kernels as _kernels
from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_positive_int
from nwcorrupt.predict.base import TILE_SIZE

__all__ = [
    "STORED_BLOCK",
    "STORED_PRECOND_RANK",
    "MEMORY_HEADROOM",
    "block_bounds",
    "tile_owner",
    "available_memory_bytes",
    "StoredPlan",
    "stored_memory_plan",
    "DENSE_MATRICES",
    "check_dense_memory",
]

#: Default rows per block of a :class:`~nwcorrupt.predict.stored.StoredKernel` (tiles of about
#: this squared entries; 2048 gives 16 MiB float32 tiles, large enough to amortise per-tile
#: dispatch, small enough to stay in a 32 MiB cache between the two products a tile takes
#: part in).
STORED_BLOCK = 2048
#: Default rank of the preconditioner of ``solver="stored_cg"`` (Nystrom or pivoted Cholesky).
#: 2048: on the MNIST NTK (relu, L = 3, p = 0.5, float32) it cut the CG iterations from 56 to 40
#: at N = 20 000 and from 89 to 63 at N = 60 000, and set-up + CG by 8% and 31% there, against
#: rank 1024 (docs/performance.md); below N = 2048 it is an exact Cholesky of K + shift I.
STORED_PRECOND_RANK = 2048
#: Fraction of the available memory that a memory plan may use.
MEMORY_HEADROOM = 0.9


def block_bounds(n: int, block_size: int) -> tuple[int, ...]:
    """Start indices of ``ceil(n / block_size)`` near-equal blocks covering [0, n), plus n.

    Block sizes differ by at most one and none exceeds ``block_size``; the result has
    ``ceil(n / block_size) + 1`` entries, from 0 to n.
    """
    nb = -(-n // block_size)
    return tuple((i * n) // nb for i in range(nb + 1))


def tile_owner(i: int, j: int, n_blocks: int, processes: int) -> int:
    """The process that holds tile (i, j), j >= i, of a stored kernel spread over ``processes`` processes.

    The tiles of the upper triangle, numbered row by row, are dealt out in turn (tile t to process
    t mod P), so every process holds ceil or floor of m (m + 1) / (2 P) tiles.
    """
    if not 0 <= i <= j < n_blocks:
        raise ValueError(f"tile ({i}, {j}) is not in the upper triangle of {n_blocks} blocks")
    t = i * n_blocks - i * (i - 1) // 2 + (j - i)
    return t % processes


def available_memory_bytes(device: Any = None) -> int | None:
    """Free memory where a stored kernel's tiles live, in bytes (None where it cannot be read).

    On an accelerator (``device``, default this process's first device, when it is not a CPU)
    that reports ``memory_stats()``: its ``bytes_limit - bytes_in_use`` (the tiles are device
    arrays there). Otherwise ``MemAvailable`` from ``/proc/meminfo``.
    """
    if device is None:
        device = jax.local_devices()[0]
    if getattr(device, "platform", "cpu") != "cpu":
        try:
            stats = device.memory_stats()
        except Exception:  # noqa: BLE001 -- a backend without memory statistics
            stats = None
        if stats and "bytes_limit" in stats:
            return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclasses.dataclass(frozen=True)
class StoredPlan:
    """Memory plan of a stored-kernel predictor (all sizes in bytes).

    Attributes:
      n: training points N; n_test: test points; classes: C; itemsize: bytes per stored entry.
      block_size: largest block of the tiling; n_blocks: number of row blocks.
      matrix_bytes: the stored upper triangle (tiles (i, j), j >= i), about N (N + b) / 2 entries
        (with P processes: the tiles of the process holding most, about N (N + b) / (2 P)).
      build_bytes: peak extra memory while one kernel tile is computed: its NNGP and NTK
        outputs plus the recursion's working buffers on cache-sized sub-tiles
        (:func:`nwcorrupt.kernels.buffers_per_entry` x :data:`nwcorrupt.kernels.DEFAULT_TILE_BYTES`).
      solve_bytes: preconditioner set-up (2 x rank x N float64 while it is built, rank x N
        entries kept) plus ~12 float64 (N, C) vectors.
      predict_bytes: one (test_tile, N) test-train tile: its NNGP and NTK, a float64 copy of
        256 of its rows, and the recursion's working buffers.
      peak_bytes: matrix_bytes + max(build, solve, predict) + 256 MiB of runtime overhead.
      available_bytes: ``MemAvailable`` when the plan was made (None if unknown).
    """

    n: int
    n_test: int
    classes: int
    itemsize: int
    block_size: int
    n_blocks: int
    matrix_bytes: int
    build_bytes: int
    solve_bytes: int
    predict_bytes: int
    peak_bytes: int
    available_bytes: int | None

    def describe(self) -> str:
        """A few human-readable lines."""
        gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
        avail = "unknown" if self.available_bytes is None else gib(self.available_bytes)
        return (
            f"stored kernel N = {self.n}: {self.n_blocks} row blocks of <= {self.block_size}, "
            f"{self.n_blocks * (self.n_blocks + 1) // 2} tiles, {self.itemsize}-byte entries\n"
            f"  matrix (upper triangle) {gib(self.matrix_bytes)}; build +{gib(self.build_bytes)}, "
            f"solve +{gib(self.solve_bytes)}, predict +{gib(self.predict_bytes)}\n"
            f"  peak estimate {gib(self.peak_bytes)}; available now {avail} "
            f"(limit {MEMORY_HEADROOM:.0%} of it)"
        )

    def check(self) -> "StoredPlan":
        """Raise ``MemoryError`` if the peak estimate exceeds 90 % of the available memory."""
        if self.available_bytes is not None and self.peak_bytes > MEMORY_HEADROOM * self.available_bytes:
            raise MemoryError(
                f"not enough memory for the stored kernel: the plan needs about {self.peak_bytes / 2**30:.2f} GiB "
                f"but only {self.available_bytes / 2**30:.2f} GiB are available ({MEMORY_HEADROOM:.0%} may be "
                "used); reduce N, use float32 (disable x64), or use solver='cg' (streaming, no stored matrix)\n"
                + self.describe()
            )
        return self


def stored_memory_plan(
    n: int,
    *,
    n_test: int = 0,
    classes: int = 10,
    depth: int = 3,
    itemsize: int | None = None,
    block_size: int = STORED_BLOCK,
    precond_rank: int = STORED_PRECOND_RANK,
    test_tile: int = TILE_SIZE,
    available_bytes: int | None = -1,
    processes: int = 1,
) -> StoredPlan:
    """Estimate the memory of ``solver="stored_cg"`` for N training points (see :class:`StoredPlan`).

    Args:
      n: N; n_test: test points (0: no prediction step); classes: C; depth: L of the MLP.
      itemsize: bytes per stored entry (default: the current JAX float, 4 or 8).
      block_size, precond_rank, test_tile: the tiling and preconditioner options.
      available_bytes: memory to compare with; -1 (default) reads ``MemAvailable``,
        None means unknown (``check`` then passes).
      processes: P, the processes the tiles are spread over (:func:`tile_owner`); the plan is
        that of the process holding the most bytes (the preconditioner, CG vectors and test tiles
        are per process as in one process).
    """
    n = check_positive_int("n", n)
    n_test = check_positive_int("n_test", n_test, allow_zero=True)
    classes = check_positive_int("classes", classes)
    depth = check_positive_int("depth", depth)
    block_size = check_positive_int("block_size", block_size)
    rank = min(check_positive_int("precond_rank", precond_rank, allow_zero=True), n)
    test_tile = check_positive_int("test_tile", test_tile)
    if itemsize is None:
        itemsize = jnp.dtype(_precision.default_float()).itemsize
    itemsize = check_positive_int("itemsize", itemsize)
    bounds = block_bounds(n, block_size)
    sizes = np.diff(np.asarray(bounds, dtype=np.int64))
    nb = len(sizes)
    cum = np.cumsum(sizes[::-1])[::-1]  # columns from block i to the end
    processes = check_positive_int("processes", processes)
    if processes == 1:
        matrix = int(np.sum(sizes * cum)) * itemsize
    else:
        held = np.zeros(processes, dtype=np.int64)
        for i in range(nb):
            for j in range(i, nb):
                held[tile_owner(i, j, nb, processes)] += int(sizes[i]) * int(sizes[j])
        matrix = int(held.max()) * itemsize
    b = int(sizes.max())
    work = _kernels.buffers_per_entry(depth) * _kernels.DEFAULT_TILE_BYTES * itemsize // 4  # cache-sized tiles
    build = 2 * b * b * itemsize + work
    solve = 2 * rank * n * 8 + rank * n * itemsize + 12 * n * classes * 8
    rows = min(test_tile, n_test)
    predict = (2 * rows * n * itemsize + min(rows, 256) * n * 8 + work) if n_test else 0
    peak = matrix + max(build, solve, predict) + 256 * 2**20
    avail = available_memory_bytes() if available_bytes == -1 else available_bytes
    return StoredPlan(n, n_test, classes, itemsize, b, nb, matrix, build, solve, predict, peak, avail)


#: N x N matrices a dense solver holds at its peak: the kernel, ``K + r I`` and its Cholesky factor
#: (``"cholesky"``, ``"mixed_cholesky"``); the kernel, ``K + r I``, the eigenvectors and the
#: eigensolver's workspace (``"eigh"``).
DENSE_MATRICES = {"cholesky": 3, "mixed_cholesky": 3, "eigh": 4}


def check_dense_memory(n: int, solver: str, *, itemsize: int | None = None,
                       available_bytes: int | None = -1) -> int:  # fmt: skip
    """Raise ``MemoryError`` if a dense solve of N training points cannot fit, before it starts.

    Args:
      n: N; solver: a key of :data:`DENSE_MATRICES` (other solvers pass unchecked).
      itemsize: bytes per entry (default: the current JAX float, 4 or 8).
      available_bytes: memory to compare with; -1 (default) reads :func:`available_memory_bytes`
        (the first device's free memory on an accelerator, else ``MemAvailable``); None: unknown.

    Returns:
      The estimate in bytes (0 for a solver that is not dense).
    """
    n = check_positive_int("n", n)
    if solver not in DENSE_MATRICES:
        return 0
    if itemsize is None:
        itemsize = jnp.dtype(_precision.default_float()).itemsize
    need = DENSE_MATRICES[solver] * n * n * int(itemsize)
    avail = available_memory_bytes() if available_bytes == -1 else available_bytes
    if avail is not None and need > MEMORY_HEADROOM * avail:
        raise MemoryError(
            f"solver={solver!r} at N = {n} holds {DENSE_MATRICES[solver]} N x N matrices of {itemsize}-byte "
            f"entries, about {need / 2**30:.1f} GiB, but only {avail / 2**30:.1f} GiB are free "
            f"({MEMORY_HEADROOM:.0%} may be used); use solver='stored_cg' (one stored triangle, about "
            f"{n * n * itemsize / 2**31:.1f} GiB) or solver='cg' (streamed, nothing stored), or fewer points"
        )
    return need
