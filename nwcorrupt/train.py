"""Training finite-width MLPs with optax, one network or nested ensembles.

A nested ensemble is K training sets (noisy realisations of one clean set) × M
initialisations. :func:`train_ensemble` trains all K·M members with one compiled
program (``jax.vmap`` over members, sharded over ``jax.devices()`` along the member
axis with ``NamedSharding``), in chunks sized to a memory budget, keeps every
member's test logits and loss curve, and resumes from the chunks already on disk.
:func:`train_member` trains one member with the identical recipe, without vmap.

Recipe (per member, deterministic):

* keys: member (k, m) uses ``fold_in(fold_in(fold_in(PRNGKey(seed), 0), k), m)``;
  its init key is ``fold_in(member_key, 0)`` and its shuffle key
  ``fold_in(member_key, 1)``, so a member's result does not depend on chunking;
* every epoch the training rows are shuffled with
  ``permutation(fold_in(shuffle_key, epoch))`` and cut into ``N_train // batch``
  minibatches (the remainder is dropped); a step budget may end mid-epoch;
* losses: ``"mse"`` — mean over N·C of (f − onehot(y))² (the study's loss; its
  gradient flow is neural-tangents' ``0.5·mean`` loss with learning rate 2η);
  ``"cross_entropy"`` — mean over N of softmax cross-entropy;
* online corruption: a pure ``corrupt(x_clean, k, epoch) -> (N, d)`` redraws the
  training inputs of data set k at every epoch (k and epoch are traced int32);
* optional early stopping on a held-out split (same rows for every member), which
  restores the parameters of the best validation epoch.

A non-finite loss, or one above ``TrainConfig.divergence_threshold``, stops the run
with :class:`TrainingDivergedError` naming the epoch, step, member and loss.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nwcorrupt import mlp as _mlp
from nwcorrupt import _io
from nwcorrupt._checks import check_array, check_choice, check_labels, check_positive_int
from nwcorrupt.arch import MLP, check_arch
from nwcorrupt.precision import default_float

Array = jax.Array
LOSSES = ("mse", "cross_entropy")
OPTIMIZERS = ("sgd", "momentum", "adam", "adamw")


class TrainingDivergedError(RuntimeError):
    """Raised when a training loss becomes non-finite or exceeds the divergence threshold."""


def _finite_number(name: str, value: Any, *, lo: float | None = None, strict: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value!r}")
    if lo is not None and (v < lo or (strict and v == lo)):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {lo}, got {value!r}")
    return v


@dataclasses.dataclass(frozen=True)
class Optimizer:
    """A small, hashable description of an optax optimiser.

    Attributes:
      name: ``"sgd"``, ``"momentum"`` (heavy ball), ``"adam"`` or ``"adamw"``.
      learning_rate: step size η > 0.
      momentum: momentum coefficient of ``"momentum"``.
      b1, b2, eps: Adam/AdamW moment decays and denominator offset.
      weight_decay: decoupled weight decay of ``"adamw"``.
      nesterov: Nesterov momentum for ``"momentum"``.
    """

    name: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 1e-4
    nesterov: bool = False

    def __post_init__(self) -> None:
        check_choice("optimizer name", self.name, OPTIMIZERS)
        _finite_number("learning_rate", self.learning_rate, lo=0.0, strict=True)
        for field in ("momentum", "b1", "b2"):
            v = _finite_number(field, getattr(self, field), lo=0.0)
            if v >= 1.0:
                raise ValueError(f"{field} must be in [0, 1), got {v!r}")
        _finite_number("eps", self.eps, lo=0.0)
        _finite_number("weight_decay", self.weight_decay, lo=0.0)

    def build(self) -> optax.GradientTransformation:
        """The optax transformation."""
        if self.name == "sgd":
            return optax.sgd(self.learning_rate)
        if self.name == "momentum":
            return optax.sgd(self.learning_rate, momentum=self.momentum, nesterov=self.nesterov)
        if self.name == "adam":
            return optax.adam(self.learning_rate, b1=self.b1, b2=self.b2, eps=self.eps)
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
        f = _finite_number("validation_fraction", self.validation_fraction, lo=0.0, strict=True)
        if f >= 1.0:
            raise ValueError(f"validation_fraction must be in (0, 1), got {f!r}")
        _finite_number("min_delta", self.min_delta, lo=0.0)


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that defines how one member is trained (hashable, fingerprinted).

    Attributes:
      arch: the :class:`~nwcorrupt.arch.MLP` spec.
      width: hidden-layer (base) width n >= 1 (None: ``arch.width``).
      num_classes: number of outputs C >= 1.
      optimizer: an :class:`Optimizer` or any ``optax.GradientTransformation`` (for
        the latter, name it in ``tag`` so resumed runs can tell configurations apart).
      loss: ``"mse"`` or ``"cross_entropy"``.
      batch_size: minibatch size B (<= number of training rows).
      epochs: number of epochs; give exactly one of ``epochs`` and ``steps``.
      steps: total number of optimisation steps.
      early_stopping: optional :class:`EarlyStopping`.
      width_scale: neural-tangents' width scale s (standard parameterisation).
      seed: run seed; all member keys derive from it.
      divergence_threshold: a loss above this (or non-finite) aborts the run; None
        checks finiteness only.
      tag: free text included in the fingerprint (name custom optimisers or
        corruption callables here).
    """

    arch: MLP
    width: int | None
    num_classes: int
    optimizer: Any = Optimizer()
    loss: str = "mse"
    batch_size: int = 128
    epochs: int | None = None
    steps: int | None = None
    early_stopping: EarlyStopping | None = None
    width_scale: int = 1
    seed: int = 0
    divergence_threshold: float | None = 1e8
    tag: str = ""

    def __post_init__(self) -> None:
        check_arch(self.arch)
        _mlp.resolve_width(self.arch, self.width)
        check_positive_int("num_classes", self.num_classes)
        check_positive_int("batch_size", self.batch_size)
        _mlp.check_width_scale(self.arch, self.width_scale)
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
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.divergence_threshold is not None:
            _finite_number("divergence_threshold", self.divergence_threshold, lo=0.0, strict=True)
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
        return {
            "arch": {
                "depth": arch.depth,
                "activation": arch.act.name,
                "W_std": arch.W_std,
                "b_std": arch.b_std,
                "parameterization": arch.parameterization,
            },
            "width": _mlp.resolve_width(self.arch, self.width),
            "num_classes": self.num_classes,
            "optimizer": opt,
            "loss": self.loss,
            "batch_size": self.batch_size,
            "epochs": self.epochs,
            "steps": self.steps,
            "early_stopping": None if self.early_stopping is None else dataclasses.asdict(self.early_stopping),
            "width_scale": self.width_scale,
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


def _loss_fn(name: str) -> Callable[[Array, Array, int], Array]:
    return mse_loss if name == "mse" else cross_entropy_loss


# ----------------------------------------------------------------------------- keys


def member_keys(seed: int, k: Any, m: Any) -> tuple[Array, Array]:
    """(init_key, shuffle_key) of member (k, m); depends on (seed, k, m) only."""
    member = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(seed), 0), k), m)
    return jax.random.fold_in(member, 0), jax.random.fold_in(member, 1)


