"""Corrupted inputs and noisy labels at once: does the centroid mechanism survive label noise?

For each input-noise model, corruption level p and label-noise rate r, the training labels are
replaced by one noisy realisation (``label_noise``: symmetric over all classes, or pair i → i + 1,
label seed ``seed``), and then exactly what ``heavy_corruption`` does runs on that training set
(docs/science.md#label-noise-models): K noisy input sets, a K × M network ensemble, the exact NTK
and the overlap rule on each (``rule_noisy``), the mean-field predictor and the leading-order rule
argmax_i ⟨x*, μ_i⟩ with the clean inputs and the *observed* (noisy) labels (``rule_observed``).
Added for label noise:

- ``rule_expected``: the leading-order rule with the label-averaged noisy class means
  μ̃_i = Σ_a n_a T_ai μ_a / Σ_a n_a T_ai (:func:`nwcorrupt.labels.noisy_class_means`);
- ``rule_clean``: the leading-order rule with the true labels (what the networks would do if label
  noise did not reach them);
- on noisy input set k = 0, the exact NTK theory over label draws
  (:func:`nwcorrupt.labels.predictor_moments`): the accuracy of the label-averaged NTK predictor
  (``ntk_label_mean``) and its predicted accuracy (``ntk_predicted``).

Networks: the main recipe of the input-corruption study (erf, standard parameterisation, MSE, Adam).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt import labels as _labels
from nwcorrupt import precision, prototype
from nwcorrupt._checks import check_choice
from nwcorrupt.experiments.studies import common, nested_predictors, training_fit

__all__ = [
    "DESCRIPTION",
    "LABEL_NOISES",
    "PREDICTORS",
    "AGREEMENTS",
    "Params",
    "preflight",
    "points",
    "estimate",
    "label_model",
    "run_point",
    "tables",
    "figures",
]

DESCRIPTION = "corrupted inputs (p) and noisy labels (r) at once: networks, exact NTK, label theory and centroid rules"

LABEL_NOISES = ("symmetric", "pair")
PREDICTORS = ("network", "ntk", "meanfield", "rule_noisy", "rule_observed", "rule_expected", "rule_clean",
              "ntk_label_mean")
AGREEMENTS = (("network", "ntk"), ("network", "rule_observed"), ("network", "rule_clean"),
              ("ntk", "rule_observed"), ("meanfield", "rule_observed"), ("ntk_label_mean", "rule_expected"))


@dataclasses.dataclass(frozen=True)
class Params:
    """``heavy_corruption``'s parameters plus the label noise.

    Attributes:
      rs: label-noise rates r (the fraction of rows relabelled).
      label_noise: ``"symmetric"`` (uniform over all C classes) or ``"pair"`` (i → i + 1 mod C).
      mc_samples: normal draws per test point of the predicted accuracy.
    """

    dataset: str = "mnist"
    n_train: int = 1000
    n_test: int = 0
    noises: tuple[str, ...] = ("additive",)
    ps: tuple[float, ...] = (0.9, 0.97)
    rs: tuple[float, ...] = (0.0, 0.4, 0.8)
    label_noise: str = "symmetric"
    activation: str = "erf"
    depth: int = 3
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "standard"
    width: int = 2048
    epochs: int = 30
    batch_size: int = 250
    learning_rate: float = 1e-4
    k: int = 2
    m: int = 4
    diag_reg: float = 1e-6
    seed: int = 0
    mc_samples: int = 2000

    def __post_init__(self) -> None:
        common.check_dataset(self.dataset)
        common.check_noises(self.noises)
        common.check_ps("ps", self.ps)
        common.check_ps("rs", self.rs)
        check_choice("label_noise", self.label_noise, LABEL_NOISES)
        nested_predictors.check_recipe(self, ("n_train", "depth", "width", "epochs", "batch_size", "k", "m",
                                              "mc_samples"))


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"noise": n, "p": p, "r": r} for n in params.noises for p in params.ps for r in params.rs]


def estimate(params: Params, point: dict) -> float:
    return nested_predictors.estimate_seconds(params, (params.width,)) + params.n_train**3 / 3e9


def label_model(params: Params, r: float):
    return _labels.Symmetric(r) if params.label_noise == "symmetric" else _labels.Pair(r)


def run_point(params: Params, point: dict) -> dict:
    ds = nested_predictors.load_dataset(params.dataset, params)
    c = ds.num_classes
    model = common.noise_model(point["noise"], "example", ds.x_train)
    p, r = float(point["p"]), float(point["r"])
    lm = label_model(params, r)
    noisy_ds, clean_mask = _labels.corrupt(ds, lm, params.seed)
    config = nested_predictors.network_config(params, nested_predictors.network_arch(params), c)
    karch = nested_predictors.kernel_arch(params)
    res = nested_predictors.run_predictors(noisy_ds, config, karch, model, p, k=params.k, m=params.m,
                                           diag_reg=params.diag_reg, seed=params.seed)
    preds = dict(res.preds)
    preds["rule_observed"] = preds.pop("rule_leading")  # clean inputs, the observed (noisy) labels
    law = lm.law(ds.y_train, c)
    xtr = ds.x_train.astype(np.float64)
    preds["rule_expected"] = np.argmax(prototype.scores(ds.x_test, _labels.noisy_class_means(xtr, law)), axis=1)[None]
    preds["rule_clean"] = prototype.predict(ds.x_test, ds.x_train, ds.y_train, num_classes=c)[None]
    x0 = np.asarray(model.apply(ds.x_train, p, params.seed), np.float64)  # input set k = 0 of run_predictors
    with precision.x64():
        mean, cov = _labels.predictor_moments(karch, x0, ds.y_train, ds.x_test.astype(np.float64), lm,
                                              num_classes=c, diag_reg=params.diag_reg)
    predicted = _labels.predicted_accuracy(mean, cov, ds.y_test, n_samples=params.mc_samples, seed=params.seed)
    preds["ntk_label_mean"] = mean.argmax(1)[None]
    return {
        "accuracy": nested_predictors.accuracies(preds, ds.y_test),
        "agreement": nested_predictors.agreements(preds, AGREEMENTS),
        "ntk_predicted": {"accuracy": predicted.accuracy, "stderr": predicted.stderr},
        "flip_fraction": _labels.flip_fraction(ds.y_train, noisy_ds.y_train),
        "observed_class_counts": np.bincount(noisy_ds.y_train, minlength=c).tolist(),
        "n_clean_rows": int(clean_mask.sum()),
        "noise_seeds": res.noise_seeds,
        "train_seconds": res.train_seconds,
        "member_accuracy_mean": res.member_accuracy_mean,
        **res.training_fit(),
    }


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, agree_rows, fit_rows = [], [], []
    for rec in records:
        pt, m = rec["point"], rec["metrics"]
        key = [pt["noise"], pt["p"], pt["r"]]
        # the networks should fit their training rows, noisy labels included (they memorise them at r > 0)
        fit_rows.append([*key, m["flip_fraction"], *training_fit.columns(m, training_fit.FIXED_SET_THRESHOLD)])
        for name in PREDICTORS:
            vals = m["accuracy"][name]
            acc_rows.append([*key, name, *common.mean_std(vals), len(vals)])
        acc_rows.append([*key, "ntk_predicted", m["ntk_predicted"]["accuracy"], common.NO_STD, 1])
        for name, vals in m["agreement"].items():
            agree_rows.append([*key, name, *common.mean_std(vals), len(vals)])
    return {
        "accuracy": (["noise", "p", "r", "predictor", "mean", "std", "n"], acc_rows),
        "agreement": (["noise", "p", "r", "pair", "mean", "std", "n"], agree_rows),
        "training_fit": (["noise", "p", "r", "flip_fraction", *training_fit.HEADER], fit_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    figs = {}
    for what, (_, rows) in (("accuracy", t["accuracy"]), ("agreement", t["agreement"])):
        # one panel per (noise, p), x = r, one line per predictor (or pair)
        panels = [[f"{plots.label(r[0])}, p = {r[1]:g}", r[2], r[3], r[4], r[5], r[6]] for r in rows]
        figs[f"{what}_vs_r"] = plots.accuracy_curves(
            panels, title=f"{params.label_noise} label noise; N = {params.n_train}, K×M = {params.k}×{params.m}",
            chance=0.1 if what == "accuracy" else None, xlabel="label-noise rate r",
            ylabel=plots.ACCURACY_LABEL if what == "accuracy" else plots.AGREEMENT_LABEL,
            band=plots.band_note(plots.series_counts(panels, 2, 5), "K", "noisy training sets"))
    return figs
