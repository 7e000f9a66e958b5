"""Architecture specs shared by the kernel, predictor, theory and finite-width code.

* :class:`MLP` -- a fully connected network of ``depth`` dense layers, hashable
  so it can be a static argument of jitted functions;
* :class:`Kernels` -- the NNGP/NTK pair returned by every kernel computation
  (a pytree, so it passes through ``jax.jit``/``jax.vmap``);
* :func:`normalize_get` -- the one reading of the ``get`` argument
  (``"nngp"``, ``"ntk"`` or a tuple of them), as in neural-tangents.

This module depends on nothing but :mod:`nwcorrupt.activations`, so networks,
kernels and theory can share the spec without importing each other.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
from typing import Any

import jax

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_choice, check_int, check_nonneg_float, check_positive_float, check_positive_int

__all__ = ["GET_NAMES", "PARAMETERIZATIONS", "MLP", "Kernels", "check_arch", "normalize_get", "select_kernels"]

#: The two parameterisations of a dense layer (neural-tangents' names).
PARAMETERIZATIONS = ("ntk", "standard")
#: The kernels a ``get`` argument may name.
GET_NAMES = ("nngp", "ntk")


@dataclasses.dataclass(frozen=True)
class MLP:
    """A fully connected network of ``depth`` dense layers.

    ``depth`` = L counts dense layers: L - 1 hidden layers followed by a readout.
    Weights are N(0, W_std**2 / fan_in) and biases N(0, b_std**2), in the
    neural-tangents ``"ntk"`` or ``"standard"`` parameterisation. The spec is
    hashable, so it can be a static argument of jitted functions.

    ``width`` (hidden width n, optional) does not change the NNGP nor the
    ``"ntk"``-parameterised NTK; the ``"standard"``-parameterised NTK of a
    network with hidden layers depends on it (it grows ∝ n) and requires it.
    """

    depth: int
    activation: str | _act.Activation = "relu"
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "ntk"
    width: int | None = None

    def __post_init__(self) -> None:
        check_int("depth", self.depth, lo=1, note="the number of dense layers")
        _act.get(self.activation)  # raises for an unknown activation
        check_positive_float("W_std", self.W_std)
        check_nonneg_float("b_std", self.b_std)
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        if self.width is not None:
            check_positive_int("width", self.width)

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


# A pytree, so kernel_layers (and user code returning Kernels) works under jit/vmap.
jax.tree_util.register_pytree_node(
    Kernels, lambda k: ((k.nngp, k.ntk), None), lambda _, children: Kernels(*children)
)



def check_arch(arch: Any) -> MLP:
    """Return ``arch`` if it is an :class:`MLP`, else raise ``TypeError`` naming the type."""
    if not isinstance(arch, MLP):
        raise TypeError(f"arch must be an nwcorrupt.arch.MLP, got {type(arch).__name__}")
    return arch


def normalize_get(get: Any) -> tuple[str, ...]:
    """``get`` as a tuple of distinct names from :data:`GET_NAMES`, in the given order.

    Accepts ``"nngp"``, ``"ntk"`` or a sequence of them; raises ``ValueError``
    naming ``get`` for anything else (an empty sequence included).
    """
    names = (get,) if isinstance(get, str) else get
    try:
        names = tuple(names)
    except TypeError:
        raise ValueError(f"get must be 'nngp', 'ntk' or a tuple of them, got {get!r}") from None
    if not names:
        raise ValueError("get must name at least one of ('nngp', 'ntk'), got an empty tuple")
    for name in names:
        if name not in GET_NAMES:
            raise ValueError(f"get must contain only {GET_NAMES}, got {name!r}")
    return tuple(dict.fromkeys(names))


def select_kernels(kernels: Kernels, get: Any, want: tuple[str, ...]) -> Any:
    """What a ``kernel_fn(..., get)`` call returns, from the computed ``kernels``.

    ``get=None``: the :class:`Kernels` itself; a name: that array; a tuple: a named
    tuple ``Kernel`` of the arrays in ``want`` (the normalised tuple), in that order.
    """
    if get is None:
        return kernels
    if isinstance(get, str):
        return getattr(kernels, get)
    return _kernel_tuple(want)(*(getattr(kernels, name) for name in want))


@functools.lru_cache(maxsize=None)
def _kernel_tuple(names: tuple[str, ...]) -> type:
    return collections.namedtuple("Kernel", names)
