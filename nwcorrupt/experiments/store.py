"""The results store of one experiment: atomic JSON records, CSV tables, figures.

Layout of a store folder::

    config.json          the study and the parameters the folder holds results for
    records/<id>.json    one record per finished sweep point (written atomically)
    tables/<name>.csv    tables rebuilt from the records
    figures/<name>.png   figures rebuilt from the records (and .pdf)

A sweep point's id is a hash of its *key*: the study, the shared parameters
(every field that is not a sweep list, see :func:`nwcorrupt.experiments.studies.sweeps`)
and the point itself. The key does not depend on the other values of the sweep
lists, so a rerun finds the points already done and a longer list (one more p)
computes only the new points. A folder holds one set of shared parameters:
a run with another value of one of them is refused (:func:`merge_params` names
the keys). ``config.json`` holds the shared parameters and, for each sweep list,
the union of the values of every run into the folder, so it describes every
point the folder can hold.

**Damaged files heal.** A record that does not parse as JSON, or lacks what a finished point holds
(its ``id``, ``key``, ``point`` and ``metrics``), is moved aside to ``damaged/`` (not deleted), with a
:class:`~nwcorrupt.experiments.errors.DamagedFileWarning` naming both paths, and counts as not done:
the next run recomputes it. A damaged ``config.json`` is moved aside the same way
(:class:`~nwcorrupt.experiments.errors.DamagedFileError`): a run rebuilds it from its own
configuration, a report asks for that run.

Folders of the first layout (no ``"layout"`` key in config.json; point ids
hashed the whole configuration) are refused by :func:`check_layout`: their
records cannot be matched to the new ids.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import math
import numbers
import os
import warnings
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from nwcorrupt._io import atomic_write_csv, atomic_write_json
from nwcorrupt.experiments.errors import ConfigError, DamagedFileError, DamagedFileWarning

__all__ = [
    "DAMAGED_DIR",
    "LAYOUT",
    "Store",
    "check_layout",
    "config_problem",
    "merge_params",
    "merge_sweep_list",
    "nonfinite_paths",
    "point_id",
    "record_problem",
]

#: where damaged files of a results folder are moved (relative to the folder)
DAMAGED_DIR = "damaged"

LAYOUT = 2  # version of the folder layout written in config.json


def point_id(key: Mapping[str, Any]) -> str:
    """Stable id of a sweep point: the first 16 hex digits of a SHA-1 of its key (a JSON-able dict)."""
    return hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def merge_sweep_list(old: list, new: list) -> list:
    """The union of two values of a sweep list: ``old`` and then the new values, sorted when all are numbers.

    ``old`` is returned unchanged when ``new`` adds nothing.
    """
    old = list(old)
    extra = [v for v in new if v not in old]
    if not extra:
        return old
    merged = old + list(dict.fromkeys(extra))
    return sorted(merged) if all(_is_number(v) for v in merged) else merged


def merge_params(folder: Mapping[str, Any], new: Mapping[str, Any], sweeps: Iterable[str], *, where: str) -> dict:
    """Parameters a folder holds after a run with ``new``: shared keys must agree, sweep lists are united.

    Args:
      folder: the parameters in the folder's config.json (JSON values).
      new: the run's parameters (JSON values).
      sweeps: the names of the sweep-list fields.
      where: the folder, for messages.

    Raises:
      ConfigError: naming every shared key whose values differ (folder's value and the run's).
    """
    sweeps = set(sweeps)
    diffs = [
        f"{k} = {json.dumps(folder.get(k, '<absent>'))} there, {json.dumps(new.get(k, '<absent>'))} here"
        for k in sorted(set(folder) | set(new))
        if k not in sweeps and folder.get(k, "<absent>") != new.get(k, "<absent>")
    ]
    if diffs:
        raise ConfigError(
            f"{where} holds results of a different configuration: {'; '.join(diffs)}. Only the sweep lists "
            f"({', '.join(sorted(sweeps)) or 'none'}) may change between runs into one folder; choose another --out folder"
        )
    out = dict(folder)
    for k, v in new.items():
        if k in sweeps:
            out[k] = merge_sweep_list(folder[k], v) if k in folder else v
    return out


def nonfinite_paths(obj: Any, prefix: str = "metrics") -> list[str]:
    """Paths (``metrics.accuracy.ntk[2]``) of the NaN and infinite numbers in a JSON-like object."""
    out: list[str] = []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += nonfinite_paths(v, f"{prefix}.{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            out += nonfinite_paths(v, f"{prefix}[{i}]")
    elif isinstance(obj, numbers.Real) and not isinstance(obj, bool) and not math.isfinite(float(obj)):
        out.append(prefix)
    elif hasattr(obj, "dtype") and hasattr(obj, "shape"):  # a NumPy/JAX array
        arr = np.asarray(obj)
        if np.issubdtype(arr.dtype, np.floating):
            out += [f"{prefix}[{', '.join(str(int(j)) for j in i)}]" for i in zip(*np.nonzero(~np.isfinite(arr)))]
    return out


def record_problem(record: Any, pid: str) -> str | None:
    """What a stored record of point ``pid`` lacks, in words, or None when it is a finished point's record."""
    if not isinstance(record, dict):
        return f"holds a JSON {type(record).__name__}, not an object"
    if record.get("id") != pid:
        return f"its id is {record.get('id')!r}, not {pid!r}"
    for name in ("key", "point", "metrics"):
        if not isinstance(record.get(name), dict):
            return f"has no {name!r} object"
    return None


