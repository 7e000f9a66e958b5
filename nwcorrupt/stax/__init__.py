"""Composable architectures: finite networks and their infinite-width kernels from one description.

Layers are ``(init_fn, apply_fn, kernel_fn)`` triples with neural-tangents'
names and signatures, so a neural-tangents script ports by changing its import::

    from nwcorrupt import stax
    init_fn, apply_fn, kernel_fn = stax.serial(
        stax.Conv(32, (3, 3), padding="SAME"), stax.Relu(),
        stax.Conv(32, (3, 3), padding="SAME"), stax.Relu(),
        stax.GlobalAvgPool(), stax.Dense(10),
    )
    k = kernel_fn(x_train, None, "ntk")          # x_train: (N, 28, 28, 1) NHWC

Layers: :func:`Dense`, :func:`Conv` (1-D, 2-D and 3-D; VALID, SAME and CIRCULAR
padding; strides), :func:`AvgPool`, :func:`GlobalAvgPool`, :func:`Flatten`,
:func:`Identity`, the activations :func:`Relu`, :func:`Erf`, :func:`Gelu`,
:func:`Sin`, :func:`LeakyRelu`, :func:`Abs` and :func:`Nonlinearity` (any
activation of :mod:`nwcorrupt.activations`); combinators :func:`serial`,
:func:`parallel`, :func:`FanOut`, :func:`FanInSum`, :func:`FanInConcat`.
Dense and Conv come in the ``"ntk"`` and ``"standard"`` parameterisations;
``b_std=None`` means no bias, as in neural-tangents.

Kernels. A network's kernel is computed only as far as it is needed: a readout
through :func:`Flatten` needs the covariance of each position with itself only
(O(N²·HW) memory), :func:`GlobalAvgPool` and :func:`AvgPool` the covariance of
every pair of positions (O(N²·(HW)²)); the layout is chosen by a backward pass
over the layers. Eager calls are computed in blocks of example pairs under a
memory budget and spread over devices (:mod:`nwcorrupt.stax.tiling`); traced calls
(``jit``, ``grad``, ``vmap``) are one expression.

Training. :class:`Network` binds a layer to a per-example input shape so that
:mod:`nwcorrupt.train` trains it like an MLP (see its docstring).

Layout: :mod:`~nwcorrupt.stax.spatial`, :mod:`~nwcorrupt.stax.state`,
:mod:`~nwcorrupt.stax.layers`, :mod:`~nwcorrupt.stax.combinators`,
:mod:`~nwcorrupt.stax.tiling`, :mod:`~nwcorrupt.stax.builders`,
:mod:`~nwcorrupt.stax.network`.
"""

from __future__ import annotations

from nwcorrupt.stax.builders import (
    Abs,
    AvgPool,
    Conv,
    Dense,
    Erf,
    FanInConcat,
    FanInSum,
    FanOut,
    Flatten,
    Gelu,
    GlobalAvgPool,
    Identity,
    KernelFn,
    Layer,
    LeakyRelu,
    Nonlinearity,
    Relu,
    Sin,
    layer,
    parallel,
    serial,
)
from nwcorrupt.stax.layers import INIT_LAWS, LayerSpec, ShapeError
from nwcorrupt.stax.network import Network
from nwcorrupt.stax.spatial import PADDINGS
from nwcorrupt.stax.tiling import DEFAULT_MEMORY_BUDGET

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "INIT_LAWS",
    "PADDINGS",
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
    "LayerSpec",
    "LeakyRelu",
    "Network",
    "Nonlinearity",
    "Relu",
    "ShapeError",
    "Sin",
    "layer",
    "parallel",
    "serial",
]
