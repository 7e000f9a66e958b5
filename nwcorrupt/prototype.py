"""Prototype (centroid) rules: the leading-order decision of heavily corrupted networks.

With the inner product ⟨x, x'⟩ = (1/d) Σ_i x_i x'_i and class means μ_i:

- ``"overlap"``: ŷ = argmax_i ⟨x*, μ_i⟩ — the rule the infinite-width theory
  gives at leading order in ε = 1 − p (SCIENCE.md §5) for balanced classes;
- ``"centered"``: ŷ = argmax_i ⟨x* − m, μ_i − m⟩ with m the mean of the training
  inputs — the overlap rule after centring the data at their grand mean;
- ``"euclidean"``: ŷ = argmin_i ‖x* − μ_i‖², i.e. argmax_i ⟨x*, μ_i⟩ − ⟨μ_i, μ_i⟩/2
  (nearest class mean). It differs from the overlap rule exactly by the
  −‖μ_i‖²/2 term, so the two agree when all class means have the same norm.

:func:`centroid_scores` gives the scores s_i(x*) of the centroid logit model
(SCIENCE.md §7), which weight classes by their size as the theory does.
"""

from __future__ import annotations

import numpy as np

from nwcorrupt._checks import check_choice, check_labels, check_matrix
from nwcorrupt.metrics import agreement  # noqa: F401  (re-exported: compare two predictions)

RULES = ("overlap", "centered", "euclidean")


def _inputs(x_test, x_train, y_train, num_classes):
    x_train = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    x_test = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"x_test has {x_test.shape[1]} features but x_train has {x_train.shape[1]}; they must match"
        )
    y = np.asarray(y_train)
    if num_classes is None:
        y_checked = check_labels("y_train", y, n=x_train.shape[0], data_name="x_train")
        num_classes = int(y_checked.max()) + 1
    y = check_labels("y_train", y, n=x_train.shape[0], num_classes=num_classes, data_name="x_train")
    return x_test, x_train, y, int(num_classes)


def class_counts(y_train, num_classes: int) -> np.ndarray:
    """(C,) number of training examples of each class."""
    y = check_labels("y_train", y_train, num_classes=num_classes)
    return np.bincount(y, minlength=num_classes)


def class_means(x_train, y_train, num_classes: int | None = None) -> np.ndarray:
    """Class means μ_i (C, d) in float64; an empty class raises ``ValueError``.

    Args:
      x_train: (N, d) training inputs.
      y_train: (N,) labels in [0, C).
      num_classes: C (default: max label + 1).
    """
    _, x, y, c = _inputs(np.zeros((1, np.shape(x_train)[-1])), x_train, y_train, num_classes)
    counts = np.bincount(y, minlength=c)
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        raise ValueError(
            f"class {int(empty[0])} has no training examples (empty classes: {empty.tolist()}); "
            "every class in [0, num_classes) needs at least one example to have a mean"
        )
    sums = np.zeros((c, x.shape[1]))
    np.add.at(sums, y, x)
    return sums / counts[:, None]


def scores(x_test, means, rule: str = "overlap", *, center=None) -> np.ndarray:
    """Rule scores (N_test, C): the predicted class is the argmax of each row.

    Args:
      x_test: (N_test, d) inputs.
      means: (C, d) class means.
      rule: ``"overlap"`` ⟨x*, μ_i⟩, ``"centered"`` ⟨x* − m, μ_i − m⟩ (needs
        ``center`` = m, (d,)), or ``"euclidean"`` ⟨x*, μ_i⟩ − ⟨μ_i, μ_i⟩/2.
    """
    check_choice("rule", rule, RULES)
    x = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    mu = np.asarray(check_matrix("means", means), dtype=np.float64)
    if mu.shape[1] != x.shape[1]:
        raise ValueError(f"means have {mu.shape[1]} features but x_test has {x.shape[1]}; they must match")
    d = x.shape[1]
    if rule == "centered":
        if center is None:
            raise ValueError("rule='centered' needs center=, the (d,) mean of the training inputs")
        m = np.asarray(center, dtype=np.float64)
        if m.shape != (d,):
            raise ValueError(f"center must have shape ({d},), got {m.shape}")
        return (x - m) @ (mu - m).T / d
    s = x @ mu.T / d
    if rule == "euclidean":
        s = s - 0.5 * np.sum(mu * mu, axis=1) / d
    return s


def predict(x_test, x_train, y_train, *, num_classes: int | None = None, rule: str = "overlap") -> np.ndarray:
    """Prototype-rule predictions (N_test,) int32.

    Args:
      x_test: (N_test, d) inputs to classify.
      x_train: (N, d) training inputs (possibly corrupted).
      y_train: (N,) labels in [0, C).
      num_classes: C (default: max label + 1); every class needs an example.
      rule: ``"overlap"``, ``"centered"`` or ``"euclidean"`` (module docstring).
    """
    check_choice("rule", rule, RULES)
    x_test, x_train, y, c = _inputs(x_test, x_train, y_train, num_classes)
    mu = class_means(x_train, y, c)
    center = x_train.mean(axis=0) if rule == "centered" else None
    return np.argmax(scores(x_test, mu, rule, center=center), axis=1).astype(np.int32)


def centroid_scores(x_test, x_train, y_train, *, num_classes: int | None = None) -> np.ndarray:
    """Centroid scores s_i(x*) (N_test, C) of SCIENCE.md §7.

    s_i(x*) = (C/N) Σ_α Y_αi ⟨x*, x_α⟩ − (1/N) Σ_α ⟨x*, x_α⟩. For balanced classes
    this is ⟨x*, μ_i⟩ − ⟨x*, m⟩ (m the grand mean), so its argmax is the overlap
    rule; for unbalanced classes class i is weighted by C·N_i/N.
    """
    x_test, x_train, y, c = _inputs(x_test, x_train, y_train, num_classes)
    n, d = x_train.shape
    sums = np.zeros((c, d))
    np.add.at(sums, y, x_train)
    total = x_train.sum(axis=0)
    return (x_test @ sums.T * (c / n) - (x_test @ total / n)[:, None]) / d
