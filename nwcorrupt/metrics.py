"""Metrics on predictions: accuracy and agreement between predictors."""

from __future__ import annotations

import numpy as np

from nwcorrupt._checks import check_labels


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
    if a.shape != b.shape:
        raise ValueError(f"pred_a has {a.shape[0]} predictions but pred_b has {b.shape[0]}; they must match")
    if a.size == 0:
        raise ValueError("pred_a is empty; agreement needs at least one prediction")
    return float(np.mean(a == b))


def binomial_stderr(acc: float, n: int) -> float:
    """Standard error sqrt(a(1 − a)/n) of an accuracy measured on n points."""
    return float(np.sqrt(max(acc * (1 - acc), 0.0) / n))