def config_problem(doc: Any) -> str | None:
    """What a results folder's config.json lacks, in words, or None."""
    if not isinstance(doc, dict):
        return f"holds a JSON {type(doc).__name__}, not an object"
    if not isinstance(doc.get("study"), str):
        return "has no 'study' name"
    if not isinstance(doc.get("params"), dict):
        return "has no 'params' object"
    return None


def _parse(path: Path) -> tuple[Any, str | None]:
    try:
        return json.loads(path.read_text()), None
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        return None, f"does not parse as JSON ({type(err).__name__}: {err})"


def check_layout(doc: Mapping[str, Any], where: str) -> None:
    """Refuse a config.json of another folder layout."""
    layout = doc.get("layout", 1)
    if layout != LAYOUT:
        raise ConfigError(
            f"{where} was written with results-folder layout {layout} (this nwcorrupt writes layout {LAYOUT}, "
            "where a point's id depends only on its own parameters); its records cannot be matched to points "
            "and are not reused. Run into a new --out folder, or move this one away"
        )


@dataclasses.dataclass(frozen=True)
class Store:
    """A results folder (see the module docstring)."""

    root: Path

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    @property
    def config_path(self) -> Path:
        return self.root / "config.json"

    def exists(self) -> bool:
        """Whether the folder already holds a config.json."""
        return self.config_path.is_file()

    def quarantine(self, path: Path, reason: str) -> Path:
        """Move a damaged file of the folder to ``damaged/<name>.<UTC time>`` and warn; returns the new path."""
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
        dest = self.root / DAMAGED_DIR / f"{path.name}.{stamp}"
        dest.parent.mkdir(parents=True, exist_ok=True)
        os.replace(path, dest)
        warnings.warn(f"{path} {reason}; moved to {dest}", DamagedFileWarning, stacklevel=3)
        return dest

    def config_dict(self) -> dict:
        """The folder's config.json.

        Raises:
          FileNotFoundError: when the folder is not a results folder.
          DamagedFileError: when config.json does not parse or lacks the study or its parameters (it is
            moved aside first; the message names both paths).
        """
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.root} is not a results folder (no config.json)")
        doc, problem = _parse(self.config_path)
        problem = problem or config_problem(doc)
        if problem:
            dest = self.quarantine(self.config_path, problem)
            raise DamagedFileError(
                f"{self.config_path} {problem}; moved to {dest}. Run `nwcorrupt run` with this folder's "
                "configuration to rebuild it (the finished records are kept and reused)"
            )
        return doc

    def write_config(self, doc: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.config_path, dict(doc))

    def has(self, pid: str) -> bool:
        """Whether point ``pid`` has a finished record (a damaged one does not count; nothing is moved)."""
        path = self.records_dir / f"{pid}.json"
        if not path.is_file():
            return False
        rec, problem = _parse(path)
        return not (problem or record_problem(rec, pid))

    def load_record(self, pid: str) -> dict | None:
        """The finished record of point ``pid``, or None; a damaged record is moved aside (and warned of)."""
        path = self.records_dir / f"{pid}.json"
        if not path.is_file():
            return None
        rec, problem = _parse(path)
        problem = problem or record_problem(rec, pid)
        if problem:
            self.quarantine(path, problem)
            return None
        return rec

    def read_record(self, pid: str) -> dict:
        """The record of point ``pid``; raises ``DamagedFileError`` (after moving it aside) when it is damaged."""
        rec = self.load_record(pid)
        if rec is None:
            raise DamagedFileError(f"point {pid} of {self.root} has no finished record")
        return rec

    def write_record(self, pid: str, record: dict) -> Path:
        return atomic_write_json(self.records_dir / f"{pid}.json", record)

    def record_ids(self) -> list[str]:
        """Ids of every stored record, sorted."""
        if not self.records_dir.is_dir():
            return []
        return sorted(p.stem for p in self.records_dir.glob("*.json"))

    def records(self) -> list[dict]:
        """Every stored record, in the order of its sweep index (see ``runner.folder_records`` for the plan's)."""
        out = [rec for rec in map(self.load_record, self.record_ids()) if rec is not None]
        return sorted(out, key=lambda r: r.get("index", 0))

    def write_table(self, name: str, header: list[str], rows: list[list[Any]]) -> Path:
        return atomic_write_csv(self.root / "tables" / f"{name}.csv", header, rows)
