"""Prototype rules against direct numpy computations."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import metrics, prototype


def _problem(seed=0, n=90, d=40, c=3, n_test=50):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((c, d)) * rng.uniform(0.5, 2.0, (c, 1))  # different norms
    y = np.arange(n) % c
    x = centres[y] + rng.standard_normal((n, d))
    xt = centres[np.arange(n_test) % c] + 1.5 * rng.standard_normal((n_test, d))
    return x, y, xt, c


def test_rules_against_direct_numpy():
    x, y, xt, c = _problem()
    d = x.shape[1]
    means = np.stack([x[y == i].mean(axis=0) for i in range(c)])
    np.testing.assert_allclose(prototype.class_means(x, y, c), means, rtol=1e-12)
    overlap = np.array([[np.dot(t, m) / d for m in means] for t in xt])
    dist = np.array([[np.sum((t - m) ** 2) for m in means] for t in xt])
    g = x.mean(axis=0)
    centred = np.array([[np.dot(t - g, m - g) / d for m in means] for t in xt])
    np.testing.assert_array_equal(prototype.predict(xt, x, y, rule="overlap"), overlap.argmax(1))
    np.testing.assert_array_equal(prototype.predict(xt, x, y, rule="euclidean"), dist.argmin(1))
    np.testing.assert_array_equal(prototype.predict(xt, x, y, rule="centered"), centred.argmax(1))


def test_euclidean_and_overlap_differ_exactly_by_half_squared_norm():
    x, y, xt, c = _problem(1)
    mu = prototype.class_means(x, y, c)
    d = x.shape[1]
    diff = prototype.scores(xt, mu, "euclidean") - prototype.scores(xt, mu, "overlap")
    np.testing.assert_allclose(diff, np.broadcast_to(-0.5 * (mu**2).sum(1) / d, diff.shape), rtol=1e-12, atol=1e-14)
    # the two rules differ on some points here (class means of different norms) ...
    a = prototype.predict(xt, x, y, rule="overlap")
    b = prototype.predict(xt, x, y, rule="euclidean")
    assert metrics.agreement(a, b) < 1.0
    # ... and agree when all means have equal norm
    mu_eq = mu / np.linalg.norm(mu, axis=1, keepdims=True)
    np.testing.assert_array_equal(
        prototype.scores(xt, mu_eq, "euclidean").argmax(1), prototype.scores(xt, mu_eq, "overlap").argmax(1)
    )


def test_centroid_scores_formula_and_unbalanced_weighting():
    x, y, xt, c = _problem(2)
    n, d = x.shape
    Y = np.eye(c)[y]
    G = xt @ x.T / d
    expected = (c / n) * G @ Y - G.mean(axis=1, keepdims=True)
    np.testing.assert_allclose(prototype.centroid_scores(xt, x, y), expected, rtol=1e-12, atol=1e-14)
    # balanced: argmax of centroid scores = overlap rule
    np.testing.assert_array_equal(prototype.centroid_scores(xt, x, y).argmax(1), prototype.predict(xt, x, y))
    # unbalanced: drop most of class 0; centroid scores weight class i by C N_i / N
    keep = (y != 0) | (np.arange(n) < 6)
    xu, yu = x[keep], y[keep]
    counts = prototype.class_counts(yu, c)
    mu = prototype.class_means(xu, yu, c)
    s = prototype.centroid_scores(xt, xu, yu)
    weighted = (xt @ mu.T / d) * (c * counts / len(yu)) - (xt @ xu.mean(0) / d)[:, None]
    np.testing.assert_allclose(s, weighted, rtol=1e-10, atol=1e-12)


def test_agreement_and_accuracy():
    assert metrics.accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 1, 2])) == 0.75
    logits = np.array([[1.0, 0.0], [0.2, 0.9], [3.0, -1.0]])
    assert metrics.accuracy(logits, np.array([0, 1, 1])) == pytest.approx(2 / 3)
    assert prototype.agreement(np.array([1, 1, 0]), np.array([1, 0, 0])) == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="pred_a has 3 predictions but pred_b has 2"):
        metrics.agreement(np.array([1, 1, 0]), np.array([1, 0]))
    with pytest.raises(ValueError, match="NaN or inf logits"):
        metrics.accuracy(np.array([[np.nan, 0.0]]), np.array([0]))


def test_validation_errors():
    x, y, xt, c = _problem(3)
    with pytest.raises(ValueError, match="class 3 has no training examples"):
        prototype.predict(xt, x, y, num_classes=4)
    with pytest.raises(ValueError, match="x_test has 39 features but x_train has 40"):
        prototype.predict(xt[:, 1:], x, y)
    with pytest.raises(ValueError, match="y_train has 89 labels but x_train has 90 rows"):
        prototype.predict(xt, x, y[1:])
    with pytest.raises(ValueError, match=r"y_train must lie in \[0, 2\)"):
        prototype.predict(xt, x, y, num_classes=2)
    with pytest.raises(ValueError, match="rule must be one of"):
        prototype.predict(xt, x, y, rule="cosine")
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="x_train contains NaN or inf"):
        prototype.predict(xt, bad, y)
    with pytest.raises(TypeError, match="y_train must have an integer dtype"):
        prototype.predict(xt, x, y.astype(float))
