"""How fast the exact NTK predictor on one corrupted data set approaches the mean-field predictor as d grows.

For each input dimension d: K noisy training sets are drawn, the exact NTK predictor (t = ∞) is computed on
each, and compared with the mean-field predictor (first-layer Gram replaced by its noise average) on the
same clean test points: relative logit distance ‖f − f̄‖ / ‖f̄‖ (mean over the K sets) and the agreement of
their decisions. The log–log slope of the distance against d is fitted (theory: −1/2, since the overlap
fluctuations of one realisation are O(1/√d), see docs/theory.md "Fluctuations and SNR").

Data: a synthetic Gaussian mixture (per-example normalised) with d up to 10⁴, and MNIST bilinearly resized
to h × h (d = h² up to 10⁴). Run:

    python theory/meanfield_convergence.py                 # both data sets, erf L = 3, additive and replacement
    python theory/meanfield_convergence.py --quick         # smaller N, fewer d (about a minute)
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from nwcorrupt import corruption, data, metrics, precision, predict, theory
from nwcorrupt.kernels import MLP


def distances(arch, noise, p: float, ds: data.Dataset, k: int, seed: int = 0) -> tuple[float, float, float]:
    """(mean relative logit distance, its standard error over the k sets, mean decision agreement)."""
    onehot = np.eye(ds.num_classes)[ds.y_train]
    mf = theory.meanfield_predict(arch, noise, p, ds.x_train, ds.y_train, ds.x_test, num_classes=ds.num_classes)
    rel, agree = [], []
    for s in range(seed, seed + k):
        noisy = np.asarray(noise.apply(ds.x_train, p, s), dtype=np.float64)
        f = np.asarray(predict.ntk_predict(arch, noisy, onehot, ds.x_test, solver="cholesky"))
        rel.append(np.linalg.norm(f - mf) / np.linalg.norm(mf))
        agree.append(metrics.agreement(f, mf))
    rel = np.asarray(rel)
    return float(rel.mean()), float(rel.std(ddof=1) / np.sqrt(k)), float(np.mean(agree))


def sweep(name: str, sizes, load, arch, noises, p: float, k: int) -> list[dict]:
    rows = []
    for noise_name, noise in noises.items():
        dims, dist = [], []
        for size in sizes:
            ds = load(size)
            t = time.perf_counter()
            m, se, ag = distances(arch, noise, p, ds, k)
            rows.append({"data": name, "noise": noise_name, "d": ds.d, "rel": m, "se": se, "agree": ag})
            print(f"{name:<8} {noise_name:<12} d = {ds.d:>6}: ‖f − f̄‖/‖f̄‖ = {m:.4f} ± {se:.4f}, "
                  f"agreement {ag:.3f}  ({time.perf_counter() - t:.1f} s)", flush=True)
            dims.append(ds.d)
            dist.append(m)
        slope, _, err = metrics.loglog_slope(dims, dist)
        print(f"{name:<8} {noise_name:<12} slope of log distance vs log d: {slope:.3f} ± {err:.3f}\n", flush=True)
        rows.append({"data": name, "noise": noise_name, "slope": slope, "slope_se": err})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100, fewer dimensions")
    parser.add_argument("--p", type=float, default=0.9, help="corruption level (default 0.9)")
    parser.add_argument("--k", type=int, default=5, help="noisy sets per point (default 5)")
    args = parser.parse_args()
    precision.enable_x64()
    n, n_test = (100, 100) if args.quick else (400, 500)
    arch = MLP(3, "erf")
    noises = {"additive": corruption.Additive(), "replacement": corruption.Replacement("uniform")}
    print(f"erf L = 3 NTK, t = ∞, p = {args.p}, N = {n}, {n_test} test points, K = {args.k} noisy sets per d\n")
    mix_d = (100, 1000, 10000) if args.quick else (100, 300, 1000, 3000, 10000)
    sweep("mixture", mix_d,
          lambda d: data.load("gaussian_mixture", n_train=n, n_test=n_test, d=d, separation=0.5, seed=3),
          arch, noises, args.p, args.k)

    def mnist(h: int) -> data.Dataset:
        ds = data.load("mnist", n_train=n, seed=0, size=(h, h))
        return ds.replace(x_test=ds.x_test[:n_test], y_test=ds.y_test[:n_test])

    sweep("mnist", (14, 28, 100) if args.quick else (14, 28, 56, 100), mnist, arch, noises, args.p, args.k)


if __name__ == "__main__":
    main()
