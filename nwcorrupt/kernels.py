"""Infinite-width NNGP and NTK kernels of MLPs.

This module computes the kernels of the :class:`~nwcorrupt.arch.MLP` spec (defined in
:mod:`nwcorrupt.arch`, re-exported here):

* :func:`kernel` — NNGP/NTK matrices (N1, N2) from inputs, tiled under a
  memory budget and sharded over ``jax.devices()``;
* :func:`kernel_diag` — their diagonals (N,) without forming the matrix;
* :func:`kernel_from_gram` — the same recursion started from given first-layer
  overlaps (e.g. noise-averaged Gram matrices);
* :func:`kernel_layers` — the kernels of every layer ℓ = 1..L;
* :func:`kernel_fn` — the composable, neural-tangents-shaped kernel function.

Conventions (identical to neural-tangents ``stax.serial(Dense, act, ..., Dense)``
with L ``Dense(width, W_std, b_std, parameterization)`` layers and width scale
``s = (1, 1)``); C_w = W_std², C_b = b_std², ⟨x, x'⟩ = x·x'/d:

* NNGP (both parameterisations): K¹ = C_b + C_w ⟨x, x'⟩,
  K^{ℓ+1} = C_b + C_w ⟨σσ⟩_{K^ℓ}.
* NTK, ``"ntk"`` parameterisation: Θ¹ = K¹, Θ^{ℓ+1} = K^{ℓ+1} + C_w ⟨σ'σ'⟩_{K^ℓ} Θ^ℓ.
* NTK, ``"standard"`` parameterisation: Θ¹ = d ⟨x, x'⟩ + 1,
  Θ^{ℓ+1} = n ⟨σσ⟩_{K^ℓ} + C_w ⟨σ'σ'⟩_{K^ℓ} Θ^ℓ + 1, where n = ``MLP.width`` is the
  hidden width (fan-in of the layer) and the +1 is the gradient of the bias,
  which is trainable even when b_std = 0 (neural-tangents adds it whenever
  ``b_std`` is not None). This NTK grows linearly with the width.

Precision: float64 when x64 is enabled, else float32 with HIGHEST-precision
Gram products. Measured float32 error (N = 200 normalised inputs, d = 784,
L = 3): ≲ 3e-7 of the kernel's scale for relu, erf, tanh and gelu; the
relu-family NTK reaches ~1e-6 for nearly parallel inputs (ρ ≈ 1 − 5e-5),
because the arc-cosine kernel's √(1 − ρ) singularity amplifies the rounding
of the Gram product. Diagonals (ρ = 1) are computed separately and exactly.

Composable use, as in neural-tangents: ``fn = kernel_fn(arch)`` then
``fn(x1, x2, get="ntk")`` -- under ``jax.jit``, ``jax.grad`` (inputs and
``W_std``/``b_std``) and ``jax.vmap``; eager calls take the tiled path of
:func:`kernel`. :func:`kernel_layers` (pure jnp, no host checks) gives every
layer's kernels for jit and autodiff; the other entry points validate and check
results on the host.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nwcorrupt import activations as _act
from nwcorrupt.arch import GET_NAMES, MLP, PARAMETERIZATIONS, Kernels, check_arch, normalize_get
from nwcorrupt._checks import is_traced, check_array, check_choice, check_matrix, check_positive_int
from nwcorrupt.precision import MATMUL_PRECISION, default_float

__all__ = [
    "BACKENDS",
    "DEFAULT_SQUARE_TILE",
    "DEFAULT_TILE_BYTES",
    "GET_NAMES",
    "MLP",
    "PARAMETERIZATIONS",
    "Kernels",
    "buffers_per_entry",
    "kernel",
    "kernel_diag",
    "kernel_fn",
    "kernel_from_gram",
    "kernel_layers",
    "plan_tiles",
]

BACKENDS = ("native", "neural_tangents")



def buffers_per_entry(depth: int) -> int:
    """Working-memory estimate of the tiled recursion, in tile-sized buffers.

    Bytes per tile entry = this × itemsize (XLA keeps ~2-3 buffers per layer
    alive). Checked against XLA's compiled memory statistics in the tests.
    """
    return 10 + 3 * depth


Array = jax.Array


# ---------------------------------------------------------------------------
# Validation helpers.


def _check_order(order: Any) -> int:
    order = check_positive_int("quad_order", order)
    if order > _act.MAX_ORDER:
        raise ValueError(f"quad_order must be <= {_act.MAX_ORDER}, got {order}")
    return order


def _check_standard(arch: MLP, want_ntk: bool) -> None:
    if want_ntk and arch.parameterization == "standard" and arch.depth > 1 and arch.width is None:
        raise ValueError(
            "the NTK in the 'standard' parameterisation grows with the hidden width: "
            "set MLP(width=n) (the neural-tangents Dense out_dim of the hidden layers)"
        )


def _check_devices(devices: Any) -> list:
    if devices is None:
        return list(jax.devices())
    devices = list(devices)
    if not devices or not all(isinstance(dev, jax.Device) for dev in devices):
        raise ValueError(f"devices must be a non-empty sequence of jax.Device, got {devices!r}")
    if len(set(devices)) != len(devices):
        raise ValueError("devices must not repeat a device")
    return devices


def _check_tiling(tile_size: Any, memory_budget: Any) -> tuple[tuple[int, int] | None, int | None]:
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
# The recursion (pure jnp, elementwise over broadcastable arrays).


def _layer_consts(arch: MLP, hyper: tuple[Any, Any] | None = None) -> tuple[Any, Any, bool]:
    """(C_w, C_b, standard) of ``arch``; ``hyper`` = (W_std, b_std) overrides the spec's values
    (arrays allowed, e.g. traced under ``jax.grad``)."""
    standard = arch.parameterization == "standard"
    if hyper is None:
        return float(arch.W_std) ** 2, float(arch.b_std) ** 2, standard
    w, b = hyper
    return jnp.square(w), jnp.square(b), standard


def _next_ntk(arch: MLP, cw: float, standard: bool, K_new: Array, S: Array, Sd: Array, theta: Array) -> Array:
    """Θ^{ℓ+1} from the layer's duals S = ⟨σσ⟩, Sd = ⟨σ'σ'⟩ and Θ^ℓ."""
    if standard:
        return float(arch.width) * S + cw * Sd * theta + 1.0
    return K_new + cw * Sd * theta


