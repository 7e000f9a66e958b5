"""Activations: does the leading-order centroid rule hold for erf, tanh, GELU, swish, …?

Theory: docs/science.md#first-order-and-the-prototype-rule; recipe: docs/science.md#activations.

For each activation and corruption level p (one noise model, training set
corrupted, clean test set), K noisy training sets (noise seeds seed .. seed + K − 1)
are drawn; on each:

- a finite-width ensemble of M initialisations is trained (prediction: argmax
  of the init-averaged logits);
- the exact infinite-width NTK predictor (gradient flow, t = ∞, float64);
- the overlap rule fitted on the noisy set;

and once per point, without noise draws, the exact mean-field predictor (NTK
with the first-layer Gram replaced by its noise average) and the leading-order
rule argmax_i ⟨x*, μ_i⟩ (clean class means; it does not depend on the
activation). Reported: accuracies (mean ± std over the K sets) and the agreement
of decisions, in particular mean-field vs rule. The protocol and the record
layout are those of :mod:`~nwcorrupt.experiments.studies.heavy_corruption`
(:func:`~nwcorrupt.experiments.studies.nested_predictors.run_predictors`).

The networks' training-set fit is recorded per point and flagged in the table
``training_fit`` when they did not fit their noisy training sets
(:mod:`~nwcorrupt.experiments.studies.training_fit`).

It adds the theory's sign check for the study's architecture
(:func:`nwcorrupt.theory.transfer_signs` at the noise model's pure-noise moments
(μ, μ₂)): the rule is the leading-order decision iff T_χ* > 0 and Δ = θ_d − θ_o > 0.
"""

from __future__ import annotations

import dataclasses
import types

from nwcorrupt import data
from nwcorrupt._checks import check_choice
from nwcorrupt.experiments.studies import common, heavy_corruption, nested_predictors, training_fit

__all__ = [
    "DESCRIPTION",
    "ACCURACY_HEADER",
    "AGREEMENT_HEADER",
    "SIGNS_HEADER",
    "Params",
    "preflight",
    "points",
    "estimate",
    "sign_check",
    "run_point",
    "tables",
    "figures",
]

DESCRIPTION = "networks, exact NTK and mean-field predictor vs the leading-order rule, per activation, vs p"