def member_init(config: TrainConfig, d_in: int, *, k: int = 0, m: int = 0) -> Any:
    """Initial parameters of member (k, m) (as used by the training functions)."""
    init_key, _ = member_keys(config.seed, k, m)
    return _mlp.init(
        init_key, config.arch, config.width, d_in, config.num_classes, width_scale=config.width_scale
    )


def validation_split(seed: int, n: int, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train_rows, val_rows), sorted, from ``fold_in(PRNGKey(seed), 1)``; at least one validation row."""
    n_val = min(n - 1, max(1, int(round(fraction * n))))
    if n_val < 1:
        raise ValueError(f"cannot hold out a validation split from N={n} training rows")
    perm = np.asarray(jax.random.permutation(jax.random.fold_in(jax.random.PRNGKey(seed), 1), n))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


# ----------------------------------------------------------------------------- programs


@dataclasses.dataclass(frozen=True)
class _Spec:
    config: TrainConfig
    n_train: int
    n_val: int
    d: int
    steps_per_epoch: int
    total_steps: int
    num_epochs: int
    corrupt: Callable | None
    dtype: str
    needs_mask: bool

    def program_key(self) -> _Spec:
        """The fields the compiled programs depend on (the step budget and seed are runtime inputs)."""
        cfg = dataclasses.replace(self.config, epochs=1, steps=None, seed=0, tag="", divergence_threshold=None)
        return dataclasses.replace(self, config=cfg, total_steps=0, num_epochs=0)


def _make_spec(config: TrainConfig, n: int, d: int, corrupt: Callable | None) -> _Spec:
    if config.early_stopping is not None:
        train_rows, val_rows = validation_split(config.seed, n, config.early_stopping.validation_fraction)
        n_train, n_val = len(train_rows), len(val_rows)
    else:
        n_train, n_val = n, 0
    if config.batch_size > n_train:
        what = "training examples" if n_val == 0 else f"training examples left after holding out {n_val}"
        raise ValueError(
            f"batch_size={config.batch_size} is larger than the number of {what}: N={n_train}"
        )
    spe = n_train // config.batch_size
    total = config.steps if config.steps is not None else config.epochs * spe
    num_epochs = int(math.ceil(total / spe))
    return _Spec(
        config=config,
        n_train=n_train,
        n_val=n_val,
        d=d,
        steps_per_epoch=spe,
        total_steps=int(total),
        num_epochs=num_epochs,
        corrupt=corrupt,
        dtype=np.dtype(default_float()).name,
        needs_mask=config.early_stopping is not None or total != num_epochs * spe,
    )


def _tree_where(cond: Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), new, old)


@functools.lru_cache(maxsize=32)
def _programs(spec: _Spec) -> dict[str, Callable]:
    """Per-member init / epoch / eval functions (pure, unjitted, unvmapped)."""
    cfg = spec.config
    arch, opt = cfg.arch, cfg.transform()
    loss_of = _loss_fn(cfg.loss)
    es = cfg.early_stopping
    spe, bsz = spec.steps_per_epoch, cfg.batch_size
    dtype = jnp.dtype(spec.dtype)

    def net(params: Any, x: Array) -> Array:
        return _mlp.forward(arch, params, x, cfg.width_scale, _mlp.MATMUL_PRECISION, arch.depth)

    def loss(params: Any, x: Array, y: Array) -> Array:
        return loss_of(net(params, x), y, cfg.num_classes)

    def init_state(init_key: Array) -> dict:
        params = _mlp.init(init_key, arch, cfg.width, spec.d, cfg.num_classes, width_scale=cfg.width_scale, dtype=dtype)
        state = {"params": params, "opt": opt.init(params)}
        if es is not None:
            state["best"] = params
            state["best_val"] = jnp.asarray(jnp.inf, dtype)
            state["bad"] = jnp.asarray(0, jnp.int32)
            state["stopped"] = jnp.asarray(False)
        return state

    def epoch(state: dict, epoch_idx: Array, member: dict, shared: dict) -> tuple[dict, Array, Array]:
        if spec.corrupt is not None:
            x_all = spec.corrupt(shared["x"], member["k"], epoch_idx)
            if tuple(x_all.shape) != (spec.n_train + spec.n_val, spec.d):
                raise ValueError(
                    f"corrupt(x_clean, k, epoch) must return shape {(spec.n_train + spec.n_val, spec.d)}, "
                    f"got {tuple(x_all.shape)}"
                )
            x_all = x_all.astype(dtype)

            def take(idx: Array) -> Array:
                return x_all[idx]

        else:

            def take(idx: Array) -> Array:  # rows of this member's training set, without copying the set
                return shared["x"][member["x_index"], idx]

        y_all = shared["y"]
        total = shared["total_steps"]
        stopped = state["stopped"] if es is not None else jnp.asarray(False)
        perm = jax.random.permutation(jax.random.fold_in(member["shuffle_key"], epoch_idx), spec.n_train)
        batches = perm[: spe * bsz].reshape(spe, bsz)

        def step(carry: tuple, inp: tuple) -> tuple:
            params, opt_state = carry
            j, rows = inp
            if es is not None:
                rows = shared["train_rows"][rows]
            value, grads = jax.value_and_grad(loss)(params, take(rows), y_all[rows])
            updates, new_opt = opt.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            active = jnp.logical_and(epoch_idx * spe + j < total, jnp.logical_not(stopped))
            if spec.needs_mask:
                new_params = _tree_where(active, new_params, params)
                new_opt = _tree_where(active, new_opt, opt_state)
            return (new_params, new_opt), (value, active)

        (params, opt_state), (losses, active) = jax.lax.scan(
            step, (state["params"], state["opt"]), (jnp.arange(spe), batches)
        )
        new_state = dict(state, params=params, opt=opt_state)
        if es is not None:
            val = loss(params, take(shared["val_rows"]), y_all[shared["val_rows"]])
            ran = jnp.logical_not(stopped)
            improved = jnp.logical_and(ran, val < state["best_val"] - es.min_delta)
            bad = jnp.where(improved, 0, jnp.where(ran, state["bad"] + 1, state["bad"]))
            new_state.update(
                best=_tree_where(improved, params, state["best"]),
                best_val=jnp.where(improved, val, state["best_val"]),
                bad=bad,
                stopped=jnp.logical_or(stopped, bad >= es.patience),
            )
            val_out = jnp.where(ran, val, jnp.nan)
        else:
            val_out = jnp.asarray(jnp.nan, dtype)
        return new_state, losses, active, val_out

    def final_params(state: dict) -> Any:
        if es is not None and es.restore_best:
            return state["best"]
        return state["params"]

    return {"init": init_state, "epoch": epoch, "final": final_params, "net": net}


#: How the members of a chunk share one compiled program: ``"vmap"`` batches them (member-batched
#: matrix products: what fills an accelerator and shards over devices); ``"map"`` loops over them inside
#: the program with ``jax.lax.map`` (plain matrix products, which XLA:CPU runs ~1.3x faster than batched
#: ones); ``"auto"``: ``"map"`` on a single CPU device, ``"vmap"`` otherwise.
MEMBER_BATCHING = ("auto", "vmap", "map")


def resolve_member_batching(mode: str, devices: Sequence[Any]) -> str:
    """The batching mode :func:`train_ensemble` uses on ``devices`` (see :data:`MEMBER_BATCHING`)."""
    check_choice("member_batching", mode, MEMBER_BATCHING)
    if mode != "auto":
        return mode
    return "map" if len(devices) == 1 and devices[0].platform == "cpu" else "vmap"


def _compiled(spec: _Spec, mode: str) -> dict[str, Callable]:
    return _compiled_programs(spec.program_key(), mode)


@functools.lru_cache(maxsize=32)
def _compiled_programs(spec: _Spec, mode: str) -> dict[str, Callable]:
    """Compiled init / epoch / eval of one member (``"single"``) or a chunk of members (``"vmap"``, ``"map"``)."""
    p = _programs(spec)

    def evaluate(state, x):
        return p["net"](p["final"](state), x)

    if mode == "single":
        return {
            "init": jax.jit(p["init"]),
            "epoch": jax.jit(p["epoch"], donate_argnums=(0,)),
            "eval": jax.jit(evaluate),
        }
    if mode == "map":
        return {
            "init": jax.jit(lambda keys: jax.lax.map(p["init"], keys)),
            "epoch": jax.jit(
                lambda state, e, member, shared: jax.lax.map(lambda a: p["epoch"](a[0], e, a[1], shared), (state, member)),
                donate_argnums=(0,),
            ),
            "eval": jax.jit(lambda state, x: jax.lax.map(lambda st: evaluate(st, x), state)),
        }
    return {
        "init": jax.jit(jax.vmap(p["init"])),
        "epoch": jax.jit(jax.vmap(p["epoch"], in_axes=(0, None, 0, None)), donate_argnums=(0,)),
        "eval": jax.jit(jax.vmap(evaluate, in_axes=(0, None))),
    }


# ----------------------------------------------------------------------------- validation of data


def _check_train_data(
    config: TrainConfig,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    corrupt: Callable | None,
    num_datasets: int | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, int]:
    if corrupt is not None:
        if not callable(corrupt):
            raise TypeError(f"corrupt must be a callable corrupt(x_clean, k, epoch) -> (N, d), got {corrupt!r}")
        x = np.asarray(check_array("x_train", x_train, ndim=2))
        if num_datasets is None:
            raise ValueError("num_datasets (K) is required with online corruption (corrupt=...)")
        k_count = check_positive_int("num_datasets", num_datasets)
        n, d = x.shape
    else:
        x = np.asarray(check_array("x_train", x_train))
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3:
            raise ValueError(
                f"x_train must have shape (K, N, d) (corrupted training sets) or (N, d), got {x.shape}"
            )
        k_count, n, d = x.shape
        if num_datasets is not None and num_datasets != k_count:
            raise ValueError(f"num_datasets={num_datasets} but x_train holds K={k_count} training sets")
    if n < 1 or d < 1:
        raise ValueError(f"x_train must have at least one row and one feature, got shape {x.shape}")
    y = check_labels("y_train", y_train, n=n, num_classes=config.num_classes, data_name="x_train")
    xt = np.asarray(check_array("x_test", x_test, ndim=2))
    if xt.shape[1] != d:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has d={d}; they must match")
    yt = None
    if y_test is not None:
        yt = check_labels("y_test", y_test, n=xt.shape[0], num_classes=config.num_classes, data_name="x_test")
    return x, y, xt, yt, k_count


def _shared_inputs(spec: _Spec, x_clean: np.ndarray | None, y: np.ndarray) -> dict:
    dtype = np.dtype(spec.dtype)
    shared: dict[str, Any] = {"y": jnp.asarray(y, jnp.int32), "total_steps": jnp.asarray(spec.total_steps, jnp.int32)}
    if spec.corrupt is not None:
        shared["x"] = jnp.asarray(x_clean, dtype)
    if spec.config.early_stopping is not None:
        tr, va = validation_split(
            spec.config.seed, spec.n_train + spec.n_val, spec.config.early_stopping.validation_fraction
        )
        shared["train_rows"] = jnp.asarray(tr, jnp.int32)
        shared["val_rows"] = jnp.asarray(va, jnp.int32)
    return shared


def _diverged(
    spec: _Spec, losses: np.ndarray, active: np.ndarray, epoch: int, members: Sequence[tuple[int, int]]
) -> None:
    """Raise TrainingDivergedError for the first bad active step. losses/active: (n_members, spe)."""
    thr = spec.config.divergence_threshold
    bad = ~np.isfinite(losses)
    if thr is not None:
        bad |= np.abs(np.nan_to_num(losses, nan=0.0, posinf=0.0, neginf=0.0)) > thr
    bad &= active
    if not bad.any():
        return
    steps = np.where(bad.any(axis=0))[0]
    j = int(steps[0])
    i = int(np.where(bad[:, j])[0][0])
    k, m = members[i]
    gstep = epoch * spec.steps_per_epoch + j
    reason = "non-finite" if not np.isfinite(losses[i, j]) else f"above divergence_threshold={thr:g}"
    raise TrainingDivergedError(
        f"training diverged at epoch {epoch}, step {gstep} (step {j} of the epoch; {spec.total_steps} steps "
        f"in all) for member k={k}, m={m}: loss = {float(losses[i, j])!r} ({reason}). "
        "Lower the learning rate."
    )


# ----------------------------------------------------------------------------- single member


@dataclasses.dataclass(frozen=True, eq=False)
class MemberResult:
    """One trained network.

    Attributes:
      params: final parameters (the best-validation ones under early stopping with
        ``restore_best``).
      test_logits: (T, C) outputs on x_test.
      step_losses: (S,) minibatch loss before each of the S optimisation steps.
      val_losses: (E,) validation loss after each epoch (NaN after stopping), or None.
    """

    params: Any
    test_logits: np.ndarray
    step_losses: np.ndarray
    val_losses: np.ndarray | None


def train_member(
    config: TrainConfig,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    k: int = 0,
    m: int = 0,
    corrupt: Callable | None = None,
) -> MemberResult:
    """Train member (k, m) on its own, with exactly the recipe of :func:`train_ensemble`.

    Args:
      config: the training configuration.
      x_train: (N, d) the k-th (already corrupted) training set, or the clean set when
        ``corrupt`` is given.
      y_train: (N,) integer labels in [0, C).
      x_test: (T, d) evaluation inputs.
      k, m: member indices (data set, initialisation) that select the keys.
      corrupt: optional online corruption ``corrupt(x_clean, k, epoch) -> (N, d)``.
    """
    k = check_positive_int("k", k, allow_zero=True)
    m = check_positive_int("m", m, allow_zero=True)
    x, y, xt, _, _ = _check_train_data(
        config, x_train, y_train, x_test, None, corrupt, None if corrupt is None else k + 1
    )
    n, d = (x.shape[0], x.shape[1]) if corrupt is not None else (x.shape[1], x.shape[2])
    spec = _make_spec(config, n, d, corrupt)
    prog = _compiled(spec, "single")
    dtype = np.dtype(spec.dtype)
    init_key, shuffle_key = member_keys(config.seed, k, m)
    member = {"k": jnp.asarray(k, jnp.int32), "shuffle_key": shuffle_key}
    shared = _shared_inputs(spec, x if corrupt is not None else None, y)
    if corrupt is None:
        member["x_index"] = jnp.asarray(0, jnp.int32)
        shared["x"] = jnp.asarray(x, dtype)  # (1, N, d)
    state = prog["init"](init_key)
    losses, vals = [], []
    for e in range(spec.num_epochs):
        state, l, act, v = prog["epoch"](state, jnp.asarray(e, jnp.int32), member, shared)
        l, act = np.asarray(l), np.asarray(act)
        _diverged(spec, l[None], act[None], e, [(k, m)])
        losses.append(np.where(act, l, np.nan))
        vals.append(float(v))
        if config.early_stopping is not None and bool(state["stopped"]):
            break
    logits = np.asarray(prog["eval"](state, jnp.asarray(xt, dtype)))
    step_losses = _pad_losses(losses, spec)
    val_losses = None
    if config.early_stopping is not None:
        val_losses = np.full(spec.num_epochs, np.nan)
        val_losses[: len(vals)] = vals
    final = _programs(spec.program_key())["final"](state)
    return MemberResult(params=final, test_logits=logits, step_losses=step_losses, val_losses=val_losses)


def _pad_losses(per_epoch: list[np.ndarray], spec: _Spec) -> np.ndarray:
    """Concatenate per-epoch step losses to length total_steps (NaN for steps never run)."""
    out = np.full(spec.total_steps, np.nan)
    flat = np.concatenate(per_epoch) if per_epoch else np.zeros(0)
    flat = flat[: spec.total_steps]
    out[: flat.shape[0]] = flat
    return out


# ----------------------------------------------------------------------------- memory


def estimate_member_bytes(
    config: TrainConfig, d_in: int, n_train: int, *, eval_block: int = 1024, online: bool = False
) -> int:
    """Rough device memory of one ensemble member while training, in bytes.

    Counts parameters, gradients, updates, the optimiser state (via
    ``jax.eval_shape``), the early-stopping copy, one (N, d) training set (an upper
    bound: members of one data set share it), the activations and cotangents of one
    minibatch, and the activations of one evaluation block. With ``online``
    corruption the member instead builds its own corrupted copy every epoch: about
    four (N, d) arrays (the draws, the noise values, the mask and the result).
    """
    shapes = _mlp.layer_shapes(config.arch, config.width, d_in, config.num_classes, width_scale=config.width_scale)
    itemsize = np.dtype(default_float()).itemsize
    n_params = sum(a * b + b for a, b in shapes)
    params_shape = [
        {"W": jax.ShapeDtypeStruct((a, b), default_float()), "b": jax.ShapeDtypeStruct((b,), default_float())}
        for a, b in shapes
    ]
    opt_state = jax.eval_shape(config.transform().init, params_shape)
    opt_bytes = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in jax.tree_util.tree_leaves(opt_state))
    copies = 4 + (1 if config.early_stopping is not None else 0)  # params (old+new), grads, updates, best
    units = sum(b for _, b in shapes)
    batch = config.batch_size * (d_in + 4 * units)
    evals = eval_block * (d_in + 2 * units)
    data = (4 if online else 1) * n_train * d_in
    return int(itemsize * (copies * n_params + batch + evals + data) + 2 * opt_bytes)


def default_memory_budget(devices: Sequence[Any]) -> int:
    """Half of the reported memory limit of the devices, else half the host's available RAM, else 4 GiB."""
    total = 0
    for dev in devices:
        try:
            stats = dev.memory_stats() or {}
        except Exception:  # noqa: BLE001 - backends without memory stats
            stats = {}
        limit = stats.get("bytes_limit")
        if not limit:
            total = 0
            break
        total += int(limit)
    if total:
        return total // 2
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024 // 2
    except OSError:
        pass
    return 4 << 30


