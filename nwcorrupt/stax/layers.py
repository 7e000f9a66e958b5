"""Layer specs: what one layer does to finite tensors and to infinite-width covariances.

Each spec is a frozen, hashable dataclass with five methods:

* ``output_shape(in_shape)`` — per-example shapes (no batch axis), validated, so a
  wrong network fails with a message naming the layer before any compute;
* ``init(key, in_shape, law, dtype)`` — the finite layer's parameters;
* ``apply(params, x)`` — the finite layer on (N, *in_shape) inputs;
* ``transform(state)`` — the infinite-width map of a
  :class:`~nwcorrupt.stax.state.KernelState`;
* ``input_full(out_full)`` — whether the layer needs the full spatial covariance
  of its input, given whether its output must be full.

The conventions are neural-tangents' ``stax`` ones (NHWC images, HWIO filters,
``"ntk"``/``"standard"`` parameterisations, ``b_std=None`` for no bias,
nonlinearities that do not rescale), so their kernels agree to rounding.
:mod:`nwcorrupt.stax` wraps each spec into an ``(init_fn, apply_fn, kernel_fn)``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar

import jax
import jax.numpy as jnp

from nwcorrupt import activations as _act
from nwcorrupt.precision import MATMUL_PRECISION
from nwcorrupt.stax.spatial import (
    PADDINGS,
    diagonal_window_sum,
    out_size,
    pad_amounts,
    spatial_diagonal,
    window_counts,
    window_sum,
)
from nwcorrupt.stax.state import KernelState, map_covariances, pixel_eye, variances

Array = jax.Array

__all__ = [
    "INIT_LAWS",
    "AvgPoolSpec",
    "ConvSpec",
    "DenseSpec",
    "FlattenSpec",
    "GlobalAvgPoolSpec",
    "IdentitySpec",
    "LayerSpec",
    "NonlinearitySpec",
    "ShapeError",
]

#: Initialisation laws of finite layers: Gaussian (as the parameterisation says) or
#: PyTorch's default (U(±1/√fan_in) for weights and biases; standard parameterisation).
INIT_LAWS = ("gaussian", "torch_default")


class ShapeError(ValueError):
    """A layer cannot take the shape it is given (the message names the layer)."""


class LayerSpec:
    """Base of the layer specs (see the module docstring for the protocol)."""

    kind: ClassVar[str] = "Layer"

    def label(self) -> str:
        """Short description used in error messages, e.g. ``Conv(out_chan=8, filter_shape=(3, 3))``."""
        fields = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self)[:2])
        return f"{self.kind}({fields})"

    def error(self, message: str) -> ShapeError:
        return ShapeError(f"{self.label()}: {message}")

    def output_shape(self, in_shape: Any) -> Any:
        return in_shape

    def init(self, key: Array, in_shape: Any, law: str, dtype: Any) -> Any:
        return ()

    def apply(self, params: Any, x: Any) -> Any:
        return x

    def transform(self, state: Any) -> Any:
        return state

    def input_full(self, out_full: Any) -> Any:
        return out_full

    def describe(self) -> dict:
        """A JSON-serialisable description (used in fingerprints of training runs)."""
        out: dict[str, Any] = {"layer": self.kind}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, _act.Activation):
                value = value.name
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out


def _check_image(spec: LayerSpec, in_shape: Any, nd: int | None = None) -> tuple[int, ...]:
    if not isinstance(in_shape, tuple) or not all(isinstance(v, int) for v in in_shape):
        raise spec.error(f"expects one input, got shapes {in_shape!r}")
    if nd is None:
        if len(in_shape) < 2:
            raise spec.error(
                f"expects images (N, *spatial, C) with at least one spatial axis, got per-example shape {in_shape}"
            )
    elif len(in_shape) != nd + 1:
        want = {1: "(N, W, C)", 2: "(N, H, W, C)", 3: "(N, D, H, W, C)"}.get(nd, f"(N, {nd} spatial axes, C)")
        raise spec.error(f"expects inputs of shape {want}, got per-example shape {in_shape} (rank {len(in_shape) + 1})")
    return in_shape


def _check_single(spec: LayerSpec, in_shape: Any) -> tuple[int, ...]:
    if not isinstance(in_shape, tuple) or not in_shape or not all(isinstance(v, int) for v in in_shape):
        raise spec.error(f"expects one input of shape (N, ..., C), got shapes {in_shape!r}")
    return in_shape


def _check_law(spec: LayerSpec, law: str, parameterization: str) -> None:
    if law not in INIT_LAWS:
        raise ValueError(f"init law must be one of {INIT_LAWS}, got {law!r}")
    if law == "torch_default" and parameterization != "standard":
        raise spec.error("the 'torch_default' init law needs parameterization='standard'")


def _draw(key: Array, shape: tuple[int, ...], law: str, dtype: Any) -> Array:
    if law == "torch_default":
        return jax.random.uniform(key, shape, dtype, minval=-1.0, maxval=1.0)
    return jax.random.normal(key, shape, dtype)


def _affine_params(
    spec: Any, key: Array, w_shape: tuple[int, ...], out: int, fan_in: int, nd: int, law: str, dtype: Any
) -> tuple[Array, Array | None]:
    """(W, b) of a Dense or Conv layer; b has shape (1,)*(nd+1) + (out,) or is None without bias."""
    _check_law(spec, law, spec.parameterization)
    k1, k2 = jax.random.split(key)
    w = _draw(k1, w_shape, law, dtype)
    b = None if spec.b_std is None else _draw(k2, (1,) * (nd + 1) + (out,), law, dtype)
    if law == "torch_default":
        scale = 1.0 / math.sqrt(fan_in)
        return w * scale, None if b is None else b * scale
    if spec.parameterization == "standard":
        w = w * (spec.W_std / math.sqrt(fan_in))
        b = None if b is None else b * spec.b_std
    return w, b


def _finish_affine(spec: Any, prod: Array, b: Array | None, fan_in: int) -> Array:
    if spec.parameterization == "ntk":
        out = prod * (spec.W_std / math.sqrt(fan_in))
        return out if b is None else out + spec.b_std * b
    return prod if b is None else prod + b


def _affine_kernel(spec: Any, state: KernelState, mean: Any, fan_in: int, new_shape: tuple[int, ...]) -> KernelState:
    """Kernel map of a Dense/Conv layer whose windowed input mean is ``mean(array, batch_ndim)``."""
    cw = spec.W_std**2
    cb = 0.0 if spec.b_std is None else spec.b_std**2
    nngp_in = mean(state.nngp, 2)
    nngp = cw * nngp_in + cb
    ntk = None
    if state.ntk is not None:
        ntk_in = mean(state.ntk, 2)
        if spec.parameterization == "ntk":
            ntk = nngp + cw * ntk_in
        else:
            ntk = fan_in * nngp_in + cw * ntk_in + (0.0 if spec.b_std is None else 1.0)
    return state.replace(
        nngp=nngp,
        ntk=ntk,
        cov1=cw * mean(state.cov1, 1) + cb,
        cov2=cw * mean(state.cov2, 1) + cb,
        shape=new_shape,
        gaussian=True,
    )


def _check_affine_args(spec: Any) -> None:
    if not isinstance(spec.W_std, (int, float)) or not spec.W_std > 0 or not math.isfinite(spec.W_std):
        raise ValueError(f"{spec.kind}: W_std must be a positive finite number, got {spec.W_std!r}")
    if spec.b_std is not None and (
        not isinstance(spec.b_std, (int, float)) or not spec.b_std >= 0 or not math.isfinite(spec.b_std)
    ):
        raise ValueError(f"{spec.kind}: b_std must be None (no bias) or a finite number >= 0, got {spec.b_std!r}")
    if spec.parameterization not in ("ntk", "standard"):
        raise ValueError(f"{spec.kind}: parameterization must be 'ntk' or 'standard', got {spec.parameterization!r}")


@dataclasses.dataclass(frozen=True)
class DenseSpec(LayerSpec):
    """A dense layer acting on the channel (last) axis, as neural-tangents' ``Dense``."""

    kind: ClassVar[str] = "Dense"
    out_dim: int
    W_std: float = 1.0
    b_std: float | None = None
    parameterization: str = "ntk"

    def __post_init__(self) -> None:
        if not isinstance(self.out_dim, int) or isinstance(self.out_dim, bool) or self.out_dim < 1:
            raise ValueError(f"Dense: out_dim must be an integer >= 1, got {self.out_dim!r}")
        _check_affine_args(self)

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        return _check_single(self, in_shape)[:-1] + (self.out_dim,)

    def init(self, key: Array, in_shape: Any, law: str, dtype: Any) -> tuple[Array, Array | None]:
        fan_in = _check_single(self, in_shape)[-1]
        w, b = _affine_params(self, key, (fan_in, self.out_dim), self.out_dim, fan_in, 0, law, dtype)
        return w, None if b is None else b.reshape((1,) * (len(in_shape) - 1) + (self.out_dim,))

    def apply(self, params: Any, x: Array) -> Array:
        w, b = params
        if x.shape[-1] != w.shape[0]:
            raise self.error(f"inputs have {x.shape[-1]} channels but the weights expect {w.shape[0]}")
        prod = jnp.tensordot(x, w, axes=(-1, 0), precision=MATMUL_PRECISION)
        return _finish_affine(self, prod, b, x.shape[-1])

    def transform(self, state: KernelState) -> KernelState:
        return _affine_kernel(self, state, lambda a, _: a, state.channels, state.shape[:-1] + (self.out_dim,))


