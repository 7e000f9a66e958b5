"""Training nested ensembles and single members: the driver.

A nested ensemble is K training sets (noisy realisations of one clean set) × M
initialisations. :func:`train_ensemble` trains all K·M members with one compiled
program (``jax.vmap`` over members, sharded over ``jax.local_devices()`` along the member
axis with ``NamedSharding``, or ``jax.lax.map`` on one CPU device), in chunks sized to
a memory budget (:mod:`nwcorrupt.train.memory`), keeps every member's test logits,
loss curve and training-set fit, and resumes from the chunks already on disk
(:mod:`nwcorrupt.train.checkpoints`). :func:`train_member` trains one member with the
identical recipe (:mod:`nwcorrupt.train.programs`), without a member axis.

Training-set fit. After training every member is evaluated on its whole training set
with its final parameters (the restored best parameters under early stopping with
``restore_best``): ``train_loss`` is the configuration's loss (``"mse"``: mean over
N·C of (f − onehot(y))²; ``"cross_entropy"``: mean over N) over all N_train training
rows, not only the minibatched ones (the remainder a batch size leaves out is
included; under early stopping the held-out validation rows are not), and
``train_accuracy`` the fraction of those rows whose argmax of the logits equals the
label. With online corruption (``corrupt``) the training inputs are redrawn every
epoch; the fit is then measured on the inputs of the last epoch the member trained
(the epoch of its last optimisation step), which under early stopping with
``restore_best`` may be later than the epoch of the reported parameters. A network
that has not fitted its training set shows here (training accuracy well below 1 on
a fixed training set) instead of passing for a scientific result.

A non-finite loss, or one above ``TrainConfig.divergence_threshold``, stops the run
with :class:`~nwcorrupt.train.TrainingDivergedError` naming the epoch, step, member
and loss.
"""

from __future__ import annotations

import dataclasses
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
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from nwcorrupt import _io
from nwcorrupt import distributed as _distributed
from nwcorrupt._checks import check_array, check_labels, check_positive_int, check_same_size
from nwcorrupt.train.checkpoints import atomic_savez, fingerprint, load_finished, save_chunk
from nwcorrupt.train.config import TrainConfig, TrainingDivergedError, member_keys, validation_split
from nwcorrupt.train.memory import choose_chunk_size, default_memory_budget, estimate_member_bytes
from nwcorrupt.train.programs import (
    ProgramSpec,
    compiled_programs,
    make_spec,
    member_programs,
    resolve_member_batching,
    resolve_stepping,
    shared_inputs,
)

__all__ = ["EnsembleResult", "MemberResult", "ensemble_accuracy", "train_ensemble", "train_member"]

#: Training rows evaluated at once for the training-set fit of :func:`train_member`.
_FIT_BLOCK = 1024


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
    check_same_size("x_test", xt.shape[1], "x_train", d, "features")
    yt = None
    if y_test is not None:
        yt = check_labels("y_test", y_test, n=xt.shape[0], num_classes=config.num_classes, data_name="x_test")
    return x, y, xt, yt, k_count