# Layer loops of at most this many layers (after the first) are unrolled where
# that is faster (see _recursion).
_UNROLL_LAYERS = 2


def _recursion(
    arch: MLP,
    want_ntk: bool,
    order: int,
    g: Array,
    d: int,
    rows_q: Array,
    cols_q: Array,
    mask: Array | None = None,
    rows_diag: dict[str, Array] | None = None,
    keep_layers: bool = False,
    one: Array | None = None,
    hyper: tuple[Any, Any] | None = None,
) -> list[tuple[Array, Array | None]]:
    """NNGP/NTK recursion from first-layer overlaps ``g`` = ⟨x, x'⟩.

    ``rows_q``/``cols_q`` stack (along axis 0) the variances K^ℓ(x, x),
    ℓ = 1..L−1, of the row/column points; each slice broadcasts against ``g``.
    Where ``mask`` is True (the diagonal of a symmetric kernel), the overlaps
    and dual kernels are replaced by the exact diagonal values in ``rows_diag``
    (``g``; stacked ``ss``, ``dd``), so the diagonal is consistent with
    :func:`kernel_diag` (and ρ = 1 exactly there).
    Layers 2..L run in a ``lax.scan`` (compile time independent of depth;
    unrolled for shallow nets where that is faster, see below).
    Returns [(K^ℓ, Θ^ℓ)] for the last layer, or for all layers if keep_layers.
    ``one`` (a traced scalar equal to 1, or None) materialises each layer's
    dual kernels (and the shared intermediates of an activation's fused
    :class:`~nwcorrupt.activations.LayerDuals`) by an exact division x / one:
    XLA on CPU has no multi-output fusion and recomputes cheap elementwise
    chains once per consumer, but does not duplicate a division. Used on
    cache-sized tiles, where materialising costs little.
    ``hyper`` = (W_std, b_std) overrides the spec's values (see :func:`_layer_consts`).
    """
    cw, cb, standard = _layer_consts(arch, hyper)
    act = arch.act
    if mask is not None:
        g = jnp.where(mask, rows_diag["g"], g)
    K = cb + cw * g
    theta = ((d * g + 1.0) if standard else K) if want_ntk else None
    if arch.depth == 1:
        return [(K, theta)]
    pairs = ((0, 0), (1, 1)) if want_ntk else ((0, 0),)
    names = ("ss", "dd") if want_ntk else ("ss",)

    def keep(x: Array) -> Array:
        return x if one is None else x / one

    # In the NTK parameterisation without a diagonal mask the scan carries
    # A = Θ − K instead of Θ: A^{ℓ+1} = c_w ⟨σ'σ'⟩ (A^ℓ + K^ℓ) does not read
    # K^{ℓ+1}, so the fused computation of K^{ℓ+1} has one consumer and need not
    # be materialised (measured 2–15 % faster). With the mask (symmetric kernels)
    # the duals are materialised anyway and XLA's copy of K per layer made this
    # form 15–35 % slower, so Θ is carried there.
    excess = want_ntk and not standard and mask is None
    # With that carry and at most _UNROLL_LAYERS layers after the first, the
    # layer loop is unrolled and each layer's K and A materialised, so no
    # loop-carried buffer is copied per layer. A/B at N = 4000 (jax 0.5.3):
    # L = 3: erf 8-14 % faster, relu unchanged; L = 2: both 6-8 % faster;
    # L = 5: erf 11 % faster but relu 6-10 % slower, so deeper nets keep the
    # loop (and a compile time independent of depth).
    unroll = excess and arch.depth - 1 <= _UNROLL_LAYERS

    def layer_duals(k11: Array, K: Array, k22: Array) -> tuple[Array, ...]:
        if act.layer is None:
            duals = _act.duals_unchecked(act, pairs, k11, K, k22, "auto", order)
            return tuple(keep(val) for val in duals) if mask is None else duals
        # Fused form: per-point parts once per tile, shared intermediates kept.
        p1 = tuple(keep(v) for v in act.layer.point(k11))
        p2 = tuple(keep(v) for v in act.layer.point(k22))
        ss, dd = act.layer.pair(K, p1, p2, want_ntk, keep)
        if mask is not None or excess:
            return (ss, dd) if want_ntk else (ss,)
        return (keep(ss), dd) if want_ntk else (keep(ss),)

    def layer(carry, xs):
        K, theta = carry
        k11, k22 = xs["rows"], xs["cols"]
        duals = layer_duals(k11, K, k22)
        if mask is not None:
            duals = tuple(keep(jnp.where(mask, xs[name], val)) for name, val in zip(names, duals))
        K_new = cb + cw * duals[0]
        if excess:
            theta_new = cw * duals[1] * (theta + K)
            if unroll:
                K_new, theta_new = keep(K_new), keep(theta_new)
            out = (K_new, theta_new + K_new) if keep_layers else None
            return (K_new, theta_new), out
        theta_new = _next_ntk(arch, cw, standard, K_new, duals[0], duals[1], theta) if want_ntk else None
        return (K_new, theta_new), ((K_new, theta_new) if keep_layers else None)

    xs = {"rows": rows_q, "cols": cols_q}
    if mask is not None:
        xs.update({name: rows_diag[name] for name in names})
    first = (K, theta)
    (K, theta), stacked = jax.lax.scan(layer, (K, jnp.zeros_like(K)) if excess else first, xs, unroll=unroll)
    if excess:
        theta = theta + K
    if not keep_layers:
        return [(K, theta)]
    Ks, thetas = stacked
    return [first] + [(Ks[i], None if thetas is None else thetas[i]) for i in range(arch.depth - 1)]


