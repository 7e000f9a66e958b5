"""Shared by the studies that put finite ensembles next to the infinite-width predictors.

:func:`run_predictors` is the computation of one (data set, noise, p) point:
on K fixed noisy training sets (noise seeds ``seed, ..., seed + K − 1``; the
test set stays clean) it trains a K × M nested ensemble (keeping each network's training-set fit), computes the exact NTK
predictor (t = ∞, float64) and the overlap rule on each noisy set, and once per
p the exact mean-field predictor and the leading-order rule argmax_i ⟨x*, μ_i⟩
with the clean class means. Used by ``heavy_corruption`` and
``centroid_comparison``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from nwcorrupt import data, metrics, precision, prototype
from nwcorrupt._checks import check_choice, check_positive_int
from nwcorrupt.experiments.studies import common, training_fit

__all__ = [
    "NestedPredictions",
    "kernel_predictors",
    "run_predictors",
    "accuracies",
    "agreements",
    "check_recipe",
    "network_arch",
    "kernel_arch",
    "network_config",
    "load_dataset",
    "estimate_seconds",
]


@dataclasses.dataclass(frozen=True, eq=False)
class NestedPredictions:
    """Decisions of every predictor on the clean test set (K noisy sets, T test points, C classes).

    Attributes:
      preds: name -> (R, T) int labels; R = K for ``network``, ``ntk`` and
        ``rule_noisy`` (one row per noisy set), R = 1 for ``meanfield`` and
        ``rule_leading`` (noise-free).
      network_logits: (K, T, C) float32 test logits averaged over the M inits.
      noise_seeds: the K noise seeds.
      train_seconds: wall time of the ensemble training.
      member_accuracy_mean: mean accuracy of single networks over K·M (None without labels).
      train_loss: (K, M) training loss of each network on its noisy training set
        (:attr:`nwcorrupt.train.EnsembleResult.train_loss`).
      train_accuracy: (K, M) training accuracy of each network on its noisy training set.
    """

    preds: dict[str, np.ndarray]
    network_logits: np.ndarray
    noise_seeds: list[int]
    train_seconds: float
    member_accuracy_mean: float | None
    train_loss: np.ndarray
    train_accuracy: np.ndarray

    def training_fit(self) -> dict[str, float]:
        """The networks' training-set fit as record fields (:func:`training_fit.summarize`)."""
        return training_fit.summarize(self.train_loss, self.train_accuracy)


def run_predictors(
    ds: data.Dataset,
    config,
    kernel_arch,
    model,
    p: float,
    *,
    k: int,
    m: int,
    diag_reg: float,
    seed: int,
) -> NestedPredictions:
    """Network ensemble, exact NTK, mean-field predictor and centroid rules at one corruption level.

    Args:
      ds: the data set (per-example normalised; x_train (N, d) clean, x_test (T, d)).
      config: the networks' :class:`nwcorrupt.train.TrainConfig` (:func:`network_config`).
      kernel_arch: :class:`nwcorrupt.arch.MLP` of the infinite-width predictors (:func:`kernel_arch`).
      model: corruption model with ``apply(x, p, seed)`` (training set only).
      p: corruption level in [0, 1].
      k, m: K noisy training sets × M initialisations.
      diag_reg: relative ridge of the NTK and mean-field solves (see :func:`kernel_predictors`).
      seed: first noise seed (the training run seed is ``config.seed``).
    """
    from nwcorrupt import train

    seeds = [seed + j for j in range(k)]
    noisy = np.stack([np.asarray(model.apply(ds.x_train, p, s)) for s in seeds])  # (K, N, d)

    ens = train.train_ensemble(config, noisy, ds.y_train, ds.x_test, ds.y_test, num_inits=m, quiet=True)
    net_logits = np.asarray(ens.test_logits).mean(axis=1)  # (K, T, C): init-averaged
    net_pred = net_logits.argmax(-1)

    logits = kernel_predictors(ds, kernel_arch, model, p, noisy, diag_reg=diag_reg)
    ntk_pred = logits["ntk"].argmax(-1)
    mf = logits["meanfield"][0]
    rule_noisy = np.stack([prototype.predict(ds.x_test, noisy[j], ds.y_train, num_classes=ds.num_classes) for j in range(k)])
    rule_leading = prototype.predict(ds.x_test, ds.x_train, ds.y_train, num_classes=ds.num_classes)
    preds = {"network": net_pred, "ntk": ntk_pred, "meanfield": mf.argmax(-1)[None], "rule_noisy": rule_noisy,
             "rule_leading": rule_leading[None]}
    return NestedPredictions(
        preds=preds,
        network_logits=net_logits,
        noise_seeds=seeds,
        train_seconds=float(ens.train_seconds),
        member_accuracy_mean=float(ens.accuracy["member_mean"]) if ens.accuracy else None,
        train_loss=np.asarray(ens.train_loss),
        train_accuracy=np.asarray(ens.train_accuracy),
    )


