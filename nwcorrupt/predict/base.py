"""Shared pieces of :mod:`nwcorrupt.predict`: solve diagnostics, working-precision products
and the input checks used by several of its modules.

* :class:`SolveInfo` and :class:`ConvergenceError`: what every solver reports.
* :func:`mm` / :func:`matmul`: matrix products in the working float with ``HIGHEST``
  precision (:data:`nwcorrupt.precision.MATMUL_PRECISION`); :func:`matmul` is the jitted one.
* :func:`machine_eps`, :func:`dtype_key`, :func:`as_float`: dtype helpers.
* :func:`check_learning_rate`, :func:`check_times`, :func:`check_finite_out`,
  :func:`single_get`: argument and output checks whose messages name the offending argument
  (:func:`check_nonneg_float` is :func:`nwcorrupt._checks.check_nonneg_float`, re-exported).
"""

from __future__ import annotations

import dataclasses
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_nonneg_float, check_positive_float
from nwcorrupt.arch import normalize_get

__all__ = [
    "Array",
    "TILE_SIZE",
    "ConvergenceError",
    "SolveInfo",
    "mm",
    "matmul",
    "machine_eps",
    "dtype_key",
    "as_float",
    "check_finite_out",
    "check_nonneg_float",
    "check_learning_rate",
    "check_times",
    "single_get",
]

Array = jax.Array
_HI = _precision.MATMUL_PRECISION

#: Default number of kernel rows per tile when streaming a kernel.
TILE_SIZE = 1024


class ConvergenceError(RuntimeError):
    """Conjugate gradients did not reach the tolerance; ``.info`` holds the diagnostics."""

    def __init__(self, message: str, info: "SolveInfo") -> None:
        super().__init__(message)
        self.info = info


@dataclasses.dataclass(frozen=True)
class SolveInfo:
    """Diagnostics of one kernel solve.

    Attributes:
      solver: ``"cholesky"``, ``"mixed_cholesky"``, ``"eigh"``, ``"cg"`` or ``"stored_cg"`` (what ``"auto"`` resolved to).
      diag_reg: absolute regulariser ``r`` added to the diagonal (kernel units).
      jitter: absolute jitter added on top of ``r`` by the Cholesky fallback (0 if none).
      residual: ``max_t |(K + r I) A - B|_F / |Y|_F``, the relative residual of the
        system that was asked for (without jitter): ``B = Y`` at ``t = inf`` and
        ``B = (I - exp(-eta t (K + r I) / Y.size)) Y`` at finite ``t``.
      iterations: conjugate-gradient iterations (0 for direct solvers).
      converged: False only for a CG run that stopped at ``maxiter`` (with a warning).
      cond: condition-number estimate of ``K + r I`` (``inf`` if singular; NaN if
        not estimated, i.e. ``estimate_cond=False``).
      cond_method: how ``cond`` was obtained: ``"eigh"`` (exact eigenvalues),
        ``"power"`` (40 power and 40 inverse iterations with the Cholesky factor, of
        ``K + (r + jitter) I``; a lower bound, within 5% in the tests), ``"lanczos"`` (Ritz values from the CG
        coefficients; condition number of the *preconditioned* operator) or ``"none"``.
      dropped: eigen-directions dropped as numerical zeros by ``"eigh"``.
    """

    solver: str
    diag_reg: float
    jitter: float = 0.0
    residual: float = float("nan")
    iterations: int = 0
    converged: bool = True
    cond: float = float("nan")
    cond_method: str = "none"
    dropped: int = 0


def mm(a: Array, b: Array) -> Array:
    """``a @ b`` (``jnp.matmul`` broadcasting) with ``HIGHEST`` matmul precision."""
    return jnp.matmul(a, b, precision=_HI)


#: :func:`mm`, jitted (one compilation per shape and dtype).
matmul = jax.jit(mm)


def machine_eps(dtype: Any) -> float:
    """Machine epsilon of a float dtype (2.2e-16 for float64, 1.2e-7 for float32)."""
    return float(jnp.finfo(dtype).eps)


def dtype_key(dtype: Any) -> str:
    """``"float64"`` for float64, else ``"float32"``: the key of the per-dtype defaults."""
    return "float64" if jnp.dtype(dtype) == jnp.float64 else "float32"


def as_float(x: Any) -> Array:
    """x as a JAX array of the working float (:func:`nwcorrupt.precision.default_float`)."""
    return jnp.asarray(x, dtype=_precision.default_float())


def check_finite_out(name: str, x: Array) -> Array:
    """Return x, or raise ``FloatingPointError`` naming ``name`` if it has NaN or inf entries.

    For results computed from finite inputs: a non-finite entry means a singular or badly
    conditioned kernel for the dtype.
    """
    if not bool(jnp.all(jnp.isfinite(x))):
        raise FloatingPointError(
            f"{name} contains NaN or inf although the inputs were finite; the kernel is probably "
            "singular or badly conditioned for this dtype: add diag_reg or enable float64"
        )
    return x


def check_learning_rate(learning_rate: Any) -> float:
    """The gradient-flow learning rate eta as a finite float > 0."""
    return check_positive_float("learning_rate", learning_rate)


def check_times(t: Any) -> tuple[np.ndarray, bool]:
    """Validate gradient-flow times; returns (times (T,) float64 numpy, is_scalar)."""
    if t is None:
        raise ValueError("t must be a number >= 0 or a 1-D array of them for finite-time predictions")
    arr = np.asarray(t, dtype=np.float64) if not hasattr(t, "dtype") else np.asarray(t).astype(np.float64)
    if arr.ndim > 1:
        raise ValueError(f"t must be a scalar or a 1-D array of times, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("t must contain at least one time, got an empty array")
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise ValueError(f"t must be >= 0 (inf allowed), got {t!r}")
    return arr.reshape(-1), arr.ndim == 0


def single_get(get: Any, which: str | None = None) -> str:
    """The one kernel named by a ``get`` argument: ``"nngp"`` or ``"ntk"``.

    ``get`` may be the name or a one-element tuple of it (as accepted by
    :func:`nwcorrupt.arch.normalize_get`). ``which`` is the deprecated former name of the
    argument: when not None it replaces ``get``, with a ``DeprecationWarning``.

    Raises:
      ValueError: ``get`` names no kernel, an unknown one, or both.
    """
    if which is not None:
        warnings.warn("which= is deprecated; use get= ('nngp' or 'ntk')", DeprecationWarning, stacklevel=3)
        get = which
    names = normalize_get(get)
    if len(names) != 1:
        raise ValueError(f"get must name exactly one kernel, 'nngp' or 'ntk', got {get!r}")
    return names[0]
