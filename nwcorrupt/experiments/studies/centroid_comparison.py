"""Centroid comparison: finite networks, the exact NTK, the mean-field predictor, the leading rule and the centroid model.

Recipe: docs/science.md#centroid-comparison-and-logit-fit; model: docs/science.md#centroid-logit-model.
For each data set, noise model and corruption level p (training set corrupted,
clean test set) :func:`nested_predictors.run_predictors` gives, on K noisy
training sets (noise seeds seed, ..., seed + K − 1):

- the decisions of a K × M finite-width ensemble (argmax of the init-averaged logits),
- the exact NTK predictor (t = ∞, float64) and the overlap rule on the same noisy sets,

and once per p the exact mean-field predictor and the leading-order rule
argmax_i ⟨x*, μ_i⟩ (clean class means). Accuracies are mean ± std (ddof = 1) over K.
The networks' training-set fit is recorded per point and the table ``training_fit``
flags points whose networks did not fit their noisy training sets
(:mod:`~nwcorrupt.experiments.studies.training_fit`).

**Centroid model** (docs/science.md#centroid-logit-model), at p = p_ref for each (data set, noise):
f_i(x*) = a s_i(x*) + b + c ξ_i, with s the centroid scores of the clean
normalised training inputs (:func:`nwcorrupt.prototype.centroid_scores`).
:func:`nwcorrupt.prototype.fit_centroid_model` on the (K, T, C) init-averaged
network logits gives a, b (least squares of the K-averaged logits on s), c
(mean over (test point, class) of the std across the K sets, ddof = 1),
A = a / (1 − p_ref) and R². The record at p_ref stores

- ``fit``: the fit on all T test points;
- ``model_accuracy``: the model's accuracy at every p of the sweep, the Monte
  Carlo value :func:`~nwcorrupt.prototype.centroid_model_accuracy` on all test
  points (``n_draws`` ξ draws, numpy seed ``seed``) and the analytic form
  :func:`~nwcorrupt.prototype.centroid_model_accuracy_analytic` with margin
  a_eff = A (1 − p) Δs̄, Δs̄ = mean over test points of s_true − mean_{j≠true} s_j
  (exact only when every point has the same gap and the other classes tie;
  an approximation on real data);
- ``sample``: the (K, n, C) init-averaged logits, the scores and the labels of
  n = ``n_fit_points`` test points drawn without replacement with numpy seed
  ``seed`` (all T when 0), rounded to 7 decimals, from which :func:`refit`
  recomputes the fit and the report draws the logit scatter.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from nwcorrupt import data, prototype
from nwcorrupt._checks import check_int, check_positive_int, check_real
from nwcorrupt.experiments.studies import common, nested_predictors, training_fit

__all__ = [
    "DESCRIPTION",
    "PREDICTORS",
    "PLOTTED",
    "AGREEMENTS",
    "ROUND",
    "Params",
    "preflight",
    "points",
    "is_ref",
    "estimate",
    "mean_score_gap",
    "model_curves",
    "run_point",
    "refit",
    "scatter_data",
    "tables",
    "figures",
]

DESCRIPTION = "networks vs NTK vs mean-field vs leading rule vs the centroid logit model, per data set and noise"

PREDICTORS = ("network", "ntk", "meanfield", "rule_noisy", "rule_leading")
PLOTTED = ("network", "ntk", "meanfield", "rule_leading")
AGREEMENTS = (("network", "ntk"), ("ntk", "meanfield"), ("meanfield", "rule_leading"), ("network", "rule_leading"))
ROUND = 7  # decimals of the stored sample


@dataclasses.dataclass(frozen=True)
class Params:
    datasets: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist")
    n_train: int = 4000
    n_test: int = 0  # 0: the full clean test set
    noises: tuple[str, ...] = ("replacement", "additive")
    ps: tuple[float, ...] = (0.85, 0.9, 0.95, 0.97, 1.0)
    p_ref: float = 0.97
    activation: str = "erf"
    depth: int = 3
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "standard"  # the networks' (the studies' PyTorch layers); the kernels use "ntk"
    width: int = 2048
    epochs: int = 30
    batch_size: int = 250
    learning_rate: float = 1e-4
    k: int = 20
    m: int = 10
    diag_reg: float = 1e-6
    n_fit_points: int = 1000  # test points stored at p_ref for the scatter and the refit (0: all)
    n_draws: int = 200  # ξ draws per test point of the Monte Carlo model accuracy
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets must list at least one data set")
        for name in self.datasets:
            common.check_dataset(name)
        if len(set(self.datasets)) != len(self.datasets):
            raise ValueError(f"datasets must be distinct, got {list(self.datasets)}")
        common.check_noises(self.noises)
        common.check_ps("ps", self.ps)
        why = "so that A = a / (1 - p_ref) is defined"
        check_real("p_ref", self.p_ref, lo=0.0, hi=1.0, hi_open=True, note=why)
        if not any(math.isclose(p, self.p_ref, abs_tol=1e-12) for p in self.ps):
            raise ValueError(f"p_ref ({self.p_ref}) must be one of ps {list(self.ps)}")
        nested_predictors.check_recipe(self, ("n_train", "depth", "width", "epochs", "batch_size", "m", "n_draws"))
        check_int("k", self.k, lo=2, note="the centroid model's c is a std across noisy sets")
        check_positive_int("n_fit_points", self.n_fit_points, allow_zero=True)


def preflight(params: Params) -> None:
    for name in params.datasets:
        common.preflight_dataset(name)


def points(params: Params) -> list[dict]:
    return [{"dataset": d, "noise": n, "p": p} for d in params.datasets for n in params.noises for p in params.ps]


def is_ref(params: Params, point: dict) -> bool:
    """Whether ``point`` is at the reference level p_ref of the centroid-model fit."""
    return math.isclose(float(point["p"]), params.p_ref, abs_tol=1e-12)


def estimate(params: Params, point: dict) -> float:
    return nested_predictors.estimate_seconds(params, (params.width,))


def _dataset(params: Params, name: str) -> data.Dataset:
    return nested_predictors.load_dataset(name, params)


def mean_score_gap(s, y) -> float:
    """Δs̄: mean over test points of s_true − (mean of the other C − 1 scores); s (T, C), y (T,)."""
    s = np.asarray(s, dtype=np.float64)
    y = np.asarray(y)
    true = s[np.arange(len(y)), y]
    others = (s.sum(axis=1) - true) / (s.shape[1] - 1)
    return float(np.mean(true - others))


def model_curves(fit: dict, s, y, ps, *, n_draws: int, seed: int) -> dict:
    """The centroid model's accuracy at each p: Monte Carlo and the analytic form (module docstring)."""
    mc = prototype.centroid_model_accuracy(fit, s, y, ps, n_draws=n_draws, seed=seed)
    gap = mean_score_gap(s, y)
    c_count = np.asarray(s).shape[1]
    analytic = [prototype.centroid_model_accuracy_analytic(fit["A"] * (1 - p) * gap, fit["c"], c_count) for p in ps]
    return {"ps": [float(p) for p in ps], "monte_carlo": [float(v) for v in mc], "analytic": analytic,
            "score_gap": gap}


