"""Kernels of whole networks, block by block under a memory budget and spread over devices.

A pooled convolutional kernel keeps (H·W)² covariance entries per pair of inputs
(MNIST-sized: 614 656, ~5 MB in float64), so N² pairs never fit at once. The
driver cuts x1 and x2 into blocks of ``b`` examples, computes the kernel of each
pair of blocks in one compiled program (``lax.map`` over a group of block pairs,
so Python dispatches few calls), and writes the results into host arrays. ``b``
is the largest size whose estimated working memory, :func:`block_bytes`, fits
the budget; the estimate is checked against XLA's compiled memory statistics in
the tests. Symmetric calls (x2 = None) compute the upper triangle of blocks
only, with the diagonal pairs exact (correlation 1) and the diagonal blocks
symmetrised; the lower triangle is their mirror, so the result is exactly symmetric. Groups of block pairs go round-robin to ``devices``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt.stax.layers import LayerSpec
from nwcorrupt.stax.state import KernelState, input_state

Array = jax.Array

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "LAYER_BUFFERS",
    "PEAK_BUFFERS",
    "block_bytes",
    "choose_block",
    "network_kernels",
    "pair_sizes",
    "transform_inputs",
]

#: Default working-memory budget of one block computation, in bytes.
DEFAULT_MEMORY_BUDGET = 1 << 30
#: Working memory of a block, in buffers of the largest layer's size (inputs, duals, NTK) ...
PEAK_BUFFERS = 6
#: ... plus this many buffers of every layer's size: XLA keeps intermediates of the layer chain
#: alive inside the blocked loop (measured 3-3.5 per layer on CPU, growing linearly with depth).
LAYER_BUFFERS = 4
#: Block pairs computed by one compiled call at most.
MAX_GROUP = 64


def transform_inputs(
    spec: LayerSpec, x1: Array, x2: Array, in_full: bool, want_ntk: bool, same: Array | None
) -> KernelState:
    """The network's output state for inputs x1 (N1, ...) and x2 (N2, ...) (pure jnp, jit/grad friendly)."""
    return spec.transform(input_state(x1, x2, in_full, want_ntk, same))


def pair_sizes(spec: LayerSpec, x1: Array, in_full: bool, want_ntk: bool) -> tuple[int, int]:
    """(peak, total): the largest number of covariance entries per input pair over the layers, and their sum."""
    one = jax.ShapeDtypeStruct((1,) + tuple(x1.shape[1:]), x1.dtype)
    out = jax.eval_shape(lambda a, b: transform_inputs(spec, a, b, in_full, want_ntk, None), one, one)
    return out.peak, out.total


def block_bytes(b1: int, b2: int, sizes: tuple[int, int], itemsize: int) -> int:
    """Estimated working memory of one (b1, b2) block: pair covariances plus each input's own.

    ``sizes`` = (peak, total) from :func:`pair_sizes`.
    """
    peak, total = sizes
    return (PEAK_BUFFERS * peak + LAYER_BUFFERS * total) * itemsize * (b1 * b2 + b1 + b2)


def choose_block(n1: int, n2: int, sizes: tuple[int, int], itemsize: int, budget: int) -> int:
    """The largest block side b <= max(n1, n2) whose :func:`block_bytes` fits ``budget``.

    Raises ``MemoryError`` naming ``memory_budget`` when even one pair does not fit.
    """
    need = block_bytes(1, 1, sizes, itemsize)
    if need > budget:
        raise MemoryError(
            f"memory_budget={budget} bytes is too small for this network: one pair of inputs needs about "
            f"{need} bytes (up to {sizes[0]} covariance entries per pair and layer); raise memory_budget"
        )
    lo, hi = 1, max(n1, n2)
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if block_bytes(min(mid, n1), min(mid, n2), sizes, itemsize) <= budget:
            lo = mid
        else:
            hi = mid - 1
    return lo


@functools.partial(jax.jit, static_argnames=("spec", "in_full", "want_ntk", "symmetric"))
def _group(
    xa: Array, xb: Array, ia: Array, jb: Array, *, spec: LayerSpec, in_full: bool, want_ntk: bool, symmetric: bool
) -> tuple[Array, Array | None]:
    b = xa.shape[1]

    def one(args: tuple) -> tuple[Array, Array | None]:
        a, bb, i, j = args
        same = None
        if symmetric:
            rows = i * b + jnp.arange(b)
            cols = j * b + jnp.arange(bb.shape[0])
            same = rows[:, None] == cols[None, :]
        out = transform_inputs(spec, a, bb, in_full, want_ntk, same)
        return out.nngp, out.ntk

    return jax.lax.map(one, (xa, xb, ia, jb))


