"""Finite networks trained under per-epoch ("online") corruption, shared by two studies.

Used by :mod:`~nwcorrupt.experiments.studies.accuracy_vs_corruption` and
:mod:`~nwcorrupt.experiments.studies.ptrain_ptest` (the ReLU network of the
introduction, docs/science.md#accuracy-vs-corruption): raw pixels in [0, 1], an
MLP with 3 hidden layers of 128 ReLU units, softmax cross-entropy, Adam, and
training inputs corrupted anew in every epoch.

Seeds. Repeat r (r = 0 … R − 1) is ensemble member (k = r, m = 0) of
:func:`nwcorrupt.train.train_ensemble`: its initialisation and minibatch order
come from the run seed and r. In training epoch e (e = 0 … E − 1) it sees the
training inputs corrupted as ``model.apply(x, p, seed + r, epoch=e + 1)`` (the
training stream of :mod:`nwcorrupt.corruption`, one key per row), so the noise
differs across repeats and across epochs, and realisation ``epoch = 0`` of every
noise seed is never used in training.
"""

from __future__ import annotations

import dataclasses
import math
import types

import numpy as np

from nwcorrupt import corruption, data
from nwcorrupt._checks import check_choice, check_positive_int
from nwcorrupt.arch import MLP, PARAMETERIZATIONS  # PARAMETERIZATIONS re-exported: the choices of NetParams.parameterization
from nwcorrupt.mlp import INIT_LAWS, check_init_law
from nwcorrupt.experiments.studies import common, training_fit

__all__ = [
    "INIT_LAWS",
    "PARAMETERIZATIONS",
    "NetParams",
    "check_image_dataset",
    "load_dataset",
    "noise_model",
    "train_config",
    "train_repeats",
    "accuracies",
    "num_params",
]


