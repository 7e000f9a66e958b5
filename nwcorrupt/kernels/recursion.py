"""The NNGP/NTK layer recursion of an MLP, as pure jnp over broadcastable arrays.

Used by the tiled driver (:mod:`nwcorrupt.kernels.tiled`), by the untiled entry points
(:func:`~nwcorrupt.kernels.kernel_layers`, :func:`~nwcorrupt.kernels.kernel_fn`) and,
through them, by the theory. The formulas are in :mod:`nwcorrupt.kernels`.

* :func:`layer_recursion` -- (K^ℓ, Θ^ℓ) from first-layer overlaps and the per-point
  variances of every layer;
* :func:`diag_recursion` -- the per-point quantities (variances, diagonal NTK, dual
  kernels at ρ = 1) of every layer;
* checks shared by the entry points: :func:`check_quad_order`,
  :func:`check_standard_width`, :func:`check_diag_finite`, :func:`hyper_override`.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_positive_int, check_real, is_traced
from nwcorrupt.arch import MLP

Array = jax.Array

__all__ = [
    "UNROLL_LAYERS",
    "check_diag_finite",
    "check_quad_order",
    "check_standard_width",
    "diag_jit",
    "diag_recursion",
    "hyper_override",
    "layer_recursion",
    "overlap_recursion",
]


def check_quad_order(order: Any) -> int:
    order = check_positive_int("quad_order", order)
    if order > _act.MAX_ORDER:
        raise ValueError(f"quad_order must be <= {_act.MAX_ORDER}, got {order}")
    return order


def check_standard_width(arch: MLP, want_ntk: bool) -> None:
    if want_ntk and arch.parameterization == "standard" and arch.depth > 1 and arch.width is None:
        raise ValueError(
            "the NTK in the 'standard' parameterisation grows with the hidden width: "
            "set MLP(width=n) (the neural-tangents Dense out_dim of the hidden layers)"
        )


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
# that is faster (see layer_recursion).
UNROLL_LAYERS = 2


def layer_recursion(
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
    # With that carry and at most UNROLL_LAYERS layers after the first, the
    # layer loop is unrolled and each layer's K and A materialised, so no
    # loop-carried buffer is copied per layer. A/B at N = 4000 (jax 0.5.3):
    # L = 3: erf 8-14 % faster, relu unchanged; L = 2: both 6-8 % faster;
    # L = 5: erf 11 % faster but relu 6-10 % slower, so deeper nets keep the
    # loop (and a compile time independent of depth).
    unroll = excess and arch.depth - 1 <= UNROLL_LAYERS

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


def diag_recursion(
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
def diag_jit(x: Array, *, arch: MLP, want_ntk: bool, order: int) -> dict[str, Array]:
    d = x.shape[1]
    return diag_recursion(arch, want_ntk, order, jnp.sum(x * x, axis=1) / d, d)


def check_diag_finite(arch: MLP, diag: dict[str, Array], what: str) -> None:
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



def hyper_override(arch: MLP, W_std: Any, b_std: Any) -> tuple[Any, Any] | None:
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
            check_real(name, value, lo=0.0, lo_open=positive)
        out.append(value)
    return out[0], out[1]


def overlap_recursion(
    arch: MLP,
    want_ntk: bool,
    order: int,
    g: Array,
    q0_1: Array,
    q0_2: Array | None,
    d: int,
    *,
    hyper: tuple[Any, Any] | None = None,
    keep_layers: bool = False,
) -> list[tuple[Array, Array | None]]:
    """(K^ℓ, Θ^ℓ) of an untiled (N1, N2) block from its first-layer overlaps, as one jnp expression.

    ``g`` (N1, N2) holds ⟨x1_a, x2_b⟩, ``q0_1`` (N1,) and ``q0_2`` (N2,) the squared norms; with
    ``q0_2=None`` the block is the symmetric Gram matrix of one set, whose diagonal then comes
    from the single-point recursion (exact ρ = 1). Returns the last layer, or every layer if
    ``keep_layers``; the shared core of :func:`~nwcorrupt.kernels.kernel_layers` and the traced
    path of :func:`~nwcorrupt.kernels.kernel_fn`.
    """
    d1 = diag_recursion(arch, want_ntk, order, q0_1, d, hyper)
    d2 = d1 if q0_2 is None else diag_recursion(arch, want_ntk, order, q0_2, d, hyper)
    rows_q = d1["q"][: arch.depth - 1, :, None]
    cols_q = d2["q"][: arch.depth - 1, None, :]
    mask = rows_diag = None
    if q0_2 is None:
        mask = jnp.eye(g.shape[0], dtype=bool)
        rows_diag = {"g": q0_1[:, None], "ss": d1["ss"][:, :, None], "dd": d1["dd"][:, :, None]}
    return layer_recursion(arch, want_ntk, order, g, d, rows_q, cols_q, mask, rows_diag, keep_layers=keep_layers,
                           hyper=hyper)
