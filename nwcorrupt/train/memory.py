"""The memory budget of ensemble training: bytes per member and members per compiled chunk.

:func:`~nwcorrupt.train.train_ensemble` trains its members in chunks of one
compiled program; :func:`choose_chunk_size` picks the chunk size from a device
memory budget (:func:`default_memory_budget`) and a per-member estimate
(:func:`estimate_member_bytes`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from nwcorrupt import mlp as _mlp
from nwcorrupt._checks import check_positive_int
from nwcorrupt.precision import default_float
from nwcorrupt.stax.network import Network
from nwcorrupt.train.config import TrainConfig, init_params

__all__ = ["choose_chunk_size", "default_memory_budget", "estimate_member_bytes"]


def estimate_member_bytes(
    config: TrainConfig, d_in: int, n_train: int, *, eval_block: int = 1024, online: bool = False
) -> int:
    """Rough device memory of one ensemble member while training, in bytes.

    Counts parameters, gradients, updates, the optimiser state (via
    ``jax.eval_shape``), the early-stopping copy, one (N, d) training set (an upper
    bound: members of one data set share it), the activations and cotangents of one
    minibatch, and the activations of one evaluation block (test logits and the
    training-set fit are evaluated in blocks of this many rows, one after the other).
    With ``online`` corruption the member instead builds its own corrupted copy every
    epoch: about four (N, d) arrays (the draws, the noise values, the mask and the result).
    """
    itemsize = np.dtype(default_float()).itemsize
    if isinstance(config.arch, Network):
        params_shape = jax.eval_shape(lambda key: init_params(config, key, d_in), jax.random.PRNGKey(0))
        n_params = sum(int(np.prod(s.shape)) for s in jax.tree_util.tree_leaves(params_shape))
        units = config.arch.unit_count()
    else:
        shapes = _mlp.layer_shapes(config.arch, config.width, d_in, config.num_classes, width_scale=config.width_scale)
        n_params = sum(a * b + b for a, b in shapes)
        params_shape = [
            {"W": jax.ShapeDtypeStruct((a, b), default_float()), "b": jax.ShapeDtypeStruct((b,), default_float())}
            for a, b in shapes
        ]
        units = sum(b for _, b in shapes)
    opt_state = jax.eval_shape(config.transform().init, params_shape)
    opt_bytes = sum(int(np.prod(s.shape)) * np.dtype(s.dtype).itemsize for s in jax.tree_util.tree_leaves(opt_state))
    copies = 4 + (1 if config.early_stopping is not None else 0)  # params (old+new), grads, updates, best
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
