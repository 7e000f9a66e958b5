"""Activations: does the leading-order centroid rule hold for erf, tanh, GELU, swish, …? (SCIENCE.md §5, §8)

For each activation and corruption level p (one noise model, training set
corrupted, clean test set) this study runs the per-point protocol of
:mod:`~nwcorrupt.experiments.studies.heavy_corruption` with that activation: K
noisy training sets, on each a K × M finite-width ensemble (argmax of the
init-averaged logits) and the exact NTK predictor; once per p the exact
mean-field predictor and the leading-order rule argmax_i ⟨x*, μ_i⟩ (clean class
means, independent of the activation). Reported: accuracies (mean ± std over the
K sets) and the agreement of decisions, in particular mean-field vs rule.

It adds the theory's sign check for the study's architecture
(:func:`nwcorrupt.theory.transfer_signs` at the noise model's pure-noise moments
(μ, μ₂)): the rule is the leading-order decision iff T_χ* > 0 and Δ = θ_d − θ_o > 0.
"""

from __future__ import annotations

import dataclasses

from nwcorrupt import data
from nwcorrupt.experiments.studies import common, heavy_corruption

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
      depth, W_std, b_std: the MLP (NTK parameterisation).
      width, epochs, batch_size, learning_rate: the finite networks (Adam, MSE on one-hot targets).
      k, m: K noisy training sets × M initialisations.
      diag_reg: ridge of the NTK and mean-field solves.
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

        if not self.activations or len(set(self.activations)) != len(self.activations):
            raise ValueError(f"activations must be a non-empty list of distinct names, got {list(self.activations)}")
        for name in self.activations:
            if name not in activations.names():
                raise ValueError(f"activations: unknown activation {name!r}; known: {list(activations.names())}")
        if self.noise not in common.NOISE_SPECS:
            raise ValueError(f"noise must be one of {list(common.NOISE_SPECS)}, got {self.noise!r}")
        # the remaining checks are the per-point protocol's own
        self.protocol("erf", self.ps)

    def protocol(self, activation: str, ps: tuple[float, ...]) -> heavy_corruption.Params:
        """The heavy-corruption parameters that run one point of this study with ``activation``."""
        return heavy_corruption.Params(
            dataset=self.dataset, n_train=self.n_train, n_test=self.n_test, noises=(self.noise,), ps=ps,
            activation=activation, depth=self.depth, W_std=self.W_std, b_std=self.b_std, width=self.width,
            epochs=self.epochs, batch_size=self.batch_size, learning_rate=self.learning_rate, k=self.k, m=self.m,
            diag_reg=self.diag_reg, seed=self.seed,
        )


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"activation": a, "p": p} for a in params.activations for p in params.ps]


def estimate(params: Params, point: dict) -> float:
    proto = params.protocol(point["activation"], (point["p"],))
    quadrature = 1.0 if point["activation"] in ("erf", "gelu", "relu", "sin", "identity") else 3.0
    return quadrature * heavy_corruption.estimate(proto, {"noise": params.noise, "p": point["p"]})


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
    return data.load(params.dataset, n_train=params.n_train, seed=params.seed).x_train


def run_point(params: Params, point: dict) -> dict:
    act, p = point["activation"], float(point["p"])
    out = heavy_corruption.run_point(params.protocol(act, (p,)), {"noise": params.noise, "p": p})
    out["signs"] = sign_check(params, act)
    return out


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, agree_rows, signs = [], [], {}
    for rec in records:
        act, p = rec["point"]["activation"], rec["point"]["p"]
        m = rec["metrics"]
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
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    title = (f"{params.dataset}, {params.noise}, N = {params.n_train}, L = {params.depth}, width {params.width}, "
             f"K×M = {params.k}×{params.m}")
    return {
        "accuracy_vs_p": plots.group_curves(t["accuracy"][1], reference="rule_leading", title=title),
        "meanfield_rule_agreement": plots.group_curves(
            [r for r in t["agreement"][1] if r[2] == "meanfield~rule_leading"], styles={"meanfield~rule_leading": "-"},
            chance=None, ylabel="agreement: mean-field vs leading-order rule", title=title),
    }