def _mirror(block: np.ndarray, nd: int, full: bool) -> np.ndarray:
    """The (j, i) block from the (i, j) one: swap the examples and, in the full layout, each (h, h') pair."""
    axes = [1, 0]
    for i in range(nd):
        axes += [2 + 2 * i + 1, 2 + 2 * i] if full else [2 + i]
    return np.transpose(block, axes)


def _pad_rows(x: np.ndarray, n: int) -> np.ndarray:
    if x.shape[0] == n:
        return x
    return np.concatenate([x, np.repeat(x[:1], n - x.shape[0], axis=0)])


def network_kernels(
    spec: LayerSpec,
    x1: np.ndarray,
    x2: np.ndarray | None,
    *,
    in_full: bool,
    out_full: bool,
    out_nd: int,
    want_ntk: bool,
    budget: int,
    block: int | None,
    devices: Sequence[Any],
) -> tuple[np.ndarray, np.ndarray | None]:
    """(nngp, ntk) host arrays (N1, N2, *S) of the network ``spec``, block by block (see the module docstring)."""
    symmetric = x2 is None
    xb_all = x1 if symmetric else x2
    n1, n2 = x1.shape[0], xb_all.shape[0]
    itemsize = x1.dtype.itemsize
    if block is None:
        sizes = pair_sizes(spec, jnp.asarray(x1[:1]), in_full, want_ntk)
        block = choose_block(n1, n2, sizes, itemsize, budget)
    b1, b2 = min(block, n1), min(block, n2)
    if symmetric:
        b1 = b2 = min(b1, b2)
    nb1, nb2 = -(-n1 // b1), -(-n2 // b2)
    xa_blocks = _pad_rows(x1, nb1 * b1).reshape((nb1, b1) + x1.shape[1:])
    xb_blocks = _pad_rows(xb_all, nb2 * b2).reshape((nb2, b2) + xb_all.shape[1:])
    pairs = [(i, j) for i in range(nb1) for j in range(nb2) if not symmetric or j >= i]
    group = min(len(pairs), MAX_GROUP)
    pairs_padded = pairs + [pairs[-1]] * (-len(pairs) % group)

    out_nngp: np.ndarray | None = None
    out_ntk: np.ndarray | None = None
    pending: list[tuple[list, Any]] = []

    def drain() -> None:
        nonlocal out_nngp, out_ntk
        for chunk, result in pending:
            nngp, ntk = (np.asarray(v) if v is not None else None for v in result)
            if out_nngp is None:
                layout = nngp.shape[3:]
                out_nngp = np.empty((nb1 * b1, nb2 * b2) + layout, nngp.dtype)
                out_ntk = np.empty_like(out_nngp) if want_ntk else None
            for g, (i, j) in enumerate(chunk):
                for dst, src in ((out_nngp, nngp), (out_ntk, ntk)):
                    if dst is None:
                        continue
                    value = src[g]
                    if symmetric and i == j:  # exactly symmetric diagonal blocks
                        value = 0.5 * (value + _mirror(value, out_nd, out_full))
                    dst[i * b1 : (i + 1) * b1, j * b2 : (j + 1) * b2] = value
                    if symmetric and i != j:
                        dst[j * b1 : (j + 1) * b1, i * b2 : (i + 1) * b2] = _mirror(src[g], out_nd, out_full)
        pending.clear()

    for call, start in enumerate(range(0, len(pairs_padded), group)):
        chunk = pairs_padded[start : start + group]
        ia = np.array([i for i, _ in chunk], np.int32)
        jb = np.array([j for _, j in chunk], np.int32)
        device = devices[call % len(devices)]
        args = [jax.device_put(v, device) for v in (xa_blocks[ia], xb_blocks[jb], ia, jb)]
        result = _group(*args, spec=spec, in_full=in_full, want_ntk=want_ntk, symmetric=symmetric)
        pending.append((chunk[: max(0, min(group, len(pairs) - start))], result))
        if len(pending) >= len(devices):
            drain()
    drain()
    assert out_nngp is not None
    nngp = out_nngp[:n1, :n2]
    ntk = None if out_ntk is None else out_ntk[:n1, :n2]
    return nngp, ntk
