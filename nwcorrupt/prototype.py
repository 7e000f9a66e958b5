"""Prototype (centroid) rules: the leading-order decision of heavily corrupted networks.

With the inner product ⟨x, x'⟩ = (1/d) Σ_i x_i x'_i and class means μ_i:

- ``"overlap"``: ŷ = argmax_i ⟨x*, μ_i⟩ — the rule the infinite-width theory
  gives at leading order in ε = 1 − p for balanced classes
  (docs/science.md#first-order-and-the-prototype-rule);
- ``"centered"``: ŷ = argmax_i ⟨x* − m, μ_i − m⟩ with m the mean of the training
  inputs — the overlap rule after centring the data at their grand mean;
- ``"euclidean"``: ŷ = argmin_i ‖x* − μ_i‖², i.e. argmax_i ⟨x*, μ_i⟩ − ⟨μ_i, μ_i⟩/2
  (nearest class mean). It differs from the overlap rule exactly by the
  −‖μ_i‖²/2 term, so the two agree when all class means have the same norm.

:func:`centroid_scores` gives the scores s_i(x*) of the centroid logit model
(docs/science.md#centroid-logit-model), which weight classes by their size as
the theory does.
"""

from __future__ import annotations

import numpy as np

from nwcorrupt._checks import (
    check_choice,
    check_labels,
    check_matrix,
    check_probability,
    check_same_size,
)
from nwcorrupt.metrics import agreement  # noqa: F401  (re-exported: compare two predictions)

__all__ = [
    "RULES",
    "class_counts",
    "class_means",
    "scores",
    "predict",
    "agreement",
    "centroid_scores",
    "fit_centroid_model",
    "centroid_model_accuracy",
    "centroid_model_accuracy_analytic",
]

RULES = ("overlap", "centered", "euclidean")


def _inputs(x_test, x_train, y_train, num_classes):
    x_train = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    x_test = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    check_same_size("x_test", x_test.shape[1], "x_train", x_train.shape[1], "features")
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
    check_same_size("means", mu.shape[1], "x_test", x.shape[1], "features")
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
    """Centroid scores s_i(x*) (N_test, C) of docs/science.md#centroid-logit-model.

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


# ---------------------------------------------------------------------------
# The centroid logit model (docs/science.md#centroid-logit-model)
# ---------------------------------------------------------------------------


def _init_average(logits) -> np.ndarray:
    """(K, N_test, C) init-averaged logits from (K, M, N_test, C) or (K, N_test, C)."""
    z = np.asarray(logits, dtype=np.float64)
    if z.ndim == 4:
        z = z.mean(axis=1)
    if z.ndim != 3:
        raise ValueError(f"logits must have shape (K, M, N_test, C) or (K, N_test, C), got {z.shape}")
    if z.shape[0] < 2:
        raise ValueError(f"logits need K >= 2 noisy data sets to estimate c, got K = {z.shape[0]}")
    if not np.all(np.isfinite(z)):
        raise ValueError("logits contain NaN or inf values")
    return z


def fit_centroid_model(logits, s, p_ref: float) -> dict:
    """Fit f_i = a s_i + b + c ξ_i to ensembles of logits at corruption level p_ref.

    Args:
      logits: (K, M, N_test, C) logits of K noisy data sets × M initialisations, or
        (K, N_test, C) already averaged over initialisations.
      s: (N_test, C) centroid scores (:func:`centroid_scores`).
      p_ref: corruption level of the ensembles (p_ref < 1).

    Returns:
      dict with a, b (least squares of the mean logits on s), c (mean over
      (test point, class) of the std across data sets, ddof = 1), A = a/(1 − p_ref)
      and r2 (R² of a s + b against the mean logits).
    """
    p_ref = check_probability("p_ref", p_ref)
    if p_ref >= 1:
        raise ValueError("p_ref must be < 1 so that A = a / (1 - p_ref) is defined")
    z = _init_average(logits)
    s = np.asarray(check_matrix("s", s), dtype=np.float64)
    if s.shape != z.shape[1:]:
        raise ValueError(f"s has shape {s.shape} but the logits have (N_test, C) = {z.shape[1:]}")
    mean = z.mean(axis=0)
    design = np.stack([s.ravel(), np.ones(s.size)], axis=1)
    (a, b), *_ = np.linalg.lstsq(design, mean.ravel(), rcond=None)
    resid = mean.ravel() - design @ np.array([a, b])
    r2 = 1.0 - resid @ resid / np.sum((mean.ravel() - mean.mean()) ** 2)
    c = float(z.std(axis=0, ddof=1).mean())
    return dict(a=float(a), b=float(b), c=c, A=float(a) / (1 - p_ref), r2=float(r2))


def centroid_model_accuracy(model: dict, s, y_test, ps, *, n_draws: int = 200, seed: int = 0) -> np.ndarray:
    """Monte Carlo accuracy of argmax_i A(1 − p) s_i + b + c ξ_i at each p (ξ ~ N(0, 1) i.i.d.).

    Args:
      model: output of :func:`fit_centroid_model` (uses A, b, c).
      s: (N_test, C) centroid scores; y_test: (N_test,) true labels; ps: (P,) levels.
      n_draws: ξ draws per test point; seed: numpy seed.

    Returns:
      (P,) mean accuracy over test points and draws.
    """
    s = np.asarray(check_matrix("s", s), dtype=np.float64)
    y = check_labels("y_test", y_test, n=s.shape[0], num_classes=s.shape[1], data_name="s")
    rng = np.random.default_rng(seed)
    xi = rng.standard_normal((n_draws,) + s.shape)
    out = []
    for p in np.atleast_1d(np.asarray(ps, dtype=np.float64)):
        f = model["A"] * (1 - p) * s[None] + model["b"] + model["c"] * xi
        out.append(np.mean(np.argmax(f, axis=2) == y[None]))
    return np.asarray(out)


def centroid_model_accuracy_analytic(a_eff: float, c: float, num_classes: int, *, n_nodes: int = 200) -> float:
    """Accuracy ∫ Dz Φ(z + a_eff / c)^{C−1} of the model in its own setting.

    Setting: the true class has score s_true = s_other + 1 and all other classes
    the same score, so with margin a_eff = A(1 − p) (per unit score gap) the true
    logit wins iff c ξ_true + a_eff > c ξ_j for all j. With c = 1 this is
    ∫Dz Φ(z + a(1 − p))^{C−1} of docs/science.md#centroid-logit-model (z standard normal,
    Gauss–Hermite).
    """
    from scipy.special import ndtr

    if not c > 0:  # wording asserted by tests/test_theory_centroid_model.py
        raise ValueError(f"c must be > 0, got {c}")
    z, w = np.polynomial.hermite_e.hermegauss(n_nodes)
    return float(np.sum(w * ndtr(z + a_eff / c) ** (num_classes - 1)) / np.sqrt(2 * np.pi))
