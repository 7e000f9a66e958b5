"""Accuracy of prototype (centroid) rules fitted on corrupted training sets, vs p.

For each noise model and corruption level p, K noisy training sets (noise seeds
0..K−1) are drawn; each prototype rule is fitted on the corrupted set and
evaluated on the clean test set. Reports mean ± std over the K sets.
"""

from __future__ import annotations

import dataclasses


from nwcorrupt import corruption, data, metrics, prototype
from nwcorrupt._checks import check_choice, check_positive_int, check_seed
from nwcorrupt.experiments.studies import common

__all__ = ["DESCRIPTION", "Params", "preflight", "points", "estimate", "run_point", "tables", "figures"]

DESCRIPTION = "prototype rules (overlap, centred, Euclidean) fitted on corrupted data: accuracy vs p"


@dataclasses.dataclass(frozen=True)
class Params:
    dataset: str = "mnist"
    n_train: int = 4000
    normalize: str = "example"
    noises: tuple[str, ...] = ("replacement", "additive")
    ps: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0)
    rules: tuple[str, ...] = ("overlap", "euclidean")
    k: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        common.check_dataset(self.dataset)
        common.check_noises(self.noises)
        common.check_ps("ps", self.ps)
        check_choice("normalize", self.normalize, data.NORMALIZATIONS)
        bad = [r for r in self.rules if r not in prototype.RULES]
        if bad or not self.rules:
            raise ValueError(f"rules must be a non-empty list from {list(prototype.RULES)}, got {list(self.rules)}")
        check_positive_int("n_train", self.n_train)
        check_positive_int("k", self.k)
        check_seed("seed", self.seed)


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"noise": n, "p": p} for n in params.noises for p in params.ps]


def estimate(params: Params, point: dict) -> float:
    return 0.15 * params.k * params.n_train / 4000 + 0.1


def _dataset(params: Params) -> data.Dataset:
    return data.load(params.dataset, n_train=params.n_train, seed=params.seed, normalize=params.normalize)


def run_point(params: Params, point: dict) -> dict:
    ds = _dataset(params)
    model = common.noise_model(point["noise"], params.normalize, ds.x_train)
    accs: dict[str, list[float]] = {r: [] for r in params.rules}
    for k in range(params.k):
        noisy = corruption.corrupt(ds, model, point["p"], params.seed + k)
        for r in params.rules:
            pred = prototype.predict(ds.x_test, noisy.x_train, noisy.y_train, num_classes=ds.num_classes, rule=r)
            accs[r].append(metrics.accuracy(pred, ds.y_test))
    return {"accuracy": accs, "noise_seeds": [params.seed + k for k in range(params.k)]}


def tables(params: Params, records: list[dict]) -> dict:
    rows = []
    for rec in records:
        for rule, vals in rec["metrics"]["accuracy"].items():
            rows.append([rec["point"]["noise"], rec["point"]["p"], rule, *common.mean_std(vals), len(vals)])
    return {"accuracy": (["noise", "p", "rule", "mean", "std", "k"], rows)}


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    (header, rows) = tables(params, records)["accuracy"]
    band = plots.band_note(plots.series_counts(rows, 2, 5), "K", "noisy training sets")
    title = f"{plots.label(params.dataset)}, N = {params.n_train}, rules fitted on the corrupted training set"
    return {"accuracy_vs_p": plots.accuracy_curves(rows, title=title, band=band)}
