"""The p x r study: its label-noise columns against their definitions."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import labels as L
from nwcorrupt.experiments.studies import labels_and_inputs as S

SMALL = S.Params(dataset="digits", n_train=200, n_test=200, noises=("additive",), ps=(0.9,), rs=(0.0, 0.6),
                 width=32, epochs=2, batch_size=50, k=1, m=1, mc_samples=500)


def test_without_label_noise_the_label_columns_reduce_to_the_clean_ones():
    m = S.run_point(SMALL, {"noise": "additive", "p": 0.9, "r": 0.0})
    acc = m["accuracy"]
    assert m["flip_fraction"] == 0.0 and m["n_clean_rows"] == 200
    assert acc["ntk_label_mean"] == acc["ntk"]  # set k = 0, the same labels
    assert acc["rule_expected"] == acc["rule_clean"] == acc["rule_observed"]
    assert m["ntk_predicted"]["accuracy"] == pytest.approx(acc["ntk"][0])  # no label noise: no spread


def test_label_noise_reaches_the_networks_and_the_rules_but_not_the_label_averaged_rule():
    m = S.run_point(SMALL, {"noise": "additive", "p": 0.9, "r": 0.6})
    acc = m["accuracy"]
    assert m["flip_fraction"] == pytest.approx(0.6 * 0.9, abs=0.1)
    assert sum(m["observed_class_counts"]) == 200
    # symmetric noise leaves the label-averaged prototypes' decisions unchanged (balanced digits subset)
    assert acc["rule_expected"] == acc["rule_clean"]
    assert 0.0 <= m["ntk_predicted"]["accuracy"] <= 1.0 and m["ntk_predicted"]["stderr"] > 0


def test_bad_rates_raise():
    with pytest.raises(ValueError, match="rs must lie in \\[0, 1\\]"):
        S.Params(rs=(0.2, 1.2))
    with pytest.raises(ValueError, match="label_noise must be one of"):
        S.Params(label_noise="asymmetric")
    assert isinstance(S.label_model(S.Params(label_noise="pair"), 0.3), L.Pair)