def _fit_record(params: Params, ds: data.Dataset, logits: np.ndarray) -> dict:
    s = prototype.centroid_scores(ds.x_test, ds.x_train, ds.y_train, num_classes=ds.num_classes)  # (T, C)
    fit = prototype.fit_centroid_model(logits, s, params.p_ref)
    n_all = s.shape[0]
    if params.n_fit_points and params.n_fit_points < n_all:
        idx = np.sort(np.random.default_rng(params.seed).choice(n_all, params.n_fit_points, replace=False))
    else:
        idx = np.arange(n_all)
    return {
        "fit": fit,
        "n_points": int(n_all),
        "model_accuracy": model_curves(fit, s, ds.y_test, params.ps, n_draws=params.n_draws, seed=params.seed),
        "sample": {
            "index": idx.tolist(),
            "y": ds.y_test[idx].tolist(),
            "s": np.round(s[idx], ROUND).tolist(),
            "logits": np.round(np.asarray(logits, dtype=np.float64)[:, idx], ROUND).tolist(),
        },
    }


def run_point(params: Params, point: dict) -> dict:
    ds = _dataset(params, point["dataset"])
    model = common.noise_model(point["noise"], "example", ds.x_train)
    config = nested_predictors.network_config(params, nested_predictors.network_arch(params), ds.num_classes)
    res = nested_predictors.run_predictors(
        ds, config, nested_predictors.kernel_arch(params), model, float(point["p"]), k=params.k, m=params.m,
        diag_reg=params.diag_reg, seed=params.seed,
    )
    out = {
        "accuracy": nested_predictors.accuracies(res.preds, ds.y_test),
        "agreement": nested_predictors.agreements(res.preds, AGREEMENTS),
        "noise_seeds": res.noise_seeds,
        "train_seconds": res.train_seconds,
        "member_accuracy_mean": res.member_accuracy_mean,
        **res.training_fit(),
    }
    if is_ref(params, point):
        out["centroid_model"] = _fit_record(params, ds, res.network_logits)
    return out


