"""Finite versus infinite width: trained ensembles against the exact NTK and NNGP predictors, vs p.

SCIENCE.md §8 "finite vs infinite width". For each noise model and corruption
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
accuracies and their mutual agreement.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt import data
from nwcorrupt.experiments.studies import common
from nwcorrupt.experiments.studies.nested_predictors import mean_std

DESCRIPTION = "trained ensembles of growing width vs the exact NTK and NNGP predictors on the same noisy sets, vs p"

PER_WIDTH = ("accuracy", "agreement_ntk", "agreement_nngp", "rel_distance_ntk")


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
    epochs: int = 30
    batch_size: int = 250
    learning_rate: float = 1e-4
    k: int = 20
    m: int = 10
    diag_reg: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        from nwcorrupt import activations

        common.check_dataset(self.dataset)
        common.check_noises(self.noises)
        common.check_ps("ps", self.ps)
        activations.get(self.activation)
        if not self.widths or any(w < 1 for w in self.widths):
            raise ValueError(f"widths must be a non-empty list of positive integers, got {list(self.widths)}")
        if len(set(self.widths)) != len(self.widths):
            raise ValueError(f"widths must be distinct, got {list(self.widths)}")
        for name in ("n_train", "depth", "epochs", "batch_size", "k", "m"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.n_test < 0 or self.seed < 0:
            raise ValueError(f"n_test and seed must be >= 0, got n_test={self.n_test}, seed={self.seed}")
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed n_train ({self.n_train})")
        if not (self.learning_rate > 0 and self.W_std > 0 and self.b_std >= 0 and self.diag_reg >= 0):
            raise ValueError("learning_rate and W_std must be > 0, b_std and diag_reg >= 0")


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"noise": n, "p": p} for n in params.noises for p in params.ps]


def estimate(params: Params, point: dict) -> float:
    n_test, d = params.n_test or 10000, 784
    n_params = sum(d * w + (params.depth - 2) * w * w + w * 10 for w in params.widths)
    flops_train = 6 * params.k * params.m * params.epochs * params.n_train * n_params
    flops_kernel = 2 * 2 * params.k * (params.n_train + n_test) * params.n_train * d * 3
    return 2.0 + flops_train / 2e10 + flops_kernel / 2e10 + 2e-9 * params.n_train**3


def _arch(params: Params):
    from nwcorrupt.kernels import MLP

    return MLP(params.depth, params.activation, W_std=params.W_std, b_std=params.b_std)


def _dataset(params: Params) -> data.Dataset:
    ds = data.load(params.dataset, n_train=params.n_train, seed=params.seed)
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    return ds


def run_point(params: Params, point: dict) -> dict:
    from nwcorrupt import compare, metrics, train

    ds = _dataset(params)
    model = common.noise_model(point["noise"], "example", ds.x_train)
    res = compare.compare_widths(
        _arch(params), ds.x_train, ds.y_train, ds.x_test, ds.y_test,
        noise=model, p=float(point["p"]), widths=params.widths, num_datasets=params.k, num_inits=params.m,
        num_classes=ds.num_classes, seed=params.seed, diag_reg=params.diag_reg,
        optimizer=train.Optimizer("adam", params.learning_rate), loss="mse",
        batch_size=params.batch_size, epochs=params.epochs,
    )
    return {
        "widths": [int(w) for w in res.widths],
        **{q: np.asarray(getattr(res, q)).tolist() for q in PER_WIDTH},  # (W, K)
        "ntk_accuracy": res.ntk_accuracy.tolist(),
        "nngp_accuracy": res.nngp_accuracy.tolist(),
        "ntk~nngp": [metrics.agreement(a, b) for a, b in zip(res.ntk_logits, res.nngp_logits)],
        "noise_seeds": list(res.noise_seeds),
    }


def tables(params: Params, records: list[dict]) -> dict:
    width_rows, acc_rows, kernel_rows = [], [], []
    for rec in records:
        noise, p, m = rec["point"]["noise"], rec["point"]["p"], rec["metrics"]
        for i, w in enumerate(m["widths"]):
            stats = [v for q in PER_WIDTH for v in mean_std(m[q][i])]
            width_rows.append([noise, p, w, *stats, len(m["accuracy"][i])])
            acc_rows.append([noise, p, f"width {w}", *mean_std(m["accuracy"][i]), len(m["accuracy"][i])])
        for name in ("ntk", "nngp"):
            acc_rows.append([noise, p, name, *mean_std(m[f"{name}_accuracy"]), len(m[f"{name}_accuracy"])])
        kernel_rows.append([noise, p, *mean_std(m["ntk_accuracy"]), *mean_std(m["nngp_accuracy"]),
                            *mean_std(m["ntk~nngp"]), len(m["ntk~nngp"])])
    width_header = ["noise", "p", "width", *[f"{q}_{s}" for q in PER_WIDTH for s in ("mean", "std")], "n"]
    return {
        "width_comparison": (width_header, width_rows),
        "accuracy": (["noise", "p", "predictor", "mean", "std", "n"], acc_rows),
        "kernels": (["noise", "p", "ntk_accuracy_mean", "ntk_accuracy_std", "nngp_accuracy_mean",
                     "nngp_accuracy_std", "ntk~nngp_mean", "ntk~nngp_std", "n"], kernel_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    header, rows = t["width_comparison"]
    title = (f"{params.dataset}, N = {params.n_train}, {params.activation} L = {params.depth}, "
             f"K×M = {params.k}×{params.m}, {params.epochs} epochs")
    quantities = [("agreement_ntk", "agreement with NTK"), ("agreement_nngp", "agreement with NNGP"),
                  ("rel_distance_ntk", "‖f̄ − f_NTK‖ / ‖f_NTK‖")]
    return {
        "agreement_vs_width": plots.width_curves(header, rows, quantities=quantities, title=title),
        "accuracy_vs_p": plots.accuracy_curves(t["accuracy"][1], title=title),
    }
