"""Optional neural-tangents backend: the same kernels and predictors, computed by
neural-tangents (``neural_tangents.stax`` / ``neural_tangents.predict``).

neural-tangents is the field's reference implementation of infinite-width
kernels. Its last release (0.6.5) needs jax <= 0.5.3, numpy < 2 and TensorFlow, so
it is NOT a dependency of nwcorrupt: it lives in the pinned reference environment
built by ``bash scripts/ref_env.sh`` (``.venv-ref``), where nwcorrupt and
neural-tangents run in one process. There this module serves

* ``nwcorrupt.kernels.kernel(..., backend="neural_tangents")``, which dispatches to
  :func:`kernel`;
* the oracle tests (``tests/oracle``) and ``benchmarks/kernels.py``, which compare
  nwcorrupt's native kernels and predictors with these.

Conventions are nwcorrupt's (they coincide with neural-tangents'):

* ``MLP(depth=L, ...)`` is ``stax.serial(Dense, act, Dense, act, ..., Dense)`` with
  L ``Dense`` layers, each ``Dense(out, W_std, b_std, parameterization)``; the
  input kernel is ``b_std**2 + W_std**2 * x1 @ x2.T / d``.
* ``b_std`` is passed as given, ``b_std = 0`` included (``Dense(b_std=0.0)``, a
  bias initialised at zero but trainable). In the ``"ntk"`` parameterisation that
  equals having no bias; in the ``"standard"`` parameterisation neural-tangents
  adds 1 to the NTK of every Dense layer (the gradient with respect to its bias),
  which is nwcorrupt's native convention too.
* In the ``"standard"`` parameterisation the NTK depends on the width n of the
  hidden layers (neural-tangents' ``Dense`` adds ``fan_in · K_in`` to the NTK):
  it is ``MLP.width`` (the ``out_dim`` of the hidden ``Dense`` layers, with
  neural-tangents' default width scale ``s=(1, 1)``), which the standard NTK of a
  network with hidden layers requires, as natively. The NNGP and the
  ``"ntk"``-parameterised NTK do not depend on it.

Activations with a neural-tangents closed form: relu, leaky_relu(alpha), abs,
erf, gelu (exact, erf-based), sin, identity. Others (tanh, sigmoid, softplus,
swish/silu, gelu(tanh), user-registered ones) have no exact neural-tangents
counterpart (only its numerical-quadrature layer) and raise ``ValueError``.
"""

from __future__ import annotations

import functools
import os
import warnings
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import activations as _act
from nwcorrupt._checks import (
    check_array,
    check_matrix,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_same_size,
)
from nwcorrupt.arch import MLP, Kernels, check_arch, normalize_get

__all__ = [
    "SUPPORTED_ACTIVATIONS",
    "DEFAULT_HIDDEN_WIDTH",
    "import_neural_tangents",
    "stax_mlp",
    "kernel",
    "ntk_predict",
    "nngp_predict",
]

#: Activations with an exact neural-tangents layer (names as in nwcorrupt's registry).
SUPPORTED_ACTIVATIONS = ("abs", "erf", "gelu", "identity", "leaky_relu", "relu", "sin")

#: out_dim of the hidden Dense layers when ``MLP.width`` is None (then nothing
#: computed here depends on it).
DEFAULT_HIDDEN_WIDTH = 1


_INSTALL_HINT = (
    "neural_tangents is not installed in this environment. It is an optional backend that "
    "needs jax<=0.5.3, numpy<2 and TensorFlow, so it lives in a separate pinned environment: "
    "run `bash scripts/ref_env.sh` in the nwcorrupt repository to build .venv-ref, then use "
    "`.venv-ref/bin/python` (or `bash scripts/test_oracle.sh` for the oracle tests)."
)


