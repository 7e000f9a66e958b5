"""Fault injection: a study killed (SIGKILL) at arbitrary moments, with a record damaged in between, loses
nothing and recomputes nothing finished; the final records equal an uninterrupted run's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np

STUDY = "centroid_rules"


def _cmd(out):
    return [sys.executable, "-m", "nwcorrupt.cli", "run", STUDY, "--scale", "tiny", "--out", str(out), "--quiet"]


def _metrics(out):
    return {p.name: json.loads(p.read_text())["metrics"] for p in sorted((out / "records").glob("*.json"))}


def test_kill_at_random_moments_then_resume_matches_an_uninterrupted_run(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    ref = tmp_path / "ref"
    subprocess.run(_cmd(ref), check=True, env=env, capture_output=True, timeout=600)
    expected = _metrics(ref)
    out = tmp_path / "killed"
    rng = np.random.default_rng(20261207)
    for delay in rng.uniform(2.0, 8.0, size=3):  # seconds after start: import, compile, between or inside points
        proc = subprocess.Popen(_cmd(out), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        # every record present is complete and valid JSON (written atomically), never a partial file
        for p in (out / "records").glob("*.json") if (out / "records").exists() else []:
            assert json.loads(p.read_text())["id"] == p.stem
    records = sorted((out / "records").glob("*.json")) if (out / "records").exists() else []
    if records:  # damage one finished record on top: it must be moved aside and recomputed
        records[0].write_text(records[0].read_text()[:40])
    before = {p.name: p.stat().st_mtime_ns for p in records[1:]}
    done = subprocess.run(_cmd(out), env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert _metrics(out) == expected
    # nothing finished was recomputed: the intact records were not rewritten
    assert {p: (out / "records" / p).stat().st_mtime_ns for p in before} == before
    if records:
        assert any(p.name.startswith(records[0].name) for p in (out / "damaged").iterdir())
