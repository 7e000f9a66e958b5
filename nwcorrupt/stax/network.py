"""A stax layer bound to its input shape: the finite network that :mod:`nwcorrupt.train` trains.

The training code passes examples as flat rows (N, d); :class:`Network` reshapes
them to (N, *input_shape) (e.g. (N, 28, 28, 1) for MNIST in NHWC) before the
layers, and its output must be one vector of class scores per example. Use it
wherever a :class:`~nwcorrupt.arch.MLP` goes in a
:class:`~nwcorrupt.train.TrainConfig` (``arch=Network(layer, (28, 28, 1))``,
``width=None``): ensembles, nested ensembles, noisy labels, early stopping and
checkpoints work unchanged. The parameters are a plain pytree (nested tuples of
arrays, ``None`` for an absent bias), initialised by the layers' Gaussian law or
by PyTorch's default (``init="torch_default"``, standard parameterisation).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import is_traced
from nwcorrupt.precision import default_float
from nwcorrupt.stax.builders import Layer
from nwcorrupt.stax.combinators import SerialSpec
from nwcorrupt.stax.layers import INIT_LAWS, ConvSpec, DenseSpec, LayerSpec

Array = jax.Array

__all__ = ["Network", "check_network"]


def _affine_specs(spec: LayerSpec) -> list[LayerSpec]:
    if isinstance(spec, (DenseSpec, ConvSpec)):
        return [spec]
    found: list[LayerSpec] = []
    for child in getattr(spec, "layers", ()):
        found += _affine_specs(child)
    return found


@dataclasses.dataclass(frozen=True)
class Network:
    """A stax :class:`~nwcorrupt.stax.Layer` and the per-example shape of its inputs.

    Attributes:
      layer: the network, e.g. ``stax.serial(stax.Conv(16, (3, 3)), stax.Relu(), stax.Flatten(), stax.Dense(10))``.
      input_shape: per-example input shape without the batch axis, e.g. (28, 28, 1).
    """

    layer: Layer
    input_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if not isinstance(self.layer, Layer):
            raise TypeError(f"layer must be an nwcorrupt.stax layer (e.g. stax.serial(...)), got {type(self.layer).__name__}")
        shape = tuple(self.input_shape) if isinstance(self.input_shape, (tuple, list)) else None
        if not shape or not all(isinstance(v, (int, np.integer)) and v >= 1 for v in shape):
            raise ValueError(f"input_shape must be a non-empty tuple of positive integers, got {self.input_shape!r}")
        object.__setattr__(self, "input_shape", tuple(int(v) for v in shape))
        out = self.output_shape
        if isinstance(out, list) or len(out) != 1:
            raise ValueError(
                f"the network must end in one vector per example (e.g. Flatten or GlobalAvgPool, then Dense), "
                f"got per-example output shape {out}"
            )

    @property
    def spec(self) -> LayerSpec:
        return self.layer.spec

    @property
    def output_shape(self) -> Any:
        """Per-example output shape (validated: raises naming the layer that cannot take its input)."""
        return self.spec.output_shape(self.input_shape)

    @property
    def d(self) -> int:
        """Input dimension of a flat row, prod(input_shape)."""
        return math.prod(self.input_shape)

    @property
    def num_outputs(self) -> int:
        return int(self.output_shape[0])

    @property
    def has_convolution(self) -> bool:
        """Whether some layer is a :func:`~nwcorrupt.stax.Conv` (training picks its stepping by it)."""
        return any(isinstance(spec, ConvSpec) for spec in _affine_specs(self.spec))

    def check_init_law(self, law: Any) -> str:
        """``law`` if the network can be initialised with it (``torch_default`` needs standard layers)."""
        if law not in INIT_LAWS:
            raise ValueError(f"init must be one of {INIT_LAWS}, got {law!r}")
        if law == "torch_default":
            bad = [s.label() for s in _affine_specs(self.spec) if s.parameterization != "standard"]
            if bad:
                raise ValueError(f"init='torch_default' needs parameterization='standard' in every layer, got {bad}")
        return law

    def check_rows(self, d_in: int) -> None:
        if d_in != self.d:
            raise ValueError(
                f"the network takes inputs of shape {self.input_shape} ({self.d} features per row), "
                f"got rows of {d_in} features"
            )

    def init(self, key: Array, *, dtype: Any = None, law: str = "gaussian") -> Any:
        """Parameters drawn with ``key`` (a pytree of arrays)."""
        self.check_init_law(law)
        return self.spec.init(key, self.input_shape, law, np.dtype(default_float() if dtype is None else dtype))

    def apply(self, params: Any, x: Array) -> Array:
        """Outputs (N, C) for flat rows x (N, d) or inputs (N, *input_shape)."""
        x = jnp.asarray(x)
        if x.ndim == 2 and self.input_shape != (x.shape[1],):
            self.check_rows(x.shape[1])
            x = x.reshape((x.shape[0],) + self.input_shape)
        return self.spec.apply(params, x)

    def top_layers(self) -> tuple[LayerSpec, ...]:
        """The top-level layers (those of the outer ``serial``; the network itself otherwise)."""
        return self.spec.layers if isinstance(self.spec, SerialSpec) else (self.spec,)

    def features(self, params: Any, x: Array, stop: int) -> Array:
        """Outputs (N, ...) of the first ``stop`` top-level layers, for flat rows or shaped inputs.

        ``stop = len(top_layers()) - 1`` gives the representation the readout reads (the
        penultimate layer); 0 gives the (reshaped) inputs.
        """
        layers = self.top_layers()
        if not isinstance(stop, int) or not 0 <= stop <= len(layers):
            raise ValueError(f"stop must be an integer in [0, {len(layers)}], got {stop!r}")
        x = jnp.asarray(x)
        if x.ndim == 2 and self.input_shape != (x.shape[1],):
            self.check_rows(x.shape[1])
            x = x.reshape((x.shape[0],) + self.input_shape)
        plist = params if isinstance(self.spec, SerialSpec) else (params,)
        for spec, p in zip(layers[:stop], plist[:stop]):
            x = spec.apply(p, x)
        return x

    def unit_count(self) -> int:
        """Activations per example summed over the top-level layers (a memory estimate)."""
        layers = self.top_layers()
        total, shape = 0, self.input_shape
        for spec in layers:
            shape = spec.output_shape(shape)
            shapes = shape if isinstance(shape, list) else [shape]
            total += sum(math.prod(s) for s in shapes)
        return total

    def kernel_fn(self, x1: Any, x2: Any = None, get: Any = None, **kwargs: Any) -> Any:
        """The infinite-width kernel of the network for flat rows or shaped inputs (see ``KernelFn``)."""
        def shaped(x: Any) -> Any:
            if x is None:
                return None
            x = x if is_traced(x) else np.asarray(x)
            if x.ndim == 2 and self.input_shape != (x.shape[1],):
                self.check_rows(x.shape[1])
                return x.reshape((x.shape[0],) + self.input_shape)
            return x

        return self.layer[2](shaped(x1), shaped(x2), get, **kwargs)

    def describe(self) -> dict:
        """JSON-serialisable description (training fingerprints)."""
        return {"network": self.spec.describe(), "input_shape": list(self.input_shape)}


def check_network(value: Any) -> Network:
    """``value`` if it is a :class:`Network`, else ``TypeError``."""
    if not isinstance(value, Network):
        raise TypeError(f"expected an nwcorrupt.stax.Network, got {type(value).__name__}")
    return value
