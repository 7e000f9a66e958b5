"""Cost of the exact label-noise moments against one plain kernel solve, side by side in one run.

    .venv/bin/python benchmarks/label_moments.py                 # N = 2000, 4000; M = 1000 (minutes)
    .venv/bin/python benchmarks/label_moments.py --n 300 --m 100 --reps 2   # smoke run (seconds)

For each training size N it draws a 10-class Gaussian mixture (d = 784), and times, interleaved and after
one warm-up call each (compilation excluded):

* ``predict.ntk_predict(arch, x_train, onehot(y), x_test)`` -- one kernel solve with C right-hand sides
  and the test predictions (the clean predictor);
* ``labels.predictor_moments(arch, x_train, y, x_test, Symmetric(0.5))`` -- the exact mean and C x C
  covariance of every test logit over label draws;
* 100 draws of ``ntk_predict`` on sampled noisy labels, extrapolated from the time of one -- what a Monte
  Carlo estimate of the same moments would need at the least (its error would still be ~10% on the
  covariance).

It prints the medians and the ratio moments / one solve. Float64 (``precision.x64``), L = 3 erf MLP,
diag_reg = 1e-3. Expected: a small constant ratio (the moments add two triangular solves against the
M test columns to the factorisation), far below the Monte Carlo cost.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from benchmarks._common import interleaved_medians, median  # noqa: E402
from nwcorrupt import data, labels, precision, predict  # noqa: E402
from nwcorrupt.arch import MLP  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[2000, 4000], help="training sizes N")
    ap.add_argument("--m", type=int, default=1000, help="test points M")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions")
    args = ap.parse_args(argv)
    arch = MLP(3, "erf")
    model = labels.Symmetric(0.5)
    print(f"{'N':>6} {'M':>6} {'one solve s':>12} {'moments s':>10} {'ratio':>7} {'100 MC draws s':>15}")
    with precision.x64():
        for n in args.n:
            m = args.m - args.m % 10
            ds = data.gaussian_mixture(n_train=n - n % 10, n_test=m, d=784, num_classes=10, seed=0)
            x, xt = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
            onehot = np.eye(10)[ds.y_train]
            fns = {
                "solve": lambda: predict.ntk_predict(arch, x, onehot, xt, diag_reg=1e-3),
                "moments": lambda: labels.predictor_moments(arch, x, ds.y_train, xt, model, num_classes=10,
                                                            diag_reg=1e-3),
            }
            for fn in fns.values():  # warm-up: compile
                fn()
            times = interleaved_medians(fns, args.reps)
            t_solve, t_mom = median(times["solve"]), median(times["moments"])
            print(f"{x.shape[0]:>6} {m:>6} {t_solve:>12.3f} {t_mom:>10.3f} {t_mom / t_solve:>7.2f} "
                  f"{100 * t_solve:>15.1f}", flush=True)


if __name__ == "__main__":
    main()
