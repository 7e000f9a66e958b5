"""The exact mean-field predictor: the kernel predictor with the noise-averaged first-layer overlaps.

The random first-layer Gram matrix of a corrupted training set is replaced by its
noise average (:func:`nwcorrupt.theory.meanfield_overlaps`) and propagated through
the infinite-width recursion of :mod:`nwcorrupt.kernels`; the predictor is
K(x*, X̃) [K(X̃, X̃) + r I]⁻¹ Y.

The ridge. Throughout :mod:`nwcorrupt.theory` and :mod:`nwcorrupt.fluctuations`,
``ridge`` is **absolute**: r ≥ 0 is added as it is to the train-train kernel
diagonal (units of the kernel). This differs from ``diag_reg`` of
:mod:`nwcorrupt.predict`, which is *relative*: r = diag_reg · trace(K)/N. To give the
mean-field predictor "the same relative regulariser" as an exact predictor, scale
by the mean diagonal of the mean-field kernel itself: :func:`meanfield_ridge`
returns r = diag_reg · mean_α K̄_αα, the relative ridge applied to the kernel the
predictor solves with (as :mod:`nwcorrupt.predict` does for the noisy set's kernel;
the two diagonals agree up to O(1/√d) fluctuations).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_array, check_labels, check_matrix, check_probability
from nwcorrupt.theory.overlaps import meanfield_overlaps, meanfield_self_overlaps
from nwcorrupt.theory.recursion import QUAD_ORDER, check_arch_get, check_quad_order, diag_kernel, split_hyper

__all__ = ["as_targets", "check_ridge", "meanfield_predict", "meanfield_ridge", "meanfield_train_diag"]


def as_targets(y_train, n: int, num_classes: int | None = None) -> np.ndarray:
    """Targets (N, C) float64: integer labels (N,) one-hot encoded, or an (N, C) matrix used as given.

    Args:
      y_train: (N,) integer labels in [0, C) or (N, C) one-hot / real targets.
      n: N, the number of training points (rows of x_train).
      num_classes: C (labels: default max + 1; a matrix must have C columns).
    """
    arr = np.asarray(y_train)
    if arr.ndim == 2:
        check_array("y_train", arr, ndim=2)
        if arr.shape[0] != n:
            raise ValueError(f"y_train has {arr.shape[0]} rows but x_train has {n}; they must match")
        if num_classes is not None and arr.shape[1] != num_classes:
            raise ValueError(f"y_train has {arr.shape[1]} columns but num_classes={num_classes}")
        return arr.astype(np.float64)
    y = check_labels("y_train", arr, n=n, num_classes=num_classes, data_name="x_train")
    c = int(num_classes) if num_classes is not None else int(y.max()) + 1
    return np.eye(c)[y]


def check_ridge(ridge) -> float:
    """``ridge`` as a float ≥ 0 (the absolute ridge added to the train-train kernel diagonal)."""
    try:
        v = float(ridge)
    except (TypeError, ValueError):
        raise TypeError(f"ridge must be a number (absolute ridge added to the kernel diagonal), got {ridge!r}") from None
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"ridge must be a finite number >= 0 (absolute, added to the train kernel diagonal), got {ridge!r}")
    return v


@functools.partial(jax.jit, static_argnames=("arch", "get", "quad_order"))
def _diag_jit(g, hyper, *, arch, get, quad_order):
    return diag_kernel(arch, g, get=get, quad_order=quad_order, hyper=hyper)


def meanfield_train_diag(arch, noise, p: float, x_train, *, get: str = "ntk", quad_order: int = QUAD_ORDER) -> np.ndarray:
    """Diagonal (N,) float64 of the mean-field train kernel, K̄_αα = F_diag(E⟨x̃_α, x̃_α⟩).

    Args as in :func:`meanfield_predict`. The single-point recursion of :mod:`nwcorrupt.kernels`
    (:func:`nwcorrupt.theory.diag_kernel`); O(N) work, no N × N array.
    """
    p = check_probability("p", p)
    check_arch_get(arch, get)
    quad_order = check_quad_order(quad_order)
    gd = meanfield_self_overlaps(noise, p, x_train)  # (N,) E⟨x̃_α, x̃_α⟩
    canonical, hyper = split_hyper(arch)
    return np.asarray(_diag_jit(jnp.asarray(gd, jnp.result_type(float)), hyper, arch=canonical, get=get,
                                quad_order=quad_order),
                      dtype=np.float64)


def meanfield_ridge(arch, noise, p: float, x_train, diag_reg: float, *, get: str = "ntk",
                    quad_order: int = QUAD_ORDER) -> float:
    """The absolute ridge r = diag_reg · mean_α K̄_αα for a *relative* ``diag_reg`` (as in :mod:`nwcorrupt.predict`).

    Pass the result as ``ridge`` to :func:`meanfield_predict`: the mean-field predictor is then
    regularised relative to its own train kernel K̄ (:func:`meanfield_train_diag`), as
    ``predict.ntk_predict(..., diag_reg=diag_reg)`` is relative to the kernel of the noisy set it
    is trained on (r = diag_reg · trace(K)/N, ``predict.absolute_regularizer``).

    Args:
      diag_reg: relative ridge ≥ 0; other arguments as in :func:`meanfield_predict`.

    Returns:
      r ≥ 0 (float, units of the kernel); 0 when ``diag_reg`` is 0.
    """
    try:
        rel = float(diag_reg)
    except (TypeError, ValueError):
        raise TypeError(f"diag_reg must be a number (relative ridge), got {diag_reg!r}") from None
    if not math.isfinite(rel) or rel < 0:
        raise ValueError(f"diag_reg must be a finite number >= 0 (relative ridge), got {diag_reg!r}")
    if rel == 0.0:
        return 0.0
    return rel * float(np.mean(meanfield_train_diag(arch, noise, p, x_train, get=get, quad_order=quad_order)))


def meanfield_predict(
    arch,
    noise,
    p: float,
    x_train,
    y_train,
    x_test,
    *,
    get: str = "ntk",
    ridge: float = 0.0,
    num_classes: int | None = None,
    quad_order: int = QUAD_ORDER,
) -> np.ndarray:
    """Exact mean-field predictor (N_test, C): K̄(x*, X̃) [K̄(X̃, X̃) + ridge·I]⁻¹ Y.

    The random first-layer Gram matrix of the corrupted training set is replaced
    by its noise average (:func:`meanfield_overlaps`), then propagated through
    the infinite-width recursion of ``arch`` (``parameterization="ntk"``) by
    :func:`nwcorrupt.kernels.kernel_from_gram` (tiled to its memory budget, so
    quadrature activations scale to large N).
    ``get="ntk"`` gives the t = ∞ gradient-flow mean, ``"nngp"`` the NNGP
    posterior mean.

    Args:
      arch: :class:`nwcorrupt.arch.MLP`.
      noise: corruption model (``Replacement`` / ``Additive``).
      p: corruption level in [0, 1] (ε = 1 − p).
      x_train: (N, d) clean training inputs; x_test: (M, d) clean test inputs.
      y_train: (N,) integer labels (one-hot encoded with C = num_classes or
        max + 1) or (N, C) one-hot / real targets used as given.
      ridge: **absolute** ridge r ≥ 0 added to the train-train kernel diagonal (not
        the relative ``diag_reg`` of :mod:`nwcorrupt.predict`; convert one with
        :func:`meanfield_ridge`).
      quad_order: Gauss–Hermite nodes for activations without closed-form duals.

    Returns:
      float64 numpy array (M, C). Kernels are computed in JAX's current default
      float type (use x64: in float32 the solve loses ~1e-4 relative accuracy at
      p → 1, where the train kernel is nearly rank one).
    """
    p = check_probability("p", p)
    check_arch_get(arch, get)
    reg = check_ridge(ridge)
    quad_order = check_quad_order(quad_order)
    x_test = check_matrix("x_test", x_test)
    ov = meanfield_overlaps(noise, p, x_train, x_test)
    y = as_targets(y_train, ov.train.shape[0], num_classes)
    from nwcorrupt.kernels import kernel_from_gram

    ktt = getattr(kernel_from_gram(arch, ov.train, ov.train_diag, get=get, symmetric=True, quad_order=quad_order), get)
    kst = getattr(kernel_from_gram(arch, ov.test_train, ov.test_diag, ov.train_diag, get=get, quad_order=quad_order), get)
    import scipy.linalg

    ktt = np.asarray(ktt, dtype=np.float64) + reg * np.eye(ktt.shape[0])
    sol = scipy.linalg.cho_solve(scipy.linalg.cho_factor(ktt, lower=True), y)
    return np.asarray(kst, dtype=np.float64) @ sol