def _tuple_of(spec_kind: str, name: str, value: Any, nd: int | None, lo: int = 1) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,) * (nd or 1)
    if not isinstance(value, (tuple, list)) or not value:
        raise ValueError(f"{spec_kind}: {name} must be a tuple of integers, got {value!r}")
    value = tuple(value)
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= lo for v in value):
        raise ValueError(f"{spec_kind}: {name} must contain integers >= {lo}, got {value!r}")
    if nd is not None and len(value) != nd:
        raise ValueError(f"{spec_kind}: {name} must have {nd} entries (one per spatial axis), got {value!r}")
    return value


def _check_padding(kind: str, padding: Any) -> str:
    if not isinstance(padding, str) or padding.upper() not in PADDINGS:
        raise ValueError(f"{kind}: padding must be one of {PADDINGS}, got {padding!r}")
    return padding.upper()


def _windowed_shape(spec: Any, in_shape: Any, window: tuple[int, ...], strides: tuple[int, ...]) -> tuple[int, ...]:
    nd = len(window)
    in_shape = _check_image(spec, in_shape, nd)
    spatial = []
    for axis, (size, k, s) in enumerate(zip(in_shape[:-1], window, strides)):
        n = out_size(size, k, s, spec.padding)
        if n < 1:
            raise spec.error(
                f"window {k} is larger than spatial axis {axis} of size {size} with padding {spec.padding!r}"
            )
        spatial.append(n)
    return tuple(spatial)


