"""Finite versus infinite width: trained ensembles against the exact NTK and NNGP predictors, vs p.

docs/science.md#finite-vs-infinite-width. For each noise model and corruption
level p (training set corrupted, clean test set) :func:`nwcorrupt.compare.compare_widths`
draws K noisy training sets (noise seeds seed, ..., seed + K − 1), trains at
every hidden width n an ensemble of M initialisations with the main recipe
(Adam, MSE on one-hot, fixed epochs), and computes the exact NTK (t = ∞) and
NNGP predictors on the same noisy sets in float64. The network prediction of
set k is the init-averaged logit f̄_n.

Per (noise, p, width), mean ± std (ddof = 1) over the K sets of: the accuracy
of argmax f̄_n, the agreement of its argmax with the NTK and with the NNGP
decisions, and the relative logit distance ‖f̄_n − f_NTK‖_F / ‖f_NTK‖_F over the
(T, C) test logits (it has an O(1/√M) floor from the init-averaged initial
function, see :mod:`nwcorrupt.compare`); per (noise, p) the NTK and NNGP
accuracies and their mutual agreement. The networks train in ``parameterization``
(the study's: ``"standard"``) and the kernels are those of the NTK parameterisation;
with ``standard_ntk`` (default) each width n is also compared with the standard-
parameterisation NTK predictor at base width n (table ``standard_ntk``), the other
candidate limit (docs/science.md#which-kernel-do-the-study-networks-approach).

Per (noise, p, width) the record also holds the networks' training-set fit on their
noisy sets (``train_loss_mean``, ``train_accuracy_mean``, ``train_accuracy_min``:
lists over the widths, over the K·M networks of each width); the table
``training_fit`` flags widths whose networks did not fit their training sets
(:mod:`~nwcorrupt.experiments.studies.training_fit`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt import data
from nwcorrupt.experiments.studies import common, nested_predictors, training_fit
from nwcorrupt.experiments.studies.common import mean_std

__all__ = [
    "DESCRIPTION",
    "PER_WIDTH",
    "PER_WIDTH_STANDARD",
    "Params",
    "preflight",
    "points",
    "estimate",
    "run_point",
    "tables",
    "figures",
]

DESCRIPTION = "trained ensembles of growing width vs the exact NTK and NNGP predictors on the same noisy sets, vs p"

PER_WIDTH = ("accuracy", "agreement_ntk", "agreement_nngp", "rel_distance_ntk")
#: Per-width measures against the standard-parameterisation NTK at base width n (``standard_ntk``).
PER_WIDTH_STANDARD = ("agreement_ntk_standard", "rel_distance_ntk_standard", "ntk_standard_accuracy")


@dataclasses.dataclass(frozen=True)
class Params:
    dataset: str = "mnist"
    n_train: int = 4000
    n_test: int = 0  # 0: the full clean test set
    noises: tuple[str, ...] = ("replacement", "additive")
    ps: tuple[float, ...] = (0.85, 0.9, 0.95, 0.97, 1.0)
    widths: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)
    activation: str = "erf"
    depth: int = 3
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "standard"  # the networks' (the study's PyTorch layers); the kernels use "ntk"
    epochs: int = 30
    batch_size: int = 250
    learning_rate: float = 1e-4
    k: int = 20
    m: int = 10
    diag_reg: float = 1e-6
    standard_ntk: bool = True  # also compare width n with the standard-parameterisation NTK at base width n
    seed: int = 0

    def __post_init__(self) -> None:
        common.check_dataset(self.dataset)
        common.check_noises(self.noises)
        common.check_ps("ps", self.ps)
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {list(self.widths)}")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths must be distinct, got {list(self.widths)}")
        nested_predictors.check_recipe(self, ("n_train", "depth", "epochs", "batch_size", "k", "m"))


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"noise": n, "p": p} for n in params.noises for p in params.ps]


def estimate(params: Params, point: dict) -> float:
    return nested_predictors.estimate_seconds(params, params.widths, kernels=2)


def _dataset(params: Params) -> data.Dataset:
    return nested_predictors.load_dataset(params.dataset, params)


def run_point(params: Params, point: dict) -> dict:
    from nwcorrupt import compare, metrics, train

    ds = _dataset(params)
    model = common.noise_model(point["noise"], "example", ds.x_train)
    res = compare.compare_widths(
        nested_predictors.network_arch(params), ds.x_train, ds.y_train, ds.x_test, ds.y_test,
        kernel_arch=nested_predictors.kernel_arch(params),
        noise=model, p=float(point["p"]), widths=params.widths, num_datasets=params.k, num_inits=params.m,
        num_classes=ds.num_classes, seed=params.seed, diag_reg=params.diag_reg,
        optimizer=train.Optimizer("adam", params.learning_rate), loss="mse",
        batch_size=params.batch_size, epochs=params.epochs, drop_last=False, standard_ntk=params.standard_ntk,
    )
    standard = {q: np.asarray(getattr(res, q)).tolist() for q in PER_WIDTH_STANDARD} if params.standard_ntk else {}
    return {
        "widths": [int(w) for w in res.widths],
        **{q: np.asarray(getattr(res, q)).tolist() for q in PER_WIDTH},  # (W, K)
        "ntk_accuracy": res.ntk_accuracy.tolist(),
        "nngp_accuracy": res.nngp_accuracy.tolist(),
        "ntk~nngp": [metrics.agreement(a, b) for a, b in zip(res.ntk_logits, res.nngp_logits)],
        "noise_seeds": list(res.noise_seeds),
        **standard,
        **_fit_per_width(res.train_loss, res.train_accuracy),
    }


def _fit_per_width(train_loss, train_accuracy) -> dict[str, list[float]]:
    """Record fields of :mod:`training_fit`, one value per width: (W, K, M) arrays -> name -> W floats."""
    per_width = [training_fit.summarize(loss, acc) for loss, acc in zip(train_loss, train_accuracy)]
    return {name: [fit[name] for fit in per_width] for name in training_fit.FIELDS}


def _fit_of_width(m: dict, i: int) -> dict:
    """The :mod:`training_fit` fields of width index i of a record's metrics (absent in older records)."""
    return {name: m[name][i] for name in training_fit.FIELDS if name in m}