@dataclasses.dataclass(frozen=True)
class NetParams:
    """Parameters shared by the two studies (network, training, repeats).

    Attributes:
      n_train: balanced training subset size (a multiple of C); 0 = the full training set.
      n_test: evaluate on the first n_test test images; 0 = the full test set.
      noise: noise spec (``common.NOISE_SPECS``) on raw pixels; ``"replacement"`` is U[0, 1].
      depth: dense layers L (L − 1 hidden layers of ``width`` units, then the readout).
      width: hidden width.
      parameterization: ``"standard"`` (conventional network, the default) or ``"ntk"``.
      init: ``"torch_default"`` (the study's: PyTorch's ``nn.Linear`` default, weights and biases
        U(±1/√fan_in); standard parameterisation) or ``"gaussian"`` (W ~ N(0, W_std²/fan_in),
        b ~ N(0, b_std²)).
      W_std, b_std: scales of the ``"gaussian"`` initialisation (default He: √2 and zero biases);
        leave them unset with ``"torch_default"``, which has its own.
      epochs, batch_size, learning_rate: Adam training with softmax cross-entropy.
      repeats: R independently trained networks per sweep point.
      seed: run seed (subset, initialisations, minibatch order) and noise seed of repeat 0.
    """

    n_train: int = 0
    n_test: int = 0
    noise: str = "replacement"
    depth: int = 4
    width: int = 128
    parameterization: str = "standard"
    init: str = "torch_default"
    W_std: float | None = None
    b_std: float | None = None
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    repeats: int = 100
    seed: int = 0

    def __post_init__(self) -> None:
        common.check_noises((self.noise,))
        if self.noise == "replacement:marginal":
            raise ValueError("noise 'replacement:marginal' is not supported with per-epoch redraws; pick another law")
        for name in ("depth", "width", "epochs", "batch_size", "repeats"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("n_train", self.n_train, allow_zero=True)
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        check_init_law(MLP(self.depth, "relu", parameterization=self.parameterization), self.init)
        if self.init == "torch_default" and (self.W_std is not None or self.b_std is not None):
            raise ValueError(
                "W_std and b_std scale the 'gaussian' initialisation; init='torch_default' (PyTorch's "
                f"nn.Linear default, U(±1/√fan_in)) has its own: leave them unset, got W_std={self.W_std}, "
                f"b_std={self.b_std}"
            )
        common.check_recipe_numbers(
            types.SimpleNamespace(**dataclasses.asdict(self) | {"W_std": self.weight_std, "b_std": self.bias_std})
        )
        if self.seed + self.repeats >= 2**31:
            raise ValueError(f"seed + repeats must be < 2**31, got {self.seed + self.repeats}")
        if self.n_train and self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed n_train ({self.n_train})")


    @property
    def weight_std(self) -> float:
        """σ_w of the initial weights (fan-in variance σ_w²/fan_in): 1/√3 for ``"torch_default"``, else
        ``W_std`` (default √2)."""
        if self.init == "torch_default":
            return 1.0 / math.sqrt(3.0)
        return math.sqrt(2.0) if self.W_std is None else float(self.W_std)

    @property
    def bias_std(self) -> float:
        """b_std of the ``"gaussian"`` initialisation (default 0); 0 for ``"torch_default"``, whose bias
        variance 1/(3 fan_in) is not a fixed b_std."""
        if self.init == "torch_default" or self.b_std is None:
            return 0.0
        return float(self.b_std)


def check_image_dataset(name: str, what: str = "dataset") -> None:
    """A registered data set of images (not the synthetic mixture)."""
    if name not in data.names() or name == "gaussian_mixture":
        raise ValueError(f"{what} must be an image data set from {[n for n in data.names() if n != 'gaussian_mixture']}, got {name!r}")


def load_dataset(name: str, params: NetParams) -> data.Dataset:
    """Raw pixels in [0, 1], balanced training subset (or all), first n_test test images (or all)."""
    ds = data.load(name, n_train=params.n_train or None, seed=params.seed, normalize="none")
    if params.batch_size > ds.n_train:
        raise ValueError(f"batch_size ({params.batch_size}) exceeds the {ds.n_train} training images of {name}")
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    return ds


def noise_model(params: NetParams):
    """The corruption model of ``params.noise`` on raw pixels (replacement: U[0, 1])."""
    return common.noise_model(params.noise, "none")


def train_config(params: NetParams, num_classes: int):
    """The :class:`~nwcorrupt.train.TrainConfig` of the study network: Adam, softmax cross-entropy (mean over
    the batch, PyTorch's ``CrossEntropyLoss``), a fresh random order every epoch with the last, smaller
    batch kept (``drop_last=False``, PyTorch's ``DataLoader``), initialisation ``params.init``."""
    from nwcorrupt import train

    arch = MLP(params.depth, "relu", W_std=params.weight_std, b_std=params.bias_std,
               parameterization=params.parameterization)
    return train.TrainConfig(
        arch=arch,
        width=params.width,
        num_classes=num_classes,
        optimizer=train.Optimizer("adam", params.learning_rate),
        loss="cross_entropy",
        batch_size=params.batch_size,
        epochs=params.epochs,
        init=params.init,
        drop_last=False,
        seed=params.seed,
    )


def train_repeats(
    params: NetParams, ds: data.Dataset, p: float, x_eval: np.ndarray
) -> tuple[np.ndarray, float, dict[str, float]]:
    """Train R networks at corruption level p (redrawn every epoch); their logits on ``x_eval``.

    Args:
      params: the study parameters.
      ds: the data set (clean raw training images, labels).
      p: training corruption level.
      x_eval: (T, d) inputs to evaluate every trained network on.

    Returns:
      (logits (R, T, C), training seconds, training-set fit): the fit is
      :func:`training_fit.summarize` of the R networks' training loss and accuracy on the
      inputs of their last training epoch (the corruption redrawn for that epoch; at
      p = 0 the clean training set).
    """
    from nwcorrupt import train

    cfg = train_config(params, ds.num_classes)
    redraw = corruption.Online(noise_model(params), float(p), params.seed)
    ens = train.train_ensemble(
        cfg,
        ds.x_train,
        ds.y_train,
        x_eval,
        num_inits=1,
        corrupt=redraw,
        num_datasets=params.repeats,
        quiet=True,
    )
    fit = training_fit.summarize(ens.train_loss, ens.train_accuracy)
    return np.asarray(ens.test_logits)[:, 0], float(ens.train_seconds), fit


def accuracies(logits: np.ndarray, y: np.ndarray) -> list[float]:
    """Accuracy of each of R networks: logits (R, T, C), labels (T,) -> R floats."""
    return [float(v) for v in (np.asarray(logits).argmax(-1) == np.asarray(y)[None]).mean(-1)]


def num_params(params: NetParams, d: int = 784, c: int = 10) -> int:
    """Number of weights of the study network (for cost estimates)."""
    w = params.width
    return d * w + (params.depth - 2) * w * w + w * c if params.depth > 1 else d * c
