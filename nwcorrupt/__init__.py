"""nwcorrupt: infinite-width theory of learning from heavily corrupted data, in JAX.

Submodules are imported lazily, so ``import nwcorrupt`` is cheap and has no side
effects (in particular it never changes ``jax_enable_x64``). Use them as
``nwcorrupt.data``, ``nwcorrupt.corruption``, ``nwcorrupt.prototype``, ...
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = (
    "activations",
    "arch",
    "cli",
    "compare",
    "corruption",
    "data",
    "distributed",
    "empirical",
    "experiments",
    "fluctuations",
    "kernels",
    "labels",
    "metrics",
    "mlp",
    "plots",
    "precision",
    "predict",
    "probe",
    "prototype",
    "stax",
    "subspace",
    "theory",
    "train",
    "two_stage",
)

__all__ = ["__version__", *_SUBMODULES]


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'nwcorrupt' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_SUBMODULES))
