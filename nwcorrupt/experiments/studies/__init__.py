"""Registry of studies.

A study is a module with:

- ``DESCRIPTION``: one line;
- ``Params``: a frozen dataclass of its parameters (validated in ``__post_init__``);
- ``preflight(params)``: checks that need the environment (data sets present), before any work;
- ``points(params) -> list[dict]``: the sweep points (JSON-serialisable dicts);
- ``estimate(params, point) -> float``: rough seconds for one point on a 2-core CPU;
- ``run_point(params, point) -> dict``: the point's metrics (JSON-serialisable);
- ``tables(params, records) -> {name: (header, rows)}`` and ``figures(params, records) -> {name: fig}``,
  built from stored records alone.
"""

from __future__ import annotations

import importlib
from types import ModuleType

_STUDIES = {
    "accuracy_vs_corruption": "nwcorrupt.experiments.studies.accuracy_vs_corruption",
    "activations": "nwcorrupt.experiments.studies.activations",
    "centroid_comparison": "nwcorrupt.experiments.studies.centroid_comparison",
    "finite_vs_infinite": "nwcorrupt.experiments.studies.finite_vs_infinite",
    "centroid_rules": "nwcorrupt.experiments.studies.centroid_rules",
    "heavy_corruption": "nwcorrupt.experiments.studies.heavy_corruption",
    "noise_illustration": "nwcorrupt.experiments.studies.noise_illustration",
    "ptrain_ptest": "nwcorrupt.experiments.studies.ptrain_ptest",
    "snr_sweep": "nwcorrupt.experiments.studies.snr_sweep",
}


def names() -> list[str]:
    return sorted(_STUDIES)


def get(name: str) -> ModuleType:
    if name not in _STUDIES:
        raise ValueError(f"unknown study {name!r}; known studies: {names()}")
    return importlib.import_module(_STUDIES[name])
