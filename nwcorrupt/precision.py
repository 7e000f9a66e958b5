"""Floating-point precision helpers.

nwcorrupt never changes ``jax_enable_x64`` on import. Kernels and solves are
ill-conditioned near p -> 1 and p -> 0, so theory checks should run in float64:
call :func:`enable_x64` once at the start of a program, or use the
:func:`x64` context manager around a block. Without x64, computations run in
float32 with ``precision=HIGHEST`` matrix products (see :data:`MATMUL_PRECISION`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import jax
import jax.numpy as jnp

__all__ = ["MATMUL_PRECISION", "x64_enabled", "enable_x64", "x64", "default_float"]

#: Precision used for every matrix product in nwcorrupt (full float32 accuracy on
#: accelerators that would otherwise use reduced-precision passes).
MATMUL_PRECISION = jax.lax.Precision.HIGHEST


def x64_enabled() -> bool:
    """Whether JAX currently creates 64-bit floats by default."""
    return bool(jax.config.read("jax_enable_x64"))


def enable_x64(enabled: bool = True) -> None:
    """Switch JAX's 64-bit mode globally (call before creating arrays)."""
    jax.config.update("jax_enable_x64", bool(enabled))


@contextlib.contextmanager
def x64(enabled: bool = True) -> Iterator[None]:
    """Context manager that sets 64-bit mode inside the block and restores it after."""
    before = x64_enabled()
    enable_x64(enabled)
    try:
        yield
    finally:
        enable_x64(before)


def default_float() -> jnp.dtype:
    """The float dtype JAX uses now: float64 with x64 enabled, else float32."""
    return jnp.float64 if x64_enabled() else jnp.float32
