"""The compiled training programs of one member, and how a chunk of members shares them.

Per member the recipe is deterministic (keys and losses: :mod:`nwcorrupt.train.config`):

* every epoch the training rows are shuffled with
  ``permutation(fold_in(shuffle_key, epoch))`` and cut into minibatches of B rows in
  that order: ``N_train // B`` of them with ``drop_last`` (the remainder is dropped),
  ``ceil(N_train / B)`` without it, the last one holding the N_train mod B rows left
  (its loss is the mean over those rows, as in a PyTorch ``DataLoader``); a step
  budget may end mid-epoch;
* online corruption: a pure ``corrupt(x_clean, k, epoch) -> (N, d)`` redraws the
  training inputs of data set k at every epoch (k and epoch are traced int32);
* optional early stopping on a held-out split (same rows for every member), which
  restores the parameters of the best validation epoch;
* after training, the training-set fit: the loss of the recipe and the accuracy of
  argmax of the logits over all N_train training rows (the held-out rows excluded),
  with the final parameters; under online corruption on the inputs of the last epoch
  the member trained;
* soft targets (``spec.soft_targets``): the loss reads (N, C) target rows
  ``shared["targets"]`` instead of one-hot labels (:func:`~nwcorrupt.train.config.target_loss_fn`;
  the expected-label, "infinite-batch" training of label noise); accuracies stay against
  the integer labels;
* clean/noisy tracking (``spec.track_clean``): with a (N,) bool ``shared["clean"]`` mask, every
  step also counts, over its minibatch *before* the update, the clean rows and the noisy rows
  and how many of each the network classifies as labelled, and the training-set fit counts
  the correctly fitted clean rows.

:func:`member_programs` builds these as pure, unjitted, unvmapped functions of one
member; :func:`compiled_programs` jits them for one member (``"single"``) or for a
chunk of members (``"vmap"`` or ``"map"``, see :data:`MEMBER_BATCHING`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from nwcorrupt._checks import check_choice, check_positive_int
from nwcorrupt.precision import default_float
from nwcorrupt.train.config import TrainConfig, forward_fn, init_params, loss_fn, target_loss_fn, validation_split

__all__ = [
    "HOST_STEPS",
    "MEMBER_BATCHING",
    "STEPPING",
    "ProgramSpec",
    "compiled_programs",
    "make_spec",
    "member_programs",
    "resolve_member_batching",
    "resolve_stepping",
    "shared_inputs",
]

Array = jax.Array

#: How the members of a chunk share one compiled program: ``"vmap"`` batches them (member-batched
#: matrix products: what fills an accelerator and shards over devices); ``"map"`` loops over them inside
#: the program with ``jax.lax.map`` (plain matrix products, which XLA:CPU runs ~1.3x faster than batched
#: ones); ``"auto"``: ``"map"`` on a single CPU device, ``"vmap"`` otherwise.
MEMBER_BATCHING = ("auto", "vmap", "map")


@dataclasses.dataclass(frozen=True)
class ProgramSpec:
    """The static shape of one training run (hashable: it keys the compiled programs).

    Attributes:
      config: the training configuration.
      n_train: rows trained on (N, or N minus the held-out rows under early stopping).
      n_val: held-out validation rows (0 without early stopping).
      d: input features.
      steps_per_epoch: ``n_train // batch_size`` with ``drop_last``, else ``ceil(n_train / batch_size)``.
      last_batch: rows of the last minibatch of an epoch (``batch_size`` unless it is partial).
      total_steps: optimisation steps in all (the step budget).
      num_epochs: epochs needed for ``total_steps`` (the last one may be partial).
      corrupt: the online corruption callable, or None for fixed training sets.
      dtype: name of the float dtype of parameters and inputs.
      needs_mask: whether some steps must be masked out (early stopping, or a budget
        that ends mid-epoch).
      soft_targets: the loss reads (N, C) target rows (module docstring).
      track_clean: count clean and noisy rows per step (module docstring).
    """

    config: TrainConfig
    n_train: int
    n_val: int
    d: int
    steps_per_epoch: int
    last_batch: int
    total_steps: int
    num_epochs: int
    corrupt: Callable | None
    dtype: str
    needs_mask: bool
    soft_targets: bool = False
    track_clean: bool = False

    def program_key(self) -> ProgramSpec:
        """The fields the compiled programs depend on (the step budget and seed are runtime inputs)."""
        cfg = dataclasses.replace(self.config, epochs=1, steps=None, seed=0, tag="", divergence_threshold=None)
        return dataclasses.replace(self, config=cfg, total_steps=0, num_epochs=0)


def make_spec(
    config: TrainConfig, n: int, d: int, corrupt: Callable | None, *, soft_targets: bool = False,
    track_clean: bool = False,
) -> ProgramSpec:
    """The :class:`ProgramSpec` of training ``config`` on N = ``n`` rows of ``d`` features.

    Raises:
      ValueError: the batch is larger than the rows left to train on.
    """
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
    last = config.batch_size
    if not config.drop_last and n_train % config.batch_size:
        spe += 1
        last = n_train % config.batch_size
    total = config.steps if config.steps is not None else config.epochs * spe
    num_epochs = int(math.ceil(total / spe))
    return ProgramSpec(
        config=config,
        n_train=n_train,
        n_val=n_val,
        d=d,
        steps_per_epoch=spe,
        last_batch=last,
        total_steps=int(total),
        num_epochs=num_epochs,
        corrupt=corrupt,
        dtype=np.dtype(default_float()).name,
        needs_mask=config.early_stopping is not None or total != num_epochs * spe,
        soft_targets=bool(soft_targets),
        track_clean=bool(track_clean),
    )


def shared_inputs(
    spec: ProgramSpec, x_clean: np.ndarray | None, y: np.ndarray, *, targets: np.ndarray | None = None,
    clean_mask: np.ndarray | None = None,
) -> dict:
    """Inputs every member of a run shares: labels ``y`` (N,), the step budget, the clean inputs
    (N, d) under online corruption, the training/validation rows under early stopping, and the
    (N, C) ``targets`` and (N,) ``clean_mask`` when the spec uses them."""
    dtype = np.dtype(spec.dtype)
    shared: dict[str, Any] = {"y": jnp.asarray(y, jnp.int32), "total_steps": jnp.asarray(spec.total_steps, jnp.int32)}
    if spec.soft_targets:
        if targets is None:
            raise ValueError("this run trains on soft targets; pass targets=, the (N, C) target rows")
        shared["targets"] = jnp.asarray(targets, dtype)
    if spec.track_clean:
        if clean_mask is None:
            raise ValueError("this run tracks clean and noisy rows; pass clean_mask=, the (N,) bool mask")
        shared["clean"] = jnp.asarray(clean_mask, bool)
    if spec.corrupt is not None:
        shared["x"] = jnp.asarray(x_clean, dtype)
    if spec.config.early_stopping is not None:
        tr, va = validation_split(
            spec.config.seed, spec.n_train + spec.n_val, spec.config.early_stopping.validation_fraction
        )
        shared["train_rows"] = jnp.asarray(tr, jnp.int32)
        shared["val_rows"] = jnp.asarray(va, jnp.int32)
    return shared


def _tree_where(cond: Array, new: Any, old: Any) -> Any:
    return jax.tree_util.tree_map(lambda a, b: jnp.where(cond, a, b), new, old)


@functools.lru_cache(maxsize=32)
def member_programs(spec: ProgramSpec) -> dict[str, Callable]:
    """Per-member functions (pure, unjitted, unvmapped).

    Returns:
      dict with

      - ``init(init_key) -> state``;
      - ``epoch(state, epoch, member, shared) -> (state, step_losses (S_e,), active (S_e,), val_loss,
        counts (S_e, 4))``, counts = (clean rows classified as labelled, clean rows, the same two for
        noisy rows) of each step's minibatch before its update (zeros without ``track_clean``);
      - ``final(state) -> params`` (the best-validation ones under early stopping with ``restore_best``);
      - ``net(params, x) -> logits`` for (n, d) inputs;
      - ``fit(state, member, shared, last_epoch, block) -> (loss_sums (B,), correct, clean_correct)``: the training-set
        fit of the final parameters over the N_train training rows, evaluated in B blocks of ``block``
        rows (a static int); ``loss_sums`` are per-block sums of the per-row loss (MSE: the row's mean
        over C), so ``loss_sums.sum() / N_train`` is the loss of the recipe over the whole set, and
        ``correct`` counts rows whose argmax equals the label (``clean_correct`` those of them that are
        clean; 0 without ``track_clean``). Under online corruption the inputs are those of epoch
        ``last_epoch``.

      - the pieces ``epoch`` and ``fit`` are made of, which :func:`compiled_programs` drives from the
        host under ``stepping="host"``: ``epoch_plan``, ``epoch_steps`` (a ``jax.lax.scan`` over some
        steps, with an ``unroll`` argument), ``epoch_finish``, ``fit_rows`` and ``fit_blocks``.

      ``member`` holds ``k`` (data-set index), ``shuffle_key`` and, for fixed training sets,
      ``x_index`` (the member's set in ``shared["x"]``).
    """
    cfg = spec.config
    opt = cfg.transform()
    loss_of = loss_fn(cfg.loss)
    target_loss_of = target_loss_fn(cfg.loss)
    es = cfg.early_stopping
    spe, bsz = spec.steps_per_epoch, cfg.batch_size
    dtype = jnp.dtype(spec.dtype)

    net = forward_fn(cfg)

    def batch_loss(logits: Array, y: Array) -> Array:
        # y: (n,) labels, or (n, C) target rows with soft targets
        return target_loss_of(logits, y) if spec.soft_targets else loss_of(logits, y, cfg.num_classes)

    def loss(params: Any, x: Array, y: Array) -> tuple[Array, Array]:
        logits = net(params, x)
        return batch_loss(logits, y), logits

    def row_loss(logits: Array, y: Array) -> Array:
        # the recipe's loss of each row on its own: MSE's mean over N·C is the mean over rows of
        # the per-row mean over C; cross-entropy is a mean over rows already
        return jax.vmap(lambda z, t: batch_loss(z[None], t[None]))(logits, y)

    def masked_loss(params: Any, x: Array, y: Array, keep: Array) -> tuple[Array, Array]:
        # the loss over the rows with keep = True only (a padded, partial last batch)
        logits = net(params, x)
        per_row = row_loss(logits, y)
        return jnp.sum(jnp.where(keep, per_row, 0)) / jnp.sum(keep), logits

    def loss_targets(shared: dict, rows: Array) -> Array:
        return shared["targets"][rows] if spec.soft_targets else shared["y"][rows]

    def step_counts(logits: Array, labels: Array, clean: Array, keep: Array) -> Array:
        hit = jnp.argmax(logits, axis=-1) == labels
        noisy = jnp.logical_and(keep, jnp.logical_not(clean))
        clean = jnp.logical_and(keep, clean)
        parts = (jnp.logical_and(hit, clean), clean, jnp.logical_and(hit, noisy), noisy)
        return jnp.stack([jnp.sum(v).astype(jnp.int32) for v in parts])

    def rows_of(member: dict, shared: dict, epoch_idx: Array) -> Callable[[Array], Array]:
        """take(idx): the member's training inputs at rows idx, in epoch ``epoch_idx``."""
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

        return take

    def init_state(init_key: Array) -> dict:
        params = init_params(cfg, init_key, spec.d, dtype)
        state = {"params": params, "opt": opt.init(params)}
        if es is not None:
            state["best"] = params
            state["best_val"] = jnp.asarray(jnp.inf, dtype)
            state["bad"] = jnp.asarray(0, jnp.int32)
            state["stopped"] = jnp.asarray(False)
        return state

    def stopped_of(state: dict) -> Array:
        return state["stopped"] if es is not None else jnp.asarray(False)

    def epoch_plan(state: dict, epoch_idx: Array, member: dict) -> tuple[Array, Array]:
        """(batches (S, B) rows of the epoch's minibatches, keep (S, B) real rows, or (S, 1) when all are)."""
        perm = jax.random.permutation(jax.random.fold_in(member["shuffle_key"], epoch_idx), spec.n_train)
        if spec.last_batch != bsz:  # pad the last, partial batch with row 0 and mask the padding out of its loss
            perm = jnp.concatenate([perm, jnp.zeros(spe * bsz - spec.n_train, perm.dtype)])
            keep_all = (jnp.arange(spe * bsz) < spec.n_train).reshape(spe, bsz)
        else:
            keep_all = jnp.ones((spe, 1), bool)  # unused
        return perm[: spe * bsz].reshape(spe, bsz), keep_all

    def epoch_steps(
        stopped: Array, params: Any, opt_state: Any, steps: Array, batches: Array, keeps: Array, epoch_idx: Array,
        member: dict, shared: dict, unroll: int | bool = 1,
    ) -> tuple[tuple[Any, Any], tuple[Array, Array, Array]]:
        """The optimisation steps ``steps`` (indices within the epoch) on their minibatches, from
        (params, opt_state), none of them active once early stopping has ``stopped``. Returns the new
        (params, opt_state) and per step (loss, active, counts)."""
        take = rows_of(member, shared, epoch_idx)
        y_all = shared["y"]
        total = shared["total_steps"]
        partial = spec.last_batch != bsz

        def step(carry: tuple, inp: tuple) -> tuple:
            params, opt_state = carry
            j, rows, keep = inp
            if es is not None:
                rows = shared["train_rows"][rows]
            if partial:
                (value, logits), grads = jax.value_and_grad(masked_loss, has_aux=True)(
                    params, take(rows), loss_targets(shared, rows), keep
                )
            else:
                (value, logits), grads = jax.value_and_grad(loss, has_aux=True)(
                    params, take(rows), loss_targets(shared, rows)
                )
            if spec.track_clean:
                counts = step_counts(logits, y_all[rows], shared["clean"][rows], keep if partial else True)
            else:
                counts = jnp.zeros(4, jnp.int32)
            updates, new_opt = opt.update(grads, opt_state, params)
            new_params = optax.apply_updates(params, updates)
            active = jnp.logical_and(epoch_idx * spe + j < total, jnp.logical_not(stopped))
            if spec.needs_mask:
                new_params = _tree_where(active, new_params, params)
                new_opt = _tree_where(active, new_opt, opt_state)
            return (new_params, new_opt), (value, active, counts)

        return jax.lax.scan(step, (params, opt_state), (steps, batches, keeps), unroll=unroll)

    def epoch_finish(
        state: dict, params: Any, opt_state: Any, epoch_idx: Array, member: dict, shared: dict
    ) -> tuple[dict, Array]:
        """The state after the epoch's steps (early stopping's bookkeeping) and the validation loss."""
        new_state = dict(state, params=params, opt=opt_state)
        if es is None:
            return new_state, jnp.asarray(jnp.nan, dtype)
        take = rows_of(member, shared, epoch_idx)
        stopped = state["stopped"]
        val = loss(params, take(shared["val_rows"]), loss_targets(shared, shared["val_rows"]))[0]
        ran = jnp.logical_not(stopped)
        improved = jnp.logical_and(ran, val < state["best_val"] - es.min_delta)
        bad = jnp.where(improved, 0, jnp.where(ran, state["bad"] + 1, state["bad"]))
        new_state.update(
            best=_tree_where(improved, params, state["best"]),
            best_val=jnp.where(improved, val, state["best_val"]),
            bad=bad,
            stopped=jnp.logical_or(stopped, bad >= es.patience),
        )
        return new_state, jnp.where(ran, val, jnp.nan)

    def epoch(state: dict, epoch_idx: Array, member: dict, shared: dict) -> tuple[dict, Array, Array, Array, Array]:
        batches, keep_all = epoch_plan(state, epoch_idx, member)
        (params, opt_state), (losses, active, counts) = epoch_steps(
            stopped_of(state), state["params"], state["opt"], jnp.arange(spe), batches, keep_all, epoch_idx, member, shared
        )
        new_state, val_out = epoch_finish(state, params, opt_state, epoch_idx, member, shared)
        return new_state, losses, active, val_out, counts

    def final_params(state: dict) -> Any:
        if es is not None and es.restore_best:
            return state["best"]
        return state["params"]

    def fit_rows(shared: dict, block: int) -> tuple[Array, Array]:
        """(idx, keep): the N_train training rows in (B, block) blocks, the last one padded with row 0."""
        rows = shared["train_rows"] if es is not None else jnp.arange(spec.n_train, dtype=jnp.int32)
        num_blocks = -(-spec.n_train // block)
        pad = num_blocks * block - spec.n_train
        idx = jnp.concatenate([rows, jnp.zeros(pad, jnp.int32)]).reshape(num_blocks, block)
        return idx, (jnp.arange(num_blocks * block) < spec.n_train).reshape(num_blocks, block)

    def fit_blocks(
        state: dict, member: dict, shared: dict, last_epoch: Array, idx: Array, keep: Array, unroll: int | bool = 1
    ) -> tuple[Array, Array, Array]:
        """(loss_sums (B,), correct, clean_correct) of the final parameters over the blocks ``idx`` (B, block)."""
        params = final_params(state)
        take = rows_of(member, shared, last_epoch)
        y_all = shared["y"]

        def one_block(carry: tuple, inp: tuple) -> tuple[tuple, Array]:
            correct, clean_correct = carry
            i, keep = inp
            logits = net(params, take(i))
            y = y_all[i]
            loss_sum = jnp.sum(jnp.where(keep, row_loss(logits, loss_targets(shared, i)), 0))
            hit = jnp.logical_and(keep, jnp.argmax(logits, axis=-1) == y)
            if spec.track_clean:
                clean_correct = clean_correct + jnp.sum(jnp.logical_and(hit, shared["clean"][i])).astype(jnp.int32)
            return (correct + jnp.sum(hit).astype(jnp.int32), clean_correct), loss_sum

        zero = jnp.asarray(0, jnp.int32)
        (correct, clean_correct), loss_sums = jax.lax.scan(one_block, (zero, zero), (idx, keep), unroll=unroll)
        return loss_sums, correct, clean_correct

    def fit(state: dict, member: dict, shared: dict, last_epoch: Array, block: int) -> tuple[Array, Array, Array]:
        return fit_blocks(state, member, shared, last_epoch, *fit_rows(shared, block))

    return {
        "init": init_state, "epoch": epoch, "final": final_params, "net": net, "fit": fit,
        "stopped": stopped_of, "epoch_plan": epoch_plan, "epoch_steps": epoch_steps, "epoch_finish": epoch_finish,
        "fit_rows": fit_rows, "fit_blocks": fit_blocks,
    }  # fmt: skip


def resolve_member_batching(mode: str, devices: Sequence[Any]) -> str:
    """The batching mode :func:`~nwcorrupt.train.train_ensemble` uses on ``devices`` (see :data:`MEMBER_BATCHING`)."""
    check_choice("member_batching", mode, MEMBER_BATCHING)
    if mode != "auto":
        return mode
    return "map" if len(devices) == 1 and devices[0].platform == "cpu" else "vmap"


#: How an epoch's optimisation steps run (see :func:`resolve_stepping`).
STEPPING = ("auto", "scan", "host")

#: Steps per compiled straight-line piece under ``stepping="host"``.
HOST_STEPS = 4


def resolve_stepping(mode: str, config: TrainConfig, devices: Sequence[Any]) -> str:
    """How the epochs of ``config`` run on ``devices``.

    ``"scan"``: one compiled program per epoch, its steps a ``jax.lax.scan``. ``"host"``: the host
    calls a compiled piece of :data:`HOST_STEPS` unrolled steps (straight-line code, no loop) until
    the epoch is done, and evaluates the training-set fit and the test logits one block and one
    member at a time. ``"auto"`` picks ``"host"`` for a network with convolutions on CPU devices,
    where XLA runs a convolution inside a loop about 10 times slower than on its own (measured:
    a 2-layer CNN on 22 × 22 images, 1.2 s per step in a scan, 0.12 s unrolled), and ``"scan"``
    otherwise. Both give the same members (to float round-off).
    """
    from nwcorrupt.stax.network import Network

    check_choice("stepping", mode, STEPPING)
    if mode != "auto":
        return mode
    on_cpu = all(dev.platform == "cpu" for dev in devices)
    return "host" if on_cpu and isinstance(config.arch, Network) and config.arch.has_convolution else "scan"


def compiled_programs(
    spec: ProgramSpec, mode: str, fit_block: int = 1024, stepping: str = "scan"
) -> dict[str, Callable]:
    """Compiled ``init`` / ``epoch`` / ``eval`` / ``fit`` of one member or of a chunk of members.

    Args:
      spec: the run's :class:`ProgramSpec` (programs are shared by specs with the same
        :meth:`ProgramSpec.program_key`).
      mode: ``"single"`` (one member, no member axis), ``"vmap"`` or ``"map"`` (a leading member
        axis on the state, ``member`` and ``last_epoch``).
      fit_block: training rows evaluated at once by ``fit`` (capped at N_train).
      stepping: ``"scan"`` or ``"host"`` (see :func:`resolve_stepping`; ``"auto"`` is resolved by
        the caller, which knows the devices).

    Returns:
      dict of functions: ``init(keys)``, ``epoch(state, epoch, member, shared)`` (donates
      ``state``), ``eval(state, x) -> logits`` and ``fit(state, member, shared, last_epoch)``, see
      :func:`member_programs`. Under ``"scan"`` each is one jitted program; under ``"host"``
      ``epoch``, ``eval`` and ``fit`` are host loops over jitted pieces.
    """
    check_choice("mode", mode, ("single", "vmap", "map"))
    check_choice("stepping", stepping, ("scan", "host"))
    block = min(check_positive_int("fit_block", fit_block), spec.n_train)
    if stepping == "host":
        return _host_stepped(spec.program_key(), mode, block)
    return _compiled(spec.program_key(), mode, block)


@functools.lru_cache(maxsize=32)
def _compiled(spec: ProgramSpec, mode: str, block: int) -> dict[str, Callable]:
    p = member_programs(spec)

    def evaluate(state, x):
        return p["net"](p["final"](state), x)

    def fit(state, member, shared, last_epoch):
        return p["fit"](state, member, shared, last_epoch, block)

    if mode == "single":
        return {
            "init": jax.jit(p["init"]),
            "epoch": jax.jit(p["epoch"], donate_argnums=(0,)),
            "eval": jax.jit(evaluate),
            "fit": jax.jit(fit),
        }
    if mode == "map":
        return {
            "init": jax.jit(lambda keys: jax.lax.map(p["init"], keys)),
            "epoch": jax.jit(
                lambda state, e, member, shared: jax.lax.map(lambda a: p["epoch"](a[0], e, a[1], shared), (state, member)),
                donate_argnums=(0,),
            ),
            "eval": jax.jit(lambda state, x: jax.lax.map(lambda st: evaluate(st, x), state)),
            "fit": jax.jit(
                lambda state, member, shared, last: jax.lax.map(
                    lambda a: fit(a[0], a[1], shared, a[2]), (state, member, last)
                )
            ),
        }
    return {
        "init": jax.jit(jax.vmap(p["init"])),
        "epoch": jax.jit(jax.vmap(p["epoch"], in_axes=(0, None, 0, None)), donate_argnums=(0,)),
        "eval": jax.jit(jax.vmap(evaluate, in_axes=(0, None))),
        "fit": jax.jit(jax.vmap(fit, in_axes=(0, 0, None, 0))),
    }


def _member(tree: Any, i: int) -> Any:
    return jax.tree_util.tree_map(lambda a: a[i], tree)


def _stack(trees: list[Any]) -> Any:
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *trees)


@functools.lru_cache(maxsize=32)
def _host_stepped(spec: ProgramSpec, mode: str, block: int) -> dict[str, Callable]:
    p = member_programs(spec)
    spe = spec.steps_per_epoch
    plan = jax.jit(p["epoch_plan"])
    steps = jax.jit(functools.partial(p["epoch_steps"], unroll=True))
    finish = jax.jit(p["epoch_finish"])
    fit_rows = jax.jit(p["fit_rows"], static_argnums=(1,))
    fit_blocks = jax.jit(functools.partial(p["fit_blocks"], unroll=True))
    evaluate = jax.jit(lambda state, x: p["net"](p["final"](state), x))
    stopped_of = jax.jit(p["stopped"])
    if mode == "vmap":
        stopped_of = jax.jit(jax.vmap(p["stopped"]))
        plan = jax.jit(jax.vmap(p["epoch_plan"], in_axes=(0, None, 0)))
        steps = jax.jit(
            jax.vmap(functools.partial(p["epoch_steps"], unroll=True), in_axes=(0, 0, 0, None, 0, 0, None, 0, None))
        )
        finish = jax.jit(jax.vmap(p["epoch_finish"], in_axes=(0, 0, 0, None, 0, None)))
        fit_blocks = jax.jit(jax.vmap(functools.partial(p["fit_blocks"], unroll=True), in_axes=(0, 0, None, 0, None, None)))
        evaluate = jax.jit(jax.vmap(lambda state, x: p["net"](p["final"](state), x), in_axes=(0, None)))

    def epoch_one(state, e, member, shared):
        # one member ("single", "map") or all members at once ("vmap": the pieces are vmapped)
        batches, keep_all = plan(state, e, member)
        stopped = stopped_of(state)
        params, opt_state = state["params"], state["opt"]
        outs = []
        for a in range(0, spe, HOST_STEPS):
            b = min(spe, a + HOST_STEPS)
            (params, opt_state), out = steps(
                stopped, params, opt_state, jnp.arange(a, b), batches[..., a:b, :], keep_all[..., a:b, :], e, member,
                shared,
            )
            outs.append(out)
        new_state, val = finish(state, params, opt_state, e, member, shared)
        axis = 1 if mode == "vmap" else 0
        losses, active, counts = (jnp.concatenate([o[i] for o in outs], axis=axis) for i in range(3))
        return new_state, losses, active, val, counts

    def fit_one(state, member, shared, last_epoch):
        idx, keep = fit_rows(shared, block)
        sums, correct, clean = [], 0, 0
        for i in range(idx.shape[0]):
            s, c, cc = fit_blocks(state, member, shared, last_epoch, idx[i : i + 1], keep[i : i + 1])
            sums.append(s)
            correct, clean = correct + c, clean + cc
        return jnp.concatenate(sums, axis=-1), correct, clean

    if mode != "map":
        return {
            "init": jax.jit(jax.vmap(p["init"])) if mode == "vmap" else jax.jit(p["init"]),
            "epoch": epoch_one,
            "eval": evaluate,
            "fit": fit_one,
        }

    def epoch_map(state, e, member, shared):
        count = jax.tree_util.tree_leaves(state)[0].shape[0]
        return _stack([epoch_one(_member(state, i), e, _member(member, i), shared) for i in range(count)])

    def fit_map(state, member, shared, last_epoch):
        count = jax.tree_util.tree_leaves(state)[0].shape[0]
        return _stack([fit_one(_member(state, i), _member(member, i), shared, last_epoch[i]) for i in range(count)])

    return {
        "init": jax.jit(lambda keys: jax.lax.map(p["init"], keys)),
        "epoch": epoch_map,
        "eval": lambda state, x: jnp.stack(
            [evaluate(_member(state, i), x) for i in range(jax.tree_util.tree_leaves(state)[0].shape[0])]
        ),
        "fit": fit_map,
    }
