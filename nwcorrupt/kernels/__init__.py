"""Infinite-width NNGP and NTK kernels of MLPs.

This module computes the kernels of the :class:`~nwcorrupt.arch.MLP` spec (defined in
:mod:`nwcorrupt.arch`, re-exported here):

* :func:`kernel` — NNGP/NTK matrices (N1, N2) from inputs, tiled under a
  memory budget and sharded over ``jax.local_devices()``;
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

Layout: :mod:`~nwcorrupt.kernels.recursion` (the layer recursion),
:mod:`~nwcorrupt.kernels.tiled` (the tiled, sharded driver),
:mod:`~nwcorrupt.kernels.matrices` (the validated entry points) and
:mod:`~nwcorrupt.kernels.composable` (:func:`kernel_fn`); every public name is
importable from ``nwcorrupt.kernels``.
"""

from __future__ import annotations

from nwcorrupt.arch import GET_NAMES, MLP, PARAMETERIZATIONS, Kernels
from nwcorrupt.kernels.composable import kernel_fn
from nwcorrupt.kernels.matrices import BACKENDS, kernel, kernel_diag, kernel_from_gram, kernel_layers
from nwcorrupt.kernels.tiled import (
    DEFAULT_SQUARE_TILE,
    DEFAULT_TILE_BYTES,
    TileDefaults,
    buffers_per_entry,
    plan_tiles,
    tile_defaults,
)

__all__ = [
    "BACKENDS",
    "DEFAULT_SQUARE_TILE",
    "DEFAULT_TILE_BYTES",
    "GET_NAMES",
    "MLP",
    "PARAMETERIZATIONS",
    "Kernels",
    "TileDefaults",
    "buffers_per_entry",
    "kernel",
    "kernel_diag",
    "kernel_fn",
    "kernel_from_gram",
    "kernel_layers",
    "plan_tiles",
    "tile_defaults",
]
