"""Fidelity benchmark: the study's main recipe on MNIST at a reduced ensemble, beside the study and the NTK.

The recipe is the ``full`` scale of the centroid comparison (and of every erf study), taken from the
shipped config, not restated here: MNIST, per-example normalised, N = 4000 balanced training images, the
full clean test set (10 000), erf MLP with L = 3 dense layers of width 2048 in the standard
parameterisation (W ~ N(0, 1/fan_in), biases trainable from 0), MSE on one-hot targets, Adam 10⁻⁴, batch
250, 30 epochs. Only the ensemble is smaller: K noisy training sets × M initialisations (default 2 × 2)
instead of 20 × 10, and a few corruption levels.

For each (noise, p) it prints, mean ± std over the K noisy sets:

* ``net``: accuracy of the init-averaged network (argmax of the logits averaged over the M inits),
  and ``member``: the mean accuracy of single networks;
* ``ntk``: accuracy of the exact NTK predictor (t = ∞, NTK parameterisation, relative ridge 10⁻⁶,
  float64) on the same noisy sets, and ``agree``: the fraction of test points where the init-averaged
  network and the NTK predictor decide alike;
* the networks' training-set fit (mean training loss, lowest training accuracy);
* ``study``: the source's reported accuracy where it gives one (p = 0.9, replacement: 74.7 ± 1.5 %,
  init-averaged over 10 inits, mean ± std over 20 noisy sets);

and the wall time per network on this machine (training of the K·M networks of one point divided by
K·M, compilation included once per point).

``--ntk-parameterisation`` adds, at the first level and noise, the same networks trained in the NTK
parameterisation (what the studies used before the recipe was corrected), to show the difference.

Results are appended point by point to ``--out`` (JSON), so an interrupted run resumes where it
stopped; a damaged file is set aside and the run starts over.

Run: ``python benchmarks/fidelity.py [--k 2] [--m 2] [--ps 0.9 0.95 0.97 0.99] [--noises replacement additive]``
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from nwcorrupt import data, metrics, precision, predict, train
from nwcorrupt.experiments import catalog
from nwcorrupt.experiments.studies import common, nested_predictors

STUDY_REFERENCE = {("replacement", 0.9): (0.747, 0.015)}


def recipe(k: int, m: int, **smaller):
    """The full-scale parameters of the centroid comparison, with K and M replaced (and, for smoke tests
    only, any of n_train, n_test, width, epochs given in ``smaller``)."""
    params = catalog.load("centroid_comparison", "full").params
    return dataclasses.replace(params, k=k, m=m, **{key: v for key, v in smaller.items() if v is not None})


def run_point(params, ds: data.Dataset, noise: str, p: float, parameterization: str) -> dict:
    model = common.noise_model(noise, "example", ds.x_train)
    noisy = np.stack([np.asarray(model.apply(ds.x_train, p, params.seed + j)) for j in range(params.k)])
    arch = nested_predictors.network_arch(dataclasses.replace(params, parameterization=parameterization))
    config = nested_predictors.network_config(params, arch, ds.num_classes)
    start = time.perf_counter()
    ens = train.train_ensemble(config, noisy, ds.y_train, ds.x_test, ds.y_test, num_inits=params.m, quiet=True)
    seconds = time.perf_counter() - start
    logits = np.asarray(ens.test_logits, np.float64)  # (K, M, T, C)
    net = logits.mean(axis=1)
    onehot = np.eye(ds.num_classes)[ds.y_train]
    kernel_arch = nested_predictors.kernel_arch(params)
    with precision.x64():
        ntk = np.stack([
            np.asarray(predict.ntk_predict(kernel_arch, x.astype(np.float64), onehot, ds.x_test.astype(np.float64),
                                           diag_reg=params.diag_reg)) for x in noisy
        ])
    # agreement with the NTK when only the first m inits are averaged, m = 1..M
    by_m = [float(np.mean([metrics.agreement(logits[j, :mm].mean(0), ntk[j]) for j in range(params.k)]))
            for mm in range(1, params.m + 1)]
    return {
        "noise": noise, "p": p, "parameterization": parameterization, "k": params.k, "m": params.m,
        "net": [metrics.accuracy(f, ds.y_test) for f in net],
        "member": float(np.mean([[metrics.accuracy(f, ds.y_test) for f in row] for row in logits])),
        "ntk": [metrics.accuracy(f, ds.y_test) for f in ntk],
        "agree": [metrics.agreement(a, b) for a, b in zip(net, ntk)],
        "agree_by_m": by_m,
        "train_loss": float(np.mean(ens.train_loss)),
        "train_accuracy_min": float(np.min(ens.train_accuracy)),
        "seconds_per_network": seconds / (params.k * params.m),
    }


def _load(path: Path) -> list[dict]:
    if not path.exists():
        return []
    try:
        rows = json.loads(path.read_text())
        if not isinstance(rows, list) or not all(isinstance(r, dict) and "agree" in r for r in rows):
            raise ValueError("not a list of result rows")
        return rows
    except (ValueError, json.JSONDecodeError) as err:
        bad = path.with_suffix(path.suffix + ".damaged")
        os.replace(path, bad)
        print(f"{path} was damaged ({err}); moved to {bad}, starting over")
        return []


def _fmt(vals) -> str:
    m, s = common.mean_std(vals)
    return f"{m:.3f}" if s == common.NO_STD else f"{m:.3f} ± {s:.3f}"


def print_table(rows: list[dict]) -> None:
    head = (f"{'noise':<12}{'p':>5}  {'param.':<9}{'net (init-avg)':>16}{'member':>8}{'ntk':>16}{'agree':>16}"
            f"{'agree m=1':>10}{'train loss':>11}{'train acc min':>14}{'s/net':>7}  study")
    print(head)
    for r in rows:
        ref = STUDY_REFERENCE.get((r["noise"], round(r["p"], 4)))
        study = f"{ref[0]:.3f} ± {ref[1]:.3f}" if ref and r["parameterization"] == "standard" else ""
        print(f"{r['noise']:<12}{r['p']:>5.2f}  {r['parameterization']:<9}{_fmt(r['net']):>16}{r['member']:>8.3f}"
              f"{_fmt(r['ntk']):>16}{_fmt(r['agree']):>16}{r['agree_by_m'][0]:>10.3f}{r['train_loss']:>11.2e}"
              f"{r['train_accuracy_min']:>14.3f}{r['seconds_per_network']:>7.1f}  {study}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--k", type=int, default=2, help="noisy training sets K")
    ap.add_argument("--m", type=int, default=2, help="initialisations M per set")
    ap.add_argument("--ps", type=float, nargs="+", default=[0.9, 0.95, 0.97, 0.99])
    ap.add_argument("--noises", nargs="+", default=["replacement", "additive"], choices=["replacement", "additive"])
    ap.add_argument("--ntk-parameterisation", action="store_true",
                    help="also train the first point's networks in the NTK parameterisation")
    ap.add_argument("--out", default="results/fidelity.json", help="JSON file of the rows (resumable)")
    for name in ("n-train", "n-test", "width", "epochs"):
        ap.add_argument(f"--{name}", type=int, default=None, help="smoke tests only: not the recipe")
    args = ap.parse_args()
    params = recipe(args.k, args.m, n_train=args.n_train, n_test=args.n_test, width=args.width, epochs=args.epochs)
    ds = nested_predictors.load_dataset("mnist", params)
    print(f"fidelity benchmark: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; "
          f"MNIST N = {ds.n_train}, T = {ds.n_test}, erf L = {params.depth}, width {params.width}, "
          f"Adam {params.learning_rate}, batch {params.batch_size}, {params.epochs} epochs, K x M = {params.k} x {params.m}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = _load(out)
    todo = [(n, p, "standard") for n in args.noises for p in args.ps]
    if args.ntk_parameterisation:
        todo.append((args.noises[0], args.ps[0], "ntk"))
    for noise, p, par in todo:
        if any(r["noise"] == noise and r["p"] == p and r["parameterization"] == par and r["k"] == params.k
               and r["m"] == params.m for r in rows):
            continue
        rows.append(run_point(params, ds, noise, p, par))
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, out)
        print_table(rows[-1:])
    print()
    print_table([r for r in rows if r["k"] == params.k and r["m"] == params.m])
    print("accuracy on the full clean MNIST test set, mean ± std over the K noisy sets; agree: fraction of test "
          "points where the init-averaged network and the NTK predictor decide alike (agree m=1: single networks)")


if __name__ == "__main__":
    main()
