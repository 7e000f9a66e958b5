"""Input validation shared by all modules: one function per kind of check.

Every check raises ``ValueError`` (or ``TypeError`` for a wrong type) with a message that names
the offending argument and says what was expected, and returns the validated value (converted
where its docstring says so).

Kinds:

* numbers: :func:`check_real` (a finite real number with optional bounds) and its common cases
  :func:`check_nonneg_float`, :func:`check_positive_float`, :func:`check_probability`;
* integers: :func:`check_int` (optional bounds), :func:`check_positive_int`, :func:`check_seed`
  (a 32-bit PRNG seed);
* arrays: :func:`check_array`, :func:`check_matrix`, :func:`check_labels`, and
  :func:`check_same_size` for two arguments whose sizes must agree;
* names: :func:`check_choice`.
"""

from __future__ import annotations

import math
import numbers
from typing import Any

import numpy as np

__all__ = [
    "SEED_BOUND",
    "is_traced",
    "check_array",
    "check_matrix",
    "check_real",
    "check_nonneg_float",
    "check_positive_float",
    "check_probability",
    "check_int",
    "check_positive_int",
    "check_seed",
    "check_labels",
    "check_same_size",
    "check_choice",
]

#: Seeds lie in [0, SEED_BOUND): ``jax.random`` keys hold 32-bit seeds, so without x64 a larger
#: seed is silently truncated (``PRNGKey(2**32)`` is ``PRNGKey(0)``).
SEED_BOUND = 2**32


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


# --------------------------------------------------------------------------- numbers


def _fmt(v: float) -> str:
    return f"{v:g}"


def _number_kind(lo: float | None, hi: float | None, lo_open: bool, hi_open: bool, allow_inf: bool) -> str:
    """What a number must be, in words: ``"in [0, 1)"``, ``"a finite number > 0"``, ..."""
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{_fmt(lo)}, {_fmt(hi)}{')' if hi_open else ']'}"
    bound = ""
    if lo is not None:
        bound = f" {'>' if lo_open else '>='} {_fmt(lo)}"
    elif hi is not None:
        bound = f" {'<' if hi_open else '<='} {_fmt(hi)}"
    return f"a number{bound} (inf allowed)" if allow_inf else f"a finite number{bound}"


def check_real(
    name: str,
    value: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
    hi_open: bool = False,
    allow_inf: bool = False,
    note: str = "",
) -> float:
    """Validate a real number (finite unless ``allow_inf``) within optional bounds; return it as float.

    Accepted: Python and numpy ints and floats, and 0-d numeric numpy/jax arrays; not bools,
    strings or traced values (which cannot be inspected).

    Args:
      name: argument name used in error messages.
      value: the number.
      lo, hi: lower and upper bound, or None for none.
      lo_open, hi_open: exclude the bound itself (``lo=0, lo_open=True`` means > 0).
      allow_inf: accept ±inf (within the bounds); NaN is never accepted.
      note: why the bounds are what they are, added to the message in parentheses.

    Raises:
      TypeError: not a number. ValueError: NaN, inf (unless allowed) or out of bounds, e.g.
      ``"tol must be a finite number > 0, got 0"``, or with both bounds
      ``"momentum must be in [0, 1), got 1.5"``.
    """
    kind = _number_kind(lo, hi, lo_open, hi_open, allow_inf)
    why = f" ({note})" if note else ""
    scalar = isinstance(value, (numbers.Real, np.number)) and not isinstance(value, (bool, np.bool_))
    numeric = scalar
    if not numeric and not is_traced(value) and getattr(value, "shape", None) == ():
        numeric = np.dtype(value.dtype).kind in "iuf"  # a 0-d numpy or jax array
    if not numeric:
        what = kind if kind.startswith("a ") else f"a number {kind}"
        raise TypeError(f"{name} must be {what}{why}, got {value!r}")
    v = float(value)
    ok = not math.isnan(v) and (allow_inf or not math.isinf(v))
    if ok and lo is not None:
        ok = v > lo if lo_open else v >= lo
    if ok and hi is not None:
        ok = v < hi if hi_open else v <= hi
    if not ok:
        raise ValueError(f"{name} must be {kind}{why}, got {value if scalar else v!r}")
    return v


def check_nonneg_float(name: str, value: Any, *, allow_inf: bool = False) -> float:
    """A number >= 0 (finite unless ``allow_inf``) as float: a regulariser, a time, a scale."""
    return check_real(name, value, lo=0.0, allow_inf=allow_inf)


def check_positive_float(name: str, value: Any, *, note: str = "") -> float:
    """A finite number > 0 as float: a learning rate, a tolerance, a standard deviation."""
    return check_real(name, value, lo=0.0, lo_open=True, note=note)


def check_probability(name: str, p: Any) -> float:
    """A corruption level (or any probability) in [0, 1] as float; a traced value passes unchecked."""
    if is_traced(p):
        return p
    return check_real(name, p, lo=0.0, hi=1.0)


# --------------------------------------------------------------------------- integers


def check_int(name: str, n: Any, *, lo: int | None = None, hi: int | None = None, note: str = "") -> int:
    """Validate an integer (Python or numpy, not bool) within optional bounds [lo, hi]; return it as int.

    Messages read ``"k must be >= 2, got 1"``, ``"order must be <= 200, got 500"`` or, with both
    bounds, ``"digit must be in [0, 9], got 10"``; ``note`` is added in parentheses.
    """
    why = f" ({note})" if note else ""
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)):
        raise TypeError(f"{name} must be an integer{why}, got {n!r}")
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        if lo is not None and hi is not None:
            expected = f"in [{lo}, {hi}]"
        else:
            expected = f">= {lo}" if lo is not None else f"<= {hi}"
        raise ValueError(f"{name} must be {expected}{why}, got {n}")
    return int(n)


def check_positive_int(name: str, n: Any, *, allow_zero: bool = False) -> int:
    """Validate a positive (or, with ``allow_zero``, non-negative) integer; return it as int."""
    return check_int(name, n, lo=0 if allow_zero else 1)


def check_seed(name: str, seed: Any) -> int:
    """Validate a PRNG seed, an integer in [0, 2**32) (:data:`SEED_BOUND`); return it as int."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"{name} must be an integer in [0, 2**32), got {seed!r}")
    if not 0 <= int(seed) < SEED_BOUND:
        raise ValueError(f"{name} must be in [0, 2**32), got {seed}")
    return int(seed)


# --------------------------------------------------------------------------- labels, sizes, names


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


def check_same_size(name: str, size: int, other_name: str, other_size: int, what: str = "rows") -> None:
    """Raise ``ValueError`` unless two sizes agree, naming both arguments.

    ``check_same_size("x_test", 5, "x_train", 6, "features")`` raises
    ``"x_test has 5 features but x_train has 6; they must match"``.
    """
    if size != other_size:
        raise ValueError(f"{name} has {size} {what} but {other_name} has {other_size}; they must match")


def check_choice(name: str, value: Any, choices: tuple[str, ...] | list[str]) -> str:
    """Validate that ``value`` is one of ``choices`` (names); the message lists them, sorted."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value
