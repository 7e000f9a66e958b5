"""Specs that compose layers: in series, side by side, and the branches between them.

``SerialSpec`` chains layers; ``FanOutSpec`` copies one input into several
branches, ``ParallelSpec`` applies one layer per branch, and ``FanInSumSpec`` /
``FanInConcatSpec`` merge branches back into one tensor — so a residual block is
``serial(FanOut(2), parallel(block, Identity()), FanInSum())``.

Several branches travel as Python lists: of per-example shapes, of arrays, of
kernel states. Kernels of merged branches follow neural-tangents: a sum adds the
branches' covariances, which needs mean-zero Gaussian branches (each ending in a
Dense or Conv layer) whose cross-covariances vanish — exact when the branches
have independent weights, e.g. a residual branch next to the identity of a
preactivation. A channel concatenation averages the branches' covariances
weighted by their channel counts; its output is then a mixture of differently
distributed channels, so (as in neural-tangents) no activation may follow it
directly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from nwcorrupt.stax.layers import LayerSpec, ShapeError
from nwcorrupt.stax.state import KernelState, to_diagonal

Array = jax.Array

__all__ = ["FanInConcatSpec", "FanInSumSpec", "FanOutSpec", "ParallelSpec", "SerialSpec", "describe_value"]


def describe_value(value: Any) -> Any:
    """``value`` made JSON-friendly: specs become their descriptions, tuples lists."""
    if isinstance(value, LayerSpec):
        return value.describe()
    if isinstance(value, (tuple, list)):
        return [describe_value(v) for v in value]
    return value


def _prefixed(error: ShapeError, prefix: str) -> ShapeError:
    return ShapeError(f"{prefix}: {error}")


@dataclasses.dataclass(frozen=True)
class SerialSpec(LayerSpec):
    """Layers applied one after the other (neural-tangents' ``serial``)."""

    kind: ClassVar[str] = "serial"
    layers: tuple[LayerSpec, ...]

    def label(self) -> str:
        return f"serial({len(self.layers)} layers)"

    def describe(self) -> dict:
        return {"layer": self.kind, "layers": describe_value(self.layers)}

    def output_shape(self, in_shape: Any) -> Any:
        shape = in_shape
        for i, spec in enumerate(self.layers):
            try:
                shape = spec.output_shape(shape)
            except ShapeError as err:
                raise _prefixed(err, f"serial layer {i}") from None
        return shape

    def init(self, key: Array, in_shape: Any, law: str, dtype: Any) -> tuple:
        keys = jax.random.split(key, max(len(self.layers), 1))
        params, shape = [], in_shape
        for i, spec in enumerate(self.layers):
            params.append(spec.init(keys[i], shape, law, dtype))
            shape = spec.output_shape(shape)
        return tuple(params)

    def apply(self, params: Any, x: Any) -> Any:
        for spec, p in zip(self.layers, params):
            x = spec.apply(p, x)
        return x

    def transform(self, state: Any) -> Any:
        for spec in self.layers:
            state = spec.transform(state)
        return state

    def input_full(self, out_full: Any) -> Any:
        for spec in reversed(self.layers):
            out_full = spec.input_full(out_full)
        return out_full


def _branches(spec: LayerSpec, value: Any, n: int) -> list:
    if not isinstance(value, list):
        raise spec.error(f"expects {n} branches (a list, e.g. from FanOut({n})), got one input")
    if len(value) != n:
        raise spec.error(f"expects {n} branches, got {len(value)}")
    return value


@dataclasses.dataclass(frozen=True)
class ParallelSpec(LayerSpec):
    """One layer per branch (neural-tangents' ``parallel``)."""

    kind: ClassVar[str] = "parallel"
    layers: tuple[LayerSpec, ...]

    def label(self) -> str:
        return f"parallel({len(self.layers)} branches)"

    def describe(self) -> dict:
        return {"layer": self.kind, "layers": describe_value(self.layers)}

    def output_shape(self, in_shape: Any) -> list:
        shapes = _branches(self, in_shape, len(self.layers))
        out = []
        for i, (spec, shape) in enumerate(zip(self.layers, shapes)):
            try:
                out.append(spec.output_shape(shape))
            except ShapeError as err:
                raise _prefixed(err, f"parallel branch {i}") from None
        return out

    def init(self, key: Array, in_shape: Any, law: str, dtype: Any) -> tuple:
        keys = jax.random.split(key, max(len(self.layers), 1))
        return tuple(spec.init(k, s, law, dtype) for spec, k, s in zip(self.layers, keys, in_shape))

    def apply(self, params: Any, x: Any) -> list:
        xs = _branches(self, x, len(self.layers))
        return [spec.apply(p, xi) for spec, p, xi in zip(self.layers, params, xs)]

    def transform(self, state: Any) -> list:
        states = _branches(self, state, len(self.layers))
        return [spec.transform(s) for spec, s in zip(self.layers, states)]

    def input_full(self, out_full: Any) -> list:
        outs = out_full if isinstance(out_full, list) else [out_full] * len(self.layers)
        return [spec.input_full(o) for spec, o in zip(self.layers, outs)]


@dataclasses.dataclass(frozen=True)
class FanOutSpec(LayerSpec):
    """Copies its input into ``num`` branches (neural-tangents' ``FanOut``)."""

    kind: ClassVar[str] = "FanOut"
    num: int

    def __post_init__(self) -> None:
        if not isinstance(self.num, int) or isinstance(self.num, bool) or self.num < 1:
            raise ValueError(f"FanOut: num must be an integer >= 1, got {self.num!r}")

    def label(self) -> str:
        return f"FanOut({self.num})"

    def output_shape(self, in_shape: Any) -> list:
        if isinstance(in_shape, list):
            raise self.error("expects one input, got several branches")
        return [in_shape] * self.num

    def apply(self, params: Any, x: Any) -> list:
        return [x] * self.num

    def transform(self, state: Any) -> list:
        return [state] * self.num

    def input_full(self, out_full: Any) -> bool:
        return any(out_full) if isinstance(out_full, list) else bool(out_full)


def _merge_layout(states: list[KernelState]) -> list[KernelState]:
    """Bring branch states to one layout (diagonal unless all are full)."""
    if all(s.full for s in states) or not any(s.full for s in states):
        return states
    return [to_diagonal(s) for s in states]


def _weighted(
    states: list[KernelState], weights: list[float], shape: tuple[int, ...], gaussian: bool
) -> KernelState:
    def combine(name: str) -> Array | None:
        values = [getattr(s, name) for s in states]
        if values[0] is None:
            return None
        total = weights[0] * values[0]
        for w, v in zip(weights[1:], values[1:]):
            total = total + w * v
        return total

    first = states[0]
    peak = max(s.peak for s in states)
    merged = dataclasses.replace(
        first,
        nngp=combine("nngp"),
        ntk=combine("ntk"),
        cov1=combine("cov1"),
        cov2=combine("cov2"),
        shape=shape,
        gaussian=gaussian,
    )
    return dataclasses.replace(merged, peak=max(peak, merged.peak), total=sum(s.total for s in states))


@dataclasses.dataclass(frozen=True)
class FanInSumSpec(LayerSpec):
    """Sums its branches (neural-tangents' ``FanInSum``); they must have equal shapes."""

    kind: ClassVar[str] = "FanInSum"

    def label(self) -> str:
        return "FanInSum()"

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        if not isinstance(in_shape, list) or not in_shape:
            raise self.error("expects a list of branches (e.g. from FanOut), got one input")
        if any(s != in_shape[0] for s in in_shape):
            raise self.error(f"branches must have equal per-example shapes to be summed, got {in_shape}")
        return in_shape[0]

    def apply(self, params: Any, x: Any) -> Array:
        self.output_shape([tuple(v.shape[1:]) for v in x] if isinstance(x, list) else tuple(x.shape[1:]))
        total = x[0]
        for v in x[1:]:
            total = total + v
        return total

    def transform(self, state: Any) -> KernelState:
        shape = self.output_shape([s.shape for s in state] if isinstance(state, list) else state.shape)
        if not all(s.gaussian for s in state):
            raise self.error(
                "every branch must end in a Dense or Conv layer (mean-zero Gaussian outputs), so that their "
                "covariances add; got a branch ending in an activation, Flatten or the network input"
            )
        states = _merge_layout(state)
        return _weighted(states, [1.0] * len(states), shape, True)


@dataclasses.dataclass(frozen=True)
class FanInConcatSpec(LayerSpec):
    """Concatenates its branches along the channel axis (neural-tangents' ``FanInConcat(axis=-1)``)."""

    kind: ClassVar[str] = "FanInConcat"
    axis: int = -1

    def __post_init__(self) -> None:
        if self.axis != -1:
            raise ValueError(f"FanInConcat: only axis=-1 (the channel axis) is supported, got axis={self.axis!r}")

    def label(self) -> str:
        return "FanInConcat(axis=-1)"

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        if not isinstance(in_shape, list) or not in_shape:
            raise self.error("expects a list of branches (e.g. from FanOut), got one input")
        rest = [s[:-1] for s in in_shape]
        if any(r != rest[0] for r in rest):
            raise self.error(f"branches must agree on every axis but the channel axis, got {in_shape}")
        return rest[0] + (sum(s[-1] for s in in_shape),)

    def apply(self, params: Any, x: Any) -> Array:
        self.output_shape([tuple(v.shape[1:]) for v in x] if isinstance(x, list) else tuple(x.shape[1:]))
        return jnp.concatenate(x, axis=-1)

    def transform(self, state: Any) -> KernelState:
        shape = self.output_shape([s.shape for s in state] if isinstance(state, list) else state.shape)
        states = _merge_layout(state)
        total = shape[-1]
        # channels of different branches have different covariances: their average is right for a
        # linear readout, but an activation after the concatenation would need each branch's own
        return _weighted(states, [s.channels / total for s in states], shape, False)