def _pad_circular(x: Array, window: tuple[int, ...], strides: tuple[int, ...]) -> Array:
    widths = [(0, 0)] + [pad_amounts(n, k, s, "CIRCULAR") for n, k, s in zip(x.shape[1:-1], window, strides)] + [(0, 0)]
    return jnp.pad(x, widths, mode="wrap")


_CONV_DIMS = {1: ("NWC", "WIO", "NWC"), 2: ("NHWC", "HWIO", "NHWC"), 3: ("NDHWC", "DHWIO", "NDHWC")}


@dataclasses.dataclass(frozen=True)
class ConvSpec(LayerSpec):
    """A convolution with weights shared over positions, as neural-tangents' ``Conv`` (NHWC, HWIO)."""

    kind: ClassVar[str] = "Conv"
    out_chan: int
    filter_shape: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    padding: str = "VALID"
    W_std: float = 1.0
    b_std: float | None = None
    parameterization: str = "ntk"

    def __post_init__(self) -> None:
        if not isinstance(self.out_chan, int) or isinstance(self.out_chan, bool) or self.out_chan < 1:
            raise ValueError(f"Conv: out_chan must be an integer >= 1, got {self.out_chan!r}")
        fs = _tuple_of("Conv", "filter_shape", self.filter_shape, None)
        if len(fs) not in _CONV_DIMS:
            raise ValueError(f"Conv: filter_shape must have 1, 2 or 3 entries, got {fs!r}")
        object.__setattr__(self, "filter_shape", fs)
        st = (1,) * len(fs) if self.strides is None else _tuple_of("Conv", "strides", self.strides, len(fs))
        object.__setattr__(self, "strides", st)
        object.__setattr__(self, "padding", _check_padding("Conv", self.padding))
        _check_affine_args(self)

    def label(self) -> str:
        return f"Conv(out_chan={self.out_chan}, filter_shape={self.filter_shape}, padding={self.padding!r})"

    @property
    def nd(self) -> int:
        return len(self.filter_shape)

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        return _windowed_shape(self, in_shape, self.filter_shape, self.strides) + (self.out_chan,)

    def fan_in(self, in_shape: tuple[int, ...]) -> int:
        return in_shape[-1] * math.prod(self.filter_shape)

    def init(self, key: Array, in_shape: Any, law: str, dtype: Any) -> tuple[Array, Array | None]:
        self.output_shape(in_shape)
        w_shape = self.filter_shape + (in_shape[-1], self.out_chan)
        return _affine_params(self, key, w_shape, self.out_chan, self.fan_in(in_shape), self.nd, law, dtype)

    def apply(self, params: Any, x: Array) -> Array:
        w, b = params
        if x.ndim != self.nd + 2:
            _check_image(self, tuple(x.shape[1:]), self.nd)
        if x.shape[-1] != w.shape[-2]:
            raise self.error(f"inputs have {x.shape[-1]} channels but the filters expect {w.shape[-2]}")
        padding = self.padding
        if padding == "CIRCULAR":
            x, padding = _pad_circular(x, self.filter_shape, self.strides), "VALID"
        prod = jax.lax.conv_general_dilated(
            x, w, self.strides, padding, dimension_numbers=_CONV_DIMS[self.nd], precision=MATMUL_PRECISION
        )
        return _finish_affine(self, prod, b, x.shape[-1] * math.prod(self.filter_shape))

    def transform(self, state: KernelState) -> KernelState:
        if state.nd != self.nd:
            raise self.error(f"expects {self.nd} spatial axes, got a kernel over {state.nd}")
        new_shape = self.output_shape(state.shape)

        def mean(a: Array, batch_ndim: int) -> Array:
            for i, (k, s) in enumerate(zip(self.filter_shape, self.strides)):
                if state.full:
                    a = diagonal_window_sum(a, batch_ndim + 2 * i, k, s, self.padding)
                else:
                    a = window_sum(a, batch_ndim + i, k, s, self.padding)
            return a / math.prod(self.filter_shape)

        return _affine_kernel(self, state, mean, self.fan_in(state.shape), new_shape)


