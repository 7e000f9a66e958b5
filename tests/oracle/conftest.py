"""Oracle tests: nwcorrupt against neural-tangents, in ONE process.

They run in the pinned reference environment (``bash scripts/test_oracle.sh``,
which builds ``.venv-ref`` with ``scripts/ref_env.sh``). In an environment without
neural_tangents (the main ``.venv``) the modules that need it are not collected at
all, so the main suite shows no skips or errors from them; only
``test_nt_backend_missing.py``, which checks the install hint of the adapter, runs
everywhere.

Each test here runs with float64 enabled. Randomised tests draw fresh cases from a
seed printed in the report header; rerun a failure with ``ORACLE_SEED=<seed>``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets

import pytest

# Keep TensorFlow (imported by neural_tangents) quiet; a caller's setting wins.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HAVE_NT = importlib.util.find_spec("neural_tangents") is not None

# Modules that work without neural_tangents.
_ALWAYS = {"test_nt_backend_missing.py"}

if not HAVE_NT:
    _here = os.path.dirname(__file__)
    collect_ignore = sorted(
        f for f in os.listdir(_here) if f.startswith("test_") and f.endswith(".py") and f not in _ALWAYS
    )

#: Seed of the randomly drawn oracle cases (fresh each run unless ORACLE_SEED is set).
#: It is published in the environment so the test modules read the same value.
SEED = int(os.environ.get("ORACLE_SEED") or secrets.randbits(31))
os.environ["ORACLE_SEED"] = str(SEED)


def pytest_configure(config):
    # jax 0.5.3 on CPU cannot donate the native kernels' tile output buffers and warns on
    # every call (newer jax does not); the donation is only a memory optimisation.
    config.addinivalue_line("filterwarnings", "ignore:Some donated buffers were not usable:UserWarning")


def pytest_report_header(config):
    if HAVE_NT:
        return f"oracle: ORACLE_SEED={SEED} (set it to replay these randomly drawn cases)"
    return "oracle: neural_tangents not installed; oracle modules not collected (see scripts/ref_env.sh)"


@pytest.fixture(autouse=True)
def _oracle_x64():
    """float64 for every oracle test (restored afterwards)."""
    from nwcorrupt import precision

    with precision.x64(True):
        yield
