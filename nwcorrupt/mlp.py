"""Finite-width MLPs as plain pytrees.

A network for the :class:`~nwcorrupt.arch.MLP` spec with depth L is a list of
L dense layers, each a dict ``{"W": (fan_in, fan_out), "b": (fan_out,)}``: L - 1
hidden layers of width ``width * width_scale`` followed by a readout to C outputs.
Both parameterisations follow neural-tangents' ``stax.Dense`` exactly, so the
infinite-width limit of these networks is the kernel that
:mod:`nwcorrupt.kernels` computes (same input convention ⟨x, x'⟩ = x·x'/d):

``"ntk"``
    W_ij ~ N(0, 1), b_i ~ N(0, 1), and the layer computes
    h = (W_std / sqrt(fan_in)) · x W + b_std · b.
    With ``b_std = 0`` the bias is multiplied by zero: it receives no gradient
    and contributes nothing to the NTK. ``width_scale`` must be 1.

``"standard"``
    W_ij ~ N(0, W_std² / (fan_in / s_in)), b_i ~ N(0, b_std²), and the layer
    computes h = x W / sqrt(s_in) + b. Here s_in is the width scale of the
    layer's input (1 for the first layer, ``width_scale`` after), so a hidden
    layer has ``width * width_scale`` units while its kernel is that of base
    width ``width`` (neural-tangents' ``s = (s_in, s_out)``). The bias is a
    trainable parameter even when ``b_std = 0`` (it starts at zero), as in
    neural-tangents with a numeric ``b_std``: every layer adds 1 to the NTK.
    The standard-parameterisation NTK grows with the base width (the weight
    gradient of a layer contributes fan_in / s_in times its input kernel), so
    the analytic kernel must be evaluated with the same base width.

Initialisation laws (``init(..., law=...)``, :data:`INIT_LAWS`):

``"gaussian"`` (default)
    the Gaussian draws above.
``"torch_default"``
    PyTorch's default ``nn.Linear`` initialisation, for the standard
    parameterisation with ``width_scale = 1``: every weight and every bias of a
    layer with fan-in f is drawn from U(−1/√f, 1/√f) (variance 1/(3f); PyTorch's
    Kaiming-uniform with a = √5 gives the same bound). ``arch.W_std`` and
    ``arch.b_std`` are not used by this law.

Activations come from ``arch.act.fn``. Matrix products use
:data:`nwcorrupt.precision.MATMUL_PRECISION` unless ``precision`` is given.
Parameters are created in :func:`nwcorrupt.precision.default_float` (float32, or
float64 under x64).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_array, check_choice, check_positive_int
from nwcorrupt.arch import MLP, check_arch
from nwcorrupt.precision import MATMUL_PRECISION, default_float

__all__ = [
    "INIT_LAWS",
    "Params",
    "check_init_law",
    "check_width_scale",
    "resolve_width",
    "layer_shapes",
    "num_params",
    "init",
    "check_params",
    "forward",
    "check_input",
    "check_network_inputs",
    "apply",
    "penultimate",
    "layer_features",
]

Array = jax.Array
Params = list  # list[dict[str, Array]], one dict {"W", "b"} per dense layer

#: Initialisation laws of :func:`init` (see the module docstring).
INIT_LAWS = ("gaussian", "torch_default")


def check_init_law(arch: MLP, law: Any, width_scale: int = 1) -> str:
    """``law`` if it is one of :data:`INIT_LAWS` and fits the network; ``"torch_default"`` needs the
    standard parameterisation and ``width_scale = 1``."""
    check_choice("init", law, INIT_LAWS)
    if law == "torch_default" and (arch.parameterization != "standard" or width_scale != 1):
        raise ValueError(
            "init='torch_default' (PyTorch's nn.Linear initialisation) needs parameterization='standard' and "
            f"width_scale=1, got parameterization={arch.parameterization!r}, width_scale={width_scale}"
        )
    return law


def check_width_scale(arch: MLP, width_scale: Any) -> int:
    """``width_scale`` as a positive int; values other than 1 need the standard parameterisation."""
    s = check_positive_int("width_scale", width_scale)
    if s != 1 and arch.parameterization != "standard":
        raise ValueError(
            f"width_scale applies to the standard parameterisation only; got width_scale={s} "
            f"with parameterization={arch.parameterization!r} (expected 1)"
        )
    return s


def resolve_width(arch: MLP, width: int | None) -> int:
    """The hidden (base) width: ``width``, or ``arch.width`` when width is None; they must agree."""
    check_arch(arch)
    arch_width = getattr(arch, "width", None)
    if width is None:
        if arch_width is None:
            raise ValueError("width must be given (a positive integer) when arch.width is None")
        return int(arch_width)
    width = check_positive_int("width", width)
    if arch_width is not None and arch_width != width:
        raise ValueError(f"width={width} but arch.width={arch_width}; they must agree (or pass width=None)")
    return width


def layer_shapes(
    arch: MLP, width: int | None, d_in: int, num_outputs: int, *, width_scale: int = 1
) -> list[tuple[int, int]]:
    """(fan_in, fan_out) of each of the ``arch.depth`` dense layers.

    Hidden layers have ``width * width_scale`` units; the readout has ``num_outputs``.
    ``width=None`` takes ``arch.width``.
    """
    width = resolve_width(arch, width)
    d_in = check_positive_int("d_in", d_in)
    num_outputs = check_positive_int("num_outputs", num_outputs)
    s = check_width_scale(arch, width_scale)
    sizes = [d_in] + [width * s] * (arch.depth - 1) + [num_outputs]
    return [(sizes[i], sizes[i + 1]) for i in range(arch.depth)]


def num_params(params: Params) -> int:
    """Total number of scalar parameters in a network pytree."""
    return int(sum(np.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(params)))


def init(
    key: Array,
    arch: MLP,
    width: int | None,
    d_in: int,
    num_outputs: int,
    *,
    width_scale: int = 1,
    dtype: Any = None,
    law: str = "gaussian",
) -> Params:
    """Draw the parameters of a finite-width MLP.

    Args:
      key: one ``jax.random`` key, typed (``jax.random.key(0)``) or legacy
        (``jax.random.PRNGKey(0)``, uint32 of shape (2,)). All parameters are cut, in layer order (W then b),
        from one standard-normal draw of length :func:`num_params`.
      arch: the architecture spec (depth, activation, W_std, b_std, parameterisation).
      width: hidden-layer (base) width n >= 1; None takes ``arch.width`` (which,
        when set, must equal ``width``: it is the width the standard-parameterisation
        kernel is computed with).
      d_in: input dimension d.
      num_outputs: number of outputs C (classes).
      width_scale: neural-tangents' width scale s (standard parameterisation only):
        hidden layers get ``width * width_scale`` units.
      dtype: parameter dtype; default :func:`~nwcorrupt.precision.default_float`.
      law: initialisation law, one of :data:`INIT_LAWS` (``"torch_default"``: PyTorch's
        ``nn.Linear`` default, U(−1/√fan_in, 1/√fan_in) for weights and biases).

    Returns:
      list of ``arch.depth`` dicts ``{"W": (fan_in, fan_out), "b": (fan_out,)}``.
    """
    _check_key(key)
    shapes = layer_shapes(arch, width, d_in, num_outputs, width_scale=width_scale)
    check_init_law(arch, law, width_scale)
    dtype = np.dtype(default_float() if dtype is None else dtype)
    return _init(key, arch, tuple(shapes), width_scale, dtype, law)


def _check_key(key: Any) -> None:
    """Raise unless ``key`` is one ``jax.random`` key: a typed key (``jax.random.key(0)``, shape ())
    or a legacy raw key (``jax.random.PRNGKey(0)``, uint32 of shape (2,)). Reads only the dtype and
    shape, so traced keys (under jit or vmap) are checked too."""
    dtype, shape = getattr(key, "dtype", None), getattr(key, "shape", None)
    expected = "a jax.random key (e.g. jax.random.key(0) or jax.random.PRNGKey(0))"
    if dtype is None or shape is None:
        raise TypeError(f"key must be {expected}, got {key!r}")
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if tuple(shape) != ():
            raise ValueError(f"key must be a single {expected[2:]}, got a key array of shape {tuple(shape)}")
    elif np.dtype(dtype) == np.uint32:
        if tuple(shape) != (2,):
            raise ValueError(
                f"key must be a single {expected[2:]}; a legacy uint32 key has shape (2,), got shape {tuple(shape)}"
            )
    else:
        raise TypeError(f"key must be {expected}, got an array of dtype {dtype} and shape {tuple(shape)}")


@functools.partial(jax.jit, static_argnums=(1, 2, 3, 4, 5))
def _init(key: Array, arch: MLP, shapes: tuple, s: int, dtype: Any, law: str) -> Params:
    # one draw for all parameters (one random-bit kernel compiles much faster than
    # one per tensor), cut in layer order: W then b of each layer
    total = sum(a * b + b for a, b in shapes)
    if law == "torch_default":
        z = jax.random.uniform(key, (total,), dtype, minval=-1.0, maxval=1.0)
    else:
        z = jax.random.normal(key, (total,), dtype)
    params = []
    start = 0
    for layer, (fan_in, fan_out) in enumerate(shapes):
        w = z[start : start + fan_in * fan_out].reshape(fan_in, fan_out)
        start += fan_in * fan_out
        b = z[start : start + fan_out]
        start += fan_out
        if law == "torch_default":  # U(-1, 1) scaled to U(±1/√fan_in), weights and biases alike
            w, b = w / np.sqrt(fan_in), b / np.sqrt(fan_in)
        elif arch.parameterization == "standard":
            s_in = 1 if layer == 0 else s
            w = w * (arch.W_std / np.sqrt(fan_in / s_in))
            b = b * arch.b_std
        params.append({"W": w, "b": b})
    return params


def check_params(params: Any, arch: MLP) -> None:
    """Raise ``ValueError`` unless ``params`` is a list of ``arch.depth`` ``{"W", "b"}`` layers of chained shapes."""
    if not isinstance(params, (list, tuple)) or len(params) != arch.depth:
        got = len(params) if isinstance(params, (list, tuple)) else type(params).__name__
        raise ValueError(f"params must be a list of {arch.depth} layers for depth={arch.depth}, got {got}")
    for i, layer in enumerate(params):
        if not isinstance(layer, dict) or set(layer) != {"W", "b"}:
            raise ValueError(f"params[{i}] must be a dict with keys 'W' and 'b'")
        if layer["W"].ndim != 2 or layer["b"].shape != (layer["W"].shape[1],):
            raise ValueError(
                f"params[{i}] has W shape {tuple(layer['W'].shape)} and b shape {tuple(layer['b'].shape)}; "
                "expected W (fan_in, fan_out) and b (fan_out,)"
            )
        if i > 0 and layer["W"].shape[0] != params[i - 1]["W"].shape[1]:
            raise ValueError(
                f"params[{i}]['W'] has fan_in {layer['W'].shape[0]} but layer {i - 1} has "
                f"{params[i - 1]['W'].shape[1]} outputs"
            )


def _dense(arch: MLP, layer: dict, h: Array, s_in: int, precision: Any) -> Array:
    prod = jnp.dot(h, layer["W"], precision=precision)
    if arch.parameterization == "ntk":
        return prod * (arch.W_std / np.sqrt(h.shape[-1])) + arch.b_std * layer["b"]
    if s_in != 1:
        prod = prod / np.sqrt(s_in)
    return prod + layer["b"]


def forward(
    arch: MLP, params: Params, x: Array, width_scale: int, precision: Any, stop: int
) -> Array:
    """Pre-activation of dense layer ``stop`` (1..L) for (N, d) inputs; ``stop = L`` gives the logits.

    Pure jnp with no checks, for use inside jit, vmap and autodiff (see :func:`apply`
    for the validated entry point).
    """
    act = arch.act.fn
    h = x
    for i in range(stop):
        if i > 0:
            h = act(h)
        h = _dense(arch, params[i], h, 1 if i == 0 else width_scale, precision)
    return h


def check_input(name: str, x: Any) -> Any:
    """Validate an (N, d) input array; works on traced values (inside jit/vmap) too.

    :func:`nwcorrupt._checks.check_array` with ``ndim=2``: concrete arrays must be numeric and
    finite; traced ones get the shape and dtype checks only.
    """
    return check_array(name, x, ndim=2)


_forward_jit = jax.jit(forward, static_argnums=(0, 3, 4, 5))


def check_network_inputs(arch: MLP, params: Params, x: Any, width_scale: int) -> Array:
    """Validate (arch, params, width_scale) and (N, d_in) inputs ``x``; return x in the parameter dtype."""
    check_arch(arch)
    check_params(params, arch)
    check_width_scale(arch, width_scale)
    x = check_input("x", x)
    d = params[0]["W"].shape[0]
    if x.shape[1] != d:
        raise ValueError(f"x has {x.shape[1]} features but the network expects d_in={d}")
    return jnp.asarray(x, params[0]["W"].dtype)


def apply(
    arch: MLP, params: Params, x: Array, *, width_scale: int = 1, precision: Any = MATMUL_PRECISION
) -> Array:
    """Network outputs (logits).

    Args:
      arch: the architecture spec used in :func:`init`.
      params: the parameter pytree from :func:`init`.
      x: inputs, shape (N, d_in).
      width_scale: the same ``width_scale`` as in :func:`init`.
      precision: ``jax.lax.Precision`` of the matrix products.

    Returns:
      (N, C) outputs in the parameter dtype.
    """
    x = check_network_inputs(arch, params, x, width_scale)
    return _forward_jit(arch, params, x, width_scale, precision, arch.depth)


def penultimate(
    arch: MLP, params: Params, x: Array, *, width_scale: int = 1, precision: Any = MATMUL_PRECISION
) -> Array:
    """Input of the readout layer: σ(h^{L-1}) of shape (N, width * width_scale), or x itself for depth 1."""
    x = check_network_inputs(arch, params, x, width_scale)
    if arch.depth == 1:
        return x
    return arch.act.fn(_forward_jit(arch, params, x, width_scale, precision, arch.depth - 1))


def layer_features(
    arch: MLP,
    params: Params,
    x: Array,
    layer: int,
    *,
    width_scale: int = 1,
    precision: Any = MATMUL_PRECISION,
) -> Array:
    """The representation of ``x`` at ``layer`` (0..L), as a linear probe reads it.

    ``layer = 0`` gives the inputs x (N, d); ``1 <= layer <= L - 1`` the post-activation
    σ(h^layer) of hidden layer ``layer``, shape (N, width * width_scale); ``layer = L`` the
    outputs (N, C) (:func:`apply`). ``layer = L - 1`` is :func:`penultimate`.

    Raises:
      ValueError: for a layer outside [0, arch.depth].
    """
    x = check_network_inputs(arch, params, x, width_scale)
    layer = _check_layer(arch, layer)
    if layer == 0:
        return x
    h = _forward_jit(arch, params, x, width_scale, precision, layer)
    return h if layer == arch.depth else arch.act.fn(h)


def _check_layer(arch: MLP, layer: Any) -> int:
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= int(layer) <= arch.depth:
        raise ValueError(
            f"layer must be an integer in [0, {arch.depth}] for depth={arch.depth} "
            f"(0: inputs, 1..{arch.depth - 1}: hidden layers, {arch.depth}: outputs), got {layer!r}"
        )
    return int(layer)
