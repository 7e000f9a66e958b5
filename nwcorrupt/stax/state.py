"""The kernel state that flows through a network's layers.

A :class:`KernelState` holds, for a block of row inputs x1 (N1 of them) and
column inputs x2 (N2), the infinite-width covariances of one layer's outputs:

* ``nngp`` (N1, N2, *S) — E[f(x1) f(x2)] per channel;
* ``ntk`` (N1, N2, *S) or None — the neural tangent kernel;
* ``cov1`` (N1, *S) and ``cov2`` (N2, *S) — each input's covariance with itself,
  which the activations need for their variances;
* ``same`` (N1, N2) bool or None — the pairs (i, j) whose two inputs are the same
  point (a symmetric call); their covariance is taken from ``cov1`` so that the
  correlation is exactly 1 there.

The spatial part ``S`` is empty for vectors, ``(H, W)`` in the diagonal layout
and ``(H, H', W, W')`` in the full layout (see :mod:`nwcorrupt.stax.spatial`);
``full`` says which. ``shape`` is the per-example shape ``(*spatial, channels)``
of the finite network's tensor at this layer: the standard parameterisation
needs its channel count, the spatial layers its sizes. ``peak`` is the largest
number of covariance entries per input pair met so far and ``total`` their sum
over the layers so far; both size the blocks of the tiled driver.
``gaussian`` says whether the layer's outputs are Gaussian at infinite width (the
output of a Dense or Conv layer, pooled or summed), which an activation needs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from nwcorrupt.precision import MATMUL_PRECISION
from nwcorrupt.stax.spatial import spatial_diagonal

Array = jax.Array

__all__ = ["KernelState", "covariance_state", "input_state", "map_covariances", "pair_entries", "pixel_eye", "to_diagonal", "variances"]


@dataclasses.dataclass(frozen=True)
class KernelState:
    """Covariances of one layer's outputs for a block of input pairs (a pytree)."""

    nngp: Array
    ntk: Array | None
    cov1: Array
    cov2: Array
    same: Array | None
    shape: tuple[int, ...]
    full: bool
    peak: int
    gaussian: bool = False
    total: int = 0

    @property
    def nd(self) -> int:
        """Number of spatial dimensions (0 for vectors)."""
        return len(self.shape) - 1

    @property
    def channels(self) -> int:
        """Channel count of the finite network at this layer (the fan-in of the next Dense)."""
        return self.shape[-1]

    def replace(self, **changes) -> KernelState:
        new = dataclasses.replace(self, **changes)
        entries = pair_entries(new)
        return dataclasses.replace(new, peak=max(new.peak, entries), total=new.total + entries)


jax.tree_util.register_pytree_node(
    KernelState,
    lambda s: ((s.nngp, s.ntk, s.cov1, s.cov2, s.same), (s.shape, s.full, s.peak, s.gaussian, s.total)),
    lambda aux, ch: KernelState(*ch, *aux),
)


def map_covariances(state: KernelState, fn, **changes) -> KernelState:
    """``state`` with ``fn(array, batch_ndim)`` applied to nngp, ntk (pairs: 2 batch axes) and cov1, cov2 (1)."""
    return state.replace(
        nngp=fn(state.nngp, 2),
        ntk=None if state.ntk is None else fn(state.ntk, 2),
        cov1=fn(state.cov1, 1),
        cov2=fn(state.cov2, 1),
        **changes,
    )


def pair_entries(state: KernelState) -> int:
    """Covariance entries per input pair: 1, prod(S) (diagonal) or prod(S)² (full)."""
    n = 1
    for size in state.shape[:-1]:
        n *= size * size if state.full else size
    return n


def _full_einsum(nd: int, same_batch: bool) -> str:
    letters = "hwdefg"[:nd]
    primes = "HWDEFG"[:nd]
    a = "a" + letters + "c"
    b = ("a" if same_batch else "b") + primes + "c"
    out = ("a" if same_batch else "ab") + "".join(x + y for x, y in zip(letters, primes))
    return f"{a},{b}->{out}"


def _diag_einsum(nd: int, same_batch: bool) -> str:
    letters = "hwdefg"[:nd]
    if same_batch:
        return f"a{letters}c,a{letters}c->a{letters}"
    return f"a{letters}c,b{letters}c->ab{letters}"


