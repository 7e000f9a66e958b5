"""An installed (non-editable) nwcorrupt works outside the checkout.

The test builds a wheel of this source tree, installs it with ``--no-deps`` into a
fresh virtual environment under ``tmp_path`` and runs the ``nwcorrupt`` command from a
directory outside the checkout. The fresh environment reaches the dependencies
(jax, numpy, ...) of the environment running the tests through a ``.pth`` line naming
that environment's site-packages; ``.pth`` files found there (such as an editable
install of this checkout) are not processed, so the only nwcorrupt it can import is
the wheel's, which the test checks.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STUDY = "heavy_corruption"

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    """The environment of the commands: nothing that points Python at the checkout or another venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["MPLBACKEND"] = "Agg"
    env["PYTHONNOUSERSITE"] = "1"
    return env


def _run(cmd: list, cwd: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=_env(), capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


def _setuptools_builds_this() -> bool:
    """Whether the running environment's setuptools meets pyproject's build requirement (then no isolation)."""
    try:
        major = int(metadata.version("setuptools").split(".")[0])
    except metadata.PackageNotFoundError:
        return False
    return major >= 77


def _build_wheel(tmp: Path) -> Path:
    # build from a copy, so the checkout gets no build/ or egg-info folders
    src = tmp / "src"
    shutil.copytree(ROOT / "nwcorrupt", src / "nwcorrupt", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for name in ("pyproject.toml", "README.md", "MANIFEST.in", "LICENSE", "NOTICE"):
        if (ROOT / name).is_file():
            shutil.copy2(ROOT / name, src / name)
    wheels = tmp / "wheels"
    cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "-w", wheels, src]
    if _setuptools_builds_this():
        cmd.insert(5, "--no-build-isolation")
    _run(cmd, cwd=tmp)
    (wheel,) = wheels.glob("nwcorrupt-*.whl")
    return wheel


def test_the_installed_wheel_lists_runs_and_extends_studies_outside_the_checkout(tmp_path):
    wheel = _build_wheel(tmp_path)

    # a fresh venv; the wheel goes in first, so pip sees no other nwcorrupt
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", venv], cwd=tmp_path)
    py = venv / "bin" / "python"
    _run([py, "-m", "pip", "install", "--no-deps", "--no-index", "--disable-pip-version-check", "-q", wheel], cwd=tmp_path)
    site = Path(_run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=tmp_path).stdout.strip())
    deps = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))  # this venv's site-packages
    (site / "_nwcorrupt_test_deps.pth").write_text("".join(f"{d}\n" for d in deps))

    work = tmp_path / "work"  # a working directory outside the checkout, without experiments/
    work.mkdir()
    where = _run([py, "-c", "import jax, nwcorrupt; print(nwcorrupt.__file__)"], cwd=work).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where
    assert not Path(where).resolve().is_relative_to(ROOT)

    # the configs travel with the wheel
    nwcorrupt = venv / "bin" / "nwcorrupt"
    listing = _run([nwcorrupt, "list"], cwd=work).stdout
    shipped = sorted(p.stem for p in (ROOT / "nwcorrupt" / "experiments" / "configs").glob("*.toml"))
    assert len(shipped) >= 9
    for name in shipped:
        assert re.search(rf"^{name}\s+tiny, quick, full\s", listing, re.M), listing

    # the main study by name, at the tiny scale
    doc = tomllib.loads((ROOT / "nwcorrupt" / "experiments" / "configs" / f"{STUDY}.toml").read_text())
    tiny = doc["tiny"]
    n_noises, ps = len(tiny["noises"]), list(tiny["ps"])
    out = work / "results"
    first = _run([nwcorrupt, "run", STUDY, "--scale", "tiny", "--out", out, "--quiet"], cwd=work).stdout
    assert f"{STUDY} (tiny): {n_noises * len(ps)} points run, 0 already stored" in first
    assert len(list((out / "records").glob("*.json"))) == n_noises * len(ps)

    # one more p, from an edited copy of the config: exactly the new points are computed
    new_p = 0.8
    assert new_p not in ps
    text = (ROOT / "nwcorrupt" / "experiments" / "configs" / f"{STUDY}.toml").read_text()
    head, tiny_table = text.split("[tiny]")
    edited, n = re.subn(r"^ps = \[.*\]$", f"ps = {json.dumps([*ps, new_p])}", tiny_table, flags=re.M)
    assert n == 1
    copy = work / "more_p.toml"
    copy.write_text(head + "[tiny]" + edited)
    second = _run([nwcorrupt, "run", copy, "--scale", "tiny", "--out", out, "--quiet"], cwd=work).stdout
    assert f"{STUDY} (tiny): {n_noises} points run, {n_noises * len(ps)} already stored" in second
    records = [json.loads(p.read_text()) for p in (out / "records").glob("*.json")]
    assert len(records) == n_noises * (len(ps) + 1)
    assert sorted({r["point"]["p"] for r in records}) == sorted([*ps, new_p])
    assert json.loads((out / "config.json").read_text())["params"]["ps"] == sorted([*ps, new_p])

    # the same through a command-line override: nothing left to compute
    again = _run([nwcorrupt, "run", STUDY, "--scale", "tiny", "--set", f"ps={json.dumps([new_p])}",
                  "--out", out, "--quiet"], cwd=work).stdout
    assert f"{STUDY} (tiny): 0 points run, {n_noises} already stored" in again
