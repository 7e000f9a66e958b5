"""The tiled, sharded driver of the kernel computation.

The output (N1, N2) is computed tile by tile under a memory budget (see the comment
block below): on one CPU device by a host loop over compiled tile calls written into
the output (:func:`compute_tile`), elsewhere (accelerators, several devices) inside one
compiled call with the rows sharded over the devices (:func:`fill_tiles`).
:func:`plan_tiles` shows the tiling a call would use; :func:`run_tiled` is the driver
behind :func:`~nwcorrupt.kernels.kernel` and :func:`~nwcorrupt.kernels.kernel_from_gram`.
"""

from __future__ import annotations

import ctypes
import dataclasses
import functools
import mmap
import weakref
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nwcorrupt._checks import check_positive_int
from nwcorrupt.arch import MLP, Kernels, check_arch
from nwcorrupt.kernels.recursion import check_diag_finite, diag_recursion, layer_recursion
from nwcorrupt.precision import MATMUL_PRECISION, default_float

Array = jax.Array

__all__ = [
    "ACCELERATOR_MAX_COLUMNS",
    "ACCELERATOR_SQUARE_TILE",
    "ACCELERATOR_TILE_BYTES",
    "DEFAULT_MAX_COLUMNS",
    "DEFAULT_SQUARE_TILE",
    "DEFAULT_TILE_BYTES",
    "TileDefaults",
    "buffers_per_entry",
    "check_devices",
    "check_tiling",
    "compute_tile",
    "fill_tiles",
    "host_loop",
    "uses_host_loop",
    "HOST_LOOP_MIN_JAX",
    "plan_tiles",
    "run_tiled",
    "tile_defaults",
]


def buffers_per_entry(depth: int) -> int:
    """Working-memory estimate of the tiled recursion, in tile-sized buffers.

    Bytes per tile entry = this × itemsize (XLA keeps ~2-3 buffers per layer
    alive). Checked against XLA's compiled memory statistics in the tests.
    """
    return 10 + 3 * depth



def check_devices(devices: Any) -> list:
    if devices is None:
        return list(jax.local_devices())  # this process's devices (all of them in a single-process run)
    devices = list(devices)
    if not devices or not all(isinstance(dev, jax.Device) for dev in devices):
        raise ValueError(f"devices must be a non-empty sequence of jax.Device, got {devices!r}")
    if len(set(devices)) != len(devices):
        raise ValueError("devices must not repeat a device")
    return devices


def check_tiling(tile_size: Any, memory_budget: Any) -> tuple[tuple[int, int] | None, int | None]:
    tiles = None
    if tile_size is not None:
        if isinstance(tile_size, (tuple, list)):
            if len(tile_size) != 2:
                raise ValueError(f"tile_size must be an int or a (rows, cols) pair, got {tile_size!r}")
            tiles = (check_positive_int("tile_size[0]", tile_size[0]), check_positive_int("tile_size[1]", tile_size[1]))
        else:
            t = check_positive_int("tile_size", tile_size)
            tiles = (t, t)
    budget = None
    if memory_budget is not None:
        budget = check_positive_int("memory_budget", memory_budget)
    return tiles, budget


# ---------------------------------------------------------------------------
# Tiled, sharded driver.
#
# The output (N1, N2) is laid out as (n, m, N2): device k owns rows
# [k m, (k + 1) m) (N1 padded to n m). One jitted call loops (lax.fori_loop)
# over tiles of rt rows × ct columns inside every device's block and writes
# each tile in place into the loop-carried outputs, so the working memory is a
# few tile-sized arrays (which also keeps them in cache: ~2x faster than
# whole-matrix elementwise passes on CPU).
#
# Two layouts:
# * Gram first (the default): the NNGP output buffer starts as the whole
#   first-layer Gram matrix (one large matrix product per device), and every
#   tile reads its overlaps from there and overwrites them with the kernel. A
#   partial last tile is shifted back to overlap its neighbour so all tiles
#   share one static shape; as the entries it shares with earlier tiles were
#   already overwritten, it recomputes its own overlaps from the inputs.
#   (kernel_from_gram reads every tile from the given Gram rows instead.)
# * Triangular (a symmetric kernel on one device with square tiles): each tile
#   on or above the diagonal computes its own overlaps from the inputs and is
#   written with its mirror image (half the work, exactly symmetric).

