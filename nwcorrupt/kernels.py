"""Infinite-width NNGP and NTK kernels of MLPs.

This module holds the :class:`MLP` architecture spec shared by the kernel,
predictor and finite-width code, and computes its kernels:

* :func:`kernel` — NNGP/NTK matrices (N1, N2) from inputs, tiled under a
  memory budget and sharded over ``jax.devices()``;
* :func:`kernel_diag` — their diagonals (N,) without forming the matrix;
* :func:`kernel_from_gram` — the same recursion started from given first-layer
  overlaps (e.g. noise-averaged Gram matrices);
* :func:`kernel_layers` — the kernels of every layer ℓ = 1..L.

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
Gram products. Float32 costs ~1e-6 relative error for erf/gelu/sin/identity
and up to ~1e-4 for relu-family NTK entries of nearly parallel inputs (the
arc-cosine kernel has a √(1 − ρ) singularity at ρ = 1, which amplifies the
rounding of the Gram product); diagonals are computed separately and exactly.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_array, check_choice, check_matrix, check_positive_int
from nwcorrupt.precision import MATMUL_PRECISION, default_float

PARAMETERIZATIONS = ("ntk", "standard")
GET_NAMES = ("nngp", "ntk")
BACKENDS = ("native", "neural_tangents")



def buffers_per_entry(depth: int) -> int:
    """Working-memory estimate of the tiled recursion, in tile-sized buffers.

    Bytes per tile entry = this × itemsize (XLA keeps ~2-3 buffers per layer
    alive). Checked against XLA's compiled memory statistics in the tests.
    """
    return 10 + 3 * depth


Array = jax.Array


@dataclasses.dataclass(frozen=True)
class MLP:
    """A fully connected network of ``depth`` dense layers.

    ``depth`` = L counts dense layers: L - 1 hidden layers followed by a readout.
    Weights are N(0, W_std**2 / fan_in) and biases N(0, b_std**2), in the
    neural-tangents ``"ntk"`` or ``"standard"`` parameterisation. The spec is
    hashable, so it can be a static argument of jitted functions.

    ``width`` (hidden width n, optional) does not change the NNGP nor the
    ``"ntk"``-parameterised NTK; the ``"standard"``-parameterised NTK of a
    network with hidden layers depends on it (it grows ∝ n) and requires it.
    """

    depth: int
    activation: str | _act.Activation = "relu"
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"
    width: int | None = None

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be an integer >= 1 (number of dense layers), got {self.depth!r}")
        _act.get(self.activation)  # raises for an unknown activation
        for name, value, lo in (("W_std", self.W_std, 0.0), ("b_std", self.b_std, 0.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < lo:
                raise ValueError(f"{name} must be a finite number >= {lo}, got {value!r}")
        if self.W_std == 0:
            raise ValueError("W_std must be > 0, got 0")
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        if self.width is not None:
            check_positive_int("width", self.width)

    @property
    def act(self) -> _act.Activation:
        """The resolved :class:`~nwcorrupt.activations.Activation`."""
        return _act.get(self.activation)


@dataclasses.dataclass(frozen=True)
class Kernels:
    """Result of a kernel computation: NNGP and/or NTK matrices of shape (N1, N2).

    A field is ``None`` when it was not requested in ``get``.
    """

    nngp: object | None = None
    ntk: object | None = None


# ---------------------------------------------------------------------------
# Validation helpers.


def _check_arch(arch: Any) -> MLP:
    if not isinstance(arch, MLP):
        raise TypeError(f"arch must be an nwcorrupt.kernels.MLP, got {type(arch).__name__}")
    return arch


def _normalize_get(get: Any) -> tuple[str, ...]:
    names = (get,) if isinstance(get, str) else get
    try:
        names = tuple(names)
    except TypeError:
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}") from None
    if not names:
        raise ValueError("get must name at least one of ('nngp', 'ntk'), got an empty tuple")
    for name in names:
        if name not in GET_NAMES:
            raise ValueError(f"get must contain only {GET_NAMES}, got {name!r}")
    return tuple(dict.fromkeys(names))


def _check_order(order: Any) -> int:
    order = check_positive_int("quad_order", order)
    if order > _act._MAX_ORDER:
        raise ValueError(f"quad_order must be <= {_act._MAX_ORDER}, got {order}")
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


def _layer_consts(arch: MLP) -> tuple[float, float, bool]:
    return float(arch.W_std) ** 2, float(arch.b_std) ** 2, arch.parameterization == "standard"


def _recursion(
    arch: MLP,
    want_ntk: bool,
    order: int,
    g: Array,
    d: int,
    rows_q: Sequence[Array],
    cols_q: Sequence[Array],
    mask: Array | None = None,
    rows_diag: dict[str, Sequence[Array]] | None = None,
    keep_layers: bool = False,
    one: Array | None = None,
) -> list[tuple[Array, Array | None]]:
    """NNGP/NTK recursion from first-layer overlaps ``g`` = ⟨x, x'⟩.

    ``rows_q[l]``/``cols_q[l]`` are the layer-(l+1) variances K^{l+1}(x, x) of
    the row/column points, broadcastable against ``g``. Where ``mask`` is True
    (the diagonal of a symmetric kernel), the overlaps and dual kernels are
    replaced by the exact diagonal values in ``rows_diag`` so the diagonal is
    consistent with :func:`kernel_diag` (and ρ = 1 exactly there).
    Returns [(K^ℓ, Θ^ℓ)] for the last layer, or for all layers if keep_layers.
    ``one`` (a traced scalar equal to 1, or None) materialises each layer's
    dual kernels and outputs by an exact division x / one: XLA on CPU has no
    multi-output fusion and recomputes cheap elementwise chains once per
    consumer, but never duplicates a division. Used on cache-sized tiles,
    where materialising costs little.
    """
    cw, cb, standard = _layer_consts(arch)
    act = arch.act
    if mask is not None:
        g = jnp.where(mask, rows_diag["g"], g)
    K = cb + cw * g
    theta = None
    if want_ntk:
        theta = (d * g + 1.0) if standard else K
    layers = [(K, theta)]
    pairs = ((0, 0), (1, 1)) if want_ntk else ((0, 0),)
    for ell in range(1, arch.depth):
        duals = _act._duals_unchecked(act, pairs, rows_q[ell - 1], K, cols_q[ell - 1], "auto", order)
        if mask is not None:
            duals = tuple(jnp.where(mask, rows_diag[name][ell - 1], val) for name, val in zip(("ss", "dd"), duals))
        if one is not None:
            duals = tuple(val / one for val in duals)
        S = duals[0]
        K = cb + cw * S
        if want_ntk:
            if standard:
                theta = float(arch.width) * S + cw * duals[1] * theta + 1.0
            else:
                theta = K + cw * duals[1] * theta
        if one is not None and ell < arch.depth - 1:
            K = K / one
            theta = None if theta is None else theta / one
        layers.append((K, theta))
    return layers if keep_layers else layers[-1:]


def _diag_recursion(arch: MLP, want_ntk: bool, order: int, q0: Array, d: int) -> dict[str, Array]:
    """Per-layer diagonal quantities from q0 = ⟨x, x⟩, shape (N,).

    Returns a dict of stacked arrays: ``q`` (L, N) = K^ℓ(x, x), ``theta``
    (L, N) = Θ^ℓ(x, x) (only if want_ntk), ``ss`` and ``dd`` (L−1, N) = ⟨σσ⟩ and
    ⟨σ'σ'⟩ at K^ℓ(x, x) for ℓ < L.
    """
    cw, cb, standard = _layer_consts(arch)
    act = arch.act
    K = cb + cw * q0
    theta = ((d * q0 + 1.0) if standard else K) if want_ntk else None
    qs, thetas, ss, dd = [K], [theta], [], []
    pairs = ((0, 0), (1, 1)) if want_ntk else ((0, 0),)
    for _ in range(1, arch.depth):
        duals = _act._duals_diag_unchecked(act, pairs, K, "auto", order)
        ss.append(duals[0])
        dd.append(duals[1] if want_ntk else jnp.zeros_like(K))
        K = cb + cw * duals[0]
        if want_ntk:
            if standard:
                theta = float(arch.width) * duals[0] + cw * duals[1] * theta + 1.0
            else:
                theta = K + cw * duals[1] * theta
        qs.append(K)
        thetas.append(theta)
    empty = jnp.zeros((0,) + q0.shape, q0.dtype)
    out = {
        "q": jnp.stack(qs),
        "ss": jnp.stack(ss) if ss else empty,
        "dd": jnp.stack(dd) if dd else empty,
    }
    if want_ntk:
        out["theta"] = jnp.stack(thetas)
    return out


@functools.partial(jax.jit, static_argnames=("arch", "want_ntk", "order", "d"))
def _diag_jit(q0: Array, *, arch: MLP, want_ntk: bool, order: int, d: int) -> dict[str, Array]:
    return _diag_recursion(arch, want_ntk, order, q0, d)


@jax.jit
def _sq_norms(x: Array) -> Array:
    return jnp.sum(x * x, axis=1) / x.shape[1]


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


def _check_output_finite(arch: MLP, name: str, value: Array, diag: dict[str, Array]) -> None:
    if not bool(jnp.all(jnp.isfinite(value))):
        q = np.asarray(diag["q"])
        raise FloatingPointError(
            f"the {name} kernel contains inf/NaN although every layer's variance is finite "
            f"(largest variance {float(np.max(np.abs(q))):.3g}); intermediate products overflowed for "
            f"W_std={arch.W_std}, b_std={arch.b_std}, depth={arch.depth} in {q.dtype} "
            "(enable x64 or reduce W_std/b_std/depth)"
        )


# ---------------------------------------------------------------------------
# Tiled, sharded driver.
#
# The output (N1, N2) is laid out as (n, m, N2): device k owns rows
# [k m, (k + 1) m) (N1 padded to n m). One jitted call loops (lax.fori_loop)
# over tiles of rt rows × ct columns inside every device's block and writes
# each tile in place into the donated output buffers, so the working memory is
# a few tile-sized arrays (which also keeps them in cache: this is ~1.5x faster
# than whole-matrix elementwise passes). A partial last tile is shifted back
# to overlap its neighbour (recomputing identical values), so all tiles share
# one static shape.

_STATIC = ("arch", "want_ntk", "order", "d", "rt", "ct", "symmetric", "from_gram", "m", "n2")

#: Default bytes of one tile-sized buffer (cache-sized: a tile's working set
#: stays in a 32 MiB L3 cache).
DEFAULT_TILE_BYTES = 2**22


def _tile(
    src: Array,
    x2: Array,
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
    from_gram: bool,
    m: int,
) -> tuple[Array, Array | None]:
    """One (n, rt, ct) block at local rows i0 and columns j0: one tile per device.

    ``src`` is (n, m, d) rows of x1 (or (n, m, N2) rows of the Gram matrix if
    ``from_gram``), sharded over devices on axis 0; ``q1`` (L−1, n, m) the row
    variances; ``x2`` (N2, d) and ``q2`` (L−1, N2) are replicated.
    """
    n = src.shape[0]
    if from_gram:
        g = jax.lax.dynamic_slice(src, (jnp.zeros((), i0.dtype), i0, j0), (n, rt, ct))
    else:
        x1t = jax.lax.dynamic_slice_in_dim(src, i0, rt, axis=1)
        x2t = jax.lax.dynamic_slice_in_dim(x2, j0, ct, axis=0)
        g = jnp.einsum("nrd,cd->nrc", x1t, x2t, precision=MATMUL_PRECISION) / d
    rows_q = [jax.lax.dynamic_slice_in_dim(q1[ell], i0, rt, axis=1)[..., None] for ell in range(arch.depth - 1)]
    cols_q = [jax.lax.dynamic_slice_in_dim(q2[ell], j0, ct, axis=0)[None, None, :] for ell in range(arch.depth - 1)]
    mask = rows_diag = None
    if symmetric:
        dev = jax.lax.broadcasted_iota(jnp.int32, (n, rt, 1), 0)
        row = dev * m + i0 + jax.lax.broadcasted_iota(jnp.int32, (n, rt, 1), 1)
        col = j0 + jax.lax.broadcasted_iota(jnp.int32, (1, 1, ct), 2)
        mask = row == col
        rows_diag = {
            key: [jax.lax.dynamic_slice_in_dim(v[ell], i0, rt, axis=1)[..., None] for ell in range(v.shape[0])]
            for key, v in dg1.items()
            if key != "g"
        }
        rows_diag["g"] = jax.lax.dynamic_slice_in_dim(dg1["g"], i0, rt, axis=1)[..., None]
    ((K, theta),) = _recursion(arch, want_ntk, order, g, d, rows_q, cols_q, mask, rows_diag, one=one)
    return K, theta


@functools.partial(jax.jit, static_argnames=_STATIC, donate_argnums=(0, 1))
def _fill(out_k, out_t, src, x2, q1, dg1, q2, one, *, rt, ct, m, n2, **static):
    """Compute every tile and write it in place into the donated (n, m, N2) buffers."""
    n_rows, n_cols = -(-m // rt), -(-n2 // ct)

    def tile_at(r: Array, c: Array, outs: tuple[Array, Array]) -> tuple[Array, Array]:
        i0 = jnp.minimum(r * rt, m - rt).astype(jnp.int32)
        j0 = jnp.minimum(c * ct, n2 - ct).astype(jnp.int32)
        K, theta = _tile(src, x2, q1, dg1, q2, i0, j0, one, rt=rt, ct=ct, m=m, **static)
        zero = jnp.zeros((), jnp.int32)
        ok = jax.lax.dynamic_update_slice(outs[0], K, (zero, i0, j0))
        ot = outs[1] if theta is None else jax.lax.dynamic_update_slice(outs[1], theta, (zero, i0, j0))
        return ok, ot

    def row_loop(r: Array, outs: tuple[Array, Array]) -> tuple[Array, Array]:
        if n_cols == 1:
            return tile_at(r, jnp.zeros((), jnp.int32), outs)
        return jax.lax.fori_loop(0, n_cols, lambda c, o: tile_at(r, c, o), outs)

    outs = (out_k, out_t)
    if n_rows == 1:
        return row_loop(jnp.zeros((), jnp.int32), outs)
    return jax.lax.fori_loop(0, n_rows, row_loop, outs)


@functools.partial(jax.jit, donate_argnums=0)
def _flatten_rows(out: Array) -> Array:
    return out.reshape(out.shape[0] * out.shape[1], out.shape[2])


def _choose_tiles(
    m: int,
    N2: int,
    n: int,
    width: int,
    itemsize: int,
    tiles: tuple[int, int] | None,
    budget: int | None,
    depth: int,
) -> tuple[int, int]:
    """Rows ``rt`` (per device) and columns ``ct`` of one tile.

    ``width`` is the per-row input size (d, or N2 for a Gram source). The
    working memory of one step (a tile on each of the n devices) is estimated
    as n·rt·ct·buffers_per_entry(L)·itemsize plus the row/column input slices; it
    must fit in ``budget`` bytes.
    """
    if tiles is not None:
        rt, ct = min(tiles[0], m), min(tiles[1], N2)
    else:
        ct = min(N2, 4096)
        rt = max(1, min(m, DEFAULT_TILE_BYTES // (itemsize * ct)))
    if budget is None:
        return rt, ct

    def cost(r: int, c: int) -> int:
        return itemsize * (n * r * c * buffers_per_entry(depth) + (n * r + c) * width)

    if cost(rt, ct) <= budget:
        return rt, ct
    # Shrink the larger side first until the tile fits.
    while cost(rt, ct) > budget and (rt > 1 or ct > 1):
        if rt >= ct and rt > 1:
            rt = max(1, rt // 2)
        else:
            ct = max(1, ct // 2)
    if cost(rt, ct) > budget:
        raise ValueError(
            f"memory_budget={budget} bytes is too small for even a 1x1 tile "
            f"(needs {cost(1, 1)} bytes with {n} device(s) and {width} input features)"
        )
    return rt, ct


def _run_tiled(
    arch: MLP,
    want_ntk: bool,
    order: int,
    d: int,
    src: Array,
    x2: Array,
    N2: int,
    diag1: dict[str, Array],
    diag2: dict[str, Array],
    q0_1: Array,
    symmetric: bool,
    from_gram: bool,
    devices: list,
    tiles: tuple[int, int] | None,
    budget: int | None,
) -> tuple[Array, Array | None]:
    """Shared driver of :func:`kernel` and :func:`kernel_from_gram`."""
    N1 = src.shape[0]
    n = len(devices)
    m = -(-N1 // n)
    N1p = n * m
    dtype = src.dtype
    rt, ct = _choose_tiles(m, N2, n, src.shape[1], jnp.dtype(dtype).itemsize, tiles, budget, arch.depth)

    mesh = Mesh(np.asarray(devices), ("dev",))
    rows3 = NamedSharding(mesh, PartitionSpec("dev", None, None))
    lrows = NamedSharding(mesh, PartitionSpec(None, "dev", None))
    repl = NamedSharding(mesh, PartitionSpec())

    def pad_rows(a: Array, axis: int) -> Array:
        if N1p == N1:
            return a
        widths = [(0, 0)] * a.ndim
        widths[axis] = (0, N1p - N1)
        return jnp.pad(a, widths)

    src_r = jax.device_put(pad_rows(src, 0).reshape(n, m, src.shape[1]), rows3)
    L1 = arch.depth - 1
    q1 = jax.device_put(pad_rows(diag1["q"][:L1], 1).reshape(L1, n, m), lrows)
    q2 = jax.device_put(diag2["q"][:L1], repl)
    x2_r = jax.device_put(x2, repl)
    dg1 = None
    if symmetric:
        dg1 = {"g": jax.device_put(pad_rows(q0_1, 0).reshape(n, m), NamedSharding(mesh, PartitionSpec("dev", None)))}
        for key in ("ss", "dd") if want_ntk else ("ss",):
            dg1[key] = jax.device_put(pad_rows(diag1[key], 1).reshape(L1, n, m), lrows)

    alloc = jax.jit(lambda: jnp.zeros((n, m, N2), dtype), out_shardings=rows3)
    out_k = alloc()
    out_t = alloc() if want_ntk else jnp.zeros((), dtype)
    out_k, out_t = _fill(
        out_k, out_t, src_r, x2_r, q1, dg1, q2, jax.device_put(jnp.ones((), dtype), repl), arch=arch, want_ntk=want_ntk, order=order, d=d, rt=rt, ct=ct,
        symmetric=symmetric, from_gram=from_gram, m=m, n2=N2,
    )  # fmt: skip
    K = _flatten_rows(out_k)
    theta = _flatten_rows(out_t) if want_ntk else None
    if N1p != N1:
        K = K[:N1]
        theta = None if theta is None else theta[:N1]
    return K, theta


def _finish(
    arch: MLP, want: tuple[str, ...], K: Array, theta: Array | None, diag: dict[str, Array]
) -> Kernels:
    if "nngp" in want:
        _check_output_finite(arch, "NNGP", K, diag)
    if "ntk" in want:
        _check_output_finite(arch, "NTK", theta, diag)
    return Kernels(nngp=K if "nngp" in want else None, ntk=theta if "ntk" in want else None)


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
    arch = _check_arch(arch)
    want = _normalize_get(get)
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
    q0_1 = _sq_norms(x1)
    diag1 = _diag_jit(q0_1, arch=arch, want_ntk=want_ntk, order=order, d=d)
    _check_diag_finite(arch, diag1, "x1")
    q0_2, diag2 = q0_1, diag1
    if not symmetric:
        q0_2 = _sq_norms(x2)
        diag2 = _diag_jit(q0_2, arch=arch, want_ntk=want_ntk, order=order, d=d)
        _check_diag_finite(arch, diag2, "x2")
    K, theta = _run_tiled(
        arch, want_ntk, order, d, x1, x2, int(x2.shape[0]), diag1, diag2, q0_1, symmetric, False, devices, tiles, budget
    )
    return _finish(arch, want, K, theta, diag1)


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
    arch = _check_arch(arch)
    want = _normalize_get(get)
    x = check_matrix("x", x)
    order = _check_order(quad_order)
    want_ntk = "ntk" in want
    _check_standard(arch, want_ntk)
    x = jnp.asarray(x, default_float())
    diag = _diag_jit(_sq_norms(x), arch=arch, want_ntk=want_ntk, order=order, d=int(x.shape[1]))
    _check_diag_finite(arch, diag, "x")
    return Kernels(
        nngp=diag["q"][-1] if "nngp" in want else None,
        ntk=diag["theta"][-1] if want_ntk else None,
    )


def _check_gram(gram12: Any, diag1: Any, diag2: Any, symmetric: bool) -> tuple[Any, Any, Any]:
    gram12 = check_array("gram12", gram12, ndim=2)
    N1, N2 = gram12.shape
    if N1 < 1 or N2 < 1:
        raise ValueError(f"gram12 must have at least one row and one column, got shape {tuple(gram12.shape)}")
    diag1 = check_array("diag1", diag1, ndim=1)
    if diag1.shape[0] != N1:
        raise ValueError(f"diag1 must have shape ({N1},) to match gram12 {tuple(gram12.shape)}, got {tuple(diag1.shape)}")
    if symmetric:
        if N1 != N2:
            raise ValueError(f"symmetric=True needs a square gram12, got shape {tuple(gram12.shape)}")
        if diag2 is not None and not np.array_equal(np.asarray(diag1), np.asarray(diag2)):
            raise ValueError("symmetric=True needs diag2 equal to diag1 (or None)")
        diag2 = diag1
    else:
        if diag2 is None:
            raise ValueError("diag2 must be an array of shape (N2,) unless symmetric=True")
        diag2 = check_array("diag2", diag2, ndim=1)
        if diag2.shape[0] != N2:
            raise ValueError(
                f"diag2 must have shape ({N2},) to match gram12 {tuple(gram12.shape)}, got {tuple(diag2.shape)}"
            )
    for name, v in (("diag1", diag1), ("diag2", diag2)):
        if np.any(np.asarray(v) < 0):
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
    arch = _check_arch(arch)
    want = _normalize_get(get)
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
    d1 = _diag_jit(q0_1, arch=arch, want_ntk=want_ntk, order=order, d=d)
    _check_diag_finite(arch, d1, "diag1")
    d2 = d1
    if not symmetric:
        d2 = _diag_jit(q0_2, arch=arch, want_ntk=want_ntk, order=order, d=d)
        _check_diag_finite(arch, d2, "diag2")
    K, theta = _run_tiled(
        arch, want_ntk, order, d, gram12, jnp.zeros((1, 1), dtype), int(gram12.shape[1]), d1, d2, q0_1,
        bool(symmetric), True,
        devices, tiles, budget,
    )  # fmt: skip
    return _finish(arch, want, K, theta, d1)


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
) -> tuple[Kernels, ...]:
    """Kernels (K^ℓ, Θ^ℓ) of every layer ℓ = 1..L from first-layer overlaps.

    Same arguments as :func:`kernel_from_gram` (untiled, one device). Returns a
    tuple of L :class:`Kernels` of shape (N1, N2); the last equals
    ``kernel_from_gram``. Not jitted as a whole: wrap it in ``jax.jit`` (with
    ``arch`` static) or differentiate it as needed.
    """
    arch = _check_arch(arch)
    want = _normalize_get(get)
    gram12, diag1, diag2 = _check_gram(gram12, diag1, diag2, bool(symmetric))
    order = _check_order(quad_order)
    want_ntk = "ntk" in want
    _check_standard(arch, want_ntk)
    d = _gram_input_dim(arch, want_ntk, input_dim)
    dtype = default_float()
    g = jnp.asarray(gram12, dtype)
    q0_1 = jnp.asarray(diag1, dtype)
    q0_2 = q0_1 if symmetric else jnp.asarray(diag2, dtype)
    d1 = _diag_recursion(arch, want_ntk, order, q0_1, d)
    d2 = d1 if symmetric else _diag_recursion(arch, want_ntk, order, q0_2, d)
    rows_q = [d1["q"][ell][:, None] for ell in range(arch.depth - 1)]
    cols_q = [d2["q"][ell][None, :] for ell in range(arch.depth - 1)]
    mask = rows_diag = None
    if symmetric:
        mask = jnp.eye(g.shape[0], dtype=bool)
        rows_diag = {"g": q0_1[:, None]}
        for key in ("ss", "dd"):
            rows_diag[key] = [d1[key][ell][:, None] for ell in range(arch.depth - 1)]
    layers = _recursion(arch, want_ntk, order, g, d, rows_q, cols_q, mask, rows_diag, keep_layers=True)
    return tuple(
        Kernels(nngp=K if "nngp" in want else None, ntk=theta if want_ntk else None) for K, theta in layers
    )
