"""Checkpoints of ensemble training: atomic saves, the run fingerprint and finished chunks.

:func:`~nwcorrupt.train.train_ensemble` with an ``out_dir`` writes one file
``chunk-<fingerprint[:16]>-<first member>-<count>.npz`` per finished chunk of members
(:func:`save_chunk`); a rerun with the same :func:`fingerprint` loads those members
(:func:`load_finished`) and trains only the rest. Every write is atomic (a temporary
file in the same folder, then a rename), so an interrupted run leaves whole files only.

A chunk file holds the arrays ``fingerprint`` (a 0-d string), ``members`` (n, 2) int
(k, m) and, per member, ``test_logits`` (n, T, C), ``step_losses`` (n, S),
``train_loss`` (n,), ``train_accuracy`` (n,) and, under early stopping,
``val_losses`` (n, E). :data:`CHUNK_FORMAT` is part of the fingerprint: chunks written
by an older format (without the training-set fit) have another fingerprint and are
retrained, never trusted.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from nwcorrupt import _io
from nwcorrupt.precision import default_float
from nwcorrupt.train.config import TrainConfig

__all__ = ["CHUNK_FORMAT", "MEMBER_ARRAYS", "OPTIONAL_ARRAYS", "atomic_savez", "chunk_path", "fingerprint", "load_finished", "save_chunk"]

#: Version of the chunk layout, hashed into :func:`fingerprint`. 2: adds ``train_loss`` and
#: ``train_accuracy`` (format 1, without them, had no version field).
CHUNK_FORMAT = 2

#: Per-member arrays of a chunk that every format-2 chunk holds (``val_losses`` only under early stopping).
MEMBER_ARRAYS = ("test_logits", "step_losses", "train_loss", "train_accuracy")
#: Per-member arrays a run writes when it uses them: early stopping's validation losses, and the
#: clean/noisy step counts and training-set accuracies of a run given a clean mask.
OPTIONAL_ARRAYS = ("val_losses", "step_counts", "train_accuracy_clean", "train_accuracy_noisy")


def atomic_savez(path: str | Path, **arrays: Any) -> None:
    """``np.savez`` to ``path`` atomically (temp file in the same directory, then ``os.replace``)."""
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    _io.atomic_write_bytes(path, buf.getvalue())


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
    targets: np.ndarray | None = None,
    clean_mask: np.ndarray | None = None,
) -> str:
    """SHA-256 of the configuration, data, ensemble shape, float dtype, corruption callable's name
    and :data:`CHUNK_FORMAT` (and the soft targets and clean mask when given)."""
    h = hashlib.sha256()
    desc = {
        "config": config.describe(),
        "num_inits": num_inits,
        "num_datasets": num_datasets,
        "dtype": np.dtype(default_float()).name,
        "corrupt": None
        if corrupt is None
        else f"{getattr(corrupt, '__module__', '')}.{getattr(corrupt, '__qualname__', type(corrupt).__name__)}",
        "chunk_format": CHUNK_FORMAT,
    }
    h.update(json.dumps(desc, sort_keys=True).encode())
    _hash_array(h, "x_train", x_train)
    _hash_array(h, "y_train", y_train)
    _hash_array(h, "x_test", x_test)
    if targets is not None:
        _hash_array(h, "targets", targets)
    if clean_mask is not None:
        _hash_array(h, "clean_mask", clean_mask)
    return h.hexdigest()


def chunk_path(out_dir: Path, fp: str, first: int, count: int) -> Path:
    """File of the chunk of ``count`` members starting at member index ``first`` (k-major order)."""
    return Path(out_dir) / f"chunk-{fp[:16]}-{first:06d}-{count}.npz"


def save_chunk(
    out_dir: Path, fp: str, first: int, members: Sequence[tuple[int, int]], arrays: dict[str, np.ndarray]
) -> Path:
    """Write one finished chunk atomically.

    Args:
      out_dir: the run's folder.
      fp: the run's :func:`fingerprint`.
      first: index of the chunk's first member in the run's k-major member order.
      members: the chunk's (k, m) pairs, n of them.
      arrays: the per-member arrays (leading axis n): every name of :data:`MEMBER_ARRAYS`, and
        ``val_losses`` under early stopping.
    """
    missing = [name for name in MEMBER_ARRAYS if name not in arrays]
    if missing:
        raise ValueError(f"a chunk needs the arrays {list(MEMBER_ARRAYS)}; missing {missing}")
    path = chunk_path(out_dir, fp, first, len(members))
    atomic_savez(
        path, fingerprint=np.array(fp), members=np.array(list(members), np.int64).reshape(-1, 2), **arrays
    )
    return path


def load_finished(out_dir: Path, fp: str) -> dict[tuple[int, int], dict]:
    """Members finished by earlier runs with fingerprint ``fp``: (k, m) -> {array name: that member's row}.

    Files with another fingerprint (another configuration, data or chunk format), or without
    every array of :data:`MEMBER_ARRAYS`, are ignored: their members are trained again.
    """
    done: dict[tuple[int, int], dict] = {}
    for path in sorted(Path(out_dir).glob(f"chunk-{fp[:16]}-*.npz")):
        with np.load(path, allow_pickle=False) as z:
            if "fingerprint" not in z.files or str(z["fingerprint"]) != fp:
                continue
            if any(name not in z.files for name in MEMBER_ARRAYS):
                continue
            names = [*MEMBER_ARRAYS, *(name for name in OPTIONAL_ARRAYS if name in z.files)]
            arrays = {name: z[name] for name in names}
            for i, (k, m) in enumerate(z["members"]):
                done[(int(k), int(m))] = {name: a[i] for name, a in arrays.items()}
    return done