def kernel_predictors(ds: data.Dataset, arch, model, p: float, noisy, *, diag_reg: float) -> dict[str, np.ndarray]:
    """Test logits of the infinite-width predictors (float64), all with one *relative* ridge ``diag_reg``.

    "The same relative regulariser" means: every predictor adds r = diag_reg × (mean diagonal of
    its own train-train kernel) to that diagonal, the convention of :mod:`nwcorrupt.predict`:

    - ``"ntk"`` (K, T, C): the exact NTK predictor (t = ∞) on each noisy set X̃_k, with
      r_k = diag_reg · trace Θ(X̃_k, X̃_k)/N (``predict.ntk_predict(..., diag_reg=diag_reg)``);
    - ``"meanfield"`` (1, T, C): the mean-field predictor, with r = diag_reg · mean_α Θ̄_αα of the
      mean-field train NTK (:func:`nwcorrupt.theory.meanfield_ridge`), passed to
      :func:`nwcorrupt.theory.meanfield_predict` as its absolute ``ridge``.

    The mean diagonals of the noisy sets' kernels and of the mean-field kernel differ by O(1/√d)
    fluctuations, so each absolute ridge is computed from the predictor's own kernel; the
    mean-field predictor remains the d → ∞ limit of the exact one at the same ``diag_reg``.
    The rules (``prototype``) and the networks have no ridge.

    Args:
      ds: data set (x_train (N, d) clean, x_test (T, d)); arch: the MLP; model: corruption model;
      p: corruption level; noisy: (K, N, d) noisy training sets; diag_reg: relative ridge ≥ 0.
    """
    from nwcorrupt import predict, theory

    onehot = np.eye(ds.num_classes)[ds.y_train]
    xtr, xte = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
    with precision.x64():
        ntk = np.stack([
            np.asarray(predict.ntk_predict(arch, np.asarray(x, np.float64), onehot, xte, diag_reg=diag_reg), np.float64)
            for x in noisy
        ])
        ridge = theory.meanfield_ridge(arch, model, p, xtr, diag_reg, get="ntk")
        mf = np.asarray(theory.meanfield_predict(arch, model, p, xtr, ds.y_train, xte, get="ntk", ridge=ridge,
                                                 num_classes=ds.num_classes), np.float64)
    return {"ntk": ntk, "meanfield": mf[None]}


def accuracies(preds: dict[str, np.ndarray], y_test) -> dict[str, list[float]]:
    """name -> accuracy of each row of ``preds[name]`` (R, T) against the (T,) labels."""
    return {name: [metrics.accuracy(row, y_test) for row in pr] for name, pr in preds.items()}


def agreements(preds: dict[str, np.ndarray], pairs: Sequence[tuple[str, str]]) -> dict[str, list[float]]:
    """``"a~b"`` -> agreement of the decisions of a and b, row by row.

    A single-row predictor (R = 1, e.g. the mean-field predictor) is compared
    with every row of the other one; two K-row predictors row by row (same noisy set).
    """
    out = {}
    for a, b in pairs:
        pa, pb = preds[a], preds[b]
        rows = max(len(pa), len(pb))
        out[f"{a}~{b}"] = [metrics.agreement(pa[min(i, len(pa) - 1)], pb[min(i, len(pb) - 1)]) for i in range(rows)]
    return out


