"""Typed experiment configurations read from TOML, with strict validation.

The configs of the shipped studies live inside the package (see
:mod:`nwcorrupt.experiments.catalog`). A config file names its study and gives one table of parameters per scale::

    study = "centroid_rules"
    description = "..."

    [quick]
    dataset = "digits"
    ps = [0.0, 0.5, 0.9]

    [full]
    dataset = "mnist"

Each study declares a frozen dataclass of parameters; a scale's table may set
any subset of its fields (the rest keep their defaults). Unknown keys, wrong
types and bad values (p outside [0, 1], an unknown data set, ...) raise
:class:`ConfigError` before any work starts.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nwcorrupt.experiments import studies as _registry
from nwcorrupt.experiments.errors import ConfigError

__all__ = [
    "REQUIRED_SCALES",
    "TOP_LEVEL_KEYS",
    "ConfigError",
    "ExperimentConfig",
    "build_params",
    "coerce",
    "load_config",
    "parse_config",
]

TOP_LEVEL_KEYS = ("study", "description")
REQUIRED_SCALES = ("quick", "full")


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A validated configuration: the study, the chosen scale and its parameters."""

    study: str
    scale: str
    params: Any  # the study's frozen parameter dataclass
    description: str = ""
    source: str = ""

    def as_dict(self) -> dict:
        return {"study": self.study, "scale": self.scale, "params": dataclasses.asdict(self.params)}


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def coerce(where: str, value: Any, tp: Any) -> Any:
    """Check ``value`` against the annotation ``tp`` (int, float, str, bool, tuple[...] and unions)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return coerce(where, value, option)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: got {value!r}, expected one of {[_type_name(a) for a in typing.get_args(tp)]}")
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(coerce(f"{where}[{i}]", v, args[0]) for i, v in enumerate(value))
        if len(args) != len(value):
            raise ConfigError(f"{where}: expected a list of {len(args)} values, got {value!r}")
        return tuple(coerce(f"{where}[{i}]", v, a) for i, (v, a) in enumerate(zip(value, args)))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported parameter type {tp!r}")  # pragma: no cover - schema bug


def build_params(cls: type, table: Mapping[str, Any], where: str) -> Any:
    """Instantiate the parameter dataclass ``cls`` from a TOML table, strictly."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table of parameters, got {table!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed keys are {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {k: coerce(f"{where}.{k}", v, hints[k]) for k, v in table.items()}
    try:
        return cls(**values)
    except (ValueError, TypeError) as err:
        raise ConfigError(f"{where}: {err}") from None


def load_config(path: str | Path, scale: str = "quick", *, overrides: Mapping[str, Any] | None = None) -> ExperimentConfig:
    """Read and validate a config file for one scale.

    Args:
      path: the TOML file.
      scale: a scale table of the file (``"quick"``, ``"full"``, or any other it defines).
      overrides: parameter values that replace the file's (validated the same way).
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML ({err})") from None
    return parse_config(doc, scale, source=str(path), overrides=overrides)


def parse_config(doc: Mapping[str, Any], scale: str, *, source: str = "<dict>", overrides=None, studies=None) -> ExperimentConfig:
    """Validate an already-parsed config document (see :func:`load_config`).

    ``studies`` is the study registry (a module or object with ``names()`` and
    ``get(name)``); the default is :mod:`nwcorrupt.experiments.studies`.
    """
    if studies is None:
        studies = _registry
    name = doc.get("study")
    if not isinstance(name, str):
        raise ConfigError(f"{source}: missing the top-level key study = \"<name>\"; known studies: {studies.names()}")
    if name not in studies.names():
        raise ConfigError(f"{source}: unknown study {name!r}; known studies: {studies.names()}")
    scales = [k for k, v in doc.items() if isinstance(v, Mapping)]
    unknown = sorted(k for k in doc if k not in TOP_LEVEL_KEYS and k not in scales)
    if unknown:
        raise ConfigError(f"{source}: unknown top-level key(s) {unknown}; allowed: {list(TOP_LEVEL_KEYS)} and scale tables")
    missing = [s for s in REQUIRED_SCALES if s not in scales]
    if missing:
        raise ConfigError(f"{source}: missing scale table(s) {missing}; every config needs [quick] and [full]")
    if scale not in scales:
        order = [s for s in ("tiny", *REQUIRED_SCALES) if s in scales] + sorted(set(scales) - {"tiny", *REQUIRED_SCALES})
        raise ConfigError(f"{source}: no scale {scale!r}; the valid scales of this config are {', '.join(order)}")
    study = studies.get(name)
    table = dict(doc[scale])
    if overrides:
        table.update(overrides)
    params = build_params(study.Params, table, f"{source} [{scale}]")
    return ExperimentConfig(study=name, scale=scale, params=params, description=str(doc.get("description", "")), source=source)
