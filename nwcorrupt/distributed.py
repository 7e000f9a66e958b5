"""Several processes, one computation: JAX's multi-process runtime (``jax.distributed``) for nwcorrupt.

nwcorrupt runs in one process by default, on that process's devices (``jax.local_devices()``). To
spread a computation over several processes -- one per host of a cluster, or several on one machine --
every process runs the same program, calls :func:`initialize` first, and then passes
``distributed=True`` to the entry point that should divide its work:

* :func:`nwcorrupt.predict.ntk_predict` / ``nngp_predict`` with ``solver="stored_cg"``: each process
  computes and holds only its tiles of the training kernel (memory per process ~ N^2 / (2 P)); the CG
  products are summed over processes (:func:`allreduce_sum`), the CG recurrence runs identically on
  every process, and the test rows are split among processes and gathered.
* :func:`nwcorrupt.train.train_ensemble`: the members are split among the processes, each trains its
  share on its own devices, and the results are gathered (every process returns the whole ensemble).
* :func:`nwcorrupt.experiments.run` (``nwcorrupt run ... --distributed``): the sweep points not yet
  stored are dealt out round-robin; each process writes the records of its points (one file per point,
  written atomically), so an interrupted run resumes as in one process.

Only one level divides its work: inside a distributed study point, everything is process-local. The
results folder must be on a file system that every process sees (checked: the processes compare what
they find there and refuse to go on when it differs).

The collectives here move raw bytes (``jax.experimental.multihost_utils.process_allgather`` of a uint8
view), so float64 data stays float64 whether or not x64 is enabled. On CPUs the collectives use gloo
(:func:`initialize` selects it); on GPUs, NCCL as JAX chooses. In one process every function here works
and is the identity (or the trivial reduction), so code written for several processes runs unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "ENV_COORDINATOR",
    "ENV_NUM_PROCESSES",
    "ENV_PROCESS_ID",
    "ProcessInfo",
    "initialize",
    "is_initialized",
    "process_info",
    "is_primary",
    "local_range",
    "round_robin",
    "REDUCE_CHUNK_BYTES",
    "allgather",
    "allreduce_sum",
    "gather_shares",
    "broadcast",
    "barrier",
    "check_same",
    "free_port",
    "launch_local",
]

#: Environment variables read by :func:`initialize` when it is called without arguments.
ENV_COORDINATOR = "NWCORRUPT_COORDINATOR"
ENV_NUM_PROCESSES = "NWCORRUPT_NUM_PROCESSES"
ENV_PROCESS_ID = "NWCORRUPT_PROCESS_ID"

_STATE = {"initialized": False}


@dataclasses.dataclass(frozen=True)
class ProcessInfo:
    """Where this process stands: ``index`` in [0, ``count``), its devices and all devices."""

    index: int
    count: int
    local_devices: tuple
    devices: tuple

    @property
    def primary(self) -> bool:
        return self.index == 0


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    local_device_ids: Any = None,
    timeout_s: int = 300,
) -> ProcessInfo:
    """Join the processes of a multi-process run (``jax.distributed.initialize``), before any other JAX call.

    With all three arguments None they come from the environment: :data:`ENV_COORDINATOR`
    (``host:port`` of process 0), :data:`ENV_NUM_PROCESSES` and :data:`ENV_PROCESS_ID`; when those are
    unset too, JAX detects the cluster itself (Slurm, Open MPI, Kubernetes/TPU environments; see
    ``jax.distributed.initialize``). On CPUs the cross-process collectives use gloo.

    Args:
      coordinator_address: ``"host:port"`` of process 0's coordinator (the same on every process).
      num_processes: P >= 1.
      process_id: this process, in [0, P).
      local_device_ids: devices of this host to use (default all).
      timeout_s: seconds to wait for the other processes.

    Returns:
      :func:`process_info`. Calling it again after a successful call returns the same.

    Raises:
      ValueError: a bad argument or environment value (named), before anything is started.
    """
    import jax

    if _STATE["initialized"]:
        return process_info()
    from_env = coordinator_address is None and num_processes is None and process_id is None
    if from_env:
        coordinator_address = os.environ.get(ENV_COORDINATOR) or None
        num_processes = _env_int(ENV_NUM_PROCESSES)
        process_id = _env_int(ENV_PROCESS_ID)
    if coordinator_address is not None:
        host, sep, port = str(coordinator_address).rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"coordinator_address must be 'host:port', got {coordinator_address!r}")
    if num_processes is not None and (isinstance(num_processes, bool) or not isinstance(num_processes, int)
                                      or num_processes < 1):
        raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    if process_id is not None:
        if isinstance(process_id, bool) or not isinstance(process_id, int) or process_id < 0:
            raise ValueError(f"process_id must be an integer >= 0, got {process_id!r}")
        if num_processes is not None and process_id >= num_processes:
            raise ValueError(f"process_id must be in [0, num_processes={num_processes}), got {process_id}")
    if isinstance(timeout_s, bool) or not isinstance(timeout_s, int) or timeout_s < 1:
        raise ValueError(f"timeout_s must be an integer >= 1, got {timeout_s!r}")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs: dict[str, Any] = {"initialization_timeout": timeout_s}
    if coordinator_address is not None:
        kwargs["coordinator_address"] = coordinator_address
    if num_processes is not None:
        kwargs["num_processes"] = num_processes
    if process_id is not None:
        kwargs["process_id"] = process_id
    if local_device_ids is not None:
        kwargs["local_device_ids"] = local_device_ids
    jax.distributed.initialize(**kwargs)
    _STATE["initialized"] = True
    return process_info()


def is_initialized() -> bool:
    """True once :func:`initialize` has joined this process to a multi-process run."""
    return bool(_STATE["initialized"])


def process_info() -> ProcessInfo:
    """This process's index, the process count, its devices and all devices."""
    import jax

    return ProcessInfo(
        index=int(jax.process_index()),
        count=int(jax.process_count()),
        local_devices=tuple(jax.local_devices()),
        devices=tuple(jax.devices()),
    )