# --------------------------------------------------------------------------- shared pieces of the studies' Params


def check_recipe(params, positive: Sequence[str]) -> None:
    """Checks shared by the network studies' ``Params`` (fields activation, parameterization,
    batch_size, n_train, each name in ``positive`` (integers >= 1), and
    :func:`common.check_recipe_numbers`)."""
    from nwcorrupt import activations
    from nwcorrupt.arch import PARAMETERIZATIONS

    activations.get(params.activation)
    check_choice("parameterization", params.parameterization, PARAMETERIZATIONS)
    for name in positive:
        check_positive_int(name, getattr(params, name))
    common.check_recipe_numbers(params)
    if params.batch_size > params.n_train:
        raise ValueError(f"batch_size ({params.batch_size}) must not exceed n_train ({params.n_train})")


def network_arch(params, activation: str | None = None):
    """The :class:`nwcorrupt.arch.MLP` the networks are trained in: depth, activation (or
    ``activation``), W_std, b_std and ``params.parameterization`` (the studies': ``"standard"``)."""
    from nwcorrupt.arch import MLP

    act = params.activation if activation is None else activation
    return MLP(params.depth, act, W_std=params.W_std, b_std=params.b_std, parameterization=params.parameterization)


def kernel_arch(params, activation: str | None = None):
    """The :class:`nwcorrupt.arch.MLP` of the infinite-width predictors the networks are compared with:
    the same depth, activation, W_std and b_std, in the NTK parameterisation (its NTK does not depend on
    the width; see docs/science.md#which-kernel-do-the-study-networks-approach for why this is the
    reference of Adam-trained standard-parameterisation networks)."""
    from nwcorrupt.arch import MLP

    act = params.activation if activation is None else activation
    return MLP(params.depth, act, W_std=params.W_std, b_std=params.b_std)


def network_config(params, arch, num_classes: int, width: int | None = None):
    """The study's training recipe as a :class:`nwcorrupt.train.TrainConfig`: Adam (``learning_rate``),
    MSE on one-hot targets (mean over N·C, PyTorch's ``MSELoss``), minibatches of ``batch_size`` in a
    fresh random order every epoch with the last, smaller batch kept (``drop_last=False``, PyTorch's
    ``DataLoader``), ``epochs`` epochs, run seed ``params.seed``; width ``width`` (default ``params.width``;
    none for a :class:`nwcorrupt.stax.Network`, which carries its own sizes)."""
    from nwcorrupt import train
    from nwcorrupt.stax import Network

    return train.TrainConfig(
        arch=arch,
        width=None if isinstance(arch, Network) else params.width if width is None else width,
        num_classes=num_classes,
        optimizer=train.Optimizer("adam", params.learning_rate),
        loss="mse",
        batch_size=params.batch_size,
        epochs=params.epochs,
        drop_last=False,
        seed=params.seed,
    )


def load_dataset(name: str, params) -> data.Dataset:
    """Data set ``name`` with a balanced training subset of ``params.n_train`` (seed ``params.seed``)
    and the first ``params.n_test`` clean test points (0: all)."""
    ds = data.load(name, n_train=params.n_train, seed=params.seed)
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    return ds


def estimate_seconds(params, widths: Sequence[int], kernels: int = 1, d: int = 784, c: int = 10) -> float:
    """Rough seconds of one point on a 2-core CPU: K·M networks per width, ``kernels`` exact predictors per set."""
    n_test = params.n_test or 10000
    n_params = sum(d * w + (params.depth - 2) * w * w + w * c if params.depth > 1 else d * c for w in widths)
    flops_train = 6 * params.k * params.m * params.epochs * params.n_train * n_params
    flops_kernel = 2 * kernels * params.k * (params.n_train + n_test) * params.n_train * d * 3
    return 2.0 + flops_train / 2e10 + flops_kernel / 2e10 + kernels * 1e-9 * params.n_train**3