def _diverged(
    spec: ProgramSpec, losses: np.ndarray, active: np.ndarray, epoch: int, members: Sequence[tuple[int, int]]
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


def _pad_losses(per_epoch: list[np.ndarray], spec: ProgramSpec) -> np.ndarray:
    """Concatenate per-epoch step losses to length total_steps (NaN for steps never run)."""
    out = np.full(spec.total_steps, np.nan)
    flat = np.concatenate(per_epoch) if per_epoch else np.zeros(0)
    flat = flat[: spec.total_steps]
    out[: flat.shape[0]] = flat
    return out


def _fit_values(spec: ProgramSpec, loss_sums: Any, correct: Any) -> tuple[np.ndarray, np.ndarray]:
    """(train_loss, train_accuracy) from the fit program's per-block loss sums (..., B) and hit counts (...)."""
    loss = np.asarray(loss_sums, dtype=np.float64).sum(axis=-1) / spec.n_train
    acc = np.asarray(correct, dtype=np.float64) / spec.n_train
    return loss, acc


def _clean_noisy_accuracy(
    correct: Any, clean_correct: Any, n_clean: int, n_noisy: int
) -> tuple[np.ndarray, np.ndarray]:
    """(accuracy on the clean rows, on the noisy rows) of the training-set fit (NaN for an empty group)."""
    correct = np.asarray(correct, np.float64)
    clean = np.asarray(clean_correct, np.float64)
    acc_clean = clean / n_clean if n_clean else np.full(clean.shape, np.nan)
    acc_noisy = (correct - clean) / n_noisy if n_noisy else np.full(clean.shape, np.nan)
    return acc_clean, acc_noisy


def _check_targets_mask(config: TrainConfig, n: int, targets: Any, clean_mask: Any) -> tuple[Any, Any]:
    if targets is not None:
        targets = np.asarray(check_array("targets", targets, ndim=2), np.float64)
        if targets.shape != (n, config.num_classes):
            raise ValueError(
                f"targets must have shape ({n}, {config.num_classes}), one target row per training row, "
                f"got {targets.shape}"
            )
    if clean_mask is not None:
        clean_mask = np.asarray(clean_mask)
        if clean_mask.shape != (n,) or clean_mask.dtype != bool:
            raise ValueError(f"clean_mask must be a ({n},) bool array, got {clean_mask.dtype} {clean_mask.shape}")
    return targets, clean_mask


def _group_sizes(spec: ProgramSpec, clean_mask: np.ndarray | None) -> tuple[int, int]:
    """(clean, noisy) rows among the N_train rows the fit is measured on."""
    if clean_mask is None:
        return 0, 0
    rows = np.arange(spec.n_train + spec.n_val)
    if spec.config.early_stopping is not None:
        rows, _ = validation_split(spec.config.seed, rows.size, spec.config.early_stopping.validation_fraction)
    n_clean = int(clean_mask[rows].sum())
    return n_clean, int(rows.size - n_clean)


def _pad_counts(per_epoch: list[np.ndarray], total_steps: int) -> np.ndarray:
    """Concatenate per-epoch step counts (..., S_e, 4) along steps to (..., total_steps, 4), zeros after."""
    flat = np.concatenate(per_epoch, axis=-2)[..., :total_steps, :]
    out = np.zeros(flat.shape[:-2] + (total_steps, 4), np.int32)
    out[..., : flat.shape[-2], :] = flat
    return out


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
      train_loss: the configuration's loss of ``params`` over all N_train training rows
        (module docstring; online corruption: the inputs of the last epoch trained).
      train_accuracy: fraction of those rows whose argmax of the logits is the label.
      step_counts: with a clean mask, (S, 4) per step: clean rows of the minibatch classified
        as labelled, clean rows, and the same for noisy rows (before the step's update); else None.
      train_accuracy_clean, train_accuracy_noisy: with a clean mask, the training-set fit's
        accuracy on the clean and on the noisy rows (against their observed labels); else None.
    """

    params: Any
    test_logits: np.ndarray
    step_losses: np.ndarray
    val_losses: np.ndarray | None
    train_loss: float
    train_accuracy: float
    step_counts: np.ndarray | None = None
    train_accuracy_clean: float | None = None
    train_accuracy_noisy: float | None = None


def train_member(
    config: TrainConfig,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    k: int = 0,
    m: int = 0,
    corrupt: Callable | None = None,
    targets: Any = None,
    clean_mask: Any = None,
    stepping: str = "auto",
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
      targets: optional (N, C) target rows the loss uses instead of one-hot labels (e.g. the
        expected targets of a label-noise law: infinite-batch training); accuracies stay
        against ``y_train``.
      clean_mask: optional (N,) bool, True on clean rows: per-step and final accuracies on
        the clean and the noisy rows are recorded.
      stepping: ``"auto"``, ``"scan"`` or ``"host"``: how the epochs' steps run
        (:func:`~nwcorrupt.train.resolve_stepping`; the same member either way).

    Returns:
      :class:`MemberResult`, with the training-set fit (``train_loss``, ``train_accuracy``)
      of the final parameters; with ``corrupt`` it is measured on the inputs of the last
      epoch trained.
    """
    k = check_positive_int("k", k, allow_zero=True)
    m = check_positive_int("m", m, allow_zero=True)
    x, y, xt, _, _ = _check_train_data(
        config, x_train, y_train, x_test, None, corrupt, None if corrupt is None else k + 1
    )
    n, d = (x.shape[0], x.shape[1]) if corrupt is not None else (x.shape[1], x.shape[2])
    targets, clean_mask = _check_targets_mask(config, n, targets, clean_mask)
    spec = make_spec(config, n, d, corrupt, soft_targets=targets is not None, track_clean=clean_mask is not None)
    prog = compiled_programs(spec, "single", _FIT_BLOCK, resolve_stepping(stepping, config, jax.local_devices()))
    dtype = np.dtype(spec.dtype)
    init_key, shuffle_key = member_keys(config.seed, k, m)
    member = {"k": jnp.asarray(k, jnp.int32), "shuffle_key": shuffle_key}
    shared = shared_inputs(spec, x if corrupt is not None else None, y, targets=targets, clean_mask=clean_mask)
    if corrupt is None:
        member["x_index"] = jnp.asarray(0, jnp.int32)
        shared["x"] = jnp.asarray(x, dtype)  # (1, N, d)
    state = prog["init"](init_key)
    losses, vals, counts = [], [], []
    last_epoch = 0
    for e in range(spec.num_epochs):
        state, l, act, v, cnt = prog["epoch"](state, jnp.asarray(e, jnp.int32), member, shared)
        l, act = np.asarray(l), np.asarray(act)
        counts.append(np.where(act[:, None], np.asarray(cnt), 0))
        _diverged(spec, l[None], act[None], e, [(k, m)])
        losses.append(np.where(act, l, np.nan))
        vals.append(float(v))
        if act.any():
            last_epoch = e
        if config.early_stopping is not None and bool(state["stopped"]):
            break
    logits = np.asarray(prog["eval"](state, jnp.asarray(xt, dtype)))
    fit_out = prog["fit"](state, member, shared, jnp.asarray(last_epoch, jnp.int32))
    train_loss, train_acc = _fit_values(spec, *fit_out[:2])
    extra: dict[str, Any] = {}
    if clean_mask is not None:
        acc_clean, acc_noisy = _clean_noisy_accuracy(fit_out[1], fit_out[2], *_group_sizes(spec, clean_mask))
        extra = {
            "step_counts": _pad_counts(counts, spec.total_steps),
            "train_accuracy_clean": float(acc_clean),
            "train_accuracy_noisy": float(acc_noisy),
        }
    step_losses = _pad_losses(losses, spec)
    val_losses = None
    if config.early_stopping is not None:
        val_losses = np.full(spec.num_epochs, np.nan)
        val_losses[: len(vals)] = vals
    final = member_programs(spec.program_key())["final"](state)
    return MemberResult(
        params=final,
        test_logits=logits,
        step_losses=step_losses,
        val_losses=val_losses,
        train_loss=float(train_loss),
        train_accuracy=float(train_acc),
        **extra,
    )


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
      train_loss: (K, M) the configuration's loss of each member's final parameters over
        all N_train rows of its training set (module docstring; online corruption: the
        inputs of the member's last epoch trained).
      train_accuracy: (K, M) fraction of those rows whose argmax of the logits is the label.
      step_counts: with a clean mask, (K, M, S, 4) per step (see :class:`MemberResult`); else None.
      train_accuracy_clean, train_accuracy_noisy: with a clean mask, (K, M) fit accuracy on the
        clean and on the noisy rows; else None.
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
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    member_batching: str = "vmap"
    step_counts: np.ndarray | None = None
    train_accuracy_clean: np.ndarray | None = None
    train_accuracy_noisy: np.ndarray | None = None

    def step_accuracy(self, steps_per_epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """(clean, noisy) training accuracy per epoch (K, M, E) from :attr:`step_counts`: the
        fraction of each group's rows, over the epoch's minibatches, classified as labelled
        before the update (NaN for an empty group)."""
        if self.step_counts is None:
            raise ValueError("this run had no clean_mask; train with clean_mask= to record clean/noisy accuracy")
        c = self.step_counts.astype(np.float64)
        e = math.ceil(c.shape[-2] / steps_per_epoch)
        pad = np.zeros(c.shape[:-2] + (e * steps_per_epoch - c.shape[-2], 4))
        per = np.concatenate([c, pad], -2).reshape(c.shape[:-2] + (e, steps_per_epoch, 4)).sum(-2)
        with np.errstate(invalid="ignore", divide="ignore"):
            return per[..., 0] / per[..., 1], per[..., 2] / per[..., 3]

    def epoch_losses(self, steps_per_epoch: int) -> np.ndarray:
        """(K, M, E) mean step loss per epoch, for the run's ``steps_per_epoch`` (N_train // B with
        ``drop_last``, ceil(N_train / B) without; :class:`~nwcorrupt.train.programs.ProgramSpec`)."""
        s = self.step_losses
        e = math.ceil(s.shape[-1] / steps_per_epoch)
        pad = np.full(s.shape[:-1] + (e * steps_per_epoch - s.shape[-1],), np.nan)
        return np.nanmean(np.concatenate([s, pad], -1).reshape(s.shape[:-1] + (e, steps_per_epoch)), -1)


def _progress(total: int, disable: bool) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", disable=disable, leave=False, file=sys.stderr)


def _gather_members(done: dict[tuple[int, int], dict], todo: list[tuple[int, int]]) -> None:
    """Give every process the arrays of all ``todo`` members, each trained by one process (in place).

    Process p trained ``todo[local_range(len(todo), index=p)]``; the arrays are gathered by name
    (:func:`~nwcorrupt.distributed.gather_shares`, one collective per name).
    """
    start, stop = _distributed.local_range(len(todo))
    mine = todo[start:stop]
    # names, shapes and dtypes from a process that trained something (a share is empty when P > members)
    desc = json.dumps({k: [list(v.shape), v.dtype.str] for k, v in done[mine[0]].items()}) if mine else ""
    raw = np.frombuffer(desc.encode().ljust(8192)[:8192], np.uint8)
    layout = json.loads(next(d for d in (bytes(r).decode().strip() for r in _distributed.allgather(raw)) if d))
    for name, (shape, dt) in sorted(layout.items()):
        local = np.zeros((len(mine),) + tuple(shape), dtype=np.dtype(dt))
        for i, mem in enumerate(mine):
            local[i] = done[mem][name]
        for mem, value in zip(todo, _distributed.gather_shares(local, len(todo))):
            done.setdefault(mem, {})[name] = value


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
    targets: Any = None,
    clean_mask: Any = None,
    stepping: str = "auto",
    distributed: bool = False,
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
        ``ensemble.npz`` (test_logits, step_losses, train_loss, train_accuracy,
        val_losses) and ``summary.json``; all written atomically. A rerun with the same
        configuration and data loads the finished members and trains only the rest.
      memory_budget_bytes: device memory for one chunk (default:
        :func:`~nwcorrupt.train.default_memory_budget`); chunk_size overrides it.
      devices: devices to shard the member axis over (default ``jax.local_devices()``: this
        process's devices, all devices in a single-process run).
      eval_block: test rows (and training rows, for the training-set fit) evaluated at once.
      quiet: no progress bar (it is also off when stderr is not a terminal).
      callback: called as ``callback(chunk_index, members)`` after each chunk is saved.
      member_batching: how one chunk's members run in its compiled program: ``"vmap"``
        (batched; for accelerators and several devices), ``"map"`` (``jax.lax.map``, one
        member after another; faster on a CPU) or ``"auto"`` (``"map"`` on a single CPU
        device). Both give the same members as :func:`train_member` (to float round-off).
      targets: optional (N, C) target rows for the loss (see :func:`train_member`).
      clean_mask: optional (N,) bool, True on clean rows: clean/noisy step counts and
        training-set accuracies are recorded (and saved with the chunks).
      stepping: ``"auto"``, ``"scan"`` or ``"host"``: how the epochs' steps run
        (:func:`~nwcorrupt.train.resolve_stepping`: ``"host"`` for convolutional networks on
        CPUs); the same members either way.

      distributed: every process of a multi-process run (:mod:`nwcorrupt.distributed`) calls
        this with the same arguments; the members still to train are split among the processes
        in contiguous shares, each trains its share on ``devices`` (default its own devices) and
        writes its chunk files, and the results are gathered, so every process returns the whole
        ensemble (process 0 writes ``ensemble.npz`` and ``summary.json``). ``out_dir`` must then be
        on a file system that every process sees (checked). The members equal those of one process.

    Returns:
      :class:`EnsembleResult`, with every member's training-set fit (module docstring).
    """
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True or False, got {distributed!r}")
    num_inits = check_positive_int("num_inits", num_inits)
    eval_block = check_positive_int("eval_block", eval_block)
    x, y, xt, yt, k_count = _check_train_data(config, x_train, y_train, x_test, y_test, corrupt, num_datasets)
    n, d = (x.shape[0], x.shape[1]) if corrupt is not None else (x.shape[1], x.shape[2])
    targets, clean_mask = _check_targets_mask(config, n, targets, clean_mask)
    track = clean_mask is not None
    spec = make_spec(config, n, d, corrupt, soft_targets=targets is not None, track_clean=track)
    group_sizes = _group_sizes(spec, clean_mask)
    dtype = np.dtype(spec.dtype)
    fp = fingerprint(
        config, x, y, xt, num_inits=num_inits, num_datasets=k_count, corrupt=corrupt, targets=targets,
        clean_mask=clean_mask,
    )
    members = [(kk, mm) for kk in range(k_count) for mm in range(num_inits)]
    t_count = xt.shape[0]

    out = None
    done: dict[tuple[int, int], dict] = {}
    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        done = load_finished(out, fp)
    num_loaded = sum(1 for mem in members if mem in done)
    todo = [mem for mem in members if mem not in done]
    todo_all = todo
    if distributed:
        _distributed.check_same("the finished members in out_dir", repr(sorted(done)))
        start, stop = _distributed.local_range(len(todo_all))
        todo = todo_all[start:stop]

    devs = list(devices) if devices is not None else jax.local_devices()
    n_dev = len(devs)
    batching = resolve_member_batching(member_batching, devs)
    step_mode = resolve_stepping(stepping, config, devs)
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
        prog = compiled_programs(spec, batching, eval_block, step_mode)
        shared = jax.device_put(
            shared_inputs(spec, x if corrupt is not None else None, y, targets=targets, clean_mask=clean_mask),
            replicated,
        )
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
                losses, vals, counts = [], [], []
                last_epoch = np.zeros(size, np.int32)  # per member: the last epoch with an active step
                for e in range(spec.num_epochs):
                    state, l, act, v, cnt = prog["epoch"](state, jnp.asarray(e, jnp.int32), member, chunk_shared)
                    act_all = np.asarray(act)
                    last_epoch[act_all.any(axis=1)] = e
                    l, act = np.asarray(l)[: len(chunk)], act_all[: len(chunk)]
                    _diverged(spec, l, act, e, chunk)
                    losses.append(np.where(act, l, np.nan))
                    if track:
                        counts.append(np.where(act[:, :, None], np.asarray(cnt)[: len(chunk)], 0))
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
                fit_out = prog["fit"](state, member, chunk_shared, jax.device_put(last_epoch, on_members))
                fit_loss, fit_acc = _fit_values(spec, *fit_out[:2])
                step_losses = np.full((len(chunk), spec.total_steps), np.nan)
                flat = np.concatenate(losses, axis=1)[:, : spec.total_steps]
                step_losses[:, : flat.shape[1]] = flat
                arrays = {
                    "test_logits": logits,
                    "step_losses": step_losses,
                    "train_loss": fit_loss[: len(chunk)],
                    "train_accuracy": fit_acc[: len(chunk)],
                }
                if track:
                    acc_clean, acc_noisy = _clean_noisy_accuracy(fit_out[1], fit_out[2], *group_sizes)
                    arrays["step_counts"] = _pad_counts(counts, spec.total_steps)
                    arrays["train_accuracy_clean"] = acc_clean[: len(chunk)]
                    arrays["train_accuracy_noisy"] = acc_noisy[: len(chunk)]
                if config.early_stopping is not None:
                    val_losses = np.full((len(chunk), spec.num_epochs), np.nan)
                    val_losses[:, : len(vals)] = np.stack(vals, axis=1)
                    arrays["val_losses"] = val_losses
                for i, mem in enumerate(chunk):
                    done[mem] = {name: a[i] for name, a in arrays.items()}
                if out is not None:
                    save_chunk(out, fp, members.index(chunk[0]), chunk, arrays)
                if callback is not None:
                    callback(ci, list(chunk))
        finally:
            bar.close()
    if distributed and todo_all:
        _gather_members(done, todo_all)
    seconds = time.perf_counter() - t0

    def gather(name: str) -> np.ndarray:
        stacked = np.stack([done[mem][name] for mem in members])
        return stacked.reshape((k_count, num_inits) + stacked.shape[1:])

    logits_all = gather("test_logits")
    losses_all = gather("step_losses")
    fit_loss_all = gather("train_loss").astype(np.float64)
    fit_acc_all = gather("train_accuracy").astype(np.float64)
    vals_all = gather("val_losses") if config.early_stopping is not None else None
    tracked = {name: gather(name) for name in ("step_counts", "train_accuracy_clean", "train_accuracy_noisy")} if track else {}
    acc = ensemble_accuracy(logits_all, yt) if yt is not None else None
    if out is not None and (not distributed or _distributed.is_primary()):
        arrays = {
            "test_logits": logits_all,
            "step_losses": losses_all,
            "train_loss": fit_loss_all,
            "train_accuracy": fit_acc_all,
        }
        if vals_all is not None:
            arrays["val_losses"] = vals_all
        arrays.update(tracked)
        atomic_savez(out / "ensemble.npz", **arrays)
        _io.atomic_write_json(
            out / "summary.json",
            {
                "fingerprint": fp,
                "config": config.describe(),
                "num_datasets": k_count,
                "num_inits": num_inits,
                "accuracy": acc,
                "train_loss_mean": float(fit_loss_all.mean()),
                "train_accuracy_mean": float(fit_acc_all.mean()),
                "train_accuracy_min": float(fit_acc_all.min()),
                "num_trained": len(todo_all),
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
        num_trained=len(todo_all),
        num_loaded=num_loaded,
        chunk_size=size,
        train_seconds=seconds,
        out_dir=out,
        train_loss=fit_loss_all,
        train_accuracy=fit_acc_all,
        member_batching=batching,
        **tracked,
    )
