"""Output kernels as functions of first-layer overlaps, on the one recursion of :mod:`nwcorrupt.kernels`.

The theory needs the NNGP/NTK of ``arch`` as a function F(g11, g12, g22) of the
first-layer overlaps of a pair of points (g11 = ⟨x, x⟩, g12 = ⟨x, x'⟩,
g22 = ⟨x', x'⟩) and of a point with itself, F_diag(g), together with their
derivatives. Everything here evaluates :func:`nwcorrupt.kernels.kernel_layers`
(the layer recursion, dual kernels from :mod:`nwcorrupt.activations`): there is
no second recursion and no second quadrature rule.

All functions are pure ``jnp``: they run under ``jax.jit`` and forward-mode
autodiff (``jax.jvp``/``jax.jacfwd``) in the overlaps. Reverse mode also works
off the diagonal (|g12| < √(g11 g22)); on the diagonal of a symmetric kernel
(ρ = 1), where the relu-family duals have infinite slope, use forward mode.

Only the NTK parameterisation is covered (:func:`check_arch_get`).
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from nwcorrupt import activations as _act
from nwcorrupt.arch import GET_NAMES, check_arch
from nwcorrupt.kernels import kernel_layers

__all__ = [
    "QUAD_ORDER",
    "SERIES_QUAD_ORDER",
    "check_arch_get",
    "check_quad_order",
    "diag_kernel",
    "kernels_from_overlaps",
    "pair_kernel",
    "pair_kernel_partials",
    "split_hyper",
]

#: Gauss–Hermite nodes per dimension for activations without a closed-form dual, used for
#: kernel matrices (:func:`kernels_from_overlaps`, the mean-field predictor).
QUAD_ORDER = 80
#: Nodes for Taylor coefficients and transfer coefficients, which are evaluated at a few
#: points only (the maximum of :mod:`nwcorrupt.activations`).
SERIES_QUAD_ORDER = _act.MAX_ORDER


def check_arch_get(arch, get: str):
    """Validate an architecture and a single kernel name for the theory; return ``arch``.

    Args:
      arch: :class:`nwcorrupt.arch.MLP` in the NTK parameterisation.
      get: ``"ntk"`` or ``"nngp"`` (one kernel; the theory does not take tuples).

    Raises:
      TypeError: ``arch`` is not an MLP.
      ValueError: ``get`` is not one of the names, or the parameterisation is not ``"ntk"``.
    """
    if get not in GET_NAMES:
        raise ValueError(f"get must be one of {sorted(GET_NAMES)} (a single kernel), got {get!r}")
    check_arch(arch)
    if arch.parameterization != "ntk":
        raise ValueError(
            "arch.parameterization must be 'ntk': the theory covers the NTK-parameterisation "
            f"recursion only, got {arch.parameterization!r}"
        )
    return arch


def check_quad_order(quad_order) -> int:
    """``quad_order`` as an int in [1, activations.MAX_ORDER] (Gauss–Hermite nodes per dimension)."""
    if isinstance(quad_order, bool) or not isinstance(quad_order, int) or quad_order < 1:
        raise ValueError(f"quad_order must be an integer >= 1, got {quad_order!r}")
    if quad_order > _act.MAX_ORDER:
        raise ValueError(f"quad_order must be <= {_act.MAX_ORDER} (the most nodes activations support), got {quad_order}")
    return quad_order


def _last(layers, get: str):
    return getattr(layers[-1], get)


def split_hyper(arch):
    """(``arch`` with W_std = 1 and b_std = 0, its (W_std, b_std) as a (2,) float array).

    Jitted theory code takes the first as a static argument and passes the second, traced,
    as ``hyper=`` to the functions below: one compilation then serves every W_std and b_std
    of an activation and depth.
    """
    canonical = dataclasses.replace(arch, W_std=1.0, b_std=0.0)
    return canonical, jnp.asarray([arch.W_std, arch.b_std], jnp.result_type(float))


def _hyper_kw(hyper) -> dict:
    return {} if hyper is None else {"W_std": hyper[0], "b_std": hyper[1]}


def pair_kernel(arch, g11, g12, g22, *, get: str = "ntk", quad_order: int = QUAD_ORDER, hyper=None) -> jax.Array:
    """Output kernel F(g11, g12, g22) of pairs of points, elementwise over broadcast arrays.

    Args:
      arch: MLP (NTK parameterisation; not validated here, see :func:`check_arch_get`).
      g11, g12, g22: first-layer overlaps ⟨x, x⟩, ⟨x, x'⟩, ⟨x', x'⟩ (already divided by d),
        broadcastable, |g12| ≤ √(g11 g22).
      get: ``"ntk"`` (Θ^L) or ``"nngp"`` (K^L).
      quad_order: Gauss–Hermite nodes for activations without closed-form duals.
      hyper: optional (W_std, b_std) array replacing the spec's values (see :func:`split_hyper`).

    Returns:
      array of the broadcast shape, JAX's default float type. Each entry is
      ``kernel_layers(arch, [[g12]], [g11], [g22])[-1]`` (the pair recursion, even at ρ = 1).
    """
    dt = jnp.result_type(float)
    g11, g12, g22 = jnp.broadcast_arrays(*(jnp.asarray(g, dt) for g in (g11, g12, g22)))

    def one(a, b, c):
        return _last(kernel_layers(arch, b[None, None], a[None], c[None], get=get, quad_order=quad_order, **_hyper_kw(hyper)), get)[0, 0]

    return jax.vmap(one)(g11.ravel(), g12.ravel(), g22.ravel()).reshape(g12.shape)


def diag_kernel(arch, g, *, get: str = "ntk", quad_order: int = QUAD_ORDER, hyper=None) -> jax.Array:
    """Output kernel F_diag(g) of a point with itself (first-layer overlap g = ⟨x, x⟩), elementwise.

    The diagonal recursion of :mod:`nwcorrupt.kernels` (exact ρ = 1), as on the diagonal of
    ``kernel_layers(..., symmetric=True)``. Forward-mode differentiable in g.
    """
    g = jnp.asarray(g, jnp.result_type(float))

    def one(q):
        return _last(kernel_layers(arch, q[None, None], q[None], get=get, symmetric=True, quad_order=quad_order, **_hyper_kw(hyper)), get)[0, 0]

    return jax.vmap(one)(g.ravel()).reshape(g.shape)


def pair_kernel_partials(arch, g11, g12, g22, *, get: str = "ntk", quad_order: int = QUAD_ORDER, hyper=None):
    """F and its partial derivatives (∂F/∂g11, ∂F/∂g12, ∂F/∂g22), elementwise (forward-mode autodiff).

    Arguments as in :func:`pair_kernel`. Returns four arrays of the broadcast shape.
    """
    dt = jnp.result_type(float)
    args = jnp.broadcast_arrays(*(jnp.asarray(g, dt) for g in (g11, g12, g22)))
    value, lin = jax.linearize(lambda a, b, c: pair_kernel(arch, a, b, c, get=get, quad_order=quad_order, hyper=hyper), *args)
    zero, one = jnp.zeros_like(args[0]), jnp.ones_like(args[0])
    return value, lin(one, zero, zero), lin(zero, one, zero), lin(zero, zero, one)


@functools.partial(jax.jit, static_argnames=("arch", "get", "quad_order"))
def _overlap_kernels(train, test_train, test_diag, hyper, *, arch, get, quad_order):
    gd = jnp.diagonal(train)
    hk = _hyper_kw(hyper)
    ktt = _last(kernel_layers(arch, train, gd, get=get, symmetric=True, quad_order=quad_order, **hk), get)
    if test_train.shape[0] == 0:
        return ktt, jnp.zeros(test_train.shape, ktt.dtype)
    kst = _last(kernel_layers(arch, test_train, test_diag, gd, get=get, quad_order=quad_order, **hk), get)
    return ktt, kst


def kernels_from_overlaps(arch, overlaps, *, get: str = "ntk", quad_order: int = QUAD_ORDER, hyper=None):
    """Output kernels from first-layer overlaps: (K_train (N, N), K_test_train (M, N)), jnp arrays.

    The train-train kernel is ``kernel_layers(..., symmetric=True)`` of ``overlaps.train`` (its
    diagonal by the single-point recursion), the test-train kernel that of ``overlaps.test_train``
    with diag1 = ``test_diag`` and diag2 = the train diagonal. Jitted (one compilation per
    activation, depth, ``get`` and shapes; W_std and b_std are traced); traceable and forward-mode differentiable in the overlaps, so
    ``overlaps`` may hold jnp arrays or tracers. Untiled: memory is a few (N + M) × N arrays
    (:func:`nwcorrupt.theory.meanfield_predict` uses the tiled ``kernel_from_gram`` instead).

    Args:
      arch: MLP (NTK parameterisation).
      overlaps: an :class:`~nwcorrupt.theory.Overlaps` (fields ``train``, ``test_train``, ``test_diag``).
      get: ``"ntk"`` or ``"nngp"``; quad_order: Gauss–Hermite nodes (≤ activations.MAX_ORDER).
      hyper: optional (W_std, b_std) array replacing the spec's values (see :func:`split_hyper`);
        None splits them off ``arch`` here.
    """
    check_arch_get(arch, get)
    quad_order = check_quad_order(quad_order)
    dt = jnp.result_type(float)
    canonical = arch
    if hyper is None:
        canonical, hyper = split_hyper(arch)
    return _overlap_kernels(
        jnp.asarray(overlaps.train, dt), jnp.asarray(overlaps.test_train, dt), jnp.asarray(overlaps.test_diag, dt),
        hyper, arch=canonical, get=get, quad_order=quad_order,
    )
