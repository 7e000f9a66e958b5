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

**Sweep lists.** Some fields of ``Params`` are lists whose values enumerate the
sweep points (``ps`` gives each point its ``p``): :func:`sweeps` maps each such
field to the point key that takes its values. The result of a point depends on
its own values and on the other, *shared*, fields, but not on the rest of the
lists, so a results folder keys each point by (study, shared fields, point) and
a longer list only adds points. Lists that every point uses whole (``widths``
of ``finite_vs_infinite``, ``p_test`` of ``ptrain_ptest``, ``rules`` of
``centroid_rules``, ``ps`` of ``noise_illustration``) are shared fields. A point
whose result does depend on a sweep list names it in :func:`depends_on`. A study made of
several *parts* (``dilution``) sets ``POINTS_ARE_PRODUCT = False``: its points are not one
product of the lists, and each point holds the keys of the lists its part uses (two lists
may feed the same key). Fields that only shape the tables and figures (``REPORT_FIELDS``, e.g.
the target accuracies of ``dilution``) are not part of any point's identity: changing them
recomputes nothing. A study
module may declare both itself, as ``SWEEPS = {field: point_key}`` and
``depends_on(params, point) -> tuple[str, ...]``; otherwise the tables below
apply.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Any

__all__ = ["depends_on", "get", "names", "preflight", "report_fields", "sweeps"]

_STUDIES = {
    "accuracy_vs_corruption": "nwcorrupt.experiments.studies.accuracy_vs_corruption",
    "activations": "nwcorrupt.experiments.studies.activations",
    "alignment": "nwcorrupt.experiments.studies.alignment",
    "architectures": "nwcorrupt.experiments.studies.architectures",
    "centroid_comparison": "nwcorrupt.experiments.studies.centroid_comparison",
    "dilution": "nwcorrupt.experiments.studies.dilution",
    "finite_vs_infinite": "nwcorrupt.experiments.studies.finite_vs_infinite",
    "centroid_rules": "nwcorrupt.experiments.studies.centroid_rules",
    "heavy_corruption": "nwcorrupt.experiments.studies.heavy_corruption",
    "labels_and_inputs": "nwcorrupt.experiments.studies.labels_and_inputs",
    "noise_illustration": "nwcorrupt.experiments.studies.noise_illustration",
    "predictive_power": "nwcorrupt.experiments.studies.predictive_power",
    "principal_subspace": "nwcorrupt.experiments.studies.principal_subspace",
    "ptrain_ptest": "nwcorrupt.experiments.studies.ptrain_ptest",
    "snr_sweep": "nwcorrupt.experiments.studies.snr_sweep",
    "two_stage": "nwcorrupt.experiments.studies.two_stage",
}

# study -> {sweep-list field of Params: key of each point that takes its values}, in the
# order in which ``points`` nests them (the test suite checks both against ``points``)
_SWEEPS: dict[str, dict[str, str]] = {
    "accuracy_vs_corruption": {"datasets": "dataset", "ps": "p"},
    "activations": {"activations": "activation", "ps": "p"},
    "centroid_comparison": {"datasets": "dataset", "noises": "noise", "ps": "p"},
    "centroid_rules": {"noises": "noise", "ps": "p"},
    "finite_vs_infinite": {"noises": "noise", "ps": "p"},
    "heavy_corruption": {"noises": "noise", "ps": "p"},
    "labels_and_inputs": {"noises": "noise", "ps": "p", "rs": "r"},
    "noise_illustration": {"noises": "noise"},
    "ptrain_ptest": {"p_train": "p_train"},
    "snr_sweep": {"noises": "noise", "n_trains": "n_train", "sizes": "size"},
}


def _centroid_comparison_depends(study: ModuleType, params: Any, point: dict) -> tuple[str, ...]:
    # the record at p_ref stores the centroid model's predicted accuracy at every p of the sweep
    return ("ps",) if study.is_ref(params, point) else ()


_DEPENDS = {"centroid_comparison": _centroid_comparison_depends}


def names() -> list[str]:
    """The registered study names, sorted."""
    return sorted(_STUDIES)


def get(name: str) -> ModuleType:
    """The study module ``name``.

    Raises:
      ValueError: for an unknown name, listing the known ones.
    """
    if name not in _STUDIES:
        raise ValueError(f"unknown study {name!r}; known studies: {names()}")
    return importlib.import_module(_STUDIES[name])


def sweeps(name: str) -> dict[str, str]:
    """The sweep lists of study ``name``: ``{Params field: point key}`` (see the module docstring)."""
    study = get(name)
    declared = getattr(study, "SWEEPS", None)
    return dict(declared if declared is not None else _SWEEPS.get(name, {}))


def depends_on(name: str, params: Any, point: dict) -> tuple[str, ...]:
    """The sweep-list fields whose whole value the result of ``point`` depends on (usually none)."""
    study = get(name)
    declared = getattr(study, "depends_on", None)
    if declared is not None:
        return tuple(declared(params, point))
    rule = _DEPENDS.get(name)
    return rule(study, params, point) if rule is not None else ()


def report_fields(name: str) -> tuple[str, ...]:
    """The ``Params`` fields of study ``name`` that only shape its reports (not part of a point's identity)."""
    return tuple(getattr(get(name), "REPORT_FIELDS", ()))


def preflight(name: str, params: Any) -> None:
    """Every check of study ``name`` that needs the environment, before any work (``run`` and ``--dry-run``).

    The study's own ``preflight`` (e.g. its data sets are installed), then what every study needs:
    distinct values in each sweep list, and data-set sizes within the data (``common.check_data_sizes``).
    """
    from nwcorrupt.experiments.errors import ConfigError
    from nwcorrupt.experiments.studies import common

    for field in sweeps(name):
        values = getattr(params, field, None)
        if isinstance(values, (list, tuple)):
            seen = [json.dumps(v, sort_keys=True) for v in values]
            dups = sorted({v for v in seen if seen.count(v) > 1})
            if dups:
                raise ConfigError(f"{field} lists {', '.join(dups)} more than once (expected distinct values)")
    get(name).preflight(params)
    common.check_data_sizes(params)
