"""Helpers shared by studies: noise specs, data loading, parameter checks and table statistics."""

from __future__ import annotations

import math

from nwcorrupt import corruption, data
from nwcorrupt._checks import (
    check_choice,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_seed,
)
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.metrics import NO_STD, mean_std  # re-exported: the table cells of every study

__all__ = [
    "NOISE_SPECS",
    "NO_STD",
    "noise_model",
    "check_ps",
    "check_noises",
    "check_dataset",
    "check_data_sizes",
    "preflight_dataset",
    "check_recipe_numbers",
    "torch_relu_config",
    "mean_std",
]

NOISE_SPECS = (
    "replacement",
    "replacement:uniform",
    "replacement:gaussian",
    "replacement:salt_pepper",
    "replacement:marginal",
    "additive",
    "additive:gaussian",
    "additive:uniform",
    "additive:laplace",
)


def noise_model(spec: str, normalize: str, x_train=None):
    """The corruption model named by ``spec`` (``"kind[:law]"``).

    Replacement laws are matched to the data scale: on per-example normalised
    data uniform is U[−√3, √3], Gaussian N(0, 1) and salt-and-pepper ±1; on raw
    pixels (``normalize="none"``) U[0, 1], N(1/2, 1/12) and {0, 1}. ``marginal``
    is the empirical marginal of ``x_train``.
    """
    kind, _, law = spec.partition(":")
    if kind == "additive":
        return corruption.Additive(law or "gaussian")
    raw = normalize == "none"
    law = law or "uniform"
    if law == "uniform":
        return corruption.Replacement("uniform", low=0.0, high=1.0) if raw else corruption.Replacement("uniform")
    if law == "gaussian":
        return corruption.Replacement("gaussian", loc=0.5, scale=math.sqrt(1 / 12)) if raw else corruption.Replacement("gaussian")
    if law == "salt_pepper":
        return corruption.Replacement("salt_pepper", low=0.0, high=1.0) if raw else corruption.Replacement("salt_pepper", low=-1.0, high=1.0)
    if x_train is None:
        raise ValueError("replacement:marginal needs the training inputs")
    return corruption.Replacement.from_marginal(x_train)


def check_ps(name: str, ps: tuple[float, ...]) -> None:
    if not ps:
        raise ValueError(f"{name} must list at least one corruption level")
    bad = [p for p in ps if not 0.0 <= p <= 1.0]
    if bad:
        raise ValueError(f"{name} must lie in [0, 1], got {bad}")
    dups = sorted({p for p in ps if list(ps).count(p) > 1})
    if dups:
        raise ValueError(f"{name} lists {dups} more than once (expected distinct corruption levels)")


def check_noises(noises: tuple[str, ...]) -> None:
    bad = [n for n in noises if n not in NOISE_SPECS]
    if bad or not noises:
        raise ValueError(f"noises must be a non-empty list from {list(NOISE_SPECS)}, got {list(noises)}")


def check_dataset(name: str) -> None:
    check_choice("dataset", name, data.names())


def check_recipe_numbers(params) -> None:
    """The numbers every network study's ``Params`` shares: n_test >= 0 (0: all test points), seed
    (a PRNG seed), learning_rate > 0, W_std > 0, b_std >= 0, and diag_reg >= 0 where it has one."""
    check_positive_int("n_test", params.n_test, allow_zero=True)
    check_seed("seed", params.seed)
    check_positive_float("learning_rate", params.learning_rate)
    check_positive_float("W_std", params.W_std)
    check_nonneg_float("b_std", params.b_std)
    if hasattr(params, "diag_reg"):
        check_nonneg_float("diag_reg", params.diag_reg)


def check_data_sizes(params) -> None:
    """Sizes that the run will need from its data sets, checked before any work.

    For every data set the parameters name (``dataset`` or ``datasets``; ``gaussian_mixture`` is
    generated and skipped): a positive ``n_train`` must give a balanced subset (a multiple of the
    class count, within every class's size) and a positive ``n_test`` must not exceed the test set
    (0 means all). Raises ConfigError naming the parameter.
    """
    names = [params.dataset] if isinstance(getattr(params, "dataset", None), str) else list(getattr(params, "datasets", ()))
    n_train = getattr(params, "n_train", 0) or 0
    n_test = getattr(params, "n_test", 0) or 0
    for name in names:
        if name == "gaussian_mixture":
            continue
        try:
            raw = data.load_raw(name)
        except data.DatasetNotFoundError as err:
            raise ConfigError(str(err)) from None
        if isinstance(n_train, int) and n_train > 0:
            try:
                data.balanced_indices(raw.y_train, n_train, raw.num_classes, 0)
            except ValueError as err:
                raise ConfigError(f"{err} ({name}, {raw.num_classes} classes)") from None
        if isinstance(n_test, int) and n_test > raw.x_test.shape[0]:
            raise ConfigError(f"n_test = {n_test} exceeds the {raw.x_test.shape[0]} test images of {name} "
                              f"(expected n_test <= {raw.x_test.shape[0]}, or 0 for all)")  # fmt: skip


def preflight_dataset(name: str) -> None:
    """Fail before any work when the data set's files are missing."""
    if name == "gaussian_mixture":
        return
    try:
        data.load_raw(name)
    except data.DatasetNotFoundError as err:
        raise ConfigError(str(err)) from None


def torch_relu_config(params, num_classes: int, *, loss: str = "cross_entropy", optimizer=None):
    """The :class:`~nwcorrupt.train.TrainConfig` of a PyTorch-style ReLU MLP study network.

    ``params`` provides ``hidden`` (hidden layers), ``width``, ``parameterization``, ``init``,
    ``learning_rate``, ``epochs``, ``batch_size`` and ``seed``. The architecture's W_std is the
    initialisation's fan-in std (1/√3 for PyTorch's ``nn.Linear`` default, √2 for He-scale Gaussian);
    no bias variance (PyTorch's biases start small and trainable). The optimiser defaults to Adam at
    ``learning_rate`` (PyTorch's defaults otherwise); the last partial batch is kept (PyTorch's
    ``DataLoader``).
    """
    from nwcorrupt import train
    from nwcorrupt.arch import MLP

    w_std = 1 / math.sqrt(3) if params.init == "torch_default" else math.sqrt(2.0)
    return train.TrainConfig(
        arch=MLP(params.hidden + 1, "relu", W_std=w_std, b_std=0.0, parameterization=params.parameterization),
        width=params.width,
        num_classes=num_classes,
        optimizer=train.Optimizer("adam", params.learning_rate) if optimizer is None else optimizer,
        loss=loss,
        batch_size=params.batch_size,
        epochs=params.epochs,
        init=params.init,
        drop_last=False,
        seed=params.seed,
    )
