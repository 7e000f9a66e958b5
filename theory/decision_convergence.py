"""Decision-rule convergence on MNIST: exact mean-field predictor vs the leading-order (overlap centroid) rule.

Run:  python theory/decision_convergence.py [n_train] [n_test]
Prints, for ε = 1 − p on a grid, the agreement of argmax of the exact mean-field NTK
predictor (erf, L = 3, additive noise) with the overlap rule argmax ⟨x*, μ_i⟩, the
accuracies of the exact, first-order and second-order truncated predictors, and
the share of the exact-vs-first-order logit gap explained by the second-order term.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from nwcorrupt import corruption, data, precision, prototype, theory
from nwcorrupt.kernels import MLP


def main(n_train: int = 4000, n_test: int = 10000) -> None:
    with precision.x64():
        ds = data.load("mnist", n_train=n_train)
        x, y = ds.x_train.astype(np.float64), ds.y_train
        xt, yt = ds.x_test[:n_test].astype(np.float64), ds.y_test[:n_test]
        arch, noise = MLP(3, "erf"), corruption.Additive()
        rule = prototype.predict(xt, x, y, num_classes=10, rule="overlap")
        t0 = time.time()
        co = theory.taylor(arch, noise, x, y, xt, order=2)
        print(f"# taylor(order=2): {time.time() - t0:.1f} s; N={n_train}, test={len(xt)}")
        print("eps, agree(exact, overlap rule), acc exact, acc 1st order, acc 2nd order, acc rule, gap explained by 2nd order")
        for eps in [0.3, 0.1, 0.03, 0.01, 3e-3, 1e-3]:
            f = theory.meanfield_predict(arch, noise, 1 - eps, x, y, xt)
            f1, f2 = theory.series_sum(co[:2], eps), theory.series_sum(co, eps)
            gap1 = f - f1
            explained = 1 - np.linalg.norm(f - f2) / np.linalg.norm(gap1)
            acc = [np.mean(np.argmax(g, 1) == yt) for g in (f, f1, f2)]
            print(f"{eps:g}, {np.mean(np.argmax(f, 1) == rule):.5f}, {acc[0]:.4f}, {acc[1]:.4f}, {acc[2]:.4f}, "
                  f"{np.mean(rule == yt):.4f}, {explained:.3f}")


if __name__ == "__main__":
    main(*(int(a) for a in sys.argv[1:3]))
