"""Empirical kernels of finite networks and the linearised network.

* :func:`ntk` — the empirical NTK Θ̂(x1, x2) = Σ_θ ∂f(x1)/∂θ ∂f(x2)/∂θ, by Jacobian
  contraction. Parameters are exactly those of :mod:`nwcorrupt.mlp`, so no extra
  normalisation is needed: in the ``"ntk"`` parameterisation Θ̂ → the analytic
  NTK as width → ∞; in the ``"standard"`` parameterisation Θ̂ → neural-tangents'
  standard NTK of base width ``width`` as ``width_scale`` → ∞. Fluctuations are
  O(1/sqrt(width)).
* :func:`ntk_vp` — NTK-vector products Θ̂(x1, x2) v without forming any Jacobian
  (one VJP on x2 then one JVP on x1): memory O(params + N·C), for large N.
* :func:`linearize` — f_lin(θ, x) = f(x; θ0) + J(x; θ0)(θ − θ0) by ``jax.jvp``.
* :func:`nngp` — empirical NNGP: output covariance across random initialisations.

Precision: in float32 the empirical NTK has relative rounding error ~1e-6 (products
are summed over ~width² parameters); tests run in float64.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from nwcorrupt import mlp as _mlp
from nwcorrupt._checks import check_choice, check_positive_int, check_same_size
from nwcorrupt.arch import MLP, check_arch
from nwcorrupt.precision import MATMUL_PRECISION

__all__ = ["NTK_MODES", "NNGP_READOUTS", "ntk", "ntk_vp", "linearize", "nngp"]

Array = jax.Array

NTK_MODES = ("trace", "diagonal", "full")


def _check_pair(arch: MLP, params: Any, x1: Any, x2: Any, width_scale: int) -> tuple[Array, Array]:
    x1 = _mlp.check_network_inputs(arch, params, x1, width_scale)
    if x2 is None:
        return x1, x1
    try:
        x2 = _mlp.check_network_inputs(arch, params, x2, width_scale)
    except ValueError as err:
        raise ValueError(str(err).replace("x ", "x2 ", 1)) from None
    return x1, x2


def _jacobian(arch: MLP, params: Any, x: Array, width_scale: int, precision: Any) -> Any:
    """Per-example Jacobian pytree; each leaf has shape (N, C, *param_shape)."""

    def f_single(p: Any, xi: Array) -> Array:
        return _mlp.forward(arch, p, xi[None, :], width_scale, precision, arch.depth)[0]

    return jax.vmap(jax.jacrev(f_single), in_axes=(None, 0))(params, x)


@functools.lru_cache(maxsize=64)
def _jacobian_fn(arch: MLP, width_scale: int, precision: Any) -> Callable:
    return jax.jit(lambda p, x: _jacobian(arch, p, x, width_scale, precision))


@functools.lru_cache(maxsize=8)
def _contract_fn(mode: str) -> Callable:
    return jax.jit(lambda a, b: _contract(a, b, mode))


def _contract(j1: Any, j2: Any, mode: str) -> Array:
    def one(a: Array, b: Array) -> Array:
        a = a.reshape(a.shape[0], a.shape[1], -1)
        b = b.reshape(b.shape[0], b.shape[1], -1)
        if mode == "full":
            return jnp.einsum("icp,jdp->ijcd", a, b, precision=MATMUL_PRECISION)
        if mode == "diagonal":
            return jnp.einsum("icp,jcp->ijc", a, b, precision=MATMUL_PRECISION)
        return jnp.einsum("icp,jcp->ij", a, b, precision=MATMUL_PRECISION) / a.shape[1]

    parts = jax.tree_util.tree_leaves(jax.tree_util.tree_map(one, j1, j2))
    return sum(parts[1:], parts[0])


def ntk(
    arch: MLP,
    params: Any,
    x1: Array,
    x2: Array | None = None,
    *,
    mode: str = "trace",
    width_scale: int = 1,
    block_size: int | None = None,
    precision: Any = MATMUL_PRECISION,
) -> Array:
    """Empirical NTK of one network by Jacobian contraction.

    Args:
      arch, params, width_scale: the network (see :mod:`nwcorrupt.mlp`).
      x1: (N1, d) inputs; x2: (N2, d) inputs or None for x1.
      mode: ``"trace"`` — (N1, N2), Σ_c Θ̂_cc / C (the scalar kernel that the
        analytic NTK describes); ``"diagonal"`` — (N1, N2, C), per output;
        ``"full"`` — (N1, N2, C, C), all output pairs (off-diagonal → 0 as width → ∞).
      block_size: rows of x1 / x2 whose Jacobians are held at once (memory
        block_size·C·num_params floats); None = all at once.
      precision: matmul precision inside the network.

    Returns:
      The kernel array described under ``mode``.
    """
    check_choice("mode", mode, NTK_MODES)
    x1, x2 = _check_pair(arch, params, x1, x2, width_scale)
    same = x2 is x1
    if block_size is not None:
        block_size = check_positive_int("block_size", block_size)

    jac = _jacobian_fn(arch, width_scale, precision)
    contract = _contract_fn(mode)

    def blocks(x: Array) -> list[Array]:
        if block_size is None or block_size >= x.shape[0]:
            return [x]
        return [x[i : i + block_size] for i in range(0, x.shape[0], block_size)]

    b1, b2 = blocks(x1), blocks(x2)
    if len(b1) == 1 and len(b2) == 1:
        j1 = jac(params, x1)
        return contract(j1, j1 if same else jac(params, x2))
    rows = []
    for xa in b1:
        ja = jac(params, xa)
        rows.append(jnp.concatenate([contract(ja, jac(params, xb)) for xb in b2], axis=1))
    return jnp.concatenate(rows, axis=0)


def ntk_vp(
    arch: MLP,
    params: Any,
    x1: Array,
    x2: Array,
    v: Array,
    *,
    width_scale: int = 1,
    precision: Any = MATMUL_PRECISION,
) -> Array:
    """NTK-vector product u = Θ̂(x1, x2) v without forming the Jacobian.

    u_{ic} = Σ_{j,d} Θ̂_{cd}(x1_i, x2_j) v_{jd}, computed as J(x1) (J(x2)ᵀ v) with one
    reverse-mode and one forward-mode pass.

    Args:
      x1: (N1, d); x2: (N2, d); v: (N2, C) (same dtype as the parameters).

    Returns:
      (N1, C).
    """
    x1, x2 = _check_pair(arch, params, x1, x2, width_scale)
    v = _mlp.check_input("v", v)
    c = params[-1]["W"].shape[1]
    if v.shape != (x2.shape[0], c):
        raise ValueError(f"v must have shape (N2, C) = {(x2.shape[0], c)}, got {tuple(v.shape)}")
    v = jnp.asarray(v, x2.dtype)
    return _ntk_vp(arch, params, x1, x2, v, width_scale, precision)


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _ntk_vp(arch: MLP, params: Any, x1: Array, x2: Array, v: Array, width_scale: int, precision: Any) -> Array:
    def f(p: Any, x: Array) -> Array:
        return _mlp.forward(arch, p, x, width_scale, precision, arch.depth)

    _, pullback = jax.vjp(lambda p: f(p, x2), params)
    (g,) = pullback(v)
    _, out = jax.jvp(lambda p: f(p, x1), (params,), (g,))
    return out


def linearize(
    arch: MLP, params0: Any, *, width_scale: int = 1, precision: Any = MATMUL_PRECISION
) -> Callable[[Any, Array], Array]:
    """The network linearised in its parameters around ``params0``.

    Returns:
      ``f_lin(params, x) -> (N, C)`` with
      f_lin(θ, x) = f(x; θ0) + J(x; θ0)(θ − θ0), evaluated by ``jax.jvp`` (no
      Jacobian is formed). It is exactly linear in θ, equals the network at θ0,
      and differs from it by O(|θ − θ0|²). Jittable and differentiable.
    """
    check_arch(arch)
    _mlp.check_params(params0, arch)
    _mlp.check_width_scale(arch, width_scale)

    @jax.jit
    def lin(params: Any, x: Array) -> Array:
        delta = jax.tree_util.tree_map(lambda a, b: a - b, params, params0)
        y0, dy = jax.jvp(
            lambda p: _mlp.forward(arch, p, x, width_scale, precision, arch.depth), (params0,), (delta,)
        )
        return y0 + dy

    def f_lin(params: Any, x: Array) -> Array:
        x = _mlp.check_network_inputs(arch, params0, x, width_scale)
        _mlp.check_params(params, arch)
        return lin(params, x)

    return f_lin


NNGP_READOUTS = ("analytic", "sample")


def nngp(
    arch: MLP,
    key: Array,
    x1: Array,
    x2: Array | None = None,
    *,
    width: int | None = None,
    num_inits: int,
    num_outputs: int = 1,
    readout: str = "analytic",
    width_scale: int = 1,
    precision: Any = MATMUL_PRECISION,
) -> Array:
    """Empirical NNGP: covariance of the outputs across random initialisations.

    Draws ``num_inits`` networks (init key ``fold_in(key, i)``) and averages
    f_c(x1) f_c(x2) over draws and outputs c (uncentred: the outputs have mean 0).

    Args:
      arch: architecture; width (None: ``arch.width``), width_scale: see :func:`nwcorrupt.mlp.init`.
      key: ``jax.random`` key.
      x1: (N1, d); x2: (N2, d) or None for x1.
      num_inits: number of random networks M >= 1.
      num_outputs: C outputs per network (each is an independent sample).
      readout: ``"sample"`` — sampled readout weights, a Monte Carlo estimate
        with error ~ 1/sqrt(M·C); ``"analytic"`` — the readout layer (Gaussian
        given the hidden layers) is integrated exactly, giving
        W_std² σ(h(x1))·σ(h(x2)) / fan_in + b_std² averaged over the M draws of the
        hidden layers: error ~ 1/sqrt(M·width) and no readout noise.

    Returns:
      (N1, N2) covariance estimate, converging to the analytic NNGP as width → ∞.
    """
    check_choice("readout", readout, NNGP_READOUTS)
    num_inits = check_positive_int("num_inits", num_inits)
    num_outputs = check_positive_int("num_outputs", num_outputs)
    x1 = _mlp.check_input("x1", x1)
    d = x1.shape[1]
    x1 = jnp.asarray(x1)
    if x2 is None:
        x2 = x1
    else:
        x2 = jnp.asarray(_mlp.check_input("x2", x2))
        check_same_size("x2", x2.shape[1], "x1", d, "features")
    width = _mlp.resolve_width(arch, width)
    _mlp.layer_shapes(arch, width, d, num_outputs, width_scale=width_scale)  # validates arguments

    fn = _nngp_fn(arch, width, num_inits, num_outputs, readout, width_scale, precision)
    return fn(key, x1, x2)


@functools.lru_cache(maxsize=64)
def _nngp_fn(
    arch: MLP, width: int, num_inits: int, num_outputs: int, readout: str, width_scale: int, precision: Any
) -> Callable:
    def total(key: Array, x1: Array, x2: Array) -> Array:
        d = x1.shape[1]

        def one(i: Array) -> Array:
            p = _mlp.init(jax.random.fold_in(key, i), arch, width, d, num_outputs, width_scale=width_scale)
            a1, a2 = x1.astype(p[0]["W"].dtype), x2.astype(p[0]["W"].dtype)
            if readout == "sample":
                f1 = _mlp.forward(arch, p, a1, width_scale, precision, arch.depth)
                f2 = _mlp.forward(arch, p, a2, width_scale, precision, arch.depth)
                return jnp.dot(f1, f2.T, precision=precision) / num_outputs
            g1 = _mlp.penultimate(arch, p, a1, width_scale=width_scale, precision=precision)
            g2 = _mlp.penultimate(arch, p, a2, width_scale=width_scale, precision=precision)
            fan_in = g1.shape[1]
            return arch.W_std**2 * jnp.dot(g1, g2.T, precision=precision) / fan_in + arch.b_std**2

        return jax.lax.map(one, jnp.arange(num_inits)).mean(axis=0)

    return jax.jit(total)
