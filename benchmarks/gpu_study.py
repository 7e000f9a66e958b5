"""Run one study at a given scale on whatever device JAX sees, and report wall time and cost per network.

Made for the full-scale centroid comparison on MNIST on one GPU (the study's recipe: N = 4000, width
2048, Adam 10⁻⁴, batch 250, 30 epochs, K × M = 20 × 10 per point, both noises, p = 0.85 … 1.0):

    python benchmarks/gpu_study.py centroid_comparison --scale full --set 'datasets=["mnist"]' \\
        --out results/centroid_comparison-full-mnist

It is the same code path as ``nwcorrupt run``: the runner trains each point's K·M networks as one
member-batched program (``jax.vmap`` over members on an accelerator, float32 parameters with full-
precision float32 matrix products, one host synchronisation per epoch), computes the float64 kernel
predictors, and stores every point atomically, so a run cut by a time limit resumes where it stopped.
After the run it prints, per point, the wall time of the point, the training time and the training
time per network, then the totals. On a CPU, ``--scale tiny`` checks the path in seconds.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax

from nwcorrupt.cli import parse_set
from nwcorrupt.experiments import catalog, runner


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study")
    ap.add_argument("--scale", default="full")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    overrides = parse_set(args.set)
    config = catalog.load(args.study, args.scale, overrides=overrides)
    devices = jax.devices()
    print(f"{args.study} [{args.scale}] on {len(devices)} x {devices[0].device_kind} ({devices[0].platform})")
    start = time.perf_counter()
    summary = runner.run(config, Path(args.out), quiet=True)
    wall = time.perf_counter() - start
    params = config.params
    members = params.k * params.m
    total_train = 0.0
    for rec in runner.folder_records(Path(args.out)):
        m = rec["metrics"]
        seconds = float(m.get("train_seconds", 0.0))
        total_train += seconds
        point_wall = float(rec.get("seconds", float("nan")))
        print(f"  {json.dumps(rec['point'])}: point {point_wall:.1f} s, training {seconds:.1f} s, "
              f"{seconds / members:.3f} s per network")
    print(f"{summary.ran} points run, {summary.skipped} already stored; wall {wall:.1f} s this call; "
          f"training {total_train:.1f} s over all stored points ({members} networks per point)")


if __name__ == "__main__":
    main()