def is_primary() -> bool:
    """True on process 0 (the one that writes shared files), and in a single-process run."""
    import jax

    return jax.process_index() == 0


def _count_index(count: int | None, index: int | None) -> tuple[int, int]:
    import jax

    count = int(jax.process_count()) if count is None else count
    index = int(jax.process_index()) if index is None else index
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise ValueError(f"count must be an integer >= 1, got {count!r}")
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or not 0 <= index < count:
        raise ValueError(f"index must be an integer in [0, count={count}), got {index!r}")
    return int(count), int(index)


def local_range(n: int, *, count: int | None = None, index: int | None = None) -> tuple[int, int]:
    """This process's contiguous share [start, stop) of n items: sizes differ by at most one, in order.

    ``count``/``index`` default to the process count and index (given, they make the split testable).
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an integer >= 0, got {n!r}")
    count, index = _count_index(count, index)
    return (index * int(n)) // count, ((index + 1) * int(n)) // count


def round_robin(items: list, *, count: int | None = None, index: int | None = None) -> list:
    """This process's share of ``items``: every ``count``-th item from position ``index``."""
    count, index = _count_index(count, index)
    return list(items)[index::count]


#: Largest piece (bytes) moved by one collective of :func:`allreduce_sum`: the temporary memory of a
#: reduction is about P times this, whatever the size of the array.
REDUCE_CHUNK_BYTES = 1 << 23


def _check_descriptor(a: np.ndarray) -> None:
    from jax.experimental import multihost_utils

    desc = np.frombuffer(f"{a.dtype.str}|{a.shape}".encode().ljust(256, b" ")[:256], dtype=np.uint8)
    descs = np.asarray(multihost_utils.process_allgather(desc, tiled=False))
    if not np.all(descs == descs[0]):
        seen = sorted({bytes(d).decode().strip() for d in descs})
        raise ValueError(f"the processes passed arrays of different dtype|shape to a collective: {seen}")


def _gather_bytes(raw: np.ndarray) -> np.ndarray:
    """(P, n) uint8: every process's n bytes (n the same everywhere)."""
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(raw, tiled=False)).reshape(-1, raw.size)


def allgather(x: Any) -> np.ndarray:
    """``x`` of every process, stacked: shape (P,) + x.shape, the same on every process.

    Every process must pass an array of the same shape and dtype (checked: a mismatch raises
    ``ValueError`` on every process instead of hanging). Bytes are moved exactly, whatever the dtype
    and the x64 setting.
    """
    import jax

    a = np.array(x, order="C", copy=True)  # (np.ascontiguousarray would make a 0-d array 1-d)
    count = jax.process_count()
    if count == 1:
        return a[None].copy()
    _check_descriptor(a)
    if a.size == 0:
        return np.zeros((count,) + a.shape, dtype=a.dtype)
    got = _gather_bytes(a.reshape(-1).view(np.uint8))
    return np.array(got, order="C").view(a.dtype).reshape((count,) + a.shape)


