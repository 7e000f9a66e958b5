"""Corrupted copies of training images at several corruption levels, for each noise model."""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt import data
from nwcorrupt._checks import check_choice, check_positive_int, check_seed
from nwcorrupt.experiments.studies import common

__all__ = ["DESCRIPTION", "Params", "preflight", "points", "estimate", "run_point", "tables", "figures"]

DESCRIPTION = "what the noise models do to images: strips of corrupted examples at each p"


@dataclasses.dataclass(frozen=True)
class Params:
    dataset: str = "mnist"
    normalize: str = "none"
    noises: tuple[str, ...] = ("replacement", "additive")
    ps: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
    n_examples: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        common.check_dataset(self.dataset)
        if self.dataset == "gaussian_mixture":
            raise ValueError("dataset must hold images for noise_illustration, got 'gaussian_mixture'")
        common.check_noises(self.noises)
        common.check_ps("ps", self.ps)
        check_choice("normalize", self.normalize, data.NORMALIZATIONS)
        check_positive_int("n_examples", self.n_examples)
        check_seed("seed", self.seed)


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"noise": n} for n in params.noises]


def estimate(params: Params, point: dict) -> float:
    return 0.5


def _num_classes(params: Params) -> int:
    return data.load_raw(params.dataset).num_classes


def run_point(params: Params, point: dict) -> dict:
    ds = data.load(params.dataset, n_train=10 * _num_classes(params), seed=params.seed, normalize=params.normalize)
    x = ds.x_train[: params.n_examples]
    model = common.noise_model(point["noise"], params.normalize, ds.x_train)
    images = [[np.asarray(model.apply(x, p, params.seed))[i].round(5).tolist() for p in params.ps] for i in range(len(x))]
    return {"images": images, "image_shape": list(ds.image_shape), "labels": ds.y_train[: params.n_examples].tolist()}


def tables(params: Params, records: list[dict]) -> dict:
    rows = [[r["point"]["noise"], len(r["metrics"]["images"]), len(params.ps)] for r in records]
    return {"illustration": (["noise", "examples", "levels"], rows)}


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    figs = {}
    for i in range(params.n_examples):
        strip = [(r["point"]["noise"], [np.asarray(img) for img in r["metrics"]["images"][i]]) for r in records]
        shape = tuple(records[0]["metrics"]["image_shape"])
        fig = plots.corrupted_strip(strip, params.ps, shape, title=f"{plots.label(params.dataset)}: training example {i}")
        plots.caption(fig, f"rows: noise model; columns: corruption level p (one noise draw, seed {params.seed})")
        figs[f"corrupted_example_{i}"] = fig
    return figs
