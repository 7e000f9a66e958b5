"""Matrix-level predictors: functions of kernel matrices.

The training kernel is an (N, N) array, a :class:`~nwcorrupt.predict.cg.TiledKernel`
(available only through row tiles; solver ``"cg"``) or a
:class:`~nwcorrupt.predict.stored.StoredKernel` (solver ``"stored_cg"``):

* :func:`kernel_solve`: ``alpha = (K + r I)^{-1} Y``, the weights of the infinite-time
  predictors; :func:`gp_mean`: ``K_* alpha``, the NNGP posterior mean (or the NTK mean at
  ``t = inf``).
* :func:`gradient_flow_weights`: ``beta(t) = K^{-1} (I - exp(-eta t K / Y.size)) Y`` (K
  regularised), by eigendecomposition; :func:`gradient_flow_mean`: ``K_* beta(t)``.
* :func:`absolute_regularizer`: ``r`` from the relative ``diag_reg``.
* :func:`auto_solver`, :func:`default_preconditioner`: what ``solver="auto"`` and a None
  preconditioner resolve to.

Solvers (``solver=``, :data:`SOLVERS`): ``"cholesky"``, ``"mixed_cholesky"`` (a float32
factor refined to a float64 residual) and ``"eigh"`` (:mod:`nwcorrupt.predict.dense`), ``"cg"`` (:func:`~nwcorrupt.predict.cg.cg_solve`),
``"stored_cg"`` (:func:`~nwcorrupt.predict.stored.stored_cg_solve`; the kernel's
products run in its storage dtype, the CG recurrences in float64) and ``"auto"``:
``"eigh"`` for finite ``t``; otherwise ``"cholesky"`` while an N x N matrix of the working
dtype fits in :data:`AUTO_DENSE_MAX_BYTES`, else ``"cg"`` (always ``"cg"`` for a
``TiledKernel``, ``"stored_cg"`` for a ``StoredKernel``).

The conventions for ``diag_reg`` and the gradient-flow time are in :mod:`nwcorrupt.predict`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Union

import jax.numpy as jnp
import numpy as np

from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_array, check_choice, check_positive_int, is_traced
from nwcorrupt.predict.base import (
    Array,
    SolveInfo,
    as_float,
    check_finite_out,
    check_learning_rate,
    check_nonneg_float,
    check_times,
    dtype_key,
    mm,
)
from nwcorrupt.predict.cg import PRECOND_RANK, TiledKernel, cg_solve
from nwcorrupt.predict.dense import solve_cholesky, solve_eigh, solve_mixed_cholesky
from nwcorrupt.predict.memory import STORED_PRECOND_RANK
from nwcorrupt.predict.stored import StoredKernel, stored_cg_solve

__all__ = [
    "SOLVERS",
    "SYMMETRY_TOL",
    "check_symmetric",
    "AUTO_DENSE_MAX_BYTES",
    "KernelLike",
    "absolute_regularizer",
    "auto_solver",
    "default_preconditioner",
    "kernel_solve",
    "gradient_flow_weights",
    "gp_mean",
    "gradient_flow_mean",
]

_HI = _precision.MATMUL_PRECISION

SOLVERS = ("auto", "cholesky", "mixed_cholesky", "eigh", "cg", "stored_cg")
#: ``solver="auto"`` uses a dense direct solver while one N x N matrix of the working
#: dtype takes at most this many bytes (4 GiB), else conjugate gradients.
AUTO_DENSE_MAX_BYTES = 4 * 2**30

#: A training kernel: an (N, N) array, a :class:`TiledKernel` or a :class:`StoredKernel`.
KernelLike = Union[Array, np.ndarray, TiledKernel, StoredKernel]



def _validate_y(y_train: Any, n: int, k_name: str) -> Array:
    check_array("y_train", y_train, ndim=2)
    if y_train.shape[0] != n:
        raise ValueError(
            f"y_train has {y_train.shape[0]} rows but {k_name} is {n} x {n}; they must match"
        )
    if y_train.shape[1] < 1:
        raise ValueError(f"y_train must have at least one column (classes), got shape {tuple(y_train.shape)}")
    return as_float(y_train)


def _validate_k_train(k_train_train: Any) -> Union[Array, TiledKernel, "StoredKernel"]:
    if isinstance(k_train_train, (TiledKernel, StoredKernel)):
        return k_train_train
    check_array("k_train_train", k_train_train, ndim=2)
    n1, n2 = k_train_train.shape
    if n1 != n2 or n1 < 1:
        raise ValueError(f"k_train_train must be a square N x N matrix with N >= 1, got shape {(n1, n2)}")
    k = as_float(k_train_train)
    check_symmetric("k_train_train", k)
    return k


#: Largest asymmetry max|K − Kᵀ| / max|K| accepted for a training kernel, per dtype (√eps): kernels
#: computed in tiles differ from their transposes by rounding only.
SYMMETRY_TOL = {"float64": 1.5e-8, "float32": 3.5e-4}


def check_symmetric(name: str, k: Array) -> None:
    """Raise ValueError naming ``name`` unless the square matrix ``k`` is symmetric to :data:`SYMMETRY_TOL`."""
    if is_traced(k):
        return
    scale = float(jnp.max(jnp.abs(k)))
    asym = float(jnp.max(jnp.abs(k - k.T)))
    tol = SYMMETRY_TOL[dtype_key(k.dtype)]
    if asym > tol * scale:
        raise ValueError(
            f"{name} must be symmetric: max |K - K^T| = {asym:.3g} is {asym / scale:.2g} of max |K| "
            f"(tolerance {tol:g}); a solver would silently use one triangle. Pass (K + K.T) / 2 if the "
            "asymmetry is rounding"
        )


def _validate_k_test(k_test_train: Any, n: int) -> Array:
    check_array("k_test_train", k_test_train, ndim=2)
    if k_test_train.shape[1] != n:
        raise ValueError(
            f"k_test_train must have shape (N_test, {n}) to match k_train_train, got {tuple(k_test_train.shape)}"
        )
    return as_float(k_test_train)


def _mean_diag(k: Union[Array, TiledKernel, "StoredKernel"]) -> Array:
    if isinstance(k, StoredKernel):
        return float(np.mean(k.diag()))
    d = k.diag() if isinstance(k, TiledKernel) else jnp.diagonal(k)
    return jnp.mean(d)


def absolute_regularizer(
    k_train_train: KernelLike, diag_reg: float = 0.0, *, diag_reg_absolute_scale: bool = False
) -> float:
    """The absolute diagonal regulariser ``r`` for a (relative) ``diag_reg``.

    ``r = diag_reg * trace(K) / N``, or ``r = diag_reg`` when
    ``diag_reg_absolute_scale`` is True (neural-tangents' convention).
    """
    diag_reg = check_nonneg_float("diag_reg", diag_reg)
    if diag_reg_absolute_scale or diag_reg == 0.0:
        return diag_reg
    k = _validate_k_train(k_train_train)
    return diag_reg * float(_mean_diag(k))


def auto_solver(n: int, dtype: Any = None, *, t: Any = None, max_bytes: int = AUTO_DENSE_MAX_BYTES) -> str:
    """The solver ``solver="auto"`` picks for N training points.

    ``"eigh"`` when ``t`` is given (finite-time gradient flow); otherwise ``"cholesky"``
    if an N x N matrix of ``dtype`` (default: the current JAX float) takes at most
    ``max_bytes`` bytes, else ``"cg"``.
    """
    check_positive_int("n", n)
    if t is not None:
        return "eigh"
    itemsize = jnp.dtype(dtype if dtype is not None else _precision.default_float()).itemsize
    return "cholesky" if n * n * itemsize <= max_bytes else "cg"


def default_preconditioner(solver: str, preconditioner: Any = None, precond_rank: Any = None) -> tuple[Any, int]:
    """The (preconditioner, rank) a solver uses when the caller leaves them as None.

    ``"stored_cg"``: ``("nystrom", STORED_PRECOND_RANK)`` (random pivots: cheap set-up
    at a large rank, which the N = 60000 solve needs); every other iterative solver:
    ``("pivoted_cholesky", PRECOND_RANK)``. Given values are returned unchanged.
    """
    stored = solver == "stored_cg"
    if preconditioner is None:
        preconditioner = "nystrom" if stored else "pivoted_cholesky"
    if precond_rank is None:
        precond_rank = STORED_PRECOND_RANK if stored else PRECOND_RANK
    return preconditioner, precond_rank


def kernel_solve(
    k_train_train: KernelLike,
    y_train: Any,
    *,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    solver: str = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    preconditioner: Union[str, Callable[[Array], Array], None] = None,
    precond_rank: int | None = None,
    on_nonconvergence: str = "raise",
    rcond: float | None = None,
    estimate_cond: bool = True,
    return_info: bool = False,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """``alpha = (K + r I)^{-1} Y``, the weights of the infinite-time predictors.

    Args:
      k_train_train: (N, N) symmetric PSD training kernel, a :class:`TiledKernel`
        (then only ``"cg"`` applies) or a :class:`StoredKernel` (only ``"stored_cg"``).
      y_train: (N, C) targets (one-hot labels).
      diag_reg: relative regulariser (see :mod:`nwcorrupt.predict`); ``r = diag_reg * trace(K)/N``.
      diag_reg_absolute_scale: interpret ``diag_reg`` as the absolute ``r``.
      solver: ``"auto"``, ``"cholesky"``, ``"mixed_cholesky"`` (float32 factor, float64
        refinement: :func:`~nwcorrupt.predict.dense.solve_mixed_cholesky`), ``"eigh"``,
        ``"cg"`` or ``"stored_cg"``
        (:func:`stored_cg_solve` on a :class:`StoredKernel`; a dense matrix is first
        tiled with :meth:`StoredKernel.from_matrix`). ``"auto"`` never picks
        ``"stored_cg"``, except for a :class:`StoredKernel`.
      tol, maxiter, preconditioner, precond_rank, on_nonconvergence: CG options
        (:func:`cg_solve`, :func:`stored_cg_solve`; tol, maxiter and on_nonconvergence
        also of ``"mixed_cholesky"``); ignored by direct solvers. None
        (default) picks the solver's own (:func:`default_preconditioner`).
      rcond: eigenvalue cut-off of ``"eigh"`` relative to the largest (default N * eps).
      estimate_cond: with ``"cholesky"``, estimate the condition number (about 80
        extra O(N^2) products); only used when ``return_info`` is True.
      return_info: also return a :class:`SolveInfo`.

    Returns:
      alpha, shape (N, C), or ``(alpha, info)``.
    """
    k = _validate_k_train(k_train_train)
    n = k.n if isinstance(k, TiledKernel) else k.shape[0]
    y = _validate_y(y_train, n, "k_train_train")
    check_choice("solver", solver, SOLVERS)
    reg = absolute_regularizer(k, diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale)
    if solver == "auto":
        if isinstance(k, StoredKernel):
            solver = "stored_cg"
        else:
            solver = "cg" if isinstance(k, TiledKernel) else auto_solver(n, k.dtype)
    if isinstance(k, TiledKernel) and solver != "cg":
        raise ValueError(f"a TiledKernel can only be solved with solver='cg', got solver={solver!r}")
    if isinstance(k, StoredKernel) and solver != "stored_cg":
        raise ValueError(f"a StoredKernel can only be solved with solver='stored_cg', got solver={solver!r}")
    preconditioner, precond_rank = default_preconditioner(solver, preconditioner, precond_rank)
    if solver == "stored_cg":
        stored = k if isinstance(k, StoredKernel) else StoredKernel.from_matrix(k)
        x, info = stored_cg_solve(
            stored,
            np.asarray(y, dtype=np.float64),
            shift=reg,
            tol=tol,
            maxiter=maxiter,
            preconditioner=preconditioner,
            precond_rank=precond_rank,
            on_nonconvergence=on_nonconvergence,
            return_info=True,
        )
        alpha = as_float(x)
        check_finite_out("the kernel solve", alpha)
        return (alpha, info) if return_info else alpha
    if solver == "cholesky":
        alpha, info = solve_cholesky(k, y, reg, estimate_cond and return_info)
    elif solver == "mixed_cholesky":
        x, info = solve_mixed_cholesky(k, y, reg, tol=tol, maxiter=maxiter, on_nonconvergence=on_nonconvergence)
        alpha = as_float(x)
    elif solver == "eigh":
        coef, info = solve_eigh(k, y, reg, np.array([np.inf]), rcond)
        alpha = coef[0]
    else:
        alpha, info = cg_solve(
            k,
            y,
            shift=reg,
            tol=tol,
            maxiter=maxiter,
            preconditioner=preconditioner,
            precond_rank=precond_rank,
            on_nonconvergence=on_nonconvergence,
            return_info=True,
        )
    check_finite_out("the kernel solve", alpha)
    return (alpha, info) if return_info else alpha


def gradient_flow_weights(
    k_train_train: Any,
    y_train: Any,
    t: Any,
    *,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    learning_rate: float = 1.0,
    rcond: float | None = None,
    return_info: bool = False,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """``beta(t) = K^{-1} (I - exp(-eta t K / Y.size)) Y`` by eigendecomposition (K regularised).

    The mean test output at time t is ``K_* beta(t)``. ``t = inf`` gives ``K^{-1} Y``
    (pseudo-inverse on dropped eigen-directions, see :mod:`nwcorrupt.predict.dense`).

    Args:
      k_train_train: (N, N) symmetric PSD training kernel (NTK).
      y_train: (N, C) targets.
      t: time >= 0 (scalar) or a 1-D array of T times (inf allowed).
      diag_reg, diag_reg_absolute_scale: regulariser (see :mod:`nwcorrupt.predict`).
      learning_rate: eta > 0; only ``eta * t`` matters.
      rcond: eigenvalue cut-off relative to the largest (default N * eps).
      return_info: also return a :class:`SolveInfo`.

    Returns:
      (N, C) for scalar t, (T, N, C) for an array of times; or ``(beta, info)``.
    """
    k = _validate_k_train(k_train_train)
    if isinstance(k, TiledKernel):
        raise ValueError("finite-time gradient flow needs the dense k_train_train (solver 'eigh'), not a TiledKernel")
    n = k.shape[0]
    y = _validate_y(y_train, n, "k_train_train")
    times, scalar = check_times(t)
    lr = check_learning_rate(learning_rate)
    reg = absolute_regularizer(k, diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale)
    scaled = times * lr / y.size
    coef, info = solve_eigh(k, y, reg, scaled, rcond)
    check_finite_out("the gradient-flow weights", coef)
    out = coef[0] if scalar else coef
    return (out, info) if return_info else out


def gp_mean(
    k_test_train: Any,
    k_train_train: KernelLike,
    y_train: Any,
    *,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    solver: str = "auto",
    return_info: bool = False,
    **solver_options: Any,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """Posterior mean ``K_* (K + r I)^{-1} Y`` (NNGP mean, or NTK mean at t = inf).

    Args:
      k_test_train: (N_test, N) test-train kernel.
      k_train_train: (N, N) training kernel or a :class:`TiledKernel`.
      y_train: (N, C) targets.
      diag_reg, diag_reg_absolute_scale, solver: see :func:`kernel_solve`.
      return_info: also return the :class:`SolveInfo` of the solve.
      **solver_options: further options of :func:`kernel_solve` (tol, maxiter,
        preconditioner, precond_rank, on_nonconvergence, rcond, estimate_cond).

    Returns:
      (N_test, C) predictions, or ``(predictions, info)``.
    """
    k = _validate_k_train(k_train_train)
    n = k.n if isinstance(k, TiledKernel) else k.shape[0]
    kt = _validate_k_test(k_test_train, n)
    alpha, info = kernel_solve(
        k,
        y_train,
        diag_reg=diag_reg,
        diag_reg_absolute_scale=diag_reg_absolute_scale,
        solver=solver,
        return_info=True,
        **solver_options,
    )
    pred = check_finite_out("the predictions", mm(kt, alpha))
    return (pred, info) if return_info else pred


def gradient_flow_mean(
    k_test_train: Any,
    k_train_train: Any,
    y_train: Any,
    t: Any,
    *,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    learning_rate: float = 1.0,
    rcond: float | None = None,
    return_info: bool = False,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """Mean output of an infinite ensemble after gradient flow for time t (NTK regime).

    ``K_* K^{-1} (I - exp(-eta t K / Y.size)) Y`` with K the regularised training
    NTK (eigendecomposition; see :mod:`nwcorrupt.predict.dense` for the eigenvalue rule).

    Args:
      k_test_train: (N_test, N); k_train_train: (N, N); y_train: (N, C).
      t: time >= 0 or a 1-D array of T times (inf allowed).
      diag_reg, diag_reg_absolute_scale, learning_rate, rcond: see
        :func:`gradient_flow_weights`.
      return_info: also return a :class:`SolveInfo`.

    Returns:
      (N_test, C) for scalar t, (T, N_test, C) for an array; or ``(mean, info)``.
    """
    k = _validate_k_train(k_train_train)
    if isinstance(k, TiledKernel):
        raise ValueError("finite-time gradient flow needs the dense k_train_train (solver 'eigh'), not a TiledKernel")
    kt = _validate_k_test(k_test_train, k.shape[0])
    beta, info = gradient_flow_weights(
        k,
        y_train,
        t,
        diag_reg=diag_reg,
        diag_reg_absolute_scale=diag_reg_absolute_scale,
        learning_rate=learning_rate,
        rcond=rcond,
        return_info=True,
    )
    pred = jnp.matmul(kt, beta, precision=_HI)
    pred = check_finite_out("the predictions", pred)
    return (pred, info) if return_info else pred
