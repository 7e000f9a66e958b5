"""Ctrl-C ends a command within seconds: at once where Python gets control (between compiled steps, in
loops), and through the watchdog where one long call (an XLA computation, a LAPACK factorisation) does not
return to Python."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _default_sigint() -> None:
    # a background job of a non-interactive shell (as CI may start the suite) ignores SIGINT, and ignored
    # signals are inherited: give the child the disposition a terminal's foreground command has
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _interrupt_after(cmd: list[str], wait_for: str, delay: float) -> tuple[int, float, str]:
    """Start cmd, wait until its stdout shows ``wait_for`` (or ``delay`` s), send SIGINT; (status, seconds to end, stderr)."""
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        if wait_for:
            assert proc.stdout.readline().strip() == wait_for
        time.sleep(delay)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        return proc.returncode, time.monotonic() - t0, err
    finally:
        if proc.poll() is None:  # never leave a computation running after a failed test
            proc.kill()
            proc.wait()


def test_watchdog_ends_a_long_compiled_computation(tmp_path):
    """One XLA computation of minutes: Python cannot act on SIGINT until it returns; the watchdog ends it."""
    script = tmp_path / "long_jax.py"
    script.write_text(
        "import jax, jax.numpy as jnp\n"
        "from nwcorrupt.cli import interrupt_watchdog\n"
        "interrupt_watchdog(1.0)\n"
        "f = jax.jit(lambda x: jax.lax.fori_loop(0, 200000, lambda i, a: jnp.tanh(a @ a), x))\n"
        "x = jnp.ones((600, 600)) / 600\n"
        "f(jnp.ones((2, 2))).block_until_ready()\n"  # compile a small one first
        "print('running', flush=True)\n"
        "f(x).block_until_ready()\n"
    )
    status, seconds, err = _interrupt_after([sys.executable, str(script)], "running", 2.0)
    # killed by the watchdog, or stopped by the KeyboardInterrupt (Python then ends itself by SIGINT)
    assert status in (-signal.SIGKILL, -signal.SIGINT), err
    assert seconds < 6.0


def test_watchdog_ends_a_call_that_holds_the_interpreter_lock(tmp_path):
    """scipy's eigh of a large matrix does not return to Python for many seconds; the watchdog ends it."""
    script = tmp_path / "long_lapack.py"
    script.write_text(
        "import numpy as np, scipy.linalg\n"
        "from nwcorrupt.cli import interrupt_watchdog\n"
        "interrupt_watchdog(1.0)\n"
        "a = np.random.default_rng(0).normal(size=(3000, 3000)); a = a @ a.T\n"
        "print('running', flush=True)\n"
        "for _ in range(20):\n"
        "    scipy.linalg.eigh(a)\n"
    )
    status, seconds, err = _interrupt_after([sys.executable, str(script)], "running", 1.0)
    assert status == -signal.SIGKILL, err
    assert "interrupted; the computation did not stop within 1 s" in err
    assert seconds < 6.0


def test_ctrl_c_during_a_study_exits_130_and_keeps_finished_records(tmp_path):
    """SIGINT once the first record is stored (the run is inside its point loop): status 130 at once, or 137
    from the watchdog if a compilation holds on past its grace period on a loaded machine; records intact."""
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "nwcorrupt.cli", "run", "centroid_rules", "--scale", "tiny", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)
    try:
        deadline = time.monotonic() + 300
        while not list((out / "records").glob("*.json")) if (out / "records").exists() else True:
            assert proc.poll() is None and time.monotonic() < deadline, "the run ended before storing a record"
            time.sleep(0.05)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        seconds = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode in (130, -signal.SIGKILL), err
    assert "interrupted" in err and seconds < 8.0
    records = list((out / "records").glob("*.json"))
    assert records
    for p in records:
        assert json.loads(p.read_text())["id"] == p.stem  # complete records only