def _diag_recursion(
    arch: MLP, want_ntk: bool, order: int, q0: Array, d: int, hyper: tuple[Any, Any] | None = None
) -> dict[str, Array]:
    """Per-layer diagonal quantities from q0 = ⟨x, x⟩, shape (N,).

    Returns a dict of stacked arrays: ``q`` (L, N) = K^ℓ(x, x), ``theta``
    (L, N) = Θ^ℓ(x, x) (only if want_ntk), ``ss`` and ``dd`` (L−1, N) = ⟨σσ⟩ and
    ⟨σ'σ'⟩ at K^ℓ(x, x) for ℓ < L (``dd`` is zero unless want_ntk).
    """
    cw, cb, standard = _layer_consts(arch, hyper)
    act = arch.act
    K = cb + cw * q0
    theta = ((d * q0 + 1.0) if standard else K) if want_ntk else jnp.zeros_like(K)
    pairs = ((0, 0), (1, 1)) if want_ntk else ((0, 0),)

    def layer(carry, _):
        K, theta = carry
        duals = _act.duals_diag_unchecked(act, pairs, K, "auto", order)
        S = duals[0]
        Sd = duals[1] if want_ntk else jnp.zeros_like(K)
        K_new = cb + cw * S
        theta_new = _next_ntk(arch, cw, standard, K_new, S, Sd, theta) if want_ntk else theta
        return (K_new, theta_new), (K_new, theta_new, S, Sd)

    if arch.depth == 1:
        empty = jnp.zeros((0,) + q0.shape, q0.dtype)
        qs = thetas = ss = dd = empty
    else:
        _, (qs, thetas, ss, dd) = jax.lax.scan(layer, (K, theta), None, length=arch.depth - 1)
    out = {
        "q": jnp.concatenate([K[None], qs]),
        "ss": ss,
        "dd": dd,
    }
    if want_ntk:
        out["theta"] = jnp.concatenate([theta[None], thetas])
    return out


@functools.partial(jax.jit, static_argnames=("arch", "want_ntk", "order"))
def _diag_jit(x: Array, *, arch: MLP, want_ntk: bool, order: int) -> dict[str, Array]:
    d = x.shape[1]
    return _diag_recursion(arch, want_ntk, order, jnp.sum(x * x, axis=1) / d, d)