_STATIC = ("arch", "want_ntk", "order", "d", "rt", "ct", "symmetric", "from_gram", "m", "n2")

#: Default bytes of one tile-sized buffer (cache-sized: a tile's working set
#: stays in a 32 MiB L3 cache).
DEFAULT_TILE_BYTES = 2**22
#: Default side of the square tiles of symmetric kernels (measured best on CPU).
DEFAULT_SQUARE_TILE = 512
#: Most columns of a default tile on the CPU.
DEFAULT_MAX_COLUMNS = 4096

#: The same three defaults on an accelerator (GPU, TPU). A CPU-sized tile (a 512 x 512 square, 2**18
#: entries) is far too little work for one step of a GPU loop: each step's elementwise kernels would
#: use a fraction of the card, and the step count (~7000 squares for N = 60 000) would make the loop's
#: per-step overhead the cost. These tiles hold 2**24 entries per buffer in float32 (a 4096 x 4096
#: square), ~1.2 GiB of working memory for L = 3 (19 buffers, ``buffers_per_entry``); a memory budget
#: still shrinks them. Chosen, not yet measured on a GPU: ``benchmarks/gpu_table.py``'s ``kernels``
#: section times both sizes there.
ACCELERATOR_TILE_BYTES = 2**26
ACCELERATOR_SQUARE_TILE = 4096
ACCELERATOR_MAX_COLUMNS = 16384


@dataclasses.dataclass(frozen=True)
class TileDefaults:
    """Default tiling of one platform: bytes of one tile-sized buffer, the side of the square tiles of
    symmetric kernels, and the most columns of a rectangular tile."""

    tile_bytes: int
    square_tile: int
    max_columns: int


def tile_defaults(devices: Sequence[jax.Device]) -> TileDefaults:
    """The default tiling for ``devices`` (by the first one's platform): cache-sized tiles on a CPU
    (:data:`DEFAULT_TILE_BYTES`, :data:`DEFAULT_SQUARE_TILE`, :data:`DEFAULT_MAX_COLUMNS`), larger ones on
    an accelerator (:data:`ACCELERATOR_TILE_BYTES`, ...)."""
    if devices[0].platform == "cpu":
        return _CPU_TILES
    return _ACCELERATOR_TILES


_CPU_TILES = TileDefaults(DEFAULT_TILE_BYTES, DEFAULT_SQUARE_TILE, DEFAULT_MAX_COLUMNS)
_ACCELERATOR_TILES = TileDefaults(ACCELERATOR_TILE_BYTES, ACCELERATOR_SQUARE_TILE, ACCELERATOR_MAX_COLUMNS)


def _tile(
    g: Array,
    q1: Array,
    dg1: dict[str, Array] | None,
    q2: Array,
    i0: Array,
    j0: Array,
    one: Array,
    *,
    arch: MLP,
    want_ntk: bool,
    order: int,
    d: int,
    rt: int,
    ct: int,
    symmetric: bool,
    m: int,
    **_: Any,
) -> tuple[Array, Array | None]:
    """Kernels of one (n, rt, ct) block of overlaps ``g`` at local rows i0, columns j0.

    ``q1`` (L−1, n, m) holds the row variances (sharded over devices on axis
    1), ``q2`` (L−1, N2) the column variances (replicated); ``dg1`` the exact
    diagonal values of a symmetric kernel.
    """
    n = g.shape[0]
    rows_q = jax.lax.dynamic_slice_in_dim(q1, i0, rt, axis=2)[..., None]  # (L-1, n, rt, 1)
    cols_q = jax.lax.dynamic_slice_in_dim(q2, j0, ct, axis=1)[:, None, None, :]  # (L-1, 1, 1, ct)
    mask = rows_diag = None
    if symmetric:
        dev = jax.lax.broadcasted_iota(jnp.int32, (n, rt, 1), 0)
        row = dev * m + i0 + jax.lax.broadcasted_iota(jnp.int32, (n, rt, 1), 1)
        col = j0 + jax.lax.broadcasted_iota(jnp.int32, (1, 1, ct), 2)
        mask = row == col
        rows_diag = {
            key: jax.lax.dynamic_slice_in_dim(v, i0, rt, axis=2)[..., None] for key, v in dg1.items() if key != "g"
        }
        rows_diag["g"] = jax.lax.dynamic_slice_in_dim(dg1["g"], i0, rt, axis=1)[..., None]
    ((K, theta),) = layer_recursion(arch, want_ntk, order, g, d, rows_q, cols_q, mask, rows_diag, one=one)
    return K, theta


