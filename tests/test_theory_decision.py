"""Decision-rule convergence (small in-suite version of theory/decision_convergence.py)."""

from __future__ import annotations

import numpy as np

from nwcorrupt import corruption as C
from nwcorrupt import data, prototype, theory
from nwcorrupt.kernels import MLP


def test_exact_predictor_converges_to_overlap_rule_as_eps_to_0(x64):
    ds = data.load("digits", n_train=200, seed=0)
    x, y, xt = ds.x_train.astype(np.float64), ds.y_train, ds.x_test.astype(np.float64)
    arch = MLP(3, "erf")
    rule = prototype.predict(xt, x, y, num_classes=10, rule="overlap")
    agree = []
    for eps in (0.3, 1e-2, 1e-4):
        f = theory.meanfield_predict(arch, C.Additive(), 1 - eps, x, y, xt)
        agree.append(np.mean(np.argmax(f, 1) == rule))
    assert agree[-1] == 1.0, agree  # 360 test points: every decision agrees at ε = 1e-4
    assert agree[0] < agree[-1]  # and the rules differ at ε = 0.3 (the test is not vacuous)
    co = theory.taylor(arch, C.Additive(), x, y, xt, order=1)
    np.testing.assert_array_equal(theory.leading_decision(co), rule)
