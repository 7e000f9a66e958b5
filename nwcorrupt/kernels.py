"""Infinite-width NNGP and NTK kernels of MLPs.

This module holds the :class:`MLP` architecture spec shared by the kernel,
predictor and finite-width code.
"""

from __future__ import annotations

import dataclasses
import math

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_choice

PARAMETERIZATIONS = ("ntk", "standard")


@dataclasses.dataclass(frozen=True)
class MLP:
    """A fully connected network of ``depth`` dense layers.

    ``depth`` = L counts dense layers: L - 1 hidden layers followed by a readout.
    Weights are N(0, W_std**2 / fan_in) and biases N(0, b_std**2), in the
    neural-tangents ``"ntk"`` or ``"standard"`` parameterisation. The spec is
    hashable, so it can be a static argument of jitted functions.
    """

    depth: int
    activation: str | _act.Activation = "relu"
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 1:
            raise ValueError(f"depth must be an integer >= 1 (number of dense layers), got {self.depth!r}")
        _act.get(self.activation)  # raises for an unknown activation
        for name, value, lo in (("W_std", self.W_std, 0.0), ("b_std", self.b_std, 0.0)):
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value < lo:
                raise ValueError(f"{name} must be a finite number >= {lo}, got {value!r}")
        if self.W_std == 0:
            raise ValueError("W_std must be > 0, got 0")
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)

    @property
    def act(self) -> _act.Activation:
        """The resolved :class:`~nwcorrupt.activations.Activation`."""
        return _act.get(self.activation)


@dataclasses.dataclass(frozen=True)
class Kernels:
    """Result of a kernel computation: NNGP and/or NTK matrices of shape (N1, N2).

    A field is ``None`` when it was not requested in ``get``.
    """

    nngp: object | None = None
    ntk: object | None = None