def import_neural_tangents() -> Any:
    """Import and return the ``neural_tangents`` module, or raise ImportError with install hints.

    TensorFlow's C++ logging is silenced (``TF_CPP_MIN_LOG_LEVEL=2``) unless the
    caller already set that variable, and the DeprecationWarnings that
    neural-tangents' own imports trigger on jax 0.5 are suppressed.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    try:
        with warnings.catch_warnings():
            # neural-tangents 0.6.5 and tf2jax import names that jax 0.5 deprecated.
            warnings.simplefilter("ignore", DeprecationWarning)
            import neural_tangents
    except ImportError as err:
        raise ImportError(f"{_INSTALL_HINT} (import error: {err})") from err
    return neural_tangents


def _nt_activation_layer(act: _act.Activation) -> Any:
    """The neural-tangents stax layer for an nwcorrupt activation, or ValueError."""
    stax = import_neural_tangents().stax
    base = act.name.split("(", 1)[0]
    params = dict(act.params)
    if base == "relu":
        return stax.Relu()
    if base == "leaky_relu":
        return stax.LeakyRelu(float(params["alpha"]))
    if base == "abs":
        return stax.Abs()
    if base == "erf":
        return stax.Erf()
    if base == "sin":
        return stax.Sin()
    if base == "identity":
        return stax.Identity()
    if base == "gelu" and not params.get("approximate", False):
        return stax.Gelu(approximate=False)
    raise ValueError(
        f"activation {act.name!r} has no neural-tangents counterpart; the neural_tangents backend "
        f"supports {list(SUPPORTED_ACTIVATIONS)} (gelu only in its exact, erf-based form). "
        "Use backend='native' for it."
    )


@functools.lru_cache(maxsize=64)
def _stax_mlp_cached(arch: MLP, num_outputs: int, hidden_width: int) -> tuple:
    stax = import_neural_tangents().stax
    b_std = float(arch.b_std)
    act_layer = _nt_activation_layer(arch.act)
    layers = []
    for layer in range(arch.depth):
        last = layer == arch.depth - 1
        layers.append(
            stax.Dense(
                num_outputs if last else hidden_width,
                W_std=float(arch.W_std),
                b_std=b_std,
                parameterization=arch.parameterization,
            )
        )
        if not last:
            layers.append(act_layer)
    return stax.serial(*layers)


def stax_mlp(arch: MLP, num_outputs: int = 1, *, hidden_width: int | None = None) -> tuple:
    """The neural-tangents network of an :class:`~nwcorrupt.arch.MLP` spec.

    Args:
      arch: the architecture (depth L = number of Dense layers).
      num_outputs: width C of the readout layer (kernels do not depend on it).
      hidden_width: ``out_dim`` of the L - 1 hidden Dense layers; default
        ``arch.width``, or :data:`DEFAULT_HIDDEN_WIDTH` when that is None. It
        enters only the "standard"-parameterisation NTK (see the module docstring).

    Returns:
      neural-tangents' ``(init_fn, apply_fn, kernel_fn)`` of
      ``stax.serial(Dense, act, ..., Dense)``.

    Raises:
      ImportError: neural_tangents is not installed (build ``.venv-ref``).
      ValueError: the activation has no neural-tangents counterpart.
    """
    check_arch(arch)
    check_positive_int("num_outputs", num_outputs)
    if hidden_width is None:
        hidden_width = _hidden_width(arch, needs_width=False)
    check_positive_int("hidden_width", hidden_width)
    return _stax_mlp_cached(arch, int(num_outputs), int(hidden_width))


def _hidden_width(arch: MLP, needs_width: bool) -> int:
    """``arch.width``; required when the standard-parameterisation NTK of hidden layers is wanted."""
    width = getattr(arch, "width", None)
    if width is not None:
        return int(width)
    if needs_width and arch.parameterization == "standard" and arch.depth > 1:
        raise ValueError(
            "the NTK in the 'standard' parameterisation grows with the hidden width: set "
            "MLP(width=n) (the neural-tangents Dense out_dim of the hidden layers)"
        )
    return DEFAULT_HIDDEN_WIDTH


@functools.lru_cache(maxsize=64)
def _jitted_kernel_fn(arch: MLP, hidden_width: int, get: tuple[str, ...]) -> Any:
    kernel_fn = _stax_mlp_cached(arch, 1, hidden_width)[2]
    return jax.jit(lambda x1, x2: kernel_fn(x1, x2, get))


def _check_inputs(x1: Any, x2: Any) -> tuple[jax.Array, jax.Array | None]:
    check_matrix("x1", x1)
    if x2 is not None:
        check_matrix("x2", x2)
        if x2.shape[1] != x1.shape[1]:
            raise ValueError(
                f"x1 and x2 must have the same number of features; got x1 with d={x1.shape[1]} "
                f"and x2 with d={x2.shape[1]}"
            )
        return jnp.asarray(x1), jnp.asarray(x2)
    return jnp.asarray(x1), None


def kernel(
    arch: MLP,
    x1: Any,
    x2: Any = None,
    get: str | tuple[str, ...] = ("nngp", "ntk"),
) -> Kernels:
    """NNGP and/or NTK of ``arch`` between ``x1`` and ``x2``, computed by neural-tangents.

    Args:
      arch: the MLP spec.
      x1: (N1, d) inputs (rows are examples).
      x2: (N2, d) inputs, or None for ``x1`` itself.
      get: ``"nngp"``, ``"ntk"`` or a tuple of both.

    Returns:
      :class:`~nwcorrupt.arch.Kernels` with (N1, N2) matrices in the dtype of the
      inputs (float64 under x64); fields not in ``get`` are None. Output units as
      nwcorrupt's native kernels (input overlap ``x1 @ x2.T / d``).
    """
    check_arch(arch)
    get = normalize_get(get)
    hidden_width = _hidden_width(arch, needs_width="ntk" in get)
    x1, x2 = _check_inputs(x1, x2)
    result = _jitted_kernel_fn(arch, hidden_width, get)(x1, x2)
    out = {g: getattr(result, g) for g in get}
    for g, value in out.items():
        if not bool(jnp.all(jnp.isfinite(value))):
            raise FloatingPointError(
                f"neural-tangents returned non-finite {g} values for {arch}; the kernel overflowed"
            )
    return Kernels(**out)


def _check_train(x_train: Any, y_train: Any, x_test: Any) -> tuple[jax.Array, jax.Array, jax.Array]:
    check_matrix("x_train", x_train)
    check_matrix("x_test", x_test)
    check_array("y_train", y_train, ndim=2)
    check_same_size("y_train", y_train.shape[0], "x_train", x_train.shape[0], "rows")
    check_same_size("x_test", x_test.shape[1], "x_train", x_train.shape[1], "features")
    x_train = jnp.asarray(x_train)
    return x_train, jnp.asarray(y_train, dtype=x_train.dtype), jnp.asarray(x_test, dtype=x_train.dtype)


def _predict(
    arch: MLP,
    mode: str,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    t: Any,
    diag_reg: float,
    learning_rate: float,
) -> jax.Array:
    nt = import_neural_tangents()
    check_arch(arch)
    hidden_width = _hidden_width(arch, needs_width=mode == "ntk")
    x_train, y_train, x_test = _check_train(x_train, y_train, x_test)
    diag_reg = check_nonneg_float("diag_reg", diag_reg)
    learning_rate = check_positive_float("learning_rate", learning_rate)
    if t is not None:
        t = check_nonneg_float("t", t)
    kernel_fn = _stax_mlp_cached(arch, int(y_train.shape[1]), int(hidden_width))[2]
    predict_fn = nt.predict.gradient_descent_mse_ensemble(
        kernel_fn, x_train, y_train, learning_rate=learning_rate, diag_reg=diag_reg
    )
    out = predict_fn(t=t, x_test=x_test, get=mode, compute_cov=False)
    if not bool(np.all(np.isfinite(np.asarray(out)))):
        raise FloatingPointError(
            f"neural-tangents returned non-finite {mode} predictions; the training kernel may be "
            "singular: increase diag_reg"
        )
    return out


def ntk_predict(
    arch: MLP,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    t: float | None = None,
    diag_reg: float = 0.0,
    learning_rate: float = 1.0,
) -> jax.Array:
    """Mean output of the infinite NTK ensemble trained by gradient flow on MSE (neural-tangents).

    ``f(x_test, t) = Θ(x_test, X) Θ_r⁻¹ (I − exp(−η t Θ_r / y_train.size)) Y``, with
    ``Θ_r = Θ(X, X) + diag_reg · mean(diag Θ(X, X)) · I`` and ``t = None`` for t = ∞.

    Args:
      arch: the MLP spec.
      x_train: (N, d) training inputs.
      y_train: (N, C) targets (one-hot labels).
      x_test: (M, d) test inputs.
      t: training time (>= 0) or None for infinity.
      diag_reg: regulariser relative to the mean training-kernel diagonal.
      learning_rate: η, multiplies ``t``.

    Returns:
      (M, C) mean predictions.
    """
    return _predict(arch, "ntk", x_train, y_train, x_test, t, diag_reg, learning_rate)


def nngp_predict(
    arch: MLP,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    diag_reg: float = 0.0,
) -> jax.Array:
    """NNGP posterior mean ``K(x_test, X) K_r⁻¹ Y`` (neural-tangents), ``K_r`` regularised as in
    :func:`ntk_predict`.

    Args:
      arch, x_train, y_train, x_test, diag_reg: as in :func:`ntk_predict`.

    Returns:
      (M, C) posterior mean.
    """
    return _predict(arch, "nngp", x_train, y_train, x_test, None, diag_reg, 1.0)
