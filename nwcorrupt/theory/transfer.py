"""Transfer coefficients: sensitivities of the output kernel to the first-layer overlaps.

:func:`transfer` runs the layer recursion forward together with the derivatives
of every layer's kernel with respect to the first-layer overlaps g12 and g22
(an explicit forward recursion, not autodiff of the whole recursion). Each layer
needs the dual kernels V = ⟨σσ⟩, D = ⟨σ'σ'⟩ of :mod:`nwcorrupt.activations` and,
by Price's theorem, their derivatives

    E = ∂D/∂k12 = ⟨σ''σ''⟩,  V2 = ∂V/∂k22 = ½⟨σσ''⟩,  D2 = ∂D/∂k22 = ½⟨σ'σ'''⟩,
    Vd' = d⟨σ²⟩/dk,  Dd' = d⟨σ'²⟩/dk (on the diagonal),

which are obtained by forward-mode autodiff of the activations' duals (closed forms
where they exist, else their Gauss–Hermite rule). For the relu family the delta
functions of σ'' are thereby handled exactly: E = (1 − α)²/(2π√det) off the diagonal.

:func:`transfer_signs` sweeps T_* and Δ on a grid (the sign condition of the
leading-order rule).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from nwcorrupt import activations as _act
from nwcorrupt.theory.recursion import SERIES_QUAD_ORDER, check_arch_get, check_quad_order

__all__ = ["Transfer", "transfer", "transfer_diag", "transfer_signs"]

_PAIRS = ((0, 0), (1, 1))


def _pair_duals(act, k11, k12, k22, order: int):
    """(V, D, E, V2, D2) at the covariance (k11, k12, k22) (arrays of one shape)."""

    def duals(c12, c22):
        return _act.duals_unchecked(act, _PAIRS, k11, c12, c22, "auto", order)

    (v, d), (_, e) = jax.jvp(lambda c: duals(c, k22), (k12,), (jnp.ones_like(k12),))
    _, (v2, d2) = jax.jvp(lambda c: duals(k12, c), (k22,), (jnp.ones_like(k22),))
    return v, d, e, v2, d2


def _diag_duals(act, k, order: int):
    """(Vd, Dd, Vd', Dd') at variance k: ⟨σ²⟩, ⟨σ'²⟩ and their k-derivatives."""
    (vd, dd), (vdp, ddp) = jax.jvp(
        lambda q: _act.duals_diag_unchecked(act, _PAIRS, q, "auto", order), (k,), (jnp.ones_like(k),)
    )
    return vd, dd, vdp, ddp


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Output kernel of a pair and its sensitivities to the first-layer overlaps (arrays broadcast).

    Attributes:
      value: F = Θ^L (or K^L) at (g11, g12, g22).
      T: ∂F/∂g12 (test-train overlap sensitivity; = C_w^L T^{1→L}, docs/science.md#transfer-coefficients).
      S: ∂F/∂g22 (sensitivity to the second point's norm ⟨x₂, x₂⟩).
      T_science: C_w^L [P^{1→L} + Σ_i (⟨σ'σ'⟩ + Θ ⟨σ''σ''⟩)^{(i)} P^{1→i} P^{i+1→L}], the
        hypothesis formula evaluated layer by layer (NTK only; NNGP: C_w^L P^{1→L}).
    """

    value: jax.Array
    T: jax.Array
    S: jax.Array
    T_science: jax.Array


@functools.partial(jax.jit, static_argnames=("act", "get", "order"))
def _transfer_jit(depth, cw, cb, g11, g12, g22, *, act, get, order):
    k11, k12, k22 = cb + cw * g11, cb + cw * g12, cb + cw * g22
    zero = jnp.zeros_like(k12)
    carry = dict(k11=k11, k12=k12, k22=k22, th=k12, a=cw + zero, b=cw + zero, r=cw + zero, s=zero, t=zero,
                 prod=1.0 + zero, sci=zero)

    def layer(_, c):
        v, dd, e, v2, d2 = _pair_duals(act, c["k11"], c["k12"], c["k22"], order)
        vd22, _, vd22p, _ = _diag_duals(act, c["k22"], order)
        vd11 = _diag_duals(act, c["k11"], order)[0]
        s_new = cw * (dd * c["s"] + v2 * c["r"])
        t = s_new + cw * (dd * c["t"] + c["th"] * (e * c["s"] + d2 * c["r"]))
        b = cw * dd * c["a"] + cw * (dd * c["b"] + c["th"] * e * c["a"])
        k12_new = cb + cw * v
        return dict(
            k11=cb + cw * vd11, k12=k12_new, k22=cb + cw * vd22, th=k12_new + cw * dd * c["th"],
            a=cw * dd * c["a"], b=b, r=cw * vd22p * c["r"], s=s_new, t=t,
            sci=c["sci"] * dd + (dd + c["th"] * e) * c["prod"], prod=c["prod"] * dd,
        )

    c = jax.lax.fori_loop(0, depth - 1, layer, carry)
    cwl = cw**depth
    if get == "ntk":
        return c["th"], c["b"], c["t"], cwl * (c["prod"] + c["sci"])
    return c["k12"], c["a"], c["s"], cwl * c["prod"]


def _hyper(arch):
    dt = jnp.result_type(float)
    return jnp.asarray(arch.depth, jnp.int32), jnp.asarray(float(arch.W_std) ** 2, dt), jnp.asarray(float(arch.b_std) ** 2, dt)


def transfer(arch, g11, g12, g22, *, get: str = "ntk", quad_order: int = SERIES_QUAD_ORDER) -> Transfer:
    """Transfer coefficients by forward recursion through the layers (no autodiff of the recursion).

    Layer 1: K¹ = C_b + C_w g, Θ¹ = K¹. With a = ∂K₁₂/∂g12, b = ∂Θ₁₂/∂g12,
    r = ∂K₂₂/∂g22, s = ∂K₁₂/∂g22, t = ∂Θ₁₂/∂g22 (a = b = r = C_w, s = t = 0 at
    layer 1), each layer maps
      a ← C_w D a,  b ← C_w D a + C_w (D b + Θ E a),
      r ← C_w Vd'(K₂₂) r,  s ← C_w (D s + V2 r),  t ← s_new + C_w (D t + Θ (E s + D2 r)),
    with the duals (module docstring) at the layer's (K₁₁, K₁₂, K₂₂). Jitted once per
    activation (depth, C_w, C_b are traced); traceable inside other jitted code.

    Args:
      arch: MLP (``parameterization="ntk"``); g11, g12, g22: first-layer overlaps
        (arrays broadcast; |g12| < √(g11 g22)).
      get: ``"ntk"`` or ``"nngp"``; quad_order: Gauss–Hermite nodes for activations without
        closed-form duals.
    """
    check_arch_get(arch, get)
    order = check_quad_order(quad_order)
    dt = jnp.result_type(float)
    g11, g12, g22 = jnp.broadcast_arrays(*(jnp.asarray(g, dt) for g in (g11, g12, g22)))
    value, t, s, sci = _transfer_jit(*_hyper(arch), g11, g12, g22, act=arch.act, get=get, order=order)
    return Transfer(value=value, T=t, S=s, T_science=sci)


@functools.partial(jax.jit, static_argnames=("act", "get", "order"))
def _transfer_diag_jit(depth, cw, cb, g, *, act, get, order):
    k = cb + cw * g

    def layer(_, c):
        k, th, r, t = c
        vd, dd, vdp, ddp = _diag_duals(act, k, order)
        knew = cb + cw * vd
        r_new = cw * vdp * r
        t = r_new + cw * (dd * t + th * ddp * r)
        return knew, knew + cw * dd * th, r_new, t

    k, th, r, t = jax.lax.fori_loop(0, depth - 1, layer, (k, k, cw + 0 * k, cw + 0 * k))
    return (th, t) if get == "ntk" else (k, r)


def transfer_diag(arch, g, *, get: str = "ntk", quad_order: int = SERIES_QUAD_ORDER):
    """(F_diag(g), dF_diag/dg) of a point with itself (forward recursion, Price duals); arrays like ``g``."""
    check_arch_get(arch, get)
    order = check_quad_order(quad_order)
    g = jnp.asarray(g, jnp.result_type(float))
    return _transfer_diag_jit(*_hyper(arch), g, act=arch.act, get=get, order=order)


def transfer_signs(
    activations=("erf", "tanh", "gelu", "swish", "sin", "relu"),
    depths=range(1, 9),
    W_stds=(0.5, 1.0, 1.5),
    b_stds=(0.0, 0.5),
    noises=((0.0, 1.0),),
    *,
    test_norm: float = 1.0,
    get: str = "ntk",
    quad_order: int = SERIES_QUAD_ORDER,
) -> list[dict]:
    """T_* and Δ on a grid: the leading-order rule is argmax ⟨x*, μ_i⟩ iff T_*/Δ > 0.

    For normalised data (x̄ = 0) the pure-noise point depends on the noise only
    through μ₂ (= E⟨x̃, x̃⟩ at ε = 0) and μ² (off-diagonal overlap): ``noises`` is a
    sequence of (μ, μ₂) pairs. The test-train pair is (test_norm, μ x̄* = 0, μ₂).

    Returns:
      one dict per grid point: activation, depth, W_std, b_std, mu, mu2, T_star,
      Delta, ok (T_* > 0 and Δ > 0).
    """
    from nwcorrupt.arch import MLP

    rows = []
    for act in activations:
        for w in W_stds:
            for b in b_stds:
                for mu, mu2 in noises:
                    for L in depths:
                        arch = MLP(int(L), act, W_std=float(w), b_std=float(b))
                        ts = transfer(arch, test_norm, 0.0, mu2, get=get, quad_order=quad_order)
                        off = transfer(arch, mu2, mu * mu, mu2, get=get, quad_order=quad_order)
                        fd, _ = transfer_diag(arch, mu2, get=get, quad_order=quad_order)
                        t, dl = float(ts.T), float(fd) - float(off.value)
                        rows.append(dict(activation=act, depth=int(L), W_std=float(w), b_std=float(b), mu=float(mu),
                                         mu2=float(mu2), T_star=t, Delta=dl, ok=bool(t > 0 and dl > 0)))
    return rows