def tables(params: Params, records: list[dict]) -> dict:
    width_rows, acc_rows, kernel_rows, fit_rows, std_rows = [], [], [], [], []
    for rec in records:
        noise, p, m = rec["point"]["noise"], rec["point"]["p"], rec["metrics"]
        for i, w in enumerate(m["widths"]):
            fit_rows.append([noise, p, w, *training_fit.columns(_fit_of_width(m, i), training_fit.FIXED_SET_THRESHOLD)])
            stats = [v for q in PER_WIDTH for v in mean_std(m[q][i])]
            width_rows.append([noise, p, w, *stats, len(m["accuracy"][i])])
            acc_rows.append([noise, p, f"width {w}", *mean_std(m["accuracy"][i]), len(m["accuracy"][i])])
            if all(q in m for q in PER_WIDTH_STANDARD):
                std_rows.append([noise, p, w, *[v for q in PER_WIDTH_STANDARD for v in mean_std(m[q][i])],
                                 len(m["accuracy"][i])])
        for name in ("ntk", "nngp"):
            acc_rows.append([noise, p, name, *mean_std(m[f"{name}_accuracy"]), len(m[f"{name}_accuracy"])])
        kernel_rows.append([noise, p, *mean_std(m["ntk_accuracy"]), *mean_std(m["nngp_accuracy"]),
                            *mean_std(m["ntk~nngp"]), len(m["ntk~nngp"])])
    width_header = ["noise", "p", "width", *[f"{q}_{s}" for q in PER_WIDTH for s in ("mean", "std")], "n"]
    out = {
        "width_comparison": (width_header, width_rows),
        "accuracy": (["noise", "p", "predictor", "mean", "std", "n"], acc_rows),
        "kernels": (["noise", "p", "ntk_accuracy_mean", "ntk_accuracy_std", "nngp_accuracy_mean",
                     "nngp_accuracy_std", "ntk~nngp_mean", "ntk~nngp_std", "n"], kernel_rows),
        "training_fit": (["noise", "p", "width", *training_fit.HEADER], fit_rows),
    }
    if std_rows:
        out["standard_ntk"] = (
            ["noise", "p", "width", *[f"{q}_{s}" for q in PER_WIDTH_STANDARD for s in ("mean", "std")], "n"], std_rows)
    return out


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    header, rows = t["width_comparison"]
    acc = t["accuracy"][1]
    title = (f"{plots.label(params.dataset)}, N = {params.n_train}, {params.activation} L = {params.depth}, "
             f"K×M = {params.k}×{params.m}, {params.epochs} epochs")
    quantities = [("agreement_ntk", "agreement with NTK decisions\n(fraction of test points)"),
                  ("agreement_nngp", "agreement with NNGP decisions\n(fraction of test points)"),
                  ("rel_distance_ntk", r"relative logit distance $\|\bar f - f_{\mathrm{NTK}}\|_F\,/\,\|f_{\mathrm{NTK}}\|_F$")]
    width_counts = plots.series_counts([[f"p = {r[1]:g}", r[-1]] for r in rows], 0, 1)
    return {
        "agreement_vs_width": plots.width_curves(
            header, rows, quantities=quantities, title=title,
            band=plots.band_note(width_counts, "K", "noisy training sets")),
        "accuracy_vs_p": plots.accuracy_curves(
            acc, title=title, band=plots.band_note(plots.series_counts(acc, 2, 5), "K", "noisy training sets")),
    }
