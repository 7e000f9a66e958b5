"""Kernel matrices of an MLP: :func:`kernel`, :func:`kernel_diag`, :func:`kernel_from_gram`, :func:`kernel_layers`.

The validated, host-checked entry points (see :mod:`nwcorrupt.kernels` for the
conventions); :func:`kernel` and :func:`kernel_from_gram` run the tiled driver of
:mod:`nwcorrupt.kernels.tiled`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_array, check_choice, check_matrix, check_positive_int, is_traced
from nwcorrupt.arch import MLP, Kernels, check_arch, normalize_get
from nwcorrupt.kernels.recursion import (
    check_diag_finite,
    check_quad_order,
    check_standard_width,
    diag_jit,
    hyper_override,
    overlap_recursion,
)
from nwcorrupt.kernels.tiled import check_devices, check_tiling, run_tiled
from nwcorrupt.precision import default_float

Array = jax.Array

#: Where :func:`kernel` computes: the native recursion or neural-tangents.
BACKENDS = ("native", "neural_tangents")

__all__ = ["BACKENDS", "kernel", "kernel_diag", "kernel_from_gram", "kernel_layers"]


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
        int for square tiles); None = the devices' default tiles
        (:func:`~nwcorrupt.kernels.tiled.tile_defaults`: cache-sized on a CPU, larger on
        an accelerator), made smaller where the budget requires.
      memory_budget: bytes of working memory one step may use over all devices
        (beyond the output itself and the inputs); None = no limit.
      quad_order: Gauss–Hermite nodes per dimension for activations without a
        closed-form dual kernel.
      devices: devices to shard row blocks over (default ``jax.local_devices()``, this
        process's devices: all devices in a single-process run).

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
    tiles, budget = check_tiling(tile_size, memory_budget)
    order = check_quad_order(quad_order)
    devices = check_devices(devices)
    want_ntk = "ntk" in want
    check_standard_width(arch, want_ntk)

    dtype = default_float()
    x1 = jnp.asarray(x1, dtype)
    x2 = x1 if symmetric else jnp.asarray(x2, dtype)
    d = int(x1.shape[1])
    return run_tiled(
        arch, x1, x2, want=want, order=order, d=d, q0_1=None, q0_2=None, symmetric=symmetric, from_gram=False,
        devices=devices, tiles=tiles, budget=budget, names=("x1", "x1" if symmetric else "x2"),
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
    order = check_quad_order(quad_order)
    want_ntk = "ntk" in want
    check_standard_width(arch, want_ntk)
    x = jnp.asarray(x, default_float())
    diag = diag_jit(x, arch=arch, want_ntk=want_ntk, order=order)
    check_diag_finite(arch, diag, "x")
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
    tiles, budget = check_tiling(tile_size, memory_budget)
    order = check_quad_order(quad_order)
    devices = check_devices(devices)
    want_ntk = "ntk" in want
    check_standard_width(arch, want_ntk)
    d = _gram_input_dim(arch, want_ntk, input_dim)
    dtype = default_float()
    gram12 = jnp.asarray(gram12, dtype)
    q0_1 = jnp.asarray(diag1, dtype)
    q0_2 = q0_1 if symmetric else jnp.asarray(diag2, dtype)
    return run_tiled(
        arch, gram12, jnp.zeros((1, 1), dtype), want=want, order=order, d=d, q0_1=q0_1, q0_2=q0_2,
        symmetric=bool(symmetric), from_gram=True, devices=devices, tiles=tiles, budget=budget,
        names=("diag1", "diag1" if symmetric else "diag2"),
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
    order = check_quad_order(quad_order)
    want_ntk = "ntk" in want
    check_standard_width(arch, want_ntk)
    d = _gram_input_dim(arch, want_ntk, input_dim)
    dtype = default_float()
    g = jnp.asarray(gram12, dtype)
    q0_1 = jnp.asarray(diag1, dtype)
    q0_2 = None if symmetric else jnp.asarray(diag2, dtype)
    hyper = hyper_override(arch, W_std, b_std)
    layers = overlap_recursion(arch, want_ntk, order, g, q0_1, q0_2, d, hyper=hyper, keep_layers=True)
    return tuple(
        Kernels(nngp=K if "nngp" in want else None, ntk=theta if want_ntk else None) for K, theta in layers
    )