@dataclasses.dataclass(frozen=True)
class AvgPoolSpec(LayerSpec):
    """Average pooling over windows, as neural-tangents' ``AvgPool``."""

    kind: ClassVar[str] = "AvgPool"
    window_shape: tuple[int, ...]
    strides: tuple[int, ...] | None = None
    padding: str = "VALID"
    normalize_edges: bool = False

    def __post_init__(self) -> None:
        ws = _tuple_of("AvgPool", "window_shape", self.window_shape, None)
        object.__setattr__(self, "window_shape", ws)
        st = (1,) * len(ws) if self.strides is None else _tuple_of("AvgPool", "strides", self.strides, len(ws))
        object.__setattr__(self, "strides", st)
        object.__setattr__(self, "padding", _check_padding("AvgPool", self.padding))
        if not isinstance(self.normalize_edges, bool):
            raise ValueError(f"AvgPool: normalize_edges must be True or False, got {self.normalize_edges!r}")

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        return _windowed_shape(self, in_shape, self.window_shape, self.strides) + (in_shape[-1],)

    def apply(self, params: Any, x: Array) -> Array:
        _check_image(self, tuple(x.shape[1:]), len(self.window_shape))
        padding = self.padding
        if padding == "CIRCULAR":
            x, padding = _pad_circular(x, self.window_shape, self.strides), "VALID"
        out = x
        for i, (k, s) in enumerate(zip(self.window_shape, self.strides)):
            out = window_sum(out, 1 + i, k, s, padding)
        return out / self._norm(x.shape[1:-1], padding, 0)[..., None]

    def _norm(self, sizes: tuple[int, ...], padding: str, pair: int) -> Array:
        """Window sizes (or counts at the edges) for outputs (*S), or with ``pair`` for pairs (*S·S interleaved)."""
        if not (padding == "SAME" and self.normalize_edges):
            return jnp.asarray(float(math.prod(self.window_shape)) ** (1 + pair))
        norm = jnp.ones(())
        for n, k, s in zip(sizes, self.window_shape, self.strides):
            c = window_counts(n, k, s, padding)
            norm = norm[..., None] * c if not pair else (norm[..., None, None] * c[:, None] * c[None, :])
        return norm

    def transform(self, state: KernelState) -> KernelState:
        nd = len(self.window_shape)
        if state.nd != nd:
            raise self.error(f"expects {nd} spatial axes, got a kernel over {state.nd}")
        if not state.full:
            raise self.error("needs the full spatial covariance of its input (internal error: diagonal given)")
        new_shape = self.output_shape(state.shape)
        norm = self._norm(state.shape[:-1], self.padding, 1)

        def pool(a: Array, batch_ndim: int) -> Array:
            for i, (k, s) in enumerate(zip(self.window_shape, self.strides)):
                a = window_sum(a, batch_ndim + 2 * i, k, s, self.padding)
                a = window_sum(a, batch_ndim + 2 * i + 1, k, s, self.padding)
            return a / norm

        return map_covariances(state, pool, shape=new_shape)

    def input_full(self, out_full: Any) -> bool:
        return True


