"""The composable entry point :func:`kernel_fn`, shaped like neural-tangents' ``kernel_fn``."""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_matrix, is_traced
from nwcorrupt.arch import GET_NAMES, MLP, Kernels, check_arch, normalize_get, select_kernels
from nwcorrupt.kernels.matrices import kernel
from nwcorrupt.kernels.recursion import check_quad_order, check_standard_width, hyper_override, overlap_recursion
from nwcorrupt.kernels.tiled import check_devices, check_tiling
from nwcorrupt.precision import MATMUL_PRECISION, default_float

Array = jax.Array

__all__ = ["kernel_fn"]


def _traced_kernels(
    arch: MLP, want: tuple[str, ...], order: int, x1: Array, x2: Array | None, hyper: tuple[Any, Any] | None
) -> Kernels:
    """NNGP/NTK (N1, N2) as one jnp expression (no tiling, no host checks): jit/grad/vmap friendly."""
    want_ntk = "ntk" in want
    dtype = jnp.result_type(x1.dtype if x2 is None else jnp.result_type(x1.dtype, x2.dtype), default_float())
    x1 = jnp.asarray(x1, dtype)
    d = x1.shape[1]
    q0_1 = jnp.sum(x1 * x1, axis=1) / d
    if x2 is None:
        g, q0_2 = jnp.matmul(x1, x1.T, precision=MATMUL_PRECISION) / d, None
    else:
        x2 = jnp.asarray(x2, dtype)
        g, q0_2 = jnp.matmul(x1, x2.T, precision=MATMUL_PRECISION) / d, jnp.sum(x2 * x2, axis=1) / d
    ((K, theta),) = overlap_recursion(arch, want_ntk, order, g, q0_1, q0_2, d, hyper=hyper)
    return Kernels(nngp=K if "nngp" in want else None, ntk=theta if want_ntk else None)


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
    order = check_quad_order(quad_order)
    tiles, budget = check_tiling(tile_size, memory_budget)
    devices = None if devices is None else check_devices(devices)

    def fn(x1: Array, x2: Array | None = None, get: Any = None, *, W_std: Any = None, b_std: Any = None) -> Any:
        want = GET_NAMES if get is None else normalize_get(get)
        check_standard_width(arch, "ntk" in want)
        symmetric = x2 is None or x2 is x1
        x1 = check_matrix("x1", x1)
        if not symmetric:
            x2 = check_matrix("x2", x2)
            if x2.shape[1] != x1.shape[1]:
                raise ValueError(
                    "x1 and x2 must have the same number of features, "
                    f"got x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}"
                )
        hyper = hyper_override(arch, W_std, b_std)
        traced = any(is_traced(v) for v in (x1, x2, W_std, b_std) if v is not None)
        if traced:
            out = _traced_kernels(arch, want, order, x1, None if symmetric else x2, hyper)
        else:
            spec = arch if hyper is None else dataclasses.replace(arch, W_std=float(hyper[0]), b_std=float(hyper[1]))
            out = kernel(
                spec, x1, None if symmetric else x2, want, tile_size=tiles, memory_budget=budget,
                quad_order=order, devices=devices,
            )  # fmt: skip
        return select_kernels(out, get, want)

    fn.__doc__ = (
        f"kernel_fn of {arch!r}: fn(x1, x2=None, get=None, *, W_std=None, b_std=None) "
        "(see nwcorrupt.kernels.kernel_fn)."
    )
    return fn