def choose_chunk_size(total_members: int, member_bytes: int, budget_bytes: int, num_devices: int = 1) -> int:
    """Members per chunk: as many as fit in the budget, balanced over chunks, a multiple of num_devices.

    The chunk count is ceil(total / max_fit); chunks are then made equal in size
    (so one compiled program serves all) and rounded up to a multiple of the number
    of devices (the sharded member axis).
    """
    total_members = check_positive_int("total_members", total_members)
    num_devices = check_positive_int("num_devices", num_devices)
    fit = max(1, int(budget_bytes // max(1, member_bytes)))
    fit = max(num_devices, fit - fit % num_devices)
    n_chunks = math.ceil(total_members / fit)
    size = math.ceil(total_members / n_chunks)
    return int(math.ceil(size / num_devices) * num_devices)


# ----------------------------------------------------------------------------- disk


def atomic_savez(path: str | Path, **arrays: Any) -> None:
    """``np.savez`` to ``path`` atomically (temp file in the same directory, then ``os.replace``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _io.atomic_write_bytes(path, buf.getvalue())


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write JSON to ``path`` atomically."""
    _io.atomic_write_json(path, obj)


def _hash_array(h: Any, name: str, a: np.ndarray) -> None:
    a = np.ascontiguousarray(a)
    h.update(f"{name}:{a.dtype.str}:{a.shape}".encode())
    h.update(memoryview(a).cast("B"))


def fingerprint(
    config: TrainConfig,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    *,
    num_inits: int,
    num_datasets: int,
    corrupt: Callable | None,
) -> str:
    """SHA-256 of the configuration, data, ensemble shape, float dtype and corruption callable's name."""
    h = hashlib.sha256()
    desc = {
        "config": config.describe(),
        "num_inits": num_inits,
        "num_datasets": num_datasets,
        "dtype": np.dtype(default_float()).name,
        "corrupt": None
        if corrupt is None
        else f"{getattr(corrupt, '__module__', '')}.{getattr(corrupt, '__qualname__', type(corrupt).__name__)}",
    }
    h.update(json.dumps(desc, sort_keys=True).encode())
    _hash_array(h, "x_train", x_train)
    _hash_array(h, "y_train", y_train)
    _hash_array(h, "x_test", x_test)
    return h.hexdigest()


def _load_finished(out_dir: Path, fp: str) -> dict[tuple[int, int], dict]:
    done: dict[tuple[int, int], dict] = {}
    for path in sorted(out_dir.glob(f"chunk-{fp[:16]}-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            if str(z["fingerprint"]) != fp:
                continue
            members = z["members"]
            for i, (k, m) in enumerate(members):
                rec = {"test_logits": z["test_logits"][i], "step_losses": z["step_losses"][i]}
                if "val_losses" in z.files:
                    rec["val_losses"] = z["val_losses"][i]
                done[(int(k), int(m))] = rec
    return done


# ----------------------------------------------------------------------------- ensembles


def ensemble_accuracy(test_logits: Any, y_test: Any) -> dict:
    """Accuracies of a nested ensemble.

    Args:
      test_logits: (K, M, T, C) logits of member (k, m).
      y_test: (T,) integer labels.

    Returns:
      dict with ``member_mean``/``member_std`` (single networks, over K·M),
      ``init_averaged`` (K,) accuracy of argmax of the mean logits over the M inits
      of data set k, with ``init_averaged_mean``/``init_averaged_std`` over K
      (population std, ddof=0), and ``full_ensemble`` (argmax of the mean over all
      K·M members).
    """
    z = np.asarray(test_logits)
    if z.ndim != 4:
        raise ValueError(f"test_logits must have shape (K, M, T, C), got {z.shape}")
    y = check_labels("y_test", y_test, n=z.shape[2], num_classes=z.shape[3], data_name="test_logits (axis 2)")
    member = (z.argmax(-1) == y).mean(-1)
    init_avg = (z.mean(1).argmax(-1) == y).mean(-1)
    full = float((z.mean((0, 1)).argmax(-1) == y).mean())
    return {
        "member_mean": float(member.mean()),
        "member_std": float(member.std()),
        "init_averaged": init_avg.tolist(),
        "init_averaged_mean": float(init_avg.mean()),
        "init_averaged_std": float(init_avg.std()),
        "full_ensemble": full,
    }


@dataclasses.dataclass(frozen=True, eq=False)
class EnsembleResult:
    """Outputs of :func:`train_ensemble`.

    Attributes:
      test_logits: (K, M, T, C) test logits of every member.
      step_losses: (K, M, S) minibatch loss before each step (NaN after early stopping).
      val_losses: (K, M, E) validation loss per epoch, or None without early stopping.
      accuracy: :func:`ensemble_accuracy` of the logits, or None without y_test.
      fingerprint: SHA-256 identifying configuration and data (resume key).
      num_trained, num_loaded: members trained in this call / loaded from disk.
      chunk_size: members per compiled chunk.
      member_batching: ``"vmap"`` or ``"map"``, how the chunk's members ran.
      train_seconds: wall time spent training (and evaluating) in this call.
      out_dir: where results were written, or None.
    """

    test_logits: np.ndarray
    step_losses: np.ndarray
    val_losses: np.ndarray | None
    accuracy: dict | None
    fingerprint: str
    num_trained: int
    num_loaded: int
    chunk_size: int
    train_seconds: float
    out_dir: Path | None
    member_batching: str = "vmap"

    def epoch_losses(self, steps_per_epoch: int) -> np.ndarray:
        """(K, M, E) mean step loss per epoch, for ``steps_per_epoch`` = N_train // batch."""
        s = self.step_losses
        e = math.ceil(s.shape[-1] / steps_per_epoch)
        pad = np.full(s.shape[:-1] + (e * steps_per_epoch - s.shape[-1],), np.nan)
        return np.nanmean(np.concatenate([s, pad], -1).reshape(s.shape[:-1] + (e, steps_per_epoch)), -1)


def _progress(total: int, disable: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", disable=disable, leave=False, file=sys.stderr)


def train_ensemble(
    config: TrainConfig,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any = None,
    *,
    num_inits: int = 1,
    corrupt: Callable | None = None,
    num_datasets: int | None = None,
    out_dir: str | Path | None = None,
    memory_budget_bytes: int | None = None,
    chunk_size: int | None = None,
    devices: Sequence[Any] | None = None,
    eval_block: int = 1024,
    quiet: bool = False,
    callback: Callable[[int, list[tuple[int, int]]], None] | None = None,
    member_batching: str = "auto",
) -> EnsembleResult:
    """Train a nested ensemble of K training sets × M initialisations.

    Args:
      config: training configuration (shared by all members).
      x_train: (K, N, d) fixed corrupted training sets (or (N, d) for K = 1); with
        ``corrupt``, the clean (N, d) set that is corrupted anew every epoch.
      y_train: (N,) integer labels (the same for all K sets: labels stay correct).
      x_test: (T, d) evaluation inputs; y_test: optional (T,) labels for accuracies.
      num_inits: M initialisations per training set.
      corrupt: online corruption ``corrupt(x_clean, k, epoch) -> (N, d)``, pure jnp.
      num_datasets: K, required with ``corrupt``.
      out_dir: directory for per-chunk results (``chunk-<fp>-*.npz``), the final
        ``ensemble.npz`` (test_logits, step_losses, val_losses) and ``summary.json``;
        all written atomically. A rerun with the same configuration and data loads
        the finished members and trains only the rest.
      memory_budget_bytes: device memory for one chunk (default:
        :func:`default_memory_budget`); chunk_size overrides it.
      devices: devices to shard the member axis over (default ``jax.devices()``).
      eval_block: test rows evaluated at once.
      quiet: no progress bar (it is also off when stderr is not a terminal).
      callback: called as ``callback(chunk_index, members)`` after each chunk is saved.
      member_batching: how one chunk's members run in its compiled program: ``"vmap"``
        (batched; for accelerators and several devices), ``"map"`` (``jax.lax.map``, one
        member after another; faster on a CPU) or ``"auto"`` (``"map"`` on a single CPU
        device). Both give the same members as :func:`train_member` (to float round-off).

    Returns:
      :class:`EnsembleResult`.
    """
    num_inits = check_positive_int("num_inits", num_inits)
    eval_block = check_positive_int("eval_block", eval_block)
    x, y, xt, yt, k_count = _check_train_data(config, x_train, y_train, x_test, y_test, corrupt, num_datasets)
    n, d = (x.shape[0], x.shape[1]) if corrupt is not None else (x.shape[1], x.shape[2])
    spec = _make_spec(config, n, d, corrupt)
    dtype = np.dtype(spec.dtype)
    fp = fingerprint(config, x, y, xt, num_inits=num_inits, num_datasets=k_count, corrupt=corrupt)
    members = [(kk, mm) for kk in range(k_count) for mm in range(num_inits)]
    t_count = xt.shape[0]

    out = None
    done: dict[tuple[int, int], dict] = {}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        done = _load_finished(out, fp)
    num_loaded = sum(1 for mem in members if mem in done)
    todo = [mem for mem in members if mem not in done]

    devs = list(devices) if devices is not None else jax.devices()
    n_dev = len(devs)
    batching = resolve_member_batching(member_batching, devs)
    if batching == "map" and n_dev > 1:
        raise ValueError(f"member_batching='map' runs on one device; got {n_dev} devices (use 'vmap' to shard)")
    if chunk_size is not None:
        size = check_positive_int("chunk_size", chunk_size)
        size = int(math.ceil(size / n_dev) * n_dev)
    elif todo:
        budget = memory_budget_bytes if memory_budget_bytes is not None else default_memory_budget(devs)
        per = estimate_member_bytes(config, d, n, eval_block=min(eval_block, t_count), online=corrupt is not None)
        size = choose_chunk_size(len(todo), per, budget, n_dev)
    else:
        size = 0

    t0 = time.perf_counter()
    if todo:
        mesh = Mesh(np.array(devs), ("member",))
        on_members = NamedSharding(mesh, PartitionSpec("member"))
        replicated = NamedSharding(mesh, PartitionSpec())
        prog = _compiled(spec, batching)
        shared = jax.device_put(_shared_inputs(spec, x if corrupt is not None else None, y), replicated)
        xt_dev = jax.device_put(jnp.asarray(xt, dtype), replicated)
        chunks = [todo[i : i + size] for i in range(0, len(todo), size)]
        num_sets = min(k_count, size)
        bar = _progress(len(chunks) * spec.num_epochs, quiet or not sys.stderr.isatty())
        try:
            for ci, chunk in enumerate(chunks):
                bar.set_description(f"chunk {ci + 1}/{len(chunks)} ({len(chunk)} members)")
                padded = chunk + [chunk[-1]] * (size - len(chunk))
                ks = np.array([kk for kk, _ in padded], np.int32)
                ms = np.array([mm for _, mm in padded], np.int32)
                init_keys, shuffle_keys = jax.vmap(member_keys, in_axes=(None, 0, 0))(config.seed, ks, ms)
                member = {"k": jnp.asarray(ks), "shuffle_key": shuffle_keys}
                chunk_shared = shared
                if corrupt is None:
                    # the distinct training sets of this chunk, padded to a fixed count (one
                    # compiled program for all chunks); members index into them
                    sets, member["x_index"] = np.unique(ks, return_inverse=True)
                    sets = np.concatenate([sets, np.full(num_sets - len(sets), sets[-1])])
                    chunk_shared = dict(shared, x=jax.device_put(x[sets].astype(dtype, copy=False), replicated))
                    member["x_index"] = member["x_index"].astype(np.int32).reshape(-1)
                member = jax.device_put(member, on_members)
                state = prog["init"](jax.device_put(init_keys, on_members))
                losses, vals = [], []
                for e in range(spec.num_epochs):
                    state, l, act, v = prog["epoch"](state, jnp.asarray(e, jnp.int32), member, chunk_shared)
                    l, act = np.asarray(l)[: len(chunk)], np.asarray(act)[: len(chunk)]
                    _diverged(spec, l, act, e, chunk)
                    losses.append(np.where(act, l, np.nan))
                    vals.append(np.asarray(v)[: len(chunk)])
                    bar.update(1)
                    if config.early_stopping is not None and bool(np.all(np.asarray(state["stopped"]))):
                        bar.update(spec.num_epochs - e - 1)
                        break
                logits = np.concatenate(
                    [np.asarray(prog["eval"](state, xt_dev[i : i + eval_block])) for i in range(0, t_count, eval_block)],
                    axis=1,
                )[: len(chunk)]
                bad = ~np.isfinite(logits).all(axis=(1, 2))
                if bad.any():
                    kk, mm = chunk[int(np.where(bad)[0][0])]
                    raise TrainingDivergedError(
                        f"training diverged after the last step ({spec.total_steps}): non-finite test logits "
                        f"for member k={kk}, m={mm}. Lower the learning rate."
                    )
                step_losses = np.full((len(chunk), spec.total_steps), np.nan)
                flat = np.concatenate(losses, axis=1)[:, : spec.total_steps]
                step_losses[:, : flat.shape[1]] = flat
                val_losses = None
                if config.early_stopping is not None:
                    val_losses = np.full((len(chunk), spec.num_epochs), np.nan)
                    val_losses[:, : len(vals)] = np.stack(vals, axis=1)
                for i, mem in enumerate(chunk):
                    rec = {"test_logits": logits[i], "step_losses": step_losses[i]}
                    if val_losses is not None:
                        rec["val_losses"] = val_losses[i]
                    done[mem] = rec
                if out is not None:
                    arrays = {
                        "fingerprint": np.array(fp),
                        "members": np.array(chunk, np.int64).reshape(-1, 2),
                        "test_logits": logits,
                        "step_losses": step_losses,
                    }
                    if val_losses is not None:
                        arrays["val_losses"] = val_losses
                    first = members.index(chunk[0])
                    atomic_savez(out / f"chunk-{fp[:16]}-{first:06d}-{len(chunk)}.npz", **arrays)
                if callback is not None:
                    callback(ci, list(chunk))
        finally:
            bar.close()
    seconds = time.perf_counter() - t0

    logits_all = np.stack([done[mem]["test_logits"] for mem in members]).reshape(k_count, num_inits, t_count, -1)
    losses_all = np.stack([done[mem]["step_losses"] for mem in members]).reshape(k_count, num_inits, -1)
    vals_all = None
    if config.early_stopping is not None:
        vals_all = np.stack([done[mem]["val_losses"] for mem in members]).reshape(k_count, num_inits, -1)
    acc = ensemble_accuracy(logits_all, yt) if yt is not None else None
    if out is not None:
        arrays = {"test_logits": logits_all, "step_losses": losses_all}
        if vals_all is not None:
            arrays["val_losses"] = vals_all
        atomic_savez(out / "ensemble.npz", **arrays)
        atomic_write_json(
            out / "summary.json",
            {
                "fingerprint": fp,
                "config": config.describe(),
                "num_datasets": k_count,
                "num_inits": num_inits,
                "accuracy": acc,
                "num_trained": len(todo),
                "num_loaded": num_loaded,
                "chunk_size": size,
                "train_seconds": seconds,
                "devices": [str(dv) for dv in devs],
            },
        )
    return EnsembleResult(
        test_logits=logits_all,
        step_losses=losses_all,
        val_losses=vals_all,
        accuracy=acc,
        fingerprint=fp,
        num_trained=len(todo),
        num_loaded=num_loaded,
        chunk_size=size,
        train_seconds=seconds,
        out_dir=out,
        member_batching=batching,
    )