@dataclasses.dataclass(frozen=True)
class GlobalAvgPoolSpec(LayerSpec):
    """The mean over all spatial positions, as neural-tangents' ``GlobalAvgPool``."""

    kind: ClassVar[str] = "GlobalAvgPool"

    def label(self) -> str:
        return "GlobalAvgPool()"

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        return (_check_image(self, in_shape)[-1],)

    def apply(self, params: Any, x: Array) -> Array:
        _check_image(self, tuple(x.shape[1:]))
        return jnp.mean(x, axis=tuple(range(1, x.ndim - 1)))

    def transform(self, state: KernelState) -> KernelState:
        new_shape = self.output_shape(state.shape)
        if not state.full:
            raise self.error("needs the full spatial covariance of its input (internal error: diagonal given)")

        def pool(a: Array, batch_ndim: int) -> Array:
            return jnp.mean(a, axis=tuple(range(batch_ndim, a.ndim)))

        return map_covariances(state, pool, shape=new_shape, full=False)

    def input_full(self, out_full: Any) -> bool:
        return True


@dataclasses.dataclass(frozen=True)
class FlattenSpec(LayerSpec):
    """Flatten each example to a vector, as neural-tangents' ``Flatten`` (its kernel averages positions)."""

    kind: ClassVar[str] = "Flatten"

    def label(self) -> str:
        return "Flatten()"

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        return (math.prod(_check_single(self, in_shape)),)

    def apply(self, params: Any, x: Array) -> Array:
        return x.reshape(x.shape[0], -1)

    def transform(self, state: KernelState) -> KernelState:
        new_shape = self.output_shape(state.shape)
        nd = state.nd
        if nd == 0:
            return state.replace(gaussian=False)

        def trace(a: Array, batch_ndim: int) -> Array:
            if state.full:
                a = spatial_diagonal(a, batch_ndim, nd)
            return jnp.mean(a, axis=tuple(range(batch_ndim, a.ndim)))

        return map_covariances(state, trace, shape=new_shape, full=False, gaussian=False)

    def input_full(self, out_full: Any) -> bool:
        return False