def input_state(x1: Array, x2: Array, full: bool, want_ntk: bool, same: Array | None = None) -> KernelState:
    """The covariances of the inputs themselves: ⟨x1, x2⟩ / C over channels, NTK zero.

    ``x1`` (N1, *spatial, C), ``x2`` (N2, *spatial, C) of one float dtype.
    """
    nd = x1.ndim - 2
    c = x1.shape[-1]
    if nd == 0:
        nngp = jnp.matmul(x1, x2.T, precision=MATMUL_PRECISION) / c
        cov1 = jnp.sum(x1 * x1, axis=-1) / c
        cov2 = jnp.sum(x2 * x2, axis=-1) / c
    else:
        spec = _full_einsum if full else _diag_einsum
        nngp = jnp.einsum(spec(nd, False), x1, x2, precision=MATMUL_PRECISION) / c
        cov1 = jnp.einsum(spec(nd, True), x1, x1, precision=MATMUL_PRECISION) / c
        cov2 = jnp.einsum(spec(nd, True), x2, x2, precision=MATMUL_PRECISION) / c
    return covariance_state(nngp, cov1, cov2, tuple(int(v) for v in x1.shape[1:]), full, want_ntk, same)


def covariance_state(
    nngp: Array,
    cov1: Array,
    cov2: Array,
    shape: tuple[int, ...],
    full: bool,
    want_ntk: bool,
    same: Array | None = None,
) -> KernelState:
    """The input state of a network from given input covariances (e.g. noise-averaged pixel overlaps).

    ``nngp`` (N1, N2, *S), ``cov1`` (N1, *S), ``cov2`` (N2, *S) in the layout ``full`` says (see the
    module docstring), already averaged over the C channels; ``shape`` = (*spatial, C) of one input.
    The NTK starts at zero, as for inputs.
    """
    nd = len(shape) - 1
    state = KernelState(
        nngp=nngp,
        ntk=jnp.zeros_like(nngp) if want_ntk else None,
        cov1=cov1,
        cov2=cov2,
        same=same,
        shape=tuple(int(v) for v in shape),
        full=bool(full and nd > 0),
        peak=0,
    )
    return state.replace()


def pixel_eye(spatial: tuple[int, ...]) -> Array:
    """Boolean (*S·S) mask of the same-position pairs in the full layout, e.g. (H, H', W, W')."""
    eye = jnp.ones((), bool)
    for n in spatial:
        eye = eye[..., None, None] & jnp.eye(n, dtype=bool)
    return eye


def variances(state: KernelState) -> tuple[Array, Array, Array, Array | None]:
    """(v1, v2, nngp, at_one): the variances of both inputs broadcast against ``nngp``, and the mask of the
    entries that pair a point with itself (correlation exactly 1; None when there are none), where
    ``nngp`` is taken from ``cov1``."""
    nd = state.nd
    if state.full and nd:
        d1 = spatial_diagonal(state.cov1, 1, nd)
        d2 = spatial_diagonal(state.cov2, 1, nd)
        idx1 = (slice(None), None) + (slice(None), None) * nd
        idx2 = (None, slice(None)) + (None, slice(None)) * nd
        v1, v2 = d1[idx1], d2[idx2]
    else:
        v1 = state.cov1[:, None]
        v2 = state.cov2[None, :]
    nngp = state.nngp
    at_one = None
    if state.same is not None:
        mask = state.same.reshape(state.same.shape + (1,) * (nngp.ndim - 2))
        nngp = jnp.where(mask, state.cov1[:, None], nngp)
        at_one = mask & pixel_eye(state.shape[:-1]) if (state.full and nd) else mask
    return v1, v2, nngp, at_one


def to_diagonal(state: KernelState) -> KernelState:
    """The same covariances in the diagonal layout (a no-op unless ``state.full``)."""
    if not state.full or state.nd == 0:
        return state
    nd = state.nd
    return dataclasses.replace(
        state,
        nngp=spatial_diagonal(state.nngp, 2, nd),
        ntk=None if state.ntk is None else spatial_diagonal(state.ntk, 2, nd),
        cov1=spatial_diagonal(state.cov1, 1, nd),
        cov2=spatial_diagonal(state.cov2, 1, nd),
        full=False,
    )
