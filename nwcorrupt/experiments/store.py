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

Folders of the first layout (no ``"layout"`` key in config.json; point ids
hashed the whole configuration) are refused by :func:`check_layout`: their
records cannot be matched to the new ids.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nwcorrupt._io import atomic_write_csv, atomic_write_json
from nwcorrupt.experiments.errors import ConfigError

__all__ = ["LAYOUT", "Store", "check_layout", "merge_params", "merge_sweep_list", "point_id"]

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

    def config_dict(self) -> dict:
        """The folder's config.json.

        Raises:
          FileNotFoundError: when the folder is not a results folder.
        """
        if not self.config_path.is_file():
            raise FileNotFoundError(f"{self.root} is not a results folder (no config.json)")
        return json.loads(self.config_path.read_text())

    def write_config(self, doc: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.config_path, dict(doc))

    def has(self, pid: str) -> bool:
        return (self.records_dir / f"{pid}.json").is_file()

    def read_record(self, pid: str) -> dict:
        return json.loads((self.records_dir / f"{pid}.json").read_text())

    def write_record(self, pid: str, record: dict) -> Path:
        return atomic_write_json(self.records_dir / f"{pid}.json", record)

    def record_ids(self) -> list[str]:
        """Ids of every stored record, sorted."""
        if not self.records_dir.is_dir():
            return []
        return sorted(p.stem for p in self.records_dir.glob("*.json"))

    def records(self) -> list[dict]:
        """Every stored record, in the order of its sweep index (see ``runner.folder_records`` for the plan's)."""
        out = [self.read_record(pid) for pid in self.record_ids()]
        return sorted(out, key=lambda r: r.get("index", 0))

    def write_table(self, name: str, header: list[str], rows: list[list[Any]]) -> Path:
        return atomic_write_csv(self.root / "tables" / f"{name}.csv", header, rows)
