"""Configuration of training: the recipe, optimisers, early stopping, losses and member keys.

Everything here is pure description (frozen, hashable dataclasses and small pure
functions); nothing is compiled or trained.

* keys: member (k, m) uses ``fold_in(fold_in(fold_in(PRNGKey(seed), 0), k), m)``;
  its init key is ``fold_in(member_key, 0)`` and its shuffle key
  ``fold_in(member_key, 1)``, so a member's result does not depend on chunking;
* losses: ``"mse"`` — mean over N·C of (f − onehot(y))² (the study's loss; its
  gradient flow is neural-tangents' ``0.5·mean`` loss with learning rate 2η);
  ``"cross_entropy"`` — mean over N of softmax cross-entropy;
* early stopping holds out the same validation rows for every member
  (:func:`validation_split`, drawn from the run seed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nwcorrupt import mlp as _mlp
from nwcorrupt._checks import (
    check_choice,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_real,
    check_seed,
)
from nwcorrupt.arch import MLP, check_arch
from nwcorrupt.stax.network import Network

__all__ = [
    "LOSSES",
    "OPTIMIZERS",
    "EarlyStopping",
    "Optimizer",
    "TrainConfig",
    "TrainingDivergedError",
    "cross_entropy_loss",
    "cross_entropy_target_loss",
    "forward_fn",
    "init_params",
    "loss_fn",
    "member_init",
    "member_keys",
    "mse_loss",
    "mse_target_loss",
    "target_loss_fn",
    "validation_split",
]

Array = jax.Array
LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw", "adadelta")


class TrainingDivergedError(RuntimeError):
    """Raised when a training loss becomes non-finite or exceeds the divergence threshold."""


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A small, hashable description of an optax optimiser.

    Attributes:
      name: ``"sgd"``, ``"momentum"`` (heavy ball), ``"adam"``, ``"adamw"`` or ``"adadelta"``.
      learning_rate: step size η > 0.
      momentum: momentum coefficient of ``"momentum"``.
      b1, b2, eps: Adam/AdamW moment decays and denominator offset (``eps`` is also
        Adadelta's offset: PyTorch's Adadelta uses lr = 1.0, rho = 0.9, eps = 1e-6).
      weight_decay: decoupled weight decay of ``"adamw"``.
      nesterov: Nesterov momentum for ``"momentum"``.
      rho: decay of Adadelta's running averages (``optax.adadelta``).
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-4
    nesterov: bool = False
    rho: float = 0.9

    def __post_init__(self) -> None:
        check_choice("optimizer name", self.name, OPTIMIZERS)
        check_positive_float("learning_rate", self.learning_rate)
        for field in ("momentum", "b1", "b2", "rho"):
            check_real(field, getattr(self, field), lo=0.0, hi=1.0, hi_open=True)
        check_nonneg_float("eps", self.eps)
        check_nonneg_float("weight_decay", self.weight_decay)

    def build(self) -> optax.GradientTransformation:
        """The optax transformation."""
        if self.name == "sgd":
            return optax.sgd(self.learning_rate)
        if self.name == "momentum":
            return optax.sgd(self.learning_rate, momentum=self.momentum, nesterov=self.nesterov)
        if self.name == "adam":
            return optax.adam(self.learning_rate, b1=self.b1, b2=self.b2, eps=self.eps)
        if self.name == "adadelta":
            return optax.adadelta(self.learning_rate, rho=self.rho, eps=self.eps)
        return optax.adamw(
            self.learning_rate, b1=self.b1, b2=self.b2, eps=self.eps, weight_decay=self.weight_decay
        )


@dataclasses.dataclass(frozen=True)
class EarlyStopping:
    """Early stopping on a held-out split of the training rows.

    Attributes:
      patience: stop after this many epochs without a validation-loss improvement
        larger than ``min_delta``.
      validation_fraction: fraction of the N training rows held out (at least one
        row; the same rows for every member, drawn from the run seed).
      min_delta: minimum decrease of the validation loss that counts as progress.
      restore_best: report the parameters of the best validation epoch.
    """

    patience: int = 5
    validation_fraction: float = 0.1
    min_delta: float = 0.0
    restore_best: bool = True

    def __post_init__(self) -> None:
        check_positive_int("patience", self.patience)
        check_real("validation_fraction", self.validation_fraction, lo=0.0, hi=1.0, lo_open=True, hi_open=True)
        check_nonneg_float("min_delta", self.min_delta)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines how one member is trained (hashable, fingerprinted).

    Attributes:
      arch: the :class:`~nwcorrupt.arch.MLP` spec, or an :class:`nwcorrupt.stax.Network`
        (any stax architecture bound to its input shape; then ``width`` is None,
        ``width_scale`` 1 and ``num_classes`` the network's number of outputs).
      width: hidden-layer (base) width n >= 1 (None: ``arch.width``; always None for a Network).
      num_classes: number of outputs C >= 1.
      optimizer: an :class:`Optimizer` or any ``optax.GradientTransformation`` (for
        the latter, name it in ``tag`` so resumed runs can tell configurations apart).
      loss: ``"mse"`` or ``"cross_entropy"``.
      batch_size: minibatch size B (<= number of training rows).
      epochs: number of epochs; give exactly one of ``epochs`` and ``steps``.
      steps: total number of optimisation steps.
      early_stopping: optional :class:`EarlyStopping`.
      width_scale: neural-tangents' width scale s (standard parameterisation).
      init: initialisation law of the parameters, one of :data:`nwcorrupt.mlp.INIT_LAWS`:
        ``"gaussian"`` (W ~ N(0, W_std²/fan_in), b ~ N(0, b_std²), as ``arch`` says) or
        ``"torch_default"`` (PyTorch's ``nn.Linear`` default, U(±1/√fan_in) for W and b;
        standard parameterisation only).
      drop_last: with N_train not a multiple of ``batch_size``, whether each epoch drops
        the N_train mod B rows its shuffled order leaves after the last full batch (True)
        or trains on them as one smaller last batch (False, PyTorch's ``DataLoader``
        default: an epoch then visits every training row once).
      seed: run seed; all member keys derive from it.
      divergence_threshold: a loss above this (or non-finite) aborts the run; None
        checks finiteness only.
      tag: free text included in the fingerprint (name custom optimisers or
        corruption callables here).
    """

    arch: MLP | Network
    width: int | None
    num_classes: int
    optimizer: Any = Optimizer()
    loss: str = "mse"
    batch_size: int = 128
    epochs: int | None = None
    steps: int | None = None
    early_stopping: EarlyStopping | None = None
    width_scale: int = 1
    init: str = "gaussian"
    drop_last: bool = True
    seed: int = 0
    divergence_threshold: float | None = 1e8
    tag: str = ""

    def __post_init__(self) -> None:
        check_positive_int("num_classes", self.num_classes)
        if isinstance(self.arch, Network):
            if self.width is not None:
                raise ValueError(f"width must be None for a stax Network (its layers set the widths), got {self.width!r}")
            if self.width_scale != 1:
                raise ValueError(f"width_scale must be 1 for a stax Network, got {self.width_scale!r}")
            if self.arch.num_outputs != self.num_classes:
                raise ValueError(
                    f"num_classes={self.num_classes} but the network has {self.arch.num_outputs} outputs"
                )
            self.arch.check_init_law(self.init)
        else:
            check_arch(self.arch)
            _mlp.resolve_width(self.arch, self.width)
            _mlp.check_width_scale(self.arch, self.width_scale)
            _mlp.check_init_law(self.arch, self.init, self.width_scale)
        check_positive_int("batch_size", self.batch_size)
        if not isinstance(self.drop_last, bool):
            raise TypeError(f"drop_last must be True or False, got {self.drop_last!r}")
        check_choice("loss", self.loss, LOSSES)
        if not isinstance(self.optimizer, (Optimizer, optax.GradientTransformation)):
            raise TypeError(
                f"optimizer must be an nwcorrupt.train.Optimizer or an optax.GradientTransformation, "
                f"got {type(self.optimizer).__name__}"
            )
        if (self.epochs is None) == (self.steps is None):
            raise ValueError(
                f"give exactly one of epochs or steps, got epochs={self.epochs!r}, steps={self.steps!r}"
            )
        if self.epochs is not None:
            check_positive_int("epochs", self.epochs)
        if self.steps is not None:
            check_positive_int("steps", self.steps)
        if self.early_stopping is not None and not isinstance(self.early_stopping, EarlyStopping):
            raise TypeError(f"early_stopping must be an EarlyStopping or None, got {self.early_stopping!r}")
        check_seed("seed", self.seed)
        if self.divergence_threshold is not None:
            check_positive_float("divergence_threshold", self.divergence_threshold)
        if not isinstance(self.tag, str):
            raise TypeError(f"tag must be a string, got {self.tag!r}")

    def transform(self) -> optax.GradientTransformation:
        """The optax transformation used for training."""
        if isinstance(self.optimizer, Optimizer):
            return self.optimizer.build()
        return self.optimizer

    def describe(self) -> dict:
        """A JSON-serialisable description (used for fingerprints and records)."""
        arch = self.arch
        opt = (
            dataclasses.asdict(self.optimizer)
            if isinstance(self.optimizer, Optimizer)
            else {"custom_optax": True}
        )
        if opt.get("name") not in (None, "adadelta"):
            opt.pop("rho")  # only Adadelta reads it (keeps the descriptions of earlier runs unchanged)
        if isinstance(arch, Network):
            arch_desc, width = arch.describe(), None
        else:
            arch_desc = {
                "depth": arch.depth,
                "activation": arch.act.name,
                "W_std": arch.W_std,
                "b_std": arch.b_std,
                "parameterization": arch.parameterization,
            }
            width = _mlp.resolve_width(self.arch, self.width)
        return {
            "arch": arch_desc,
            "width": width,
            "num_classes": self.num_classes,
            "optimizer": opt,
            "loss": self.loss,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "steps": self.steps,
            "early_stopping": None if self.early_stopping is None else dataclasses.asdict(self.early_stopping),
            "width_scale": self.width_scale,
            "init": self.init,
            "drop_last": self.drop_last,
            "seed": int(self.seed),
            "divergence_threshold": self.divergence_threshold,
            "tag": self.tag,
        }


