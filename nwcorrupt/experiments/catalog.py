"""The study configs shipped inside the package, and resolution of a study name or config path.

Every study has one TOML file in ``nwcorrupt/experiments/configs/`` (package
data, read with :mod:`importlib.resources`, so an installed wheel finds it from
any working directory). ``nwcorrupt run NAME`` takes a study name (the file's
stem) or a path to any TOML file of the same format.
"""

from __future__ import annotations

import importlib.resources
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.schema import ExperimentConfig, parse_config

__all__ = ["SCALE_ORDER", "describe", "document", "load", "names", "resolve", "scales", "text"]

SCALE_ORDER = ("tiny", "quick", "full")  # listed first, in this order; other scales follow alphabetically


def _folder():
    return importlib.resources.files("nwcorrupt.experiments").joinpath("configs")


def names() -> list[str]:
    """The names of the shipped study configs (file stems), sorted."""
    return sorted(f.name[: -len(".toml")] for f in _folder().iterdir() if f.name.endswith(".toml"))


def text(name: str) -> str:
    """The TOML text of the shipped config of study ``name``.

    Raises:
      ConfigError: for an unknown name, listing the shipped ones.
    """
    known = names()
    if name not in known:
        raise ConfigError(f"unknown study {name!r}; shipped studies: {', '.join(known)} (or pass a path to a .toml file)")
    return _folder().joinpath(f"{name}.toml").read_text(encoding="utf-8")


def _parse(source: str, body: str) -> dict:
    try:
        return tomllib.loads(body)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML ({err})") from None


def document(name: str) -> dict:
    """The parsed shipped config of study ``name``."""
    return _parse(f"{name}.toml (shipped)", text(name))


def _order(found) -> list[str]:
    found = set(found)
    return [s for s in SCALE_ORDER if s in found] + sorted(found - set(SCALE_ORDER))


def scales(name: str | None = None) -> list[str]:
    """The scale tables of the shipped config ``name``, or of all shipped configs together (tiny, quick, full, ...)."""
    docs = [document(name)] if name is not None else [document(n) for n in names()]
    return _order(k for doc in docs for k, v in doc.items() if isinstance(v, Mapping))


def describe() -> list[tuple[str, str, list[str]]]:
    """(name, description, scales) of every shipped config."""
    out = []
    for name in names():
        doc = document(name)
        out.append((name, str(doc.get("description", "")), _order(k for k, v in doc.items() if isinstance(v, Mapping))))
    return out


def resolve(spec: str | Path) -> tuple[dict, str]:
    """The parsed config named by ``spec`` and a label of its source.

    ``spec`` is a path to a TOML file when it names an existing file, ends in
    ``.toml`` or contains a path separator; otherwise it is a study name.

    Raises:
      ConfigError: for a missing file, invalid TOML or an unknown study name.
    """
    s = str(spec)
    if isinstance(spec, Path) or s.endswith(".toml") or "/" in s or "\\" in s or Path(s).is_file():
        path = Path(s)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist; shipped studies: {', '.join(names())}")
        return _parse(str(path), path.read_text(encoding="utf-8")), str(path)
    return document(s), f"{s}.toml (shipped)"


def load(spec: str | Path, scale: str = "quick", *, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate the config named by ``spec`` (a study name or a TOML path, see :func:`resolve`) at ``scale``."""
    doc, source = resolve(spec)
    return parse_config(doc, scale, source=source, overrides=overrides)
