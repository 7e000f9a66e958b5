"""Input validation shared by all modules.

Every check raises ``ValueError`` (or ``TypeError`` for wrong types) with a message
that names the offending argument and says what was expected.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def is_traced(x: Any) -> bool:
    """True for JAX tracers (values inside jit/vmap), which cannot be inspected."""
    try:
        import jax.core

        return isinstance(x, jax.core.Tracer)
    except Exception:  # pragma: no cover - jax always importable in practice
        return False


def check_array(
    name: str,
    x: Any,
    *,
    ndim: int | None = None,
    finite: bool = True,
    dtype_kind: str | None = "fiub",
) -> Any:
    """Validate an array argument and return it unchanged.

    Args:
      name: argument name used in error messages.
      x: numpy or jax array (or anything ``np.asarray`` accepts).
      ndim: required number of dimensions, or None for any.
      finite: if True, NaN or inf entries raise.
      dtype_kind: allowed numpy dtype kinds (``"f"`` float, ``"i"``/``"u"`` int,
        ``"b"`` bool) or None for any.
    """
    if x is None:
        raise ValueError(f"{name} must be an array, got None")
    shape = getattr(x, "shape", None)
    if shape is None:
        x = np.asarray(x)
        shape = x.shape
    if ndim is not None and len(shape) != ndim:
        raise ValueError(f"{name} must be {ndim}-dimensional, got shape {tuple(shape)}")
    dtype = np.dtype(x.dtype) if hasattr(x, "dtype") else np.asarray(x).dtype
    if dtype_kind is not None and dtype.kind not in dtype_kind:
        raise TypeError(f"{name} must have a numeric dtype, got {dtype}")
    if finite and dtype.kind == "f" and not is_traced(x):
        if not bool(np.all(np.isfinite(np.asarray(x)))):
            raise ValueError(f"{name} contains NaN or inf values; expected finite numbers")
    return x


def check_matrix(name: str, x: Any, *, finite: bool = True) -> Any:
    """Validate a 2-D float-like array of shape (N, d) with N >= 1 and d >= 1."""
    x = check_array(name, x, ndim=2, finite=finite)
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{name} must have at least one row and one column, got shape {tuple(x.shape)}")
    return x


def check_probability(name: str, p: Any) -> float:
    """Validate a corruption level (or any probability) and return it as float."""
    if is_traced(p):
        return p
    try:
        value = float(p)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number in [0, 1], got {p!r}") from None
    if not math.isfinite(value) or value < 0.0 or value > 1.0:
        raise ValueError(f"{name} must be in [0, 1], got {p!r}")
    return value


def check_positive_int(name: str, n: Any, *, allow_zero: bool = False) -> int:
    """Validate a positive (or non-negative) integer."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {n!r}")
    lo = 0 if allow_zero else 1
    if n < lo:
        raise ValueError(f"{name} must be >= {lo}, got {n}")
    return int(n)


def check_labels(
    name: str, y: Any, *, n: int | None = None, num_classes: int | None = None, data_name: str = "x"
) -> np.ndarray:
    """Validate integer class labels in [0, num_classes) and return them as int32 numpy.

    Args:
      name: argument name of the labels.
      y: (N,) integer labels (an integer-valued float array is rejected).
      n: required length (the number of rows of the data), or None.
      num_classes: the number of classes C, or None to skip the range check.
      data_name: argument name of the data, for the length-mismatch message.
    """
    if is_traced(y):
        return y
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array of integer labels, got shape {arr.shape}")
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must have an integer dtype, got {arr.dtype}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(
            f"{name} has {arr.shape[0]} labels but {data_name} has {n} rows; they must match"
        )
    if num_classes is not None and arr.size:
        lo, hi = int(arr.min()), int(arr.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(
                f"{name} must lie in [0, {num_classes}) for num_classes={num_classes}, "
                f"got values in [{lo}, {hi}]"
            )
    return arr.astype(np.int32, copy=False)


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    """Validate that ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value
