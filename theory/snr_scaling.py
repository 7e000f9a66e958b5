"""Measure the SNR of exact NTK predictors over K noisy data sets and fit log SNR = a log ε + b log N + c log d.

Usage (defaults reproduce docs/theory.md, "Fluctuations and SNR"):

    python theory/snr_scaling.py [--noise additive|replacement] [--act erf] [--depth 3] [--b-std 0]
        [--eps 0.005,0.01,0.02] [--n 20,40,80] [--d 1000,2000,4000] [--k 200] [--centre] [--order leading|linear]

Data: balanced 2-class Gaussian mixture (separation 2, noise_std 0.5), normalised per example,
10 clean test points. Prints one row per grid point (measured and leading-order predicted pooled
SNR of the true-class output) and both fits with standard errors. Runs in float64.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nwcorrupt import corruption, fluctuations, kernels, precision


def _floats(s: str) -> list[float]:
    return [float(v) for v in s.split(",")]


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",")]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--noise", choices=("additive", "replacement"), default="additive")
    ap.add_argument("--act", default="erf")
    ap.add_argument("--depth", type=int, default=3)
    ap.add_argument("--b-std", type=float, default=0.0)
    ap.add_argument("--eps", type=_floats, default=[0.005, 0.01, 0.02])
    ap.add_argument("--n", type=_ints, default=[20, 40, 80])
    ap.add_argument("--d", type=_ints, default=[1000, 2000, 4000])
    ap.add_argument("--k", type=int, default=200)
    ap.add_argument("--centre", action="store_true", help="SNR of the centred output f_y − mean_c f_c")
    ap.add_argument("--order", choices=fluctuations.ORDERS, default="leading", help="theory used for the prediction")
    args = ap.parse_args(argv)
    precision.enable_x64()
    arch = kernels.MLP(args.depth, args.act, b_std=args.b_std)
    noise = corruption.Additive() if args.noise == "additive" else corruption.Replacement()
    t0 = time.perf_counter()
    res = fluctuations.snr_scaling(arch, noise, args.eps, args.n, args.d, k=args.k, n_test=10, num_classes=2,
                                   separation=2.0, noise_std=0.5, centre=args.centre,
                                   order=args.order)
    print(f"{args.act} L={args.depth} b_std={args.b_std} {args.noise} K={args.k} centre={args.centre} order={args.order} "
          f"({time.perf_counter() - t0:.0f} s)")
    print("    eps     N      d   measured  predicted  ratio")
    for e, n, d, m, p in zip(res.eps, res.n, res.d, res.measured, res.predicted):
        print(f"{e:7.4f} {int(n):5d} {int(d):6d} {m:10.4g} {p:10.4g} {m / p:6.3f}")
    for name, fit in (("measured", res.fit), ("predicted", res.fit_predicted)):
        ex, se = fit.exponents, fit.stderr
        print(f"{name:9s} exponents (eps, N, d) = ({ex[0]:.3f} ± {se[0]:.3f}, {ex[1]:.3f} ± {se[1]:.3f}, "
              f"{ex[2]:.3f} ± {se[2]:.3f}); residual rms {fit.residual_rms:.3f}")
    if not res.used.all():
        print(f"{int((~res.used).sum())} grid points with measured SNR <= 0 left out of the fits")


if __name__ == "__main__":
    main()
