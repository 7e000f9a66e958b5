"""neural-tangents-shaped constructors: each returns an ``(init_fn, apply_fn, kernel_fn)`` triple.

``init_fn(rng, input_shape) -> (output_shape, params)`` with the batch axis in the
shapes (any value, e.g. -1); ``apply_fn(params, inputs)``; and
``kernel_fn(x1, x2=None, get=None)`` — the infinite-width NNGP/NTK of the layer
(or network) for NHWC images or (N, d) vectors, exactly as in neural-tangents.

The triple is a :class:`Layer`: it unpacks like a tuple and also carries its
spec, so layers compose with :func:`serial`, :func:`parallel` and the fan
layers, compare equal when they describe the same network, and can be trained by
:mod:`nwcorrupt.train` (see :class:`~nwcorrupt.stax.network.Network`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_positive_int, is_traced
from nwcorrupt.arch import GET_NAMES, Kernels, normalize_get, select_kernels
from nwcorrupt.precision import default_float
from nwcorrupt.stax.combinators import (
    FanInConcatSpec,
    FanInSumSpec,
    FanOutSpec,
    ParallelSpec,
    SerialSpec,
)
from nwcorrupt.stax.layers import (
    AvgPoolSpec,
    ConvSpec,
    DenseSpec,
    FlattenSpec,
    GlobalAvgPoolSpec,
    IdentitySpec,
    LayerSpec,
    NonlinearitySpec,
)
from nwcorrupt.stax.tiling import DEFAULT_MEMORY_BUDGET, network_kernels, transform_inputs

Array = jax.Array

__all__ = [
    "Abs",
    "AvgPool",
    "Conv",
    "Dense",
    "Erf",
    "FanInConcat",
    "FanInSum",
    "FanOut",
    "Flatten",
    "Gelu",
    "GlobalAvgPool",
    "Identity",
    "KernelFn",
    "Layer",
    "LeakyRelu",
    "Nonlinearity",
    "Relu",
    "Sin",
    "layer",
    "parallel",
    "serial",
]


def _batched(spec: LayerSpec, input_shape: Any) -> tuple[Any, Any]:
    """(per-example shape(s), batch size(s)) from neural-tangents-style shapes with a batch axis."""
    if isinstance(input_shape, list) or (
        isinstance(input_shape, tuple) and input_shape and isinstance(input_shape[0], (tuple, list))
    ):
        parts = [_batched(spec, s) for s in input_shape]
        return [p[0] for p in parts], [p[1] for p in parts]
    shape = tuple(int(v) for v in input_shape)
    if len(shape) < 2:
        raise spec.error(f"input_shape must include the batch axis, e.g. (-1, d), got {input_shape!r}")
    return shape[1:], shape[0]


def _rebatch(shape: Any, batch: Any) -> Any:
    if isinstance(shape, list):
        bs = batch if isinstance(batch, list) else [batch] * len(shape)
        return [_rebatch(s, b) for s, b in zip(shape, bs)]
    return (batch,) + tuple(shape)


def _check_inputs(name: str, x: Any) -> Any:
    if is_traced(x):
        return x
    arr = np.asarray(x)
    if arr.ndim < 2:
        raise ValueError(f"{name} must have a batch axis and at least one feature axis, got shape {arr.shape}")
    if arr.shape[0] < 1:
        raise ValueError(f"{name} must contain at least one example, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"{name} must be a real array, got dtype {arr.dtype}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf")
    return arr


class KernelFn:
    """The infinite-width kernel function of a layer or network (see :meth:`__call__`)."""

    def __init__(self, spec: LayerSpec) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"KernelFn({self.spec.label()})"

    def __call__(
        self,
        x1: Any,
        x2: Any = None,
        get: Any = None,
        *,
        memory_budget: int | None = None,
        block_size: int | None = None,
        devices: Sequence[Any] | None = None,
    ) -> Any:
        """NNGP and/or NTK of the network between the rows of ``x1`` and ``x2``.

        Args:
          x1: (N1, *spatial, C) images in NHWC (or (N1, d) vectors).
          x2: (N2, *spatial, C), or None for x2 = x1 (symmetric; the pairs of a point
            with itself are computed at correlation exactly 1).
          get: ``"nngp"``, ``"ntk"``, a tuple of them (a named tuple comes back) or
            None (:class:`~nwcorrupt.arch.Kernels` with both).
          memory_budget: bytes one block computation may use (default 1 GiB); the
            block size is the largest that fits (eager calls only).
          block_size: examples per block, overriding the budget.
          devices: devices to spread the blocks over (default ``jax.local_devices()``).

        Returns arrays (N1, N2) for a network ending in a vector readout; a network
        with spatial outputs returns the full spatial covariance (N1, N2, H, H', W, W').
        Traced calls (under ``jit``/``grad``/``vmap``) compute everything as one
        expression. Raises ``ValueError`` naming the argument or the layer for bad
        inputs or shapes, before any compute; ``FloatingPointError`` for a
        non-finite result.
        """
        spec = self.spec
        want = GET_NAMES if get is None else normalize_get(get)
        want_ntk = "ntk" in want
        symmetric = x2 is None or x2 is x1
        x1 = _check_inputs("x1", x1)
        if not symmetric:
            x2 = _check_inputs("x2", x2)
            if tuple(x2.shape[1:]) != tuple(x1.shape[1:]):
                raise ValueError(
                    f"x1 and x2 must have the same per-example shape, got x1 {tuple(x1.shape)} and x2 {tuple(x2.shape)}"
                )
        out_shape = spec.output_shape(tuple(int(v) for v in x1.shape[1:]))
        if isinstance(out_shape, list):
            raise ValueError(
                f"the network ends in {len(out_shape)} branches; merge them (FanInSum, FanInConcat) to get one kernel"
            )
        out_nd = len(out_shape) - 1
        out_full = out_nd > 0
        in_full = bool(spec.input_full(out_full)) and x1.ndim > 2
        traced = is_traced(x1) or (not symmetric and is_traced(x2))
        if traced:
            dtype = jnp.result_type(x1.dtype if symmetric else jnp.result_type(x1.dtype, x2.dtype), default_float())
            a = jnp.asarray(x1, dtype)
            b = a if symmetric else jnp.asarray(x2, dtype)
            same = jnp.eye(a.shape[0], dtype=bool) if symmetric else None
            out = transform_inputs(spec, a, b, in_full, want_ntk, same)
            kernels = Kernels(nngp=out.nngp if "nngp" in want else None, ntk=out.ntk if want_ntk else None)
            return select_kernels(kernels, get, want)
        budget = DEFAULT_MEMORY_BUDGET if memory_budget is None else check_positive_int("memory_budget", memory_budget)
        if block_size is not None:
            block_size = check_positive_int("block_size", block_size)
        devices = list(jax.local_devices()) if devices is None else list(devices)
        if not devices:
            raise ValueError("devices must name at least one device")
        dtype = np.dtype(default_float())
        a = np.asarray(x1, dtype)
        b = None if symmetric else np.asarray(x2, dtype)
        nngp, ntk = network_kernels(
            spec, a, b, in_full=in_full, out_full=out_full, out_nd=out_nd, want_ntk=want_ntk,
            budget=budget, block=block_size, devices=devices,
        )  # fmt: skip
        for name, value in (("nngp", nngp), ("ntk", ntk)):
            if value is not None and not np.all(np.isfinite(value)):
                bad = int(np.size(value) - np.count_nonzero(np.isfinite(value)))
                raise FloatingPointError(f"{spec.label()}: the {name} kernel has {bad} non-finite entries")
        kernels = Kernels(
            nngp=jnp.asarray(nngp) if "nngp" in want else None, ntk=jnp.asarray(ntk) if want_ntk else None
        )
        return select_kernels(kernels, get, want)


class Layer(tuple):
    """``(init_fn, apply_fn, kernel_fn)`` of a layer spec; unpacks like neural-tangents' triple.

    Equality and hashing follow the spec, so two layers built with the same
    arguments are equal (and a network can key a cache or a fingerprint).
    """

    spec: LayerSpec

    def __new__(cls, spec: LayerSpec) -> Layer:
        def init_fn(rng: Array, input_shape: Any, *, law: str = "gaussian", dtype: Any = None) -> tuple[Any, Any]:
            """(output_shape, params) for inputs of ``input_shape`` (batch axis first)."""
            shape, batch = _batched(spec, input_shape)
            out = spec.output_shape(shape)
            params = spec.init(rng, shape, law, np.dtype(default_float() if dtype is None else dtype))
            return _rebatch(out, batch), params

        def apply_fn(params: Any, inputs: Any, **kwargs: Any) -> Any:
            """The finite layer on ``inputs`` (batch axis first)."""
            return spec.apply(params, inputs)

        self = super().__new__(cls, (init_fn, apply_fn, KernelFn(spec)))
        self.spec = spec
        return self

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Layer) and other.spec == self.spec

    def __ne__(self, other: object) -> bool:
        return not self == other

    def __hash__(self) -> int:
        return hash(self.spec)

    def __repr__(self) -> str:
        return f"Layer({self.spec.label()})"

    def describe(self) -> dict:
        """JSON-serialisable description of the network."""
        return self.spec.describe()


def layer(spec: LayerSpec) -> Layer:
    """The :class:`Layer` of ``spec`` (to wrap a custom :class:`~nwcorrupt.stax.layers.LayerSpec`)."""
    if not isinstance(spec, LayerSpec):
        raise TypeError(f"spec must be an nwcorrupt.stax LayerSpec, got {type(spec).__name__}")
    return Layer(spec)


def _specs(name: str, layers: Sequence[Any]) -> tuple[LayerSpec, ...]:
    out = []
    for i, item in enumerate(layers):
        if not isinstance(item, Layer):
            raise TypeError(
                f"{name}: argument {i} must be an nwcorrupt.stax layer (e.g. stax.Dense(...)), got {type(item).__name__}"
            )
        out.append(item.spec)
    return tuple(out)


def serial(*layers: Layer) -> Layer:
    """Layers in series: the output of each feeds the next."""
    return Layer(SerialSpec(_specs("serial", layers)))


def parallel(*layers: Layer) -> Layer:
    """One layer per branch of a list input (e.g. after :func:`FanOut`)."""
    return Layer(ParallelSpec(_specs("parallel", layers)))


def FanOut(num: int) -> Layer:  # noqa: N802 - neural-tangents' name
    """Copy the input into ``num`` branches."""
    return Layer(FanOutSpec(num))


def FanInSum() -> Layer:  # noqa: N802
    """Sum the branches (equal shapes); kernels add (branches with independent weights)."""
    return Layer(FanInSumSpec())


def FanInConcat(axis: int = -1) -> Layer:  # noqa: N802
    """Concatenate the branches along the channel axis (the only axis supported)."""
    return Layer(FanInConcatSpec(axis))


def Dense(  # noqa: N802
    out_dim: int, W_std: float = 1.0, b_std: float | None = None, parameterization: str = "ntk"
) -> Layer:
    """Dense layer on the channel axis; W ~ N(0, 1) scaled by W_std/√fan_in (``"ntk"``) or
    W ~ N(0, W_std²/fan_in) (``"standard"``); bias N(0, b_std²), none if ``b_std`` is None."""
    return Layer(DenseSpec(out_dim, W_std, b_std, parameterization))


def Conv(  # noqa: N802
    out_chan: int,
    filter_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    W_std: float = 1.0,
    b_std: float | None = None,
    parameterization: str = "ntk",
) -> Layer:
    """Convolution over 1, 2 or 3 spatial axes (NHWC inputs, HWIO filters); padding VALID, SAME or CIRCULAR.

    fan_in = C_in × prod(filter_shape); parameterisations as :func:`Dense`.
    """
    fs = tuple(filter_shape) if isinstance(filter_shape, (list, tuple)) else filter_shape
    st = tuple(strides) if isinstance(strides, (list, tuple)) else strides
    return Layer(ConvSpec(out_chan, fs, st, padding, W_std, b_std, parameterization))


def AvgPool(  # noqa: N802
    window_shape: Sequence[int],
    strides: Sequence[int] | None = None,
    padding: str = "VALID",
    normalize_edges: bool = False,
) -> Layer:
    """Average pooling over windows (divides by the window size; at SAME edges by the real count if
    ``normalize_edges``)."""
    ws = tuple(window_shape) if isinstance(window_shape, (list, tuple)) else window_shape
    st = tuple(strides) if isinstance(strides, (list, tuple)) else strides
    return Layer(AvgPoolSpec(ws, st, padding, normalize_edges))


def GlobalAvgPool() -> Layer:  # noqa: N802
    """Mean over all spatial positions: (N, *spatial, C) -> (N, C)."""
    return Layer(GlobalAvgPoolSpec())


def Flatten() -> Layer:  # noqa: N802
    """Flatten each example: (N, *spatial, C) -> (N, prod(spatial)·C); its kernel averages positions."""
    return Layer(FlattenSpec())


def Identity() -> Layer:  # noqa: N802
    """The identity."""
    return Layer(IdentitySpec())


def Nonlinearity(activation: str | _act.Activation = "relu", quad_order: int = _act.DEFAULT_ORDER) -> Layer:  # noqa: N802
    """Any activation of the registry (``"tanh"``, ``"swish"``, ``get("leaky_relu", alpha=0.2)``, ...)."""
    return Layer(NonlinearitySpec(activation, quad_order))


def Relu() -> Layer:  # noqa: N802
    """max(x, 0)."""
    return Nonlinearity("relu")


def Erf() -> Layer:  # noqa: N802
    """erf(x) (neural-tangents' ``Erf()`` with its defaults a = b = 1, c = 0)."""
    return Nonlinearity("erf")


def Gelu(approximate: bool = False) -> Layer:  # noqa: N802
    """x Φ(x), or its tanh approximation."""
    return Nonlinearity(_act.get("gelu", approximate=approximate))


def Sin() -> Layer:  # noqa: N802
    """sin(x) (neural-tangents' ``Sin()`` with its defaults)."""
    return Nonlinearity("sin")


def LeakyRelu(alpha: float) -> Layer:  # noqa: N802
    """max(x, αx)."""
    return Nonlinearity(_act.get("leaky_relu", alpha=alpha))


def Abs() -> Layer:  # noqa: N802
    """|x|."""
    return Nonlinearity("abs")

