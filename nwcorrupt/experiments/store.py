"""The results store of one experiment run: atomic JSON records, CSV tables, figures.

Layout of a store folder::

    config.json          the validated configuration the folder belongs to
    records/<id>.json    one record per finished sweep point (written atomically)
    tables/<name>.csv    tables rebuilt from the records
    figures/<name>.png   figures rebuilt from the records (and .pdf)

A sweep point's id is a hash of (study, parameters, point), so a rerun of the
same configuration finds the points already done and skips them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from nwcorrupt._io import atomic_write_csv, atomic_write_json
from nwcorrupt.experiments.schema import ConfigError, ExperimentConfig


def point_id(config: ExperimentConfig, point: dict) -> str:
    """Stable id of a sweep point: the first 16 hex digits of a SHA-1 of its identity."""
    ident = json.dumps(
        {"study": config.study, "params": dataclasses.asdict(config.params), "point": point}, sort_keys=True
    )
    return hashlib.sha1(ident.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class Store:
    """A results folder (see the module docstring)."""

    root: Path

    @property
    def records_dir(self) -> Path:
        return self.root / "records"

    def open_for(self, config: ExperimentConfig) -> "Store":
        """Bind the folder to ``config``: write config.json, or check that it matches."""
        path = self.root / "config.json"
        mine = config.as_dict()
        if path.is_file():
            theirs = json.loads(path.read_text())
            if theirs != json.loads(json.dumps(mine)):
                raise ConfigError(
                    f"{self.root} holds results of a different configuration ({theirs.get('study')}, "
                    f"scale {theirs.get('scale')}); choose another --out folder"
                )
        else:
            atomic_write_json(path, mine)
        return self

    def config_dict(self) -> dict:
        path = self.root / "config.json"
        if not path.is_file():
            raise FileNotFoundError(f"{self.root} is not a results folder (no config.json)")
        return json.loads(path.read_text())

    def has(self, pid: str) -> bool:
        return (self.records_dir / f"{pid}.json").is_file()

    def write_record(self, pid: str, record: dict) -> Path:
        return atomic_write_json(self.records_dir / f"{pid}.json", record)

    def records(self) -> list[dict]:
        """All finished records, in the order of their sweep index."""
        if not self.records_dir.is_dir():
            return []
        out = [json.loads(p.read_text()) for p in self.records_dir.glob("*.json")]
        return sorted(out, key=lambda r: r.get("index", 0))

    def write_table(self, name: str, header: list[str], rows: list[list[Any]]) -> Path:
        return atomic_write_csv(self.root / "tables" / f"{name}.csv", header, rows)
