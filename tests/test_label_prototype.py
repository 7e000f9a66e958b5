"""Label noise meets heavy input corruption: the mean-field predictor on noisy labels and the noisy prototypes."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import corruption as C
from nwcorrupt import data, prototype, theory
from nwcorrupt import labels as L
from nwcorrupt.kernels import MLP

ARCH = MLP(3, "erf")


def _digits():
    ds = data.load("digits", n_train=200, seed=0)
    return ds.x_train.astype(np.float64), ds.y_train, ds.x_test.astype(np.float64)


@pytest.mark.parametrize("model", [L.Symmetric(0.6), L.Pair(0.4)], ids=["symmetric", "pair"])
def test_expected_meanfield_predictor_on_noisy_labels_tends_to_the_noisy_prototype_rule(x64, model):
    """The mean-field predictor is linear in the targets, so its average over label draws is the predictor
    of the expected targets; as eps -> 0 it decides by the overlap with the expected noisy class means."""
    x, y, xt = _digits()
    law = model.law(y, 10)
    rule = np.argmax(prototype.scores(xt, L.noisy_class_means(x, law)), axis=1)
    agree = []
    for eps in (0.3, 1e-4):
        f = theory.meanfield_predict(ARCH, C.Additive(), 1 - eps, x, law.mean_targets(), xt)
        agree.append(np.mean(np.argmax(f, 1) == rule))
    assert agree[-1] == 1.0, agree
    clean_rule = prototype.predict(xt, x, y, num_classes=10)
    if isinstance(model, L.Symmetric):
        np.testing.assert_array_equal(rule, clean_rule)  # symmetric noise leaves the prototype decisions
    else:
        assert np.mean(rule != clean_rule) > 0.05  # pair noise mixes the prototypes of paired classes


def test_meanfield_predictor_on_one_noisy_label_set_follows_its_own_class_means(x64):
    """One realisation with balanced observed classes (exact per-class counts: 10 kept, 1 to each other
    class in every class of 20): the eps -> 0 decisions are the overlap rule with its own noisy class means."""
    x, y, xt = _digits()
    t = 0.5 * np.eye(10) + 0.05
    noisy = L.Transition(t, exact=True).apply(y, 3, num_classes=10)
    assert np.all(np.bincount(noisy, minlength=10) == 20) and L.flip_fraction(y, noisy) == pytest.approx(0.45)
    f = theory.meanfield_predict(ARCH, C.Additive(), 1 - 1e-4, x, noisy, xt, num_classes=10)
    assert np.mean(np.argmax(f, 1) == prototype.predict(xt, x, noisy, num_classes=10)) == 1.0


def test_unequal_observed_class_counts_override_the_prototypes(x64):
    """With unequal counts of the observed labels (one symmetric-noise realisation: 13 to 30 per class) the
    eps -> 0 decisions are not the noisy prototype rule: they go to the most frequent observed classes."""
    x, y, xt = _digits()
    noisy = L.Symmetric(0.5).apply(y, 3, num_classes=10)
    counts = np.bincount(noisy, minlength=10)
    f = theory.meanfield_predict(ARCH, C.Additive(), 1 - 1e-4, x, noisy, xt, num_classes=10)
    pred = np.argmax(f, 1)
    assert np.mean(pred == prototype.predict(xt, x, noisy, num_classes=10)) < 0.5
    top_two = np.argsort(counts)[-2:]
    assert np.mean(np.isin(pred, top_two)) > 0.9
