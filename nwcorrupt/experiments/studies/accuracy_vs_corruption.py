"""Accuracy vs corruption level of a small ReLU network (docs/science.md#accuracy-vs-corruption).

For each data set and corruption level p, R networks (3 hidden layers × 128
ReLU, softmax cross-entropy, Adam) are trained on raw-pixel training images
whose corruption (replacement by U[0, 1] by default) is redrawn in every epoch
(see :mod:`~nwcorrupt.experiments.studies.online_training` for the seeds).
Each trained network is evaluated on three input sets:

- ``test_clean``: the clean test set (the study's main curve);
- ``train_clean``: the clean training images;
- ``train_corrupted``: one corrupted copy of the training images at the same p,
  the realisation ``epoch = 0`` of noise seed ``seed`` (shared by all repeats;
  no training epoch uses it, so it is a fresh draw for every network).

Reports mean ± std (ddof = 1) over the R networks of each accuracy, and the
chance level 1/C. The networks' fit of the inputs of their last training epoch
(training loss and accuracy) is recorded per point; the table ``training_fit`` flags
p = 0 points whose networks did not fit the clean training set (at p > 0 the inputs
are fresh noise every epoch and no threshold applies, see
:mod:`~nwcorrupt.experiments.studies.training_fit`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt.experiments.studies import common, training_fit
from nwcorrupt.experiments.studies import online_training as ot

__all__ = [
    "DESCRIPTION",
    "SPLITS",
    "HEADER",
    "Params",
    "preflight",
    "points",
    "estimate",
    "run_point",
    "tables",
    "figures",
]

DESCRIPTION = "ReLU MLP trained on corrupted images (noise redrawn every epoch): clean test and train accuracy vs p"

SPLITS = ("test_clean", "train_clean", "train_corrupted")


@dataclasses.dataclass(frozen=True)
class Params(ot.NetParams):
    """See :class:`~nwcorrupt.experiments.studies.online_training.NetParams`, plus:

    Attributes:
      datasets: image data sets, one panel each.
      ps: training corruption levels.
    """

    datasets: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist")
    ps: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(11))

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.datasets:
            raise ValueError("datasets must list at least one data set")
        for name in self.datasets:
            ot.check_image_dataset(name, "datasets")
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets must not repeat a data set, got {list(self.datasets)}")
        common.check_ps("ps", self.ps)


def preflight(params: Params) -> None:
    for name in params.datasets:
        common.preflight_dataset(name)


def points(params: Params) -> list[dict]:
    return [{"dataset": name, "p": p} for name in params.datasets for p in params.ps]


def estimate(params: Params, point: dict) -> float:
    n = params.n_train or 60000
    t = params.n_test or 10000
    flops = 6 * params.repeats * params.epochs * n * ot.num_params(params)
    flops += 2 * params.repeats * (t + 2 * n) * ot.num_params(params)
    noise = 3 * params.repeats * params.epochs * n * 784
    return 3.0 + flops / 1e10 + noise / 1e8


def run_point(params: Params, point: dict) -> dict:
    ds = ot.load_dataset(point["dataset"], params)
    p = float(point["p"])
    x_train_noisy = np.asarray(ot.noise_model(params).apply(ds.x_train, p, params.seed, epoch=0))
    x_eval = np.concatenate([ds.x_test, ds.x_train, x_train_noisy])
    logits, seconds, fit = ot.train_repeats(params, ds, p, x_eval)
    t, n = ds.n_test, ds.n_train
    parts = {
        "test_clean": (logits[:, :t], ds.y_test),
        "train_clean": (logits[:, t : t + n], ds.y_train),
        "train_corrupted": (logits[:, t + n :], ds.y_train),
    }
    return {
        "accuracy": {name: ot.accuracies(z, y) for name, (z, y) in parts.items()},
        "chance": 1.0 / ds.num_classes,
        "n_train": n,
        "n_test": t,
        "noise_seeds": [params.seed + r for r in range(params.repeats)],
        "train_corrupted_noise": {"seed": params.seed, "epoch": 0},
        "train_seconds": seconds,
        **fit,
    }


HEADER = ["dataset", "p", "split", "mean", "std", "n", "chance"]


def tables(params: Params, records: list[dict]) -> dict:
    rows, fit_rows = [], []
    for rec in records:
        m = rec["metrics"]
        for split in SPLITS:
            vals = m["accuracy"][split]
            rows.append([rec["point"]["dataset"], rec["point"]["p"], split, *common.mean_std(vals), len(vals), m["chance"]])
        p = rec["point"]["p"]
        fit_rows.append([rec["point"]["dataset"], p, *training_fit.columns(m, training_fit.online_threshold(p))])
    return {
        "accuracy": (list(HEADER), rows),
        "training_fit": (["dataset", "p", *training_fit.HEADER], fit_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    _, rows = tables(params, records)["accuracy"]
    title = (f"ReLU {params.depth - 1}×{params.width}, {params.epochs} epochs, "
             f"{plots.label(params.noise)} noise redrawn each epoch")
    band = plots.band_note(plots.series_counts(rows, 2, 5), "R", "trained networks")
    return {"accuracy_vs_p": plots.accuracy_panels(rows, title=title, band=band)}