@dataclasses.dataclass(frozen=True)
class IdentitySpec(LayerSpec):
    """The identity layer."""

    kind: ClassVar[str] = "Identity"

    def label(self) -> str:
        return "Identity()"


def _duals_at(act: Any, pairs: tuple, v1: Array, k12: Array, v2: Array, at_one: Array | None, order: int) -> tuple:
    """Dual kernels of (v1, k12, v2), with the entries under ``at_one`` (a point with itself) from the
    diagonal formula at variance v1: exact there, and with finite derivatives (the general formula of
    the relu family has an infinite slope at correlation 1, which would turn a zero tangent into NaN)."""
    if at_one is None:
        return _act.duals_unchecked(act, pairs, v1, k12, v2, "auto", order)
    safe = jnp.where(at_one, 0.0, k12)
    general = _act.duals_unchecked(act, pairs, v1, safe, v2, "auto", order)
    q = jnp.broadcast_to(v1, jnp.broadcast_shapes(jnp.shape(v1), jnp.shape(k12)))
    diagonal = _act.duals_diag_unchecked(act, pairs, q, "auto", order)
    return tuple(jnp.where(at_one, d, g) for d, g in zip(diagonal, general))


@dataclasses.dataclass(frozen=True)
class NonlinearitySpec(LayerSpec):
    """An elementwise activation from the registry; its kernel map is the dual kernel (no rescaling).

    ``quad_order`` is the Gauss–Hermite order used where the activation has no
    closed form (see :mod:`nwcorrupt.activations`).
    """

    kind: ClassVar[str] = "Nonlinearity"
    activation: Any = "relu"
    quad_order: int = _act.DEFAULT_ORDER

    def __post_init__(self) -> None:
        object.__setattr__(self, "activation", _act.get(self.activation))
        if not isinstance(self.quad_order, int) or not 2 <= self.quad_order <= _act.MAX_ORDER:
            raise ValueError(f"quad_order must be an integer in [2, {_act.MAX_ORDER}], got {self.quad_order!r}")

    def label(self) -> str:
        return f"Nonlinearity({self.activation.name!r})"

    def output_shape(self, in_shape: Any) -> tuple[int, ...]:
        return _check_single(self, in_shape)

    def apply(self, params: Any, x: Array) -> Array:
        return self.activation.fn(x)

    def transform(self, state: KernelState) -> KernelState:
        act, order = self.activation, self.quad_order
        if not state.gaussian:
            raise self.error(
                "its input must be Gaussian at infinite width: put a Dense or Conv layer before it "
                "(the network input, a Flatten output or an activation's output is not)"
            )
        v1, v2, nngp, at_one = variances(state)
        pairs = ((0, 0), (1, 1)) if state.ntk is not None else ((0, 0),)
        duals = _duals_at(act, pairs, v1, nngp, v2, at_one, order)
        ntk = None if state.ntk is None else duals[1] * state.ntk
        nd = state.nd

        def self_cov(cov: Array) -> Array:
            if not (state.full and nd):
                return _act.duals_diag_unchecked(act, ((0, 0),), cov, "auto", order)[0]
            d = spatial_diagonal(cov, 1, nd)
            rows = d[(slice(None),) + (slice(None), None) * nd]
            cols = d[(slice(None),) + (None, slice(None)) * nd]
            return _duals_at(act, ((0, 0),), rows, cov, cols, pixel_eye(state.shape[:-1])[None], order)[0]

        return state.replace(
            nngp=duals[0], ntk=ntk, cov1=self_cov(state.cov1), cov2=self_cov(state.cov2), gaussian=False
        )

