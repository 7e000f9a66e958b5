"""Training finite-width MLPs with optax, one network or nested ensembles.

A nested ensemble is K training sets (noisy realisations of one clean set) × M
initialisations. :func:`train_ensemble` trains all K·M members with one compiled
program, in chunks sized to a memory budget, keeps every member's test logits, loss
curve and training-set fit (``train_loss``, ``train_accuracy``), and resumes from the
chunks already on disk. :func:`train_member` trains one member with the identical
recipe.

The package is split along its seams:

- :mod:`nwcorrupt.train.config`: :class:`TrainConfig`, :class:`Optimizer`,
  :class:`EarlyStopping`, the losses and the member keys;
- :mod:`nwcorrupt.train.programs`: the per-member step/epoch/fit programs and how a
  chunk of members shares them (:data:`MEMBER_BATCHING`);
- :mod:`nwcorrupt.train.ensemble`: the driver (:func:`train_ensemble`,
  :func:`train_member`, their results, :func:`ensemble_accuracy`);
- :mod:`nwcorrupt.train.checkpoints`: atomic saves, the run :func:`fingerprint` and
  the finished chunks of a resumed run;
- :mod:`nwcorrupt.train.memory`: the memory budget and chunk sizes.

Every public name of these modules is available here as ``nwcorrupt.train.<name>``.
"""

from __future__ import annotations

from nwcorrupt._io import atomic_write_json
from nwcorrupt.train.checkpoints import CHUNK_FORMAT, atomic_savez, fingerprint
from nwcorrupt.train.config import (
    LOSSES,
    OPTIMIZERS,
    EarlyStopping,
    Optimizer,
    TrainConfig,
    TrainingDivergedError,
    cross_entropy_loss,
    cross_entropy_target_loss,
    loss_fn,
    member_init,
    member_keys,
    mse_loss,
    mse_target_loss,
    target_loss_fn,
    validation_split,
)
from nwcorrupt.train.ensemble import EnsembleResult, MemberResult, ensemble_accuracy, train_ensemble, train_member
from nwcorrupt.train.memory import choose_chunk_size, default_memory_budget, estimate_member_bytes
from nwcorrupt.train.programs import HOST_STEPS, MEMBER_BATCHING, STEPPING, resolve_member_batching, resolve_stepping

__all__ = [
    "CHUNK_FORMAT",
    "LOSSES",
    "HOST_STEPS",
    "MEMBER_BATCHING",
    "OPTIMIZERS",
    "STEPPING",
    "EarlyStopping",
    "EnsembleResult",
    "MemberResult",
    "Optimizer",
    "TrainConfig",
    "TrainingDivergedError",
    "atomic_savez",
    "atomic_write_json",
    "choose_chunk_size",
    "cross_entropy_loss",
    "cross_entropy_target_loss",
    "default_memory_budget",
    "ensemble_accuracy",
    "estimate_member_bytes",
    "fingerprint",
    "loss_fn",
    "member_init",
    "member_keys",
    "mse_loss",
    "mse_target_loss",
    "target_loss_fn",
    "resolve_member_batching",
    "resolve_stepping",
    "train_ensemble",
    "train_member",
    "validation_split",
]