def allreduce_sum(x: Any) -> np.ndarray:
    """The sum of ``x`` over processes, added in process order (bit-identical on every process).

    Moved in pieces of at most :data:`REDUCE_CHUNK_BYTES`, so the temporary memory stays about
    P x that, not P x the array.
    """
    import jax

    a = np.array(x, order="C", copy=True)  # (np.ascontiguousarray would make a 0-d array 1-d)
    if jax.process_count() == 1:
        return a.copy()
    _check_descriptor(a)
    flat = a.reshape(-1)
    out = np.empty_like(flat)
    step = max(1, REDUCE_CHUNK_BYTES // max(1, a.itemsize))
    for s in range(0, flat.size, step):
        piece = flat[s : s + step]
        parts = np.array(_gather_bytes(piece.view(np.uint8)), order="C").view(a.dtype)
        acc = parts[0].copy()
        for q in parts[1:]:
            acc += q
        out[s : s + piece.size] = acc
    return out.reshape(a.shape)


def gather_shares(local: Any, n: int) -> np.ndarray:
    """The (n, ...) array whose rows ``local_range(n)`` each process holds, on every process.

    Process p passes its rows ``local_range(n, index=p)`` (shape (stop - start,) + trailing, the same
    trailing shape and dtype everywhere); shares are padded to the largest for one :func:`allgather`.
    """
    import jax

    count = jax.process_count()
    a = np.asarray(local)
    shares = [local_range(n, count=count, index=p) for p in range(count)]
    start, stop = shares[jax.process_index()]
    if a.shape[:1] != (stop - start,):
        raise ValueError(f"local must hold this process's {stop - start} rows of {n}, got shape {a.shape}")
    size = max(e - s for s, e in shares)
    block = np.zeros((size,) + a.shape[1:], dtype=a.dtype)
    block[: stop - start] = a
    parts = allgather(block)
    return np.concatenate([parts[p, : e - s] for p, (s, e) in enumerate(shares)])


def broadcast(x: Any) -> np.ndarray:
    """Process 0's ``x`` on every process (same shape and dtype required everywhere)."""
    return allgather(x)[0]


def barrier(name: str) -> None:
    """Wait until every process has reached the barrier called ``name`` (no-op in one process)."""
    import jax

    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(str(name))


def check_same(what: str, value: bytes | str) -> None:
    """Raise ``RuntimeError`` on every process unless all processes pass the same ``value``.

    Used where processes must agree, e.g. on what a shared results folder holds.
    """
    import hashlib

    digest = np.frombuffer(hashlib.sha256(value if isinstance(value, bytes) else value.encode()).digest(), np.uint8)
    got = allgather(digest)
    if not np.all(got == got[0]):
        differ = [i for i in range(got.shape[0]) if not np.array_equal(got[i], got[0])]
        raise RuntimeError(
            f"the processes disagree on {what} (processes {differ} differ from process 0); in a multi-process "
            "run the results folder must be on a file system that every process sees, and every process must "
            "run the same command"
        )


def free_port() -> int:
    """A TCP port of localhost that is free now (for the coordinator of a local multi-process run)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("localhost", 0))
        return int(sock.getsockname()[1])


def launch_local(
    argv: Sequence[str],
    num_processes: int,
    *,
    port: int | None = None,
    env: Mapping[str, str] | None = None,
    timeout_s: float | None = None,
    capture: bool = True,
) -> list[subprocess.CompletedProcess]:
    """Run ``argv`` as ``num_processes`` processes of one multi-process run on this machine.

    Each process gets :data:`ENV_COORDINATOR` (``localhost:port``), :data:`ENV_NUM_PROCESSES` and its
    :data:`ENV_PROCESS_ID`, so a program that calls :func:`initialize` without arguments (such as
    ``nwcorrupt run ... --distributed``) joins the others. On a CPU machine each process sees one
    CPU device. If one process fails, the others are ended.

    Args:
      argv: the command, e.g. ``[sys.executable, "-m", "nwcorrupt.cli", "run", "centroid_rules",
        "--distributed"]``.
      num_processes: P >= 1.
      port: the coordinator's port (default: a free one).
      env: the environment (default: this process's).
      timeout_s: seconds to wait for all processes (default: no limit); on timeout all are ended
        and ``subprocess.TimeoutExpired`` is raised.
      capture: capture stdout/stderr (text) in the results; else they go to this process's.

    Returns:
      One ``CompletedProcess`` per process, in process order.
    """
    import time

    if isinstance(num_processes, bool) or not isinstance(num_processes, int) or num_processes < 1:
        raise ValueError(f"num_processes must be an integer >= 1, got {num_processes!r}")
    argv = [str(a) for a in argv]
    if not argv:
        raise ValueError("argv must name a command")
    port = free_port() if port is None else port
    base = dict(os.environ if env is None else env)
    procs = []
    files = []  # temporary files, not pipes: a full pipe would stall a process that the loop below waits for
    for i in range(num_processes):
        penv = {**base, ENV_COORDINATOR: f"localhost:{port}", ENV_NUM_PROCESSES: str(num_processes),
                ENV_PROCESS_ID: str(i)}
        outs = (tempfile.TemporaryFile("w+"), tempfile.TemporaryFile("w+")) if capture else (None, None)
        files.append(outs)
        procs.append(subprocess.Popen(argv, env=penv, stdout=outs[0], stderr=outs[1], text=True))
    deadline = None if timeout_s is None else time.monotonic() + float(timeout_s)
    try:
        while True:
            codes = [p.poll() for p in procs]
            if all(c is not None for c in codes):
                break
            if any(c not in (None, 0) for c in codes):  # one failed: the others would wait for it forever
                time.sleep(2.0)
                for p in procs:
                    if p.poll() is None:
                        p.kill()
            if deadline is not None and time.monotonic() > deadline:
                for p in procs:
                    if p.poll() is None:
                        p.kill()
                raise subprocess.TimeoutExpired(argv, float(timeout_s))
            time.sleep(0.05)
    finally:
        results = []
        for p, (fo, fe) in zip(procs, files):
            p.wait()
            texts = []
            for f in (fo, fe):
                if f is None:
                    texts.append(None)
                else:
                    f.seek(0)
                    texts.append(f.read())
                    f.close()
            results.append(subprocess.CompletedProcess(argv, p.returncode, texts[0], texts[1]))
    return results