ACCURACY_HEADER = ["activation", "p", "predictor", "mean", "std", "n"]
AGREEMENT_HEADER = ["activation", "p", "pair", "mean", "std", "n"]
SIGNS_HEADER = ["activation", "depth", "W_std", "b_std", "mu", "mu2", "T_star", "Delta", "ok"]


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the activation study.

    Attributes:
      dataset, n_train, n_test: data (balanced N; the first n_test clean test points, 0: all).
      noise: one noise spec (``"additive[:law]"`` or ``"replacement[:law]"``).
      ps: corruption levels.
      activations: registered activation names (:func:`nwcorrupt.activations.names`).
      depth, W_std, b_std: the MLP.
      parameterization: the networks' (``"standard"``, the study's); the kernels use ``"ntk"``.
      width, epochs, batch_size, learning_rate: the finite networks (Adam, MSE on one-hot targets).
      k, m: K noisy training sets × M initialisations.
      diag_reg: relative ridge of the NTK and mean-field solves (r = diag_reg × the mean train-kernel
        diagonal of each predictor, see ``nested_predictors.kernel_predictors``).
      seed: seed of the subset, the first noise seed and the initialisations.
    """

    dataset: str = "mnist"
    n_train: int = 4000
    n_test: int = 0
    noise: str = "additive"
    ps: tuple[float, ...] = (0.9, 0.93, 0.95, 0.97, 0.99, 1.0)
    activations: tuple[str, ...] = ("erf", "tanh", "gelu", "swish")
    depth: int = 3
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "standard"
    width: int = 512
    epochs: int = 10
    batch_size: int = 250
    learning_rate: float = 1e-3
    k: int = 4
    m: int = 1
    diag_reg: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        from nwcorrupt import activations

        common.check_dataset(self.dataset)
        if not self.activations or len(set(self.activations)) != len(self.activations):
            raise ValueError(f"activations must be a non-empty list of distinct names, got {list(self.activations)}")
        for name in self.activations:
            if name not in activations.names():
                raise ValueError(f"activations: unknown activation {name!r}; known: {list(activations.names())}")
        check_choice("noise", self.noise, common.NOISE_SPECS)
        common.check_ps("ps", self.ps)
        # the network recipe's checks are those of the other network studies (one activation at a time)
        recipe = types.SimpleNamespace(**dataclasses.asdict(self), activation=self.activations[0])
        nested_predictors.check_recipe(recipe, ("n_train", "depth", "width", "epochs", "batch_size", "k", "m"))


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"activation": a, "p": p} for a in params.activations for p in params.ps]


def estimate(params: Params, point: dict) -> float:
    t = params.n_test or 10000
    w, n = params.width, params.n_train
    n_params = 784 * w + (params.depth - 2) * w * w + 10 * w
    flops_train = 6 * params.k * params.m * params.epochs * n * n_params
    flops_kernel = (params.k + 1) * (2 * (n + t) * n * 784 + n**3 / 3)
    quadrature = 1.0 if point["activation"] in ("erf", "gelu", "relu", "sin", "identity") else 20.0
    return 3.0 + flops_train / 2e10 + flops_kernel / 1e10 + quadrature * 1e-7 * (params.k + 1) * (n + t) * n


def sign_check(params: Params, activation: str) -> dict:
    """T_χ* and Δ of the study's architecture with ``activation`` at the noise's pure-noise point.

    Returns:
      the :func:`nwcorrupt.theory.transfer_signs` row (activation, depth, W_std, b_std, mu, mu2,
      T_star, Delta, ok) for (μ, μ₂) = the moments of the noise model (normalised data).
    """
    from nwcorrupt import theory

    mu, mu2 = common.noise_model(params.noise, "example", _marginal_source(params)).moments
    (row,) = theory.transfer_signs(activations=(activation,), depths=(params.depth,), W_stds=(params.W_std,),
                                   b_stds=(params.b_std,), noises=((float(mu), float(mu2)),))
    return row


def _marginal_source(params: Params):
    """The clean training inputs (only needed by ``replacement:marginal``, whose law is their marginal)."""
    if not params.noise.endswith(":marginal"):
        return None
    return _dataset(params).x_train


def _dataset(params: Params) -> data.Dataset:
    return nested_predictors.load_dataset(params.dataset, params)


def run_point(params: Params, point: dict) -> dict:
    act, p = point["activation"], float(point["p"])
    ds = _dataset(params)
    model = common.noise_model(params.noise, "example", ds.x_train)
    config = nested_predictors.network_config(params, nested_predictors.network_arch(params, act), ds.num_classes)
    res = nested_predictors.run_predictors(
        ds, config, nested_predictors.kernel_arch(params, act), model, p, k=params.k, m=params.m,
        diag_reg=params.diag_reg, seed=params.seed)
    return {
        "accuracy": nested_predictors.accuracies(res.preds, ds.y_test),
        "agreement": nested_predictors.agreements(res.preds, heavy_corruption.AGREEMENTS),
        "noise_seeds": res.noise_seeds,
        "train_seconds": res.train_seconds,
        "signs": sign_check(params, act),
        **res.training_fit(),
    }


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, agree_rows, signs, fit_rows = [], [], {}, []
    for rec in records:
        act, p = rec["point"]["activation"], rec["point"]["p"]
        m = rec["metrics"]
        fit_rows.append([act, p, *training_fit.columns(m, training_fit.FIXED_SET_THRESHOLD)])
        for name in heavy_corruption.PREDICTORS:
            vals = m["accuracy"][name]
            acc_rows.append([act, p, name, *common.mean_std(vals), len(vals)])
        for name, vals in m["agreement"].items():
            agree_rows.append([act, p, name, *common.mean_std(vals), len(vals)])
        signs.setdefault(act, [m["signs"][h] for h in SIGNS_HEADER])
    return {
        "accuracy": (ACCURACY_HEADER, acc_rows),
        "agreement": (AGREEMENT_HEADER, agree_rows),
        "signs": (SIGNS_HEADER, list(signs.values())),
        "training_fit": (["activation", "p", *training_fit.HEADER], fit_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    title = (f"{plots.label(params.dataset)}, {plots.label(params.noise)}, N = {params.n_train}, L = {params.depth}, "
             f"width {params.width}, K×M = {params.k}×{params.m}")
    acc = t["accuracy"][1]
    # at p = 1 the mean-field output carries no class information (its argmax is a round-off tie
    # between classes): that point stays in the table but is left out of the agreement figure
    agree = [r for r in t["agreement"][1] if r[2] == "meanfield~rule_leading" and r[1] < 1.0]
    net_counts = {"network": [r[5] for r in acc if r[2] == "network"]}
    band = plots.band_note(net_counts, "K", "noisy training sets", prefix="band around the solid (network) lines")
    return {
        "accuracy_vs_p": plots.group_curves(acc, reference="rule_leading", title=title, band=band),
        "meanfield_rule_agreement": plots.group_curves(
            agree, styles={"meanfield~rule_leading": "-"}, chance=None,
            ylabel="decision agreement, mean-field vs\nleading-order rule (fraction of test points)", title=title,
            band=plots.band_note(plots.series_counts(agree, 2, 5), "K", "noisy training sets")),
    }
