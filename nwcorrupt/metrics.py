"""Metrics on predictions: accuracy, agreement between predictors, SNR across noise draws, AUC over p,
and the mean ± std cells of result tables."""

from __future__ import annotations

import numpy as np

from nwcorrupt._checks import check_labels, check_positive_int, check_real, check_same_size

__all__ = ["NO_STD", "accuracy", "agreement", "binomial_stderr", "snr", "loglog_slope", "auc", "mean_std"]

NO_STD = ""
"""Table cell of a std that one sample cannot give: an empty cell in CSV and printed tables, never a
misleading 0 (figures draw no band for it)."""


def _as_labels(name: str, pred) -> np.ndarray:
    """Class predictions (N,) int, or logits (N, C) reduced by argmax."""
    arr = np.asarray(pred)
    if arr.ndim == 2:
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} contains NaN or inf logits")
        return np.argmax(arr, axis=1).astype(np.int32)
    return check_labels(name, arr)


def accuracy(pred, y) -> float:
    """Fraction of correct predictions.

    Args:
      pred: (N,) predicted labels or (N, C) logits (argmax is taken).
      y: (N,) true labels.
    """
    p = _as_labels("pred", pred)
    t = check_labels("y", y, n=p.shape[0], data_name="pred")
    if p.size == 0:
        raise ValueError("pred is empty; accuracy needs at least one prediction")
    return float(np.mean(p == t))


def agreement(pred_a, pred_b) -> float:
    """Fraction of points on which two predictors give the same class.

    Args:
      pred_a, pred_b: (N,) labels or (N, C) logits of the same N points.
    """
    a = _as_labels("pred_a", pred_a)
    b = _as_labels("pred_b", pred_b)
    check_same_size("pred_a", a.shape[0], "pred_b", b.shape[0], "predictions")
    if a.size == 0:
        raise ValueError("pred_a is empty; agreement needs at least one prediction")
    return float(np.mean(a == b))


def binomial_stderr(acc: float, n: int) -> float:
    """Standard error sqrt(a(1 − a)/n) of an accuracy measured on n points.

    Args:
      acc: the accuracy a, in [0, 1].
      n: the number of points, a positive integer.

    Raises:
      TypeError: ``acc`` is not a number or ``n`` not an integer. ValueError: ``acc`` outside
      [0, 1] or ``n`` < 1.
    """
    a = check_real("acc", acc, lo=0.0, hi=1.0, note="an accuracy")
    n = check_positive_int("n", n)
    return float(np.sqrt(max(a * (1 - a), 0.0) / n))


def snr(values, axis: int = 0, *, ddof: int = 1) -> np.ndarray:
    """Signal-to-noise ratio mean² / variance across repeats (e.g. K noisy data sets).

    Args:
      values: array whose ``axis`` indexes the repeats (at least 2 of them), e.g. (K, T) init-averaged
        true-class logits of T test points over K noisy training sets.
      axis: the repeat axis.
      ddof: delta degrees of freedom of the variance (1: unbiased).

    Returns:
      ``values`` reduced over ``axis``: mean² / var. A zero variance gives inf (or NaN when the mean is
      zero too); NaN or inf inputs raise.
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0:
        raise ValueError("values must have a repeat axis; got a scalar")
    ax = axis % v.ndim
    if v.shape[ax] <= ddof:
        raise ValueError(f"values needs more than {ddof} repeats along axis {axis} for an SNR, got {v.shape[ax]}")
    if not np.all(np.isfinite(v)):
        raise ValueError("values contains NaN or inf")
    mean = v.mean(axis=ax)
    var = v.var(axis=ax, ddof=ddof)
    with np.errstate(divide="ignore", invalid="ignore"):
        return mean**2 / var


def loglog_slope(x, y) -> tuple[float, float, float]:
    """Least-squares fit log y = slope · log x + intercept.

    Args:
      x, y: (n,) positive values, n ≥ 2 (n ≥ 3 for a standard error).

    Returns:
      (slope, intercept, stderr of the slope; NaN when n = 2).
    """
    lx = np.log(np.asarray(x, dtype=np.float64).ravel())
    ly_raw = np.asarray(y, dtype=np.float64).ravel()
    if lx.shape != ly_raw.shape:
        raise ValueError(f"x and y must have the same length, got {lx.size} and {ly_raw.size}")
    if lx.size < 2:
        raise ValueError(f"a log-log fit needs at least 2 points, got {lx.size}")
    if not (np.all(np.isfinite(lx)) and np.all(ly_raw > 0) and np.all(np.isfinite(ly_raw))):
        raise ValueError("x and y must be positive and finite for a log-log fit")
    ly = np.log(ly_raw)
    if np.ptp(lx) == 0:
        raise ValueError("x must take at least two distinct values")
    A = np.stack([lx, np.ones_like(lx)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(A, ly, rcond=None)
    if lx.size > 2:
        resid = ly - A @ np.array([slope, intercept])
        s2 = resid @ resid / (lx.size - 2)
        stderr = float(np.sqrt(s2 / np.sum((lx - lx.mean()) ** 2)))
    else:
        stderr = float("nan")
    return float(slope), float(intercept), stderr


def auc(ps, acc, *, normalize: bool = False) -> float:
    """Area under an accuracy curve acc(p) by the trapezoid rule.

    Args:
      ps: (n,) strictly increasing corruption levels in [0, 1], n ≥ 2.
      acc: (n,) accuracies at ``ps``.
      normalize: divide by the covered range ps[-1] − ps[0] (a mean accuracy over p).

    Returns:
      the area (over [0, 1] the AUC of chance level 1/C is 1/C).
    """
    p = np.asarray(ps, dtype=np.float64).ravel()
    a = np.asarray(acc, dtype=np.float64).ravel()
    if p.shape != a.shape:
        raise ValueError(f"ps and acc must have the same length, got {p.size} and {a.size}")
    if p.size < 2:
        raise ValueError(f"an AUC needs at least 2 corruption levels, got {p.size}")
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(a))):
        raise ValueError("ps and acc must be finite")
    if np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"ps must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    if np.any(np.diff(p) <= 0):
        raise ValueError("ps must be strictly increasing")
    area = float(np.sum(np.diff(p) * (a[1:] + a[:-1]) / 2))
    return area / float(p[-1] - p[0]) if normalize else area


def mean_std(values) -> tuple[float, float | str]:
    """Mean and sample std (ddof = 1) of a list of numbers, as table cells.

    A single value has no sample std: its std cell is :data:`NO_STD` (empty), not 0. Tables
    that print these cells put the count n next to the std.

    Raises:
      ValueError: ``values`` is empty.
    """
    v = np.asarray(values, dtype=float).ravel()
    if v.size == 0:
        raise ValueError("mean_std needs at least one value, got none")
    return float(v.mean()), (float(v.std(ddof=1)) if v.size > 1 else NO_STD)