def _check_diag_finite(arch: MLP, diag: dict[str, Array], what: str) -> None:
    """Raise a clear error naming the first layer whose variance is not finite."""
    q = np.asarray(diag["q"])
    theta = np.asarray(diag["theta"]) if "theta" in diag else None
    for ell in range(arch.depth):
        for name, arr in (("NNGP variance K", q), ("NTK diagonal Θ", theta)):
            if arr is None:
                continue
            if not np.all(np.isfinite(arr[ell])):
                prev = (
                    f"; largest value at layer {ell}: {float(np.max(np.abs(arr[ell - 1]))):.3g}" if ell > 0 else ""
                )
                raise FloatingPointError(
                    f"the {name}^{ell + 1}(x, x) of {what} overflowed to inf/NaN at layer {ell + 1} of "
                    f"{arch.depth}{prev}: W_std={arch.W_std}, b_std={arch.b_std}, depth={arch.depth}"
                    f"{'' if arch.width is None else f', width={arch.width}'} are too large for "
                    f"{q.dtype} (enable x64 or reduce W_std/b_std/depth)"
                )


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
    ((K, theta),) = _recursion(arch, want_ntk, order, g, d, rows_q, cols_q, mask, rows_diag, one=one)
    return K, theta


def _all_finite(tile: Array) -> Array:
    return jnp.all(jnp.isfinite(tile))