def _all_finite(tile: Array) -> Array:
    return jnp.all(jnp.isfinite(tile))


@functools.partial(jax.jit, static_argnames=_STATIC + ("out_sharding",))
def fill_tiles(src, x2, q0_1, q0_2, one, *, rt, ct, m, n2, out_sharding, **static):
    """The whole native kernel computation in one compiled call.

    ``src`` (n, m, d) holds the (padded) rows of x1 — or (n, m, N2) rows of the
    Gram matrix if ``from_gram`` — sharded over devices on axis 0; ``x2``
    (N2, d) is replicated. ``q0_1`` (n, m) / ``q0_2`` (N2,) are the first-layer
    squared norms (None: computed here from src/x2). Computes the per-layer
    diagonals once, then every tile of the (n m, N2) kernel(s), written in place
    into loop-carried (n, m, N2) outputs sharded like ``src`` (each device fills
    its own rows). Returns (K, Θ or None, diag1, diag2, all_finite).
    """
    arch, want_ntk, order, d = static["arch"], static["want_ntk"], static["order"], static["d"]
    n = src.shape[0]
    if q0_1 is None:
        q0_1 = jnp.sum(src * src, axis=-1) / d
        q0_2 = jnp.sum(x2 * x2, axis=-1) / d
    diag1 = diag_recursion(arch, want_ntk, order, q0_1, d)
    diag2 = diag_recursion(arch, want_ntk, order, q0_2, d)
    L1 = arch.depth - 1
    q1, q2 = diag1["q"][:L1], diag2["q"][:L1]
    dg1 = None
    if static["symmetric"]:
        dg1 = {"g": q0_1, "ss": diag1["ss"]}
        if want_ntk:
            dg1["dd"] = diag1["dd"]
    n_rows, n_cols = -(-m // rt), -(-n2 // ct)
    zero = jnp.zeros((), jnp.int32)
    x2_scaled = None if static["from_gram"] else x2 / d

    def constrain(a: Array) -> Array:
        return jax.lax.with_sharding_constraint(a, out_sharding)

    # Symmetric kernel on one device with square tiles: compute the tiles on and
    # above the diagonal only and mirror them (half the work, exactly symmetric).
    triangular = static["symmetric"] and n == 1 and rt == ct and m == n2

    def put_triangular(out: Array, tile: Array, i0: Array, j0: Array) -> Array:
        # Entries on/above the global diagonal come from this tile, their mirror
        # images from its transpose; so every tile that writes (i, j) also writes
        # (j, i) with the same value and the result is exactly symmetric.
        upper = (i0 + jnp.arange(rt)[:, None] <= j0 + jnp.arange(ct)[None, :])[None]
        cur = jax.lax.dynamic_slice(out, (zero, i0, j0), (1, rt, ct))
        out = jax.lax.dynamic_update_slice(out, jnp.where(upper, tile, cur), (zero, i0, j0))
        cur = jax.lax.dynamic_slice(out, (zero, j0, i0), (1, ct, rt))
        lower = (j0 + jnp.arange(ct)[:, None] > i0 + jnp.arange(rt)[None, :])[None]
        return jax.lax.dynamic_update_slice(out, jnp.where(lower, jnp.swapaxes(tile, 1, 2), cur), (zero, j0, i0))

    def overlaps(r: Array, c: Array, i0: Array, j0: Array, out_k: Array) -> Array:
        """The (n, rt, ct) first-layer overlaps of the tile at local rows i0, columns j0."""
        if static["from_gram"]:
            return jax.lax.dynamic_slice(src, (zero, i0, j0), (n, rt, ct))

        def recomputed() -> Array:
            x1t = jax.lax.dynamic_slice_in_dim(src, i0, rt, axis=1)
            x2t = jax.lax.dynamic_slice_in_dim(x2_scaled, j0, ct, axis=0)
            return jnp.einsum("nrd,cd->nrc", x1t, x2t, precision=MATMUL_PRECISION)

        def stored() -> Array:
            return jax.lax.dynamic_slice(out_k, (zero, i0, j0), (n, rt, ct))

        if triangular:
            return recomputed()
        # Read from the Gram matrix held in out_k, except for a shifted tile, whose
        # entries shared with earlier tiles were already overwritten. The branch
        # also materialises the tile: no read of out_k is fused into the
        # consumers, which XLA would otherwise order after the in-place write
        # of this tile by copying all of out_k.
        return jax.lax.cond((i0 < r * rt) | (j0 < c * ct), recomputed, stored)

    def tile_at(r: Array, c: Array, outs: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        out_k, out_t, finite = outs
        i0 = jnp.minimum(r * rt, m - rt).astype(jnp.int32)
        j0 = jnp.minimum(c * ct, n2 - ct).astype(jnp.int32)
        g = overlaps(r, c, i0, j0, out_k)
        K, theta = _tile(g, q1, dg1, q2, i0, j0, one, rt=rt, ct=ct, m=m, **static)
        # Θ^L = K^L + (finite or not) is not finite wherever K^L is not: checking Θ covers both.
        finite = finite & _all_finite(K if theta is None else theta)
        if triangular:
            out_k = put_triangular(out_k, K, i0, j0)
            return out_k, (out_t if theta is None else put_triangular(out_t, theta, i0, j0)), finite
        out_k = jax.lax.dynamic_update_slice(out_k, K, (zero, i0, j0))
        if theta is not None:
            out_t = jax.lax.dynamic_update_slice(out_t, theta, (zero, i0, j0))
        return out_k, out_t, finite

    def row_loop(r: Array, outs: tuple[Array, Array, Array]) -> tuple[Array, Array, Array]:
        if n_cols == 1:
            return tile_at(r, zero, outs)
        return jax.lax.fori_loop(r if triangular else 0, n_cols, lambda c, o: tile_at(r, c, o), outs)

    if triangular or static["from_gram"]:
        out_k = constrain(jnp.zeros((n, m, n2), src.dtype))
    else:
        # (x1 x2ᵀ/d as x1 (x2/d)ᵀ: the product then writes the output buffer directly.)
        out_k = constrain(jnp.einsum("nmd,cd->nmc", src, x2_scaled, precision=MATMUL_PRECISION))
    out_t = constrain(jnp.zeros((n, m, n2), src.dtype)) if want_ntk else jnp.zeros((), src.dtype)
    outs = (out_k, out_t, jnp.ones((), bool))
    if n_rows == 1:
        out_k, out_t, finite = row_loop(zero, outs)
    else:
        out_k, out_t, finite = jax.lax.fori_loop(0, n_rows, row_loop, outs)
    flat = (n * m, n2)
    return out_k.reshape(flat), (out_t.reshape(flat) if want_ntk else None), diag1, diag2, finite


# ---------------------------------------------------------------------------
# Host loop (one CPU device).
#
# XLA's CPU backend splits an elementwise fusion over its threads only in the entry
# computation of a compiled call: inside a while loop (fill_tiles' loop over tiles)
# every fusion runs on one core (measured under jax 0.10: a chain of arcsines over a
# 4000 x 4000 matrix took 0.24 s in 125-row tiles in a fori_loop, 0.12 s as one
# compiled call per tile). So on a single CPU device each tile is its own compiled call
# (its overlaps, recursion and finiteness flag), dispatched asynchronously while the host
# copies the previous tile into the outputs: page-aligned blocks from the C allocator
# (see _aligned_empty), which jax then wraps without a copy. A tile's region of the
# output is written only after the call that read its overlaps from there has finished.

#: The first jax version whose CPU runtime was measured to run loop-body fusions on one core
#: (0.10.2; under 0.5.3, the reference environment's, fill_tiles' loop was split over the
#: threads and the host loop measured 1.3-1.7x slower, so older versions keep the loop).
HOST_LOOP_MIN_JAX = (0, 10)


def uses_host_loop(devices: Sequence[jax.Device]) -> bool:
    """Whether :func:`run_tiled` takes the host loop on ``devices``: one CPU device under a
    jax of at least :data:`HOST_LOOP_MIN_JAX`."""
    version = tuple(int(part) for part in jax.__version__.split(".")[:2])
    return len(devices) == 1 and devices[0].platform == "cpu" and version >= HOST_LOOP_MIN_JAX


_TILE_STATIC = ("arch", "want_ntk", "order", "d", "rt", "ct", "symmetric", "from_gram", "m", "transpose")


@functools.partial(jax.jit, static_argnames=_TILE_STATIC)
def compute_tile(src, x2s, q1, q2, dg1, i0, j0, one, *, rt, ct, m, transpose, **static):
    """The kernels of one (rt, ct) tile at rows i0, columns j0, as one compiled call.

    ``src`` (N1, d) holds x1 — or (N1, N2) first-layer overlaps if ``from_gram``;
    ``x2s`` (N2, d) is x2 / d (unused with ``from_gram``); ``q1`` (L−1, N1) and ``q2``
    (L−1, N2) the per-layer variances; ``dg1`` the exact diagonal values of a symmetric
    kernel (None otherwise). Returns (K, Θ or None, all_finite), each tile (rt, ct);
    with ``transpose`` also Kᵀ and Θᵀ (for the mirror image of a triangular tile).
    """
    if static["from_gram"]:
        g = jax.lax.dynamic_slice(src, (i0, j0), (rt, ct))
    else:
        x1t = jax.lax.dynamic_slice_in_dim(src, i0, rt, axis=0)
        x2t = jax.lax.dynamic_slice_in_dim(x2s, j0, ct, axis=0)
        g = jnp.matmul(x1t, x2t.T, precision=MATMUL_PRECISION)
    dg = None if dg1 is None else {key: v[..., None, :] if key != "g" else v[None] for key, v in dg1.items()}
    K, theta = _tile(g[None], q1[:, None, :], dg, q2, i0, j0, one, rt=rt, ct=ct, m=m, **static)
    K = K[0]
    theta = None if theta is None else theta[0]
    finite = _all_finite(K if theta is None else theta)
    if not transpose:
        return K, theta, finite, None, None
    return K, theta, finite, K.T, (None if theta is None else theta.T)


@functools.lru_cache(maxsize=1)
def _libc() -> Any:
    """The C library (for posix_memalign/free), or None where it cannot be loaded."""
    try:
        libc = ctypes.CDLL(None)
        libc.posix_memalign.argtypes = (ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t, ctypes.c_size_t)
        libc.posix_memalign.restype = ctypes.c_int
        libc.free.argtypes = (ctypes.c_void_p,)
        libc.free.restype = None
        return libc
    except (OSError, AttributeError):
        return None


def _aligned_empty(shape: tuple[int, int], dtype: Any) -> np.ndarray:
    """An uninitialised C-contiguous array on page-aligned memory from the C allocator.

    Page-aligned, so ``jax.device_put`` on a CPU device wraps it without copying. Not
    NumPy's allocator: NumPy asks for transparent huge pages on large arrays, and where
    the kernel cannot supply them each first touch of a page was measured 4x slower
    (128 MiB: 0.32-0.41 s against 0.07-0.09 s on this project's CI machine). Unlike a
    private mmap, memory freed by an earlier result can be reused without page faults.
    The memory is freed when the array (and whatever wraps it) is gone.
    """
    count = int(np.prod(shape))
    nbytes = max(1, count * np.dtype(dtype).itemsize)
    libc = _libc()
    if libc is None:
        raw = np.frombuffer(mmap.mmap(-1, nbytes), dtype=np.uint8)
    else:
        ptr = ctypes.c_void_p()
        if libc.posix_memalign(ctypes.byref(ptr), 4096, nbytes) != 0 or not ptr.value:
            raise MemoryError(f"could not allocate {nbytes} bytes for a kernel output of shape {tuple(shape)}")
        buf = (ctypes.c_char * nbytes).from_address(ptr.value)
        weakref.finalize(buf, libc.free, ptr.value)
        raw = np.frombuffer(buf, dtype=np.uint8)
    return raw[: count * np.dtype(dtype).itemsize].view(dtype).reshape(shape)


def _write_triangular(out: np.ndarray, tile: np.ndarray, tile_t: np.ndarray, i0: int, j0: int) -> None:
    """Write a tile on or above the diagonal (i0 <= j0) and its mirror image so that every
    entry and its mirror come from the same tile value (the result is exactly symmetric)."""
    rt, ct = tile.shape
    if i0 + rt <= j0:  # wholly above the diagonal
        out[i0 : i0 + rt, j0 : j0 + ct] = tile
        out[j0 : j0 + ct, i0 : i0 + rt] = tile_t
        return
    rows = i0 + np.arange(rt)[:, None]
    cols = j0 + np.arange(ct)[None, :]
    blk = out[i0 : i0 + rt, j0 : j0 + ct]
    np.copyto(blk, tile, where=rows <= cols)
    mirror = out[j0 : j0 + ct, i0 : i0 + rt]
    np.copyto(mirror, tile_t, where=cols.T > rows.T)


def host_loop(
    arch: MLP,
    src: Array,
    x2: Array,
    *,
    want_ntk: bool,
    order: int,
    d: int,
    q0_1: Array | None,
    q0_2: Array | None,
    symmetric: bool,
    from_gram: bool,
    device: jax.Device,
    rt: int,
    ct: int,
    want_nngp: bool = True,
) -> tuple[Array | None, Array | None, dict[str, Array], dict[str, Array], bool]:
    """The kernel on one CPU device: one compiled call per tile, written into the output on the host.

    Same inputs as :func:`fill_tiles` without the device axis (``src`` (N1, d) or (N1, N2)).
    A symmetric kernel with square tiles computes the tiles on and above the diagonal only
    and mirrors them. Returns (K or None, Θ or None, diag1, diag2, all_finite), K and Θ on
    ``device`` (K None unless ``want_nngp``: the NTK alone does not copy the NNGP out).
    """
    N1 = src.shape[0]
    N2 = src.shape[1] if from_gram else x2.shape[0]
    dtype = np.dtype(src.dtype)
    src = jax.device_put(src, device)
    x2 = jax.device_put(x2, device)
    if q0_1 is None:
        q0_1, q0_2 = _squared_norms(src, x2, d)
    q0_1 = jax.device_put(q0_1, device)
    diag1 = _diag(q0_1, arch=arch, want_ntk=want_ntk, order=order, d=d)
    diag2 = diag1 if (symmetric and q0_2 is None) else _diag(
        jax.device_put(q0_2, device), arch=arch, want_ntk=want_ntk, order=order, d=d)
    L1 = arch.depth - 1
    q1, q2 = diag1["q"][:L1], diag2["q"][:L1]
    dg1 = None
    if symmetric:
        dg1 = {"g": q0_1, "ss": diag1["ss"]}
        if want_ntk:
            dg1["dd"] = diag1["dd"]
    x2s = None if from_gram else _scaled(x2, d)
    one = jax.device_put(jnp.ones((), dtype), device)
    triangular = symmetric and rt == ct and N1 == N2
    static = dict(arch=arch, want_ntk=want_ntk, order=order, d=d, rt=rt, ct=ct, symmetric=symmetric,
                  from_gram=from_gram, m=N1, transpose=triangular)
    out_k = _aligned_empty((N1, N2), dtype) if want_nngp or not want_ntk else None
    out_t = _aligned_empty((N1, N2), dtype) if want_ntk else None
    finite = True
    # Gram first (as in fill_tiles): one large product writes x1 (x2/d)ᵀ into the NNGP
    # output, and each tile reads its overlaps from there before its kernel overwrites them
    # (tiles read and written are disjoint; a shifted last tile recomputes its overlaps).
    gram = None
    if out_k is not None and not (from_gram or triangular):
        np.matmul(np.asarray(src), np.asarray(x2s).T, out=out_k)
        gram = jax.device_put(out_k, device)
    static_gram = dict(static, from_gram=True)

    def write(i0: int, j0: int, res: tuple) -> None:
        nonlocal finite
        K, theta, ok, Kt, theta_t = res
        if triangular:
            if out_k is not None:
                _write_triangular(out_k, np.asarray(K), np.asarray(Kt), i0, j0)
            if want_ntk:
                _write_triangular(out_t, np.asarray(theta), np.asarray(theta_t), i0, j0)
        else:
            if out_k is not None:
                out_k[i0 : i0 + rt, j0 : j0 + ct] = np.asarray(K)
            if want_ntk:
                out_t[i0 : i0 + rt, j0 : j0 + ct] = np.asarray(theta)
        finite = finite and bool(ok)

    pending = None
    n_rows, n_cols = -(-N1 // rt), -(-N2 // ct)
    for r in range(n_rows):
        for c in range(r if triangular else 0, n_cols):
            i0, j0 = min(r * rt, N1 - rt), min(c * ct, N2 - ct)
            if gram is not None and i0 == r * rt and j0 == c * ct:
                res = compute_tile(gram, None, q1, q2, dg1, np.int32(i0), np.int32(j0), one, **static_gram)
            else:
                res = compute_tile(src, x2s, q1, q2, dg1, np.int32(i0), np.int32(j0), one, **static)
            if pending is not None:
                write(*pending)
            pending = (i0, j0, res)
    write(*pending)
    del gram
    K = None if out_k is None else jax.device_put(out_k, device)
    theta = None if out_t is None else jax.device_put(out_t, device)
    return K, theta, diag1, diag2, finite


@functools.partial(jax.jit, static_argnames=("d",))
def _squared_norms(x1: Array, x2: Array, d: int) -> tuple[Array, Array]:
    return jnp.sum(x1 * x1, axis=-1) / d, jnp.sum(x2 * x2, axis=-1) / d


@functools.partial(jax.jit, static_argnames=("d",))
def _scaled(x: Array, d: int) -> Array:
    return x / d


@functools.partial(jax.jit, static_argnames=("arch", "want_ntk", "order", "d"))
def _diag(q0: Array, *, arch: MLP, want_ntk: bool, order: int, d: int) -> dict[str, Array]:
    return diag_recursion(arch, want_ntk, order, q0, d)


def _even_side(n: int, target: int) -> int:
    """A tile side <= target for n entries: n itself if it fits, else a divisor of n in
    [target/2, target] if there is one (the tiles then partition n exactly, with no
    shifted last tile to recompute), else target."""
    if n <= target:
        return n
    for side in range(target, max(1, target // 2) - 1, -1):
        if n % side == 0:
            return side
    return target


def _choose_tiles(
    m: int,
    N2: int,
    n: int,
    width: int,
    itemsize: int,
    tiles: tuple[int, int] | None,
    budget: int | None,
    depth: int,
    square: bool,
    defaults: TileDefaults,
) -> tuple[int, int]:
    """Rows ``rt`` (per device) and columns ``ct`` of one tile (equal if ``square``).

    Without ``tiles`` the sizes come from ``defaults`` (:func:`tile_defaults` of the devices).

    ``width`` is the per-row input size (d, or N2 for a Gram source). The
    working memory of a call is estimated as
    n·rt·ct·buffers_per_entry(L)·itemsize (one tile per device) plus the tiles'
    input slices plus a part that does not depend on the tiles: per-point
    temporaries of the squared norms and the diagonal recursion,
    (n m + N2)(width + 8 L)·itemsize. It must fit in ``budget`` bytes.
    """
    if tiles is not None:
        rt, ct = min(tiles[0], m), min(tiles[1], N2)
        if square:
            rt = ct = min(rt, ct)
    else:
        if square:
            rt = ct = max(1, min(m, N2, defaults.square_tile))
        else:
            ct = _even_side(N2, defaults.max_columns)
            rt = _even_side(m, max(1, defaults.tile_bytes // (itemsize * ct)))
    if budget is None:
        return rt, ct
    fixed = itemsize * (n * m + N2) * (width + 8 * depth)

    def cost(r: int, c: int) -> int:
        return fixed + itemsize * (n * r * c * buffers_per_entry(depth) + (n * r + c) * width)

    if cost(rt, ct) <= budget:
        return rt, ct
    # Shrink the larger side first until the tile fits.
    while cost(rt, ct) > budget and (rt > 1 or ct > 1):
        if square:
            rt = ct = max(1, rt // 2)
        elif rt >= ct and rt > 1:
            rt = max(1, rt // 2)
        else:
            ct = max(1, ct // 2)
    if cost(rt, ct) > budget:
        raise ValueError(
            f"memory_budget={budget} bytes is too small: even 1x1 tiles need {cost(1, 1)} bytes "
            f"({fixed} for per-point temporaries of {n * m + N2} points with {width} input features)"
        )
    return rt, ct


def plan_tiles(
    arch: MLP,
    n1: int,
    n2: int,
    d: int,
    *,
    tile_size: int | tuple[int, int] | None = None,
    memory_budget: int | None = None,
    devices: Sequence[jax.Device] | None = None,
    symmetric: bool = False,
) -> tuple[int, int]:
    """The (rows per device, columns) tile :func:`kernel` uses for an (n1, n2) kernel of d features.

    Without ``tile_size``/``memory_budget`` tiles are cache-sized on a CPU
    (:data:`DEFAULT_TILE_BYTES` per buffer, at most 4096 columns) and larger on an
    accelerator (:func:`tile_defaults`; ``devices`` None means the default device). With a
    budget, the estimated working memory (see :func:`_choose_tiles`) fits in it.
    A ``symmetric`` kernel (x2 None) on one device uses square tiles and
    computes only those on and above the diagonal.
    """
    arch = check_arch(arch)
    n1 = check_positive_int("n1", n1)
    n2 = check_positive_int("n2", n2)
    d = check_positive_int("d", d)
    tiles, budget = check_tiling(tile_size, memory_budget)
    devices = check_devices(devices)
    n = len(devices)
    itemsize = jnp.dtype(default_float()).itemsize
    square = bool(symmetric) and n == 1
    return _choose_tiles(-(-n1 // n), n2, n, d, itemsize, tiles, budget, arch.depth, square, tile_defaults(devices))


def run_tiled(
    arch: MLP,
    src: Array,
    x2: Array,
    *,
    want: tuple[str, ...],
    order: int,
    d: int,
    q0_1: Array | None,
    q0_2: Array | None,
    symmetric: bool,
    from_gram: bool,
    devices: list,
    tiles: tuple[int, int] | None,
    budget: int | None,
    names: tuple[str, str],
) -> Kernels:
    """Shared driver of :func:`kernel` and :func:`kernel_from_gram` (``names``: the inputs, for errors)."""
    want_ntk = "ntk" in want
    N1, N2 = src.shape[0], (src.shape[1] if from_gram else x2.shape[0])
    n = len(devices)
    m = -(-N1 // n)
    N1p = n * m
    dtype = src.dtype
    square = symmetric and n == 1
    rt, ct = _choose_tiles(
        m, N2, n, src.shape[1], jnp.dtype(dtype).itemsize, tiles, budget, arch.depth, square, tile_defaults(devices)
    )

    if uses_host_loop(devices):
        K, theta, diag1, diag2, finite = host_loop(
            arch, src, x2, want_ntk=want_ntk, order=order, d=d, q0_1=q0_1, q0_2=q0_2, symmetric=symmetric,
            from_gram=from_gram, device=devices[0], rt=rt, ct=ct, want_nngp="nngp" in want,
        )
        diag1 = {key: np.asarray(v) for key, v in diag1.items()}
    else:
        mesh = Mesh(np.asarray(devices), ("dev",))
        rows = NamedSharding(mesh, PartitionSpec("dev"))
        repl = NamedSharding(mesh, PartitionSpec())

        def rows_of(a: Array) -> Array:
            if N1p != N1:
                a = jnp.pad(a, [(0, N1p - N1)] + [(0, 0)] * (a.ndim - 1))
            return jax.device_put(a.reshape((n, m) + a.shape[1:]), rows)

        K, theta, diag1, diag2, finite = fill_tiles(
            rows_of(src),
            jax.device_put(x2, repl),
            None if q0_1 is None else rows_of(q0_1),
            None if q0_2 is None else jax.device_put(q0_2, repl),
            jax.device_put(jnp.ones((), dtype), repl),
            arch=arch, want_ntk=want_ntk, order=order, d=d, rt=rt, ct=ct, symmetric=symmetric,
            from_gram=from_gram, m=m, n2=N2, out_sharding=rows,
        )  # fmt: skip
        diag1 = {key: np.asarray(v).reshape(v.shape[0], N1p)[:, :N1] for key, v in diag1.items()}
    check_diag_finite(arch, diag1, names[0])
    check_diag_finite(arch, diag2, names[1])
    if not bool(finite):
        raise FloatingPointError(
            f"the kernel contains inf/NaN although every layer's variance is finite "
            f"(largest variance {float(np.max(np.abs(diag1['q']))):.3g}); intermediate products overflowed for "
            f"W_std={arch.W_std}, b_std={arch.b_std}, depth={arch.depth} in {np.dtype(dtype)} "
            "(enable x64 or reduce W_std/b_std/depth)"
        )
    if N1p != N1:
        K = K[:N1]
        theta = None if theta is None else theta[:N1]
    return Kernels(nngp=K if "nngp" in want else None, ntk=theta if want_ntk else None)