def refit(record: dict) -> dict:
    """The centroid-model fit recomputed from a p_ref record's stored sample (a, b, c, A, r2)."""
    cm = record["metrics"]["centroid_model"]
    sample = cm["sample"]
    return prototype.fit_centroid_model(np.asarray(sample["logits"]), np.asarray(sample["s"]), float(record["point"]["p"]))


def scatter_data(record: dict) -> dict:
    """Predicted a·s + b (refit on the sample) vs actual K-averaged logits, flattened over (point, class)."""
    sample = record["metrics"]["centroid_model"]["sample"]
    fit = refit(record)
    s = np.asarray(sample["s"])
    actual = np.asarray(sample["logits"]).mean(axis=0)
    is_true = np.zeros(s.shape, dtype=bool)
    is_true[np.arange(s.shape[0]), np.asarray(sample["y"])] = True
    return {"predicted": (fit["a"] * s + fit["b"]).ravel(), "actual": actual.ravel(), "is_true": is_true.ravel(), **fit}


def _ref_records(records: list[dict]) -> list[dict]:
    return [r for r in records if "centroid_model" in r["metrics"]]


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, agree_rows, fit_rows, model_rows, train_rows = [], [], [], [], []
    for rec in records:
        ds, noise, p = rec["point"]["dataset"], rec["point"]["noise"], rec["point"]["p"]
        train_rows.append([ds, noise, p, *training_fit.columns(rec["metrics"], training_fit.FIXED_SET_THRESHOLD)])
        for name in PREDICTORS:
            vals = rec["metrics"]["accuracy"][name]
            acc_rows.append([ds, noise, p, name, *common.mean_std(vals), len(vals)])
        for name, vals in rec["metrics"]["agreement"].items():
            agree_rows.append([ds, noise, p, name, *common.mean_std(vals), len(vals)])
    for rec in _ref_records(records):
        ds, noise, p = rec["point"]["dataset"], rec["point"]["noise"], rec["point"]["p"]
        cm = rec["metrics"]["centroid_model"]
        for source, fit, n in (("all test points", cm["fit"], cm["n_points"]),
                               ("stored sample (refit)", refit(rec), len(cm["sample"]["y"]))):
            fit_rows.append([ds, noise, p, source, n, fit["a"], fit["b"], fit["c"], fit["A"], fit["r2"]])
        ma = cm["model_accuracy"]
        for q, mc, an in zip(ma["ps"], ma["monte_carlo"], ma["analytic"]):
            model_rows.append([ds, noise, q, mc, an, ma["score_gap"]])
    return {
        "accuracy": (["dataset", "noise", "p", "predictor", "mean", "std", "n"], acc_rows),
        "agreement": (["dataset", "noise", "p", "pair", "mean", "std", "n"], agree_rows),
        "centroid_fit": (["dataset", "noise", "p_ref", "source", "n_points", "a", "b", "c", "A", "r2"], fit_rows),
        "centroid_model_accuracy": (["dataset", "noise", "p", "monte_carlo", "analytic", "score_gap"], model_rows),
        "training_fit": (["dataset", "noise", "p", *training_fit.HEADER], train_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    rows = [r for r in t["accuracy"][1] if r[3] in PLOTTED]
    curves: dict = {}
    for rec in _ref_records(records):
        ma = rec["metrics"]["centroid_model"]["model_accuracy"]
        key = (rec["point"]["dataset"], rec["point"]["noise"])
        curves[key] = [("centroid model (MC)", ma["ps"], ma["monte_carlo"]), ("centroid model (analytic, mean gap)", ma["ps"], ma["analytic"])]
    title = (f"N = {params.n_train}, {params.activation} L = {params.depth}, width {params.width}, "
             f"K×M = {params.k}×{params.m}; centroid model fitted at p = {params.p_ref:g}")
    band = plots.band_note(plots.series_counts(rows, 3, 6), "K", "noisy training sets")
    figs = {"accuracy_vs_p": plots.accuracy_grid(rows, curves=curves, title=title, band=band)}
    refs = _ref_records(records)
    panels = [(f"{plots.label(r['point']['dataset'])}, {plots.label(r['point']['noise'])}, p = {r['point']['p']:g}",
               scatter_data(r)) for r in refs]
    if panels:
        k = sorted({len(r["metrics"]["centroid_model"]["sample"]["logits"]) for r in refs})
        note = (f"one point per (test point, class): network logit averaged over K = {'/'.join(map(str, k))} noisy "
                f"training sets × M = {params.m} inits, against the centroid score $s_i$ of the clean class means; "
                "line: y = x")
        figs["logit_scatter"] = plots.logit_scatter(
            panels, title=r"centroid model $a\,s_i + b$ vs the init- and set-averaged network logits", note=note)
    return figs