@functools.partial(jax.jit, static_argnames=_STATIC + ("out_sharding",))
def _fill(src, x2, q0_1, q0_2, one, *, rt, ct, m, n2, out_sharding, **static):
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
    diag1 = _diag_recursion(arch, want_ntk, order, q0_1, d)
    diag2 = _diag_recursion(arch, want_ntk, order, q0_2, d)
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
    square: bool = False,
) -> tuple[int, int]:
    """Rows ``rt`` (per device) and columns ``ct`` of one tile (equal if ``square``).

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
    elif square:
        rt = ct = max(1, min(m, N2, DEFAULT_SQUARE_TILE))
    else:
        ct = _even_side(N2, 4096)
        rt = _even_side(m, max(1, DEFAULT_TILE_BYTES // (itemsize * ct)))
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

    Without ``tile_size``/``memory_budget`` tiles are cache-sized
    (:data:`DEFAULT_TILE_BYTES` per buffer, at most 4096 columns). With a
    budget, the estimated working memory (see :func:`_choose_tiles`) fits in it.
    A ``symmetric`` kernel (x2 None) on one device uses square tiles and
    computes only those on and above the diagonal.
    """
    arch = check_arch(arch)
    n1 = check_positive_int("n1", n1)
    n2 = check_positive_int("n2", n2)
    d = check_positive_int("d", d)
    tiles, budget = _check_tiling(tile_size, memory_budget)
    n = len(_check_devices(devices))
    itemsize = jnp.dtype(default_float()).itemsize
    square = bool(symmetric) and n == 1
    return _choose_tiles(-(-n1 // n), n2, n, d, itemsize, tiles, budget, arch.depth, square)


def _run_tiled(
    arch: MLP,
    want: tuple[str, ...],
    order: int,
    d: int,
    src: Array,
    x2: Array,
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
    rt, ct = _choose_tiles(m, N2, n, src.shape[1], jnp.dtype(dtype).itemsize, tiles, budget, arch.depth, square)

    mesh = Mesh(np.asarray(devices), ("dev",))
    rows = NamedSharding(mesh, PartitionSpec("dev"))
    repl = NamedSharding(mesh, PartitionSpec())

    def rows_of(a: Array) -> Array:
        if N1p != N1:
            a = jnp.pad(a, [(0, N1p - N1)] + [(0, 0)] * (a.ndim - 1))
        return jax.device_put(a.reshape((n, m) + a.shape[1:]), rows)

    K, theta, diag1, diag2, finite = _fill(
        rows_of(src),
        jax.device_put(x2, repl),
        None if q0_1 is None else rows_of(q0_1),
        None if q0_2 is None else jax.device_put(q0_2, repl),
        jax.device_put(jnp.ones((), dtype), repl),
        arch=arch, want_ntk=want_ntk, order=order, d=d, rt=rt, ct=ct, symmetric=symmetric,
        from_gram=from_gram, m=m, n2=N2, out_sharding=rows,
    )  # fmt: skip
    diag1 = {key: np.asarray(v).reshape(v.shape[0], N1p)[:, :N1] for key, v in diag1.items()}
    _check_diag_finite(arch, diag1, names[0])
    _check_diag_finite(arch, diag2, names[1])
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


# ---------------------------------------------------------------------------
# Public API.


def kernel(
    arch: MLP,
    x1: Array,
    x2: Array | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    *,
    backend: str = "native",
    tile_size: int | tuple[int, int] | None = None,
    memory_budget: int | None = None,
    quad_order: int = _act.DEFAULT_ORDER,
    devices: Sequence[jax.Device] | None = None,
) -> Kernels:
    """Infinite-width NNGP and/or NTK of ``arch`` between the rows of x1 and x2.

    Args:
      arch: the :class:`MLP` spec.
      x1: (N1, d) inputs; x2: (N2, d) inputs, or None for x2 = x1 (the kernel is
        then symmetric and its diagonal is computed exactly, consistent with
        :func:`kernel_diag`).
      get: ``"nngp"``, ``"ntk"`` or a tuple of them.
      backend: ``"native"`` or ``"neural_tangents"`` (needs the reference
        environment, see ``scripts/ref_env.sh``; tiling options do not apply).
      tile_size: rows × columns of the tile one device computes per step (an
        int for square tiles); None = as large as the budget allows.
      memory_budget: bytes of working memory one step may use over all devices
        (beyond the output itself and the inputs); None = no limit.
      quad_order: Gauss–Hermite nodes per dimension for activations without a
        closed-form dual kernel.
      devices: devices to shard row blocks over (default ``jax.devices()``).

    Returns:
      :class:`Kernels` with ``nngp``/``ntk`` of shape (N1, N2) (None if not
      requested), float64 with x64 enabled else float32, rows sharded over the
      devices.

    Raises:
      ValueError: non-2-D or non-finite inputs, mismatched feature dims,
        unknown ``get``/``backend``, bad tiling options, the standard
        parameterisation NTK without ``arch.width``.
      FloatingPointError: the recursion overflowed (the message names the layer).
      ImportError: ``backend="neural_tangents"`` without neural-tangents.
    """
    arch = check_arch(arch)
    want = normalize_get(get)
    check_choice("backend", backend, BACKENDS)
    symmetric = x2 is None or x2 is x1
    x1 = check_matrix("x1", x1)
    if not symmetric:
        x2 = check_matrix("x2", x2)
        if x2.shape[1] != x1.shape[1]:
            raise ValueError(
                f"x1 and x2 must have the same number of features, got x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}"
            )
    if backend == "neural_tangents":
        if tile_size is not None or memory_budget is not None or devices is not None:
            raise ValueError("tile_size, memory_budget and devices apply to backend='native' only")
        try:
            from nwcorrupt import nt_backend
        except ImportError as err:
            raise ImportError(
                "backend='neural_tangents' needs nwcorrupt.nt_backend and the neural-tangents package, "
                f"which live in the reference environment (build it with scripts/ref_env.sh): {err}"
            ) from err
        return nt_backend.kernel(arch, x1, None if symmetric else x2, want)
    tiles, budget = _check_tiling(tile_size, memory_budget)
    order = _check_order(quad_order)
    devices = _check_devices(devices)
    want_ntk = "ntk" in want
    _check_standard(arch, want_ntk)

    dtype = default_float()
    x1 = jnp.asarray(x1, dtype)
    x2 = x1 if symmetric else jnp.asarray(x2, dtype)
    d = int(x1.shape[1])
    return _run_tiled(
        arch, want, order, d, x1, x2, None, None, symmetric, False, devices, tiles, budget, ("x1", "x1" if symmetric else "x2")
    )


def kernel_diag(
    arch: MLP,
    x: Array,
    get: str | Sequence[str] = ("nngp", "ntk"),
    *,
    quad_order: int = _act.DEFAULT_ORDER,
) -> Kernels:
    """Diagonal K(x_a, x_a), Θ(x_a, x_a) of shape (N,) for (N, d) inputs ``x``.

    Equal to the diagonal of ``kernel(arch, x)`` without forming the matrix
    (O(N·L) work); errors as for :func:`kernel`.
    """
    arch = check_arch(arch)
    want = normalize_get(get)
    x = check_matrix("x", x)
    order = _check_order(quad_order)
    want_ntk = "ntk" in want
    _check_standard(arch, want_ntk)
    x = jnp.asarray(x, default_float())
    diag = _diag_jit(x, arch=arch, want_ntk=want_ntk, order=order)
    _check_diag_finite(arch, diag, "x")
    return Kernels(
        nngp=diag["q"][-1] if "nngp" in want else None,
        ntk=diag["theta"][-1] if want_ntk else None,
    )


def _check_gram(gram12: Any, diag1: Any, diag2: Any, symmetric: bool) -> tuple[Any, Any, Any]:
    """Validate first-layer overlaps; value checks are skipped for tracers (jit/autodiff)."""

    def arr(name: str, x: Any, ndim: int) -> Any:
        if x is None:
            raise ValueError(f"{name} must be an array, got None")
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        if len(x.shape) != ndim:
            raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(x.shape)}")
        return x if is_traced(x) else check_array(name, x, ndim=ndim)

    gram12 = arr("gram12", gram12, 2)
    N1, N2 = gram12.shape
    if N1 < 1 or N2 < 1:
        raise ValueError(f"gram12 must have at least one row and one column, got shape {tuple(gram12.shape)}")
    diag1 = arr("diag1", diag1, 1)
    if diag1.shape[0] != N1:
        raise ValueError(f"diag1 must have shape ({N1},) to match gram12 {tuple(gram12.shape)}, got {tuple(diag1.shape)}")
    if symmetric:
        if N1 != N2:
            raise ValueError(f"symmetric=True needs a square gram12, got shape {tuple(gram12.shape)}")
        if diag2 is not None and diag2 is not diag1:
            if is_traced(diag2) or is_traced(diag1) or not np.array_equal(np.asarray(diag1), np.asarray(diag2)):
                raise ValueError("symmetric=True needs diag2 equal to diag1 (or None)")
        diag2 = diag1
    else:
        if diag2 is None:
            raise ValueError("diag2 must be an array of shape (N2,) unless symmetric=True")
        diag2 = arr("diag2", diag2, 1)
        if diag2.shape[0] != N2:
            raise ValueError(
                f"diag2 must have shape ({N2},) to match gram12 {tuple(gram12.shape)}, got {tuple(diag2.shape)}"
            )
    for name, v in (("diag1", diag1), ("diag2", diag2)):
        if not is_traced(v) and np.any(np.asarray(v) < 0):
            raise ValueError(f"{name} holds squared norms ⟨x, x⟩ and must be >= 0, got minimum {float(np.min(v))}")
    return gram12, diag1, diag2


def _gram_input_dim(arch: MLP, want_ntk: bool, input_dim: Any) -> int:
    if input_dim is not None:
        return check_positive_int("input_dim", input_dim)
    if want_ntk and arch.parameterization == "standard":
        raise ValueError("input_dim (d, the fan-in of the first layer) is required for the standard-parameterisation NTK")
    return 1


def kernel_from_gram(
    arch: MLP,
    gram12: Array,
    diag1: Array,
    diag2: Array | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    *,
    input_dim: int | None = None,
    symmetric: bool = False,
    tile_size: int | tuple[int, int] | None = None,
    memory_budget: int | None = None,
    quad_order: int = _act.DEFAULT_ORDER,
    devices: Sequence[jax.Device] | None = None,
) -> Kernels:
    """Kernels from first-layer overlaps given directly.

    Args:
      gram12: (N1, N2) overlaps ⟨x1_a, x2_b⟩ (already divided by d).
      diag1: (N1,) ⟨x1_a, x1_a⟩; diag2: (N2,) ⟨x2_b, x2_b⟩ (may be None if
        ``symmetric``).
      input_dim: d, needed only by the standard-parameterisation NTK (Θ¹ = d⟨x,x'⟩ + 1).
      symmetric: gram12 is the square Gram matrix of one set with itself; its
        diagonal is then taken from diag1 (exact ρ = 1 on the diagonal).
      Other arguments as in :func:`kernel`.

    Returns:
      :class:`Kernels` of shape (N1, N2). With the true Gram matrix this equals
      ``kernel(arch, x1, x2)``; the theory feeds noise-averaged Gram matrices.
      Differentiable (forward and reverse mode) in gram12/diag1/diag2 for smooth
      activations, for use in Taylor expansions.
    """
    arch = check_arch(arch)
    want = normalize_get(get)
    gram12, diag1, diag2 = _check_gram(gram12, diag1, diag2, bool(symmetric))
    tiles, budget = _check_tiling(tile_size, memory_budget)
    order = _check_order(quad_order)
    devices = _check_devices(devices)
    want_ntk = "ntk" in want
    _check_standard(arch, want_ntk)
    d = _gram_input_dim(arch, want_ntk, input_dim)
    dtype = default_float()
    gram12 = jnp.asarray(gram12, dtype)
    q0_1 = jnp.asarray(diag1, dtype)
    q0_2 = q0_1 if symmetric else jnp.asarray(diag2, dtype)
    return _run_tiled(
        arch, want, order, d, gram12, jnp.zeros((1, 1), dtype), q0_1, q0_2, bool(symmetric), True, devices, tiles,
        budget, ("diag1", "diag1" if symmetric else "diag2"),
    )


def kernel_layers(
    arch: MLP,
    gram12: Array,
    diag1: Array,
    diag2: Array | None = None,
    get: str | Sequence[str] = ("nngp", "ntk"),
    *,
    input_dim: int | None = None,
    symmetric: bool = False,
    quad_order: int = _act.DEFAULT_ORDER,
    W_std: Any = None,
    b_std: Any = None,
) -> tuple[Kernels, ...]:
    """Kernels (K^ℓ, Θ^ℓ) of every layer ℓ = 1..L from first-layer overlaps.

    Same arguments as :func:`kernel_from_gram` (untiled, one device). Returns a
    tuple of L :class:`Kernels` of shape (N1, N2); the last equals
    ``kernel_from_gram``. Not jitted as a whole: wrap it in ``jax.jit`` (with
    ``arch`` static) or differentiate it as needed. ``W_std``/``b_std`` (scalars or
    0-d arrays, traced ones included) replace ``arch.W_std``/``arch.b_std``, so the
    kernels can be differentiated in them or evaluated for many values without
    recompiling; None keeps the spec's value.
    """
    arch = check_arch(arch)
    want = normalize_get(get)
    gram12, diag1, diag2 = _check_gram(gram12, diag1, diag2, bool(symmetric))
    order = _check_order(quad_order)
    want_ntk = "ntk" in want
    _check_standard(arch, want_ntk)
    d = _gram_input_dim(arch, want_ntk, input_dim)
    dtype = default_float()
    g = jnp.asarray(gram12, dtype)
    q0_1 = jnp.asarray(diag1, dtype)
    q0_2 = q0_1 if symmetric else jnp.asarray(diag2, dtype)
    hyper = _hyper_override(arch, W_std, b_std)
    d1 = _diag_recursion(arch, want_ntk, order, q0_1, d, hyper)
    d2 = d1 if symmetric else _diag_recursion(arch, want_ntk, order, q0_2, d, hyper)
    rows_q = d1["q"][: arch.depth - 1, :, None]
    cols_q = d2["q"][: arch.depth - 1, None, :]
    mask = rows_diag = None
    if symmetric:
        mask = jnp.eye(g.shape[0], dtype=bool)
        rows_diag = {"g": q0_1[:, None], "ss": d1["ss"][:, :, None], "dd": d1["dd"][:, :, None]}
    layers = _recursion(arch, want_ntk, order, g, d, rows_q, cols_q, mask, rows_diag, keep_layers=True, hyper=hyper)
    return tuple(
        Kernels(nngp=K if "nngp" in want else None, ntk=theta if want_ntk else None) for K, theta in layers
    )


# ---------------------------------------------------------------------------
# The composable entry point, shaped like neural-tangents' ``kernel_fn``.


def _hyper_override(arch: MLP, W_std: Any, b_std: Any) -> tuple[Any, Any] | None:
    """(W_std, b_std) for the recursion, or None when neither is overridden.

    Concrete values must be finite scalars with W_std > 0 and b_std >= 0; traced
    values (under jit/grad/vmap) must be 0-dimensional and are used as they are.
    """
    if W_std is None and b_std is None:
        return None
    out = []
    for name, value, default, positive in (("W_std", W_std, arch.W_std, True), ("b_std", b_std, arch.b_std, False)):
        if value is None:
            out.append(float(default))
            continue
        if jnp.ndim(value) != 0:
            raise ValueError(f"{name} must be a scalar (0-d array), got shape {tuple(jnp.shape(value))}")
        if not is_traced(value):
            v = float(value)
            if not math.isfinite(v) or v < 0 or (positive and v == 0):
                raise ValueError(f"{name} must be a finite number {'> 0' if positive else '>= 0'}, got {v!r}")
        out.append(value)
    return out[0], out[1]


def _traced_kernels(
    arch: MLP, want: tuple[str, ...], order: int, x1: Array, x2: Array | None, hyper: tuple[Any, Any] | None
) -> Kernels:
    """NNGP/NTK (N1, N2) as one jnp expression (no tiling, no host checks): jit/grad/vmap friendly."""
    want_ntk = "ntk" in want
    dtype = jnp.result_type(x1.dtype if x2 is None else jnp.result_type(x1.dtype, x2.dtype), default_float())
    x1 = jnp.asarray(x1, dtype)
    d = x1.shape[1]
    q0_1 = jnp.sum(x1 * x1, axis=1) / d
    d1 = _diag_recursion(arch, want_ntk, order, q0_1, d, hyper)
    if x2 is None:
        g = jnp.matmul(x1, x1.T, precision=MATMUL_PRECISION) / d
        d2 = d1
        mask = jnp.eye(x1.shape[0], dtype=bool)
        rows_diag = {"g": q0_1[:, None], "ss": d1["ss"][:, :, None], "dd": d1["dd"][:, :, None]}
    else:
        x2 = jnp.asarray(x2, dtype)
        g = jnp.matmul(x1, x2.T, precision=MATMUL_PRECISION) / d
        d2 = _diag_recursion(arch, want_ntk, order, jnp.sum(x2 * x2, axis=1) / d, d, hyper)
        mask = rows_diag = None
    rows_q = d1["q"][: arch.depth - 1, :, None]
    cols_q = d2["q"][: arch.depth - 1, None, :]
    ((K, theta),) = _recursion(arch, want_ntk, order, g, d, rows_q, cols_q, mask, rows_diag, hyper=hyper)
    return Kernels(nngp=K if "nngp" in want else None, ntk=theta if want_ntk else None)


def _select(kernels: Kernels, get: Any, want: tuple[str, ...]) -> Any:
    if get is None:
        return kernels
    if isinstance(get, str):
        return getattr(kernels, get)
    return _named_tuple(want)(*(getattr(kernels, name) for name in want))


@functools.lru_cache(maxsize=None)
def _named_tuple(names: tuple[str, ...]) -> type:
    return collections.namedtuple("Kernel", names)


def kernel_fn(
    arch: MLP,
    *,
    quad_order: int = _act.DEFAULT_ORDER,
    tile_size: int | tuple[int, int] | None = None,
    memory_budget: int | None = None,
    devices: Sequence[jax.Device] | None = None,
) -> Callable[..., Any]:
    """The kernel function of ``arch``, called like neural-tangents' ``kernel_fn``.

    ``kernel_fn(arch)(x1, x2=None, get=None, *, W_std=None, b_std=None)``:

    * ``x1`` (N1, d), ``x2`` (N2, d) or None for x2 = x1 (symmetric; exact diagonal);
    * ``get``: ``"nngp"`` or ``"ntk"`` returns that (N1, N2) array; a tuple returns a
      named tuple of arrays in the requested order (``nngp, ntk = fn(x1, x2, ("nngp",
      "ntk"))``); None returns :class:`~nwcorrupt.arch.Kernels` with both;
    * ``W_std``, ``b_std``: scalars (or 0-d arrays) replacing the spec's values, so the
      kernel can be differentiated in them: ``jax.grad(lambda w: fn(x, get="nngp",
      W_std=w).sum())(1.0)``.

    Works under ``jax.jit`` (make ``get`` static: ``jax.jit(fn, static_argnames="get")``),
    ``jax.grad`` with respect to the inputs and to ``W_std``/``b_std``, and ``jax.vmap``
    over batches of inputs. Traced calls compute the whole (N1, N2) kernel as one
    expression (memory ~ ``buffers_per_entry(depth)`` × N1 × N2 floats); an eager call
    with concrete arguments goes through :func:`kernel` — tiled under ``memory_budget``,
    sharded over ``devices``, with its finiteness checks — which is the path for big
    arrays. Both paths compute the same recursion (equal to ~1e-12 in float64).

    Gradients with respect to the inputs of a symmetric call (``x2=None``) are not
    finite for relu-family activations: their dual kernels have an infinite slope at
    ρ = 1, which the diagonal entries sit on. Smooth activations (erf, tanh, gelu, ...)
    are fine; pass ``x2`` explicitly to differentiate relu kernels off the diagonal.

    Raises ``ValueError``/``TypeError`` naming the argument for a wrong spec, ``get``,
    input shapes or hyperparameters (before any compute).
    """
    arch = check_arch(arch)
    order = _check_order(quad_order)
    tiles, budget = _check_tiling(tile_size, memory_budget)
    devices = None if devices is None else _check_devices(devices)

    def fn(x1: Array, x2: Array | None = None, get: Any = None, *, W_std: Any = None, b_std: Any = None) -> Any:
        want = GET_NAMES if get is None else normalize_get(get)
        _check_standard(arch, "ntk" in want)
        symmetric = x2 is None or x2 is x1
        x1 = check_matrix("x1", x1)
        if not symmetric:
            x2 = check_matrix("x2", x2)
            if x2.shape[1] != x1.shape[1]:
                raise ValueError(
                    f"x1 and x2 must have the same number of features, got x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}"
                )
        hyper = _hyper_override(arch, W_std, b_std)
        traced = any(is_traced(v) for v in (x1, x2, W_std, b_std) if v is not None)
        if traced:
            out = _traced_kernels(arch, want, order, x1, None if symmetric else x2, hyper)
        else:
            spec = arch if hyper is None else dataclasses.replace(arch, W_std=float(hyper[0]), b_std=float(hyper[1]))
            out = kernel(
                spec, x1, None if symmetric else x2, want, tile_size=tiles, memory_budget=budget,
                quad_order=order, devices=devices,
            )  # fmt: skip
        return _select(out, get, want)

    fn.__doc__ = f"kernel_fn of {arch!r}: fn(x1, x2=None, get=None, *, W_std=None, b_std=None) (see nwcorrupt.kernels.kernel_fn)."
    return fn
