"""Heavy corruption: finite networks, the exact NTK, the mean-field predictor and the centroid rule.

For each noise model and corruption level p (training set corrupted, clean test
set), K noisy training sets (noise seeds) are drawn, and on each:

- a finite-width ensemble of M initialisations is trained (prediction: argmax
  of the init-averaged logits);
- the exact infinite-width NTK predictor (gradient flow, t = ∞) is computed on
  the same noisy set;
- the overlap centroid rule is fitted on the same noisy set;

and once per p, without noise draws:

- the exact mean-field predictor (first-layer Gram replaced by its noise average);
- the leading-order rule of the theory, argmax_i ⟨x*, μ_i⟩ with the clean class means.

Reports accuracies (mean ± std over K) and the agreement of the predictors'
decisions (network vs NTK, NTK vs mean-field, mean-field vs leading-order rule),
and the networks' training-set fit per point (table ``training_fit``; points whose
networks did not fit their noisy training sets are flagged, see
:mod:`~nwcorrupt.experiments.studies.training_fit`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt import data
from nwcorrupt.experiments.studies import common, nested_predictors, training_fit

__all__ = [
    "DESCRIPTION",
    "PREDICTORS",
    "AGREEMENTS",
    "Params",
    "preflight",
    "points",
    "estimate",
    "run_point",
    "tables",
    "figures",
    "summary_table",
]

DESCRIPTION = "finite ensembles vs exact NTK vs mean-field predictor vs leading-order centroid rule, vs p"

PREDICTORS = ("network", "ntk", "meanfield", "rule_noisy", "rule_leading")
AGREEMENTS = (("network", "ntk"), ("ntk", "meanfield"), ("meanfield", "rule_leading"), ("ntk", "rule_leading"))


@dataclasses.dataclass(frozen=True)
class Params:
    dataset: str = "mnist"
    n_train: int = 1000
    n_test: int = 0  # 0: the full clean test set
    noises: tuple[str, ...] = ("additive", "replacement")
    ps: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.97, 0.99)
    activation: str = "erf"
    depth: int = 3
    W_std: float = 1.0
    b_std: float = 0.0
    width: int = 512
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    k: int = 2
    m: int = 2
    diag_reg: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        common.check_dataset(self.dataset)
        common.check_noises(self.noises)
        common.check_ps("ps", self.ps)
        nested_predictors.check_recipe(self, ("n_train", "depth", "width", "epochs", "batch_size", "k", "m"))


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"noise": n, "p": p} for n in params.noises for p in params.ps]


def estimate(params: Params, point: dict) -> float:
    return nested_predictors.estimate_seconds(params, (params.width,))


def _arch(params: Params):
    return nested_predictors.arch(params)


def _dataset(params: Params) -> data.Dataset:
    return nested_predictors.load_dataset(params.dataset, params)


def run_point(params: Params, point: dict) -> dict:
    ds = _dataset(params)
    model = common.noise_model(point["noise"], "example", ds.x_train)
    res = nested_predictors.run_predictors(
        ds, _arch(params), model, float(point["p"]), k=params.k, m=params.m, width=params.width,
        epochs=params.epochs, batch_size=params.batch_size, learning_rate=params.learning_rate,
        diag_reg=params.diag_reg, seed=params.seed,
    )
    return {
        "accuracy": nested_predictors.accuracies(res.preds, ds.y_test),
        "agreement": nested_predictors.agreements(res.preds, AGREEMENTS),
        "noise_seeds": res.noise_seeds,
        "train_seconds": res.train_seconds,
        "member_accuracy_mean": res.member_accuracy_mean,
        **res.training_fit(),
    }


_mean_std = nested_predictors.mean_std


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, agree_rows, fit_rows = [], [], []
    for rec in records:
        noise, p = rec["point"]["noise"], rec["point"]["p"]
        fit_rows.append([noise, p, *training_fit.columns(rec["metrics"], training_fit.FIXED_SET_THRESHOLD)])
        for name in PREDICTORS:
            vals = rec["metrics"]["accuracy"][name]
            acc_rows.append([noise, p, name, *_mean_std(vals), len(vals)])
        for name, vals in rec["metrics"]["agreement"].items():
            agree_rows.append([noise, p, name, *_mean_std(vals), len(vals)])
    return {
        "accuracy": (["noise", "p", "predictor", "mean", "std", "n"], acc_rows),
        "agreement": (["noise", "p", "pair", "mean", "std", "n"], agree_rows),
        "training_fit": (["noise", "p", *training_fit.HEADER], fit_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    acc, agree = t["accuracy"][1], t["agreement"][1]
    title = (f"{plots.label(params.dataset)}, N = {params.n_train}, {params.activation} L = {params.depth}, "
             f"width {params.width}, K×M = {params.k}×{params.m}")
    return {
        "accuracy_vs_p": plots.accuracy_curves(
            acc, title=title, band=plots.band_note(plots.series_counts(acc, 2, 5), "K", "noisy training sets")),
        "agreement_vs_p": plots.accuracy_curves(
            agree, title=f"agreement of decisions; {title}", chance=None, ylabel=plots.AGREEMENT_LABEL,
            band=plots.band_note(plots.series_counts(agree, 2, 5), "K", "noisy training sets")),
    }


def summary_table(records: list[dict]) -> str:
    """A compact terminal table: accuracy per predictor and the key agreements, one row per (noise, p).

    A point whose networks did not fit their noisy training sets (training accuracy below
    :data:`training_fit.FIXED_SET_THRESHOLD`) ends with the flag of :func:`training_fit.flag`.
    """
    cols = ["network", "ntk", "meanfield", "rule_leading"]
    pairs = ["network~ntk", "ntk~meanfield", "meanfield~rule_leading"]
    head = f"{'noise':<12}{'p':>6} " + "".join(f"{c:>13}" for c in cols) + "  | agree: " + "".join(f"{q:>24}" for q in pairs)
    lines = [head, "-" * len(head)]
    for rec in records:
        m = rec["metrics"]
        accs = "".join(f"{np.mean(m['accuracy'][c]):>13.4f}" for c in cols)
        agr = "".join(f"{np.mean(m['agreement'][q]):>24.4f}" for q in pairs)
        fit = training_fit.flag(m.get("train_accuracy_min"), training_fit.FIXED_SET_THRESHOLD)
        note = f"  {fit}" if fit.startswith("UNDERFIT") else ""
        lines.append(f"{rec['point']['noise']:<12}{rec['point']['p']:>6.2f} {accs}  |        {agr}{note}")
    return "\n".join(lines)
