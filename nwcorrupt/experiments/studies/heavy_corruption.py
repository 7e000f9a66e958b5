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
import textwrap

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
    "SUMMARY_PREDICTORS",
    "SUMMARY_PAIRS",
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
    parameterization: str = "standard"  # the networks' (the studies' PyTorch layers); the kernels use "ntk"
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


def _dataset(params: Params) -> data.Dataset:
    return nested_predictors.load_dataset(params.dataset, params)


def run_point(params: Params, point: dict) -> dict:
    ds = _dataset(params)
    model = common.noise_model(point["noise"], "example", ds.x_train)
    config = nested_predictors.network_config(params, nested_predictors.network_arch(params), ds.num_classes)
    res = nested_predictors.run_predictors(
        ds, config, nested_predictors.kernel_arch(params), model, float(point["p"]), k=params.k, m=params.m,
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


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, agree_rows, fit_rows = [], [], []
    for rec in records:
        noise, p = rec["point"]["noise"], rec["point"]["p"]
        fit_rows.append([noise, p, *training_fit.columns(rec["metrics"], training_fit.FIXED_SET_THRESHOLD)])
        for name in PREDICTORS:
            vals = rec["metrics"]["accuracy"][name]
            acc_rows.append([noise, p, name, *common.mean_std(vals), len(vals)])
        for name, vals in rec["metrics"]["agreement"].items():
            agree_rows.append([noise, p, name, *common.mean_std(vals), len(vals)])
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


#: The predictors and decision agreements :func:`summary_table` prints (internal keys).
SUMMARY_PREDICTORS = ("network", "ntk", "meanfield", "rule_leading")
SUMMARY_PAIRS = ("network~ntk", "ntk~meanfield", "meanfield~rule_leading")


def summary_table(records: list[dict]) -> str:
    """A compact terminal table: accuracy per predictor and the key agreements, one row per (noise, p).

    Column headers and noise names are the readable labels of the figures
    (:func:`nwcorrupt.plots.label`: ``"mean-field"``, ``"network vs NTK"``, ...), wrapped onto
    several header lines where they are long, under the group titles ``accuracy`` and
    ``agreement of decisions``. A point whose networks did not fit their noisy training sets
    (training accuracy below :data:`training_fit.FIXED_SET_THRESHOLD`) ends with the flag of
    :func:`training_fit.flag`.
    """
    from nwcorrupt.plots import label  # plots imports matplotlib only inside its figure functions

    heads = ["noise", "p"] + [label(c) for c in SUMMARY_PREDICTORS]
    heads += [f"{label(a)} vs {label(b)}" for a, _, b in (q.partition("~") for q in SUMMARY_PAIRS)]
    groups = (("", 2), ("accuracy", len(SUMMARY_PREDICTORS)), ("agreement of decisions", len(SUMMARY_PAIRS)))
    rows = []
    for rec in records:
        m = rec["metrics"]
        row = [label(rec["point"]["noise"]), f"{rec['point']['p']:.2f}"]
        row += [f"{np.mean(m['accuracy'][c]):.4f}" for c in SUMMARY_PREDICTORS]
        row += [f"{np.mean(m['agreement'][q]):.4f}" for q in SUMMARY_PAIRS]
        fit = training_fit.flag(m.get("train_accuracy_min"), training_fit.FIXED_SET_THRESHOLD)
        rows.append((row, f"  {fit}" if fit.startswith("UNDERFIT") else ""))
    wrapped = [textwrap.wrap(h, 13, break_on_hyphens=False) for h in heads]
    widths = [max([len(w) for w in lines] + [len(r[i]) for r, _ in rows]) for i, lines in enumerate(wrapped)]

    def line(cells: list[str]) -> str:  # noise left-aligned, numbers right-aligned, " | " between groups
        out, i = [], 0
        for _, n in groups:
            out.append("  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j])
                                 for j, c in zip(range(i, i + n), cells[i:i + n])))
            i += n
        return " | ".join(out)

    spans = []
    i = 0
    for _, n in groups:
        spans.append(sum(widths[i:i + n]) + 2 * (n - 1))
        i += n
    title = " | ".join(t.center(w) for (t, _), w in zip(groups, spans)).rstrip()
    depth = max(len(lines) for lines in wrapped)
    head = [line([(lines[k] if (k := j - depth + len(lines)) >= 0 else "") for lines in wrapped]).rstrip()
            for j in range(depth)]  # each label ends on the last header line
    rule = "-" * len(line(rows[0][0] if rows else [""] * len(heads)))
    return "\n".join([title, *head, rule, *(line(row) + note for row, note in rows)])
