"""Shared helpers of the benchmark scripts: interleaved timing, peak-memory probes,
environment description. Nothing here changes global JAX state.
"""

from __future__ import annotations

import os
import platform
import resource
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np


def block(x: Any) -> Any:
    """Wait until every array in the pytree ``x`` is computed, and return it."""
    return jax.tree_util.tree_map(lambda a: a.block_until_ready() if hasattr(a, "block_until_ready") else a, x)


def interleaved_medians(fns: dict[str, Callable[[], Any]], reps: int) -> dict[str, list[float]]:
    """Run each zero-argument function ``reps`` times, interleaving them
    (f1, f2, ..., f1, f2, ...) so slow drifts of a shared machine hit all alike.

    Returns:
      name -> list of wall-clock seconds, one per repetition (outputs are blocked on).
    """
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            start = time.perf_counter()
            block(fn())
            times[name].append(time.perf_counter() - start)
    return times


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def _current_rss_bytes() -> int:
    """Resident set size of this process now (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def peak_rss_bytes() -> int:
    """Peak resident set size of this process so far (ru_maxrss, KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def peak_rss_increase(fn: Callable[[], Any], interval_s: float = 0.002) -> tuple[int, Any]:
    """Run ``fn`` once and sample the RSS in a background thread.

    Returns:
      (peak RSS during the call minus the RSS before it, in bytes; the result of fn).
      The result is kept alive until the sampling stops, so it is counted.
    """
    base = _current_rss_bytes()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _current_rss_bytes())
            stop.wait(interval_s)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    try:
        out = block(fn())
        peak[0] = max(peak[0], _current_rss_bytes())
    finally:
        stop.set()
        thread.join()
    return peak[0] - base, out


def _huge_pages() -> str:
    """Transparent-huge-page mode and GLIBC_TUNABLES: they change the cost of fresh buffers."""
    try:
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as f:
            mode = f.read().split("[")[1].split("]")[0]
    except (OSError, IndexError):
        mode = "unknown"
    return f"THP {mode}, GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', 'unset')}"


def describe_environment() -> str:
    """One line: Python, jax and numpy versions, backend, device count, CPU cores, huge pages."""
    devices = jax.devices()
    return (
        f"python {platform.python_version()}, jax {jax.__version__}, numpy {np.__version__}, "
        f"backend {jax.default_backend()} x{len(devices)} ({devices[0].device_kind}), "
        f"{os.cpu_count()} CPU cores, {platform.machine()}, {_huge_pages()}"
    )


def mib(nbytes: float) -> str:
    return f"{nbytes / 2**20:.0f} MiB"


def mnist_like(n: int, d: int, seed: int, dtype) -> Any:
    """(n, d) random inputs (a jax array), each row shifted to zero mean and scaled to unit RMS."""
    import jax.numpy as jnp

    x = np.random.default_rng(seed).uniform(0.0, 1.0, size=(n, d))
    x -= x.mean(axis=1, keepdims=True)
    x /= np.sqrt(np.mean(x**2, axis=1, keepdims=True))
    return jnp.asarray(x, dtype=dtype)