# ----------------------------------------------------------------------------- losses


def mse_loss(logits: Array, labels: Array, num_classes: int) -> Array:
    """Mean over N·C of (logits − onehot(labels))²; logits (N, C), labels (N,) int."""
    target = jax.nn.one_hot(labels, num_classes, dtype=logits.dtype)
    return jnp.mean((logits - target) ** 2)


def cross_entropy_loss(logits: Array, labels: Array, num_classes: int) -> Array:
    """Mean over N of −log softmax(logits)[label]; logits (N, C), labels (N,) int."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None].astype(jnp.int32), axis=1))


def mse_target_loss(logits: Array, targets: Array) -> Array:
    """Mean over N·C of (logits − targets)²; logits and targets (N, C) (soft targets allowed)."""
    return jnp.mean((logits - targets.astype(logits.dtype)) ** 2)


def cross_entropy_target_loss(logits: Array, targets: Array) -> Array:
    """Mean over N of −Σ_c t_c log softmax(logits)_c; targets (N, C) rows of probabilities."""
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.sum(targets.astype(logits.dtype) * logp, axis=-1))


def target_loss_fn(name: str) -> Callable[[Array, Array], Array]:
    """The loss ``name`` against (N, C) target rows: :func:`mse_target_loss` or :func:`cross_entropy_target_loss`.

    With one-hot targets these equal :func:`mse_loss` and :func:`cross_entropy_loss`; with the
    expected targets of a label-noise law (``LabelLaw.mean_targets()``) they are the expected
    loss over the label draws up to a constant (exactly, for both losses), i.e. the
    "infinite-batch" training of the noisy labels.
    """
    check_choice("loss", name, LOSSES)
    return mse_target_loss if name == "mse" else cross_entropy_target_loss


def loss_fn(name: str) -> Callable[[Array, Array, int], Array]:
    """The loss function named ``name`` (one of :data:`LOSSES`): :func:`mse_loss` or :func:`cross_entropy_loss`."""
    check_choice("loss", name, LOSSES)
    return mse_loss if name == "mse" else cross_entropy_loss


# ----------------------------------------------------------------------------- keys


def member_keys(seed: int, k: Any, m: Any) -> tuple[Array, Array]:
    """(init_key, shuffle_key) of member (k, m); depends on (seed, k, m) only."""
    member = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 0), k), m)
    return jax.random.fold_in(member, 0), jax.random.fold_in(member, 1)


def init_params(config: TrainConfig, key: Array, d_in: int, dtype: Any = None) -> Any:
    """Parameters of the configured network (MLP or stax Network) for rows of ``d_in`` features."""
    if isinstance(config.arch, Network):
        config.arch.check_rows(d_in)
        return config.arch.init(key, dtype=dtype, law=config.init)
    return _mlp.init(
        key, config.arch, config.width, d_in, config.num_classes, width_scale=config.width_scale, dtype=dtype,
        law=config.init,
    )  # fmt: skip


def forward_fn(config: TrainConfig) -> Callable[[Any, Array], Array]:
    """``net(params, x) -> logits`` (N, C) for flat rows x (N, d): pure jnp, for jit and autodiff."""
    arch = config.arch
    if isinstance(arch, Network):
        return arch.apply
    return lambda params, x: _mlp.forward(arch, params, x, config.width_scale, _mlp.MATMUL_PRECISION, arch.depth)


def member_init(config: TrainConfig, d_in: int, *, k: int = 0, m: int = 0) -> Any:
    """Initial parameters of member (k, m) (as used by the training functions)."""
    init_key, _ = member_keys(config.seed, k, m)
    return init_params(config, init_key, d_in)


def validation_split(seed: int, n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, val_rows), sorted, from ``fold_in(PRNGKey(seed), 1)``; at least one validation row."""
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    if n_val < 1:
        raise ValueError(f"cannot hold out a validation split from N={n} training rows")
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(seed), 1), n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])
