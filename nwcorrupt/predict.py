"""Kernel predictors (NNGP posterior mean, NTK gradient flow) and their linear solvers.

Two layers:

* **Matrix level** -- functions of kernel matrices (or of a :class:`TiledKernel`,
  a training kernel available only through row tiles):
  :func:`kernel_solve` (``alpha = (K + r I)^{-1} Y``), :func:`gradient_flow_weights`
  (the finite-time analogue), :func:`gp_mean`, :func:`gradient_flow_mean` and the
  multi-right-hand-side conjugate-gradient solver :func:`cg_solve`.
* **Architecture level** -- :func:`ntk_predict` and :func:`nngp_predict` compute the
  kernels of an architecture with :func:`nwcorrupt.kernels.kernel` and call the
  matrix level. With ``solver="cg"`` the N x N training kernel is never formed: the
  training rows are streamed in tiles through every matrix-vector product.
* **Stored kernel** (large N, e.g. all 60000 MNIST images) -- ``solver="stored_cg"``:
  the training kernel is computed once, tile by tile, into a :class:`StoredKernel`
  (upper triangle only, on the host), solved by :func:`stored_cg_solve` (Nystrom-
  preconditioned CG, float64 recurrences, float64 residual refinement) and the test
  predictions come from :func:`tiled_predict`; :func:`stored_memory_plan` checks the
  memory first.

Conventions (those of neural-tangents' ``predict.gradient_descent_mse_ensemble``):

* ``diag_reg`` is relative: the absolute regulariser added to the diagonal of the
  training kernel is ``r = diag_reg * trace(K) / N``; with
  ``diag_reg_absolute_scale=True`` it is ``r = diag_reg``.
* Gradient flow on the MSE loss ``|f(X) - Y|^2 / (2 * Y.size)`` with learning rate
  ``eta`` gives, from a zero-mean initial function, the mean test output at time ``t``
  ``K_* K^{-1} (I - exp(-eta t K / Y.size)) Y`` (``K`` the regularised NTK); ``t=None``
  means ``t = inf``, i.e. ``K_* K^{-1} Y``. The NNGP posterior mean is the same
  infinite-time formula with the NNGP kernel.

Solvers (``solver=``):

* ``"cholesky"``: Cholesky factorisation of ``K + r I``. If it fails (non-finite
  factor or solution), jitter ``j * trace(K)/N`` is added to the diagonal with
  ``j = 1e-12`` (float64) or ``1e-6`` (float32), multiplied by 10 on each retry up
  to :data:`JITTER_MAX` ``= 1e-4``; the absolute jitter used is reported in
  :class:`SolveInfo`. If the largest jitter still fails, ``ValueError`` says the
  kernel is not positive semi-definite or is singular.
* ``"eigh"``: eigendecomposition ``K + r I = V diag(lam) V^T`` (needed for finite
  ``t``). Eigenvalue rule: if ``lam_min < -sqrt(eps) * lam_max`` the matrix is
  clearly indefinite and ``ValueError`` is raised; eigenvalues with
  ``lam <= rcond * lam_max`` (``rcond = N * eps`` by default, numpy's matrix-rank
  rule; ``eps`` the machine epsilon of the dtype) are treated as numerical zeros and
  their eigen-directions are dropped (pseudo-inverse), at every ``t``. The other
  directions get the weight ``-expm1(-lam t eta / Y.size) / lam`` (``1/lam`` at
  ``t = inf``). neural-tangents clips negative eigenvalues to 0 with the same
  effect for negative ones; it keeps tiny positive ones (and gives NaN for an exact
  zero); for positive-definite kernels the two agree exactly.
* ``"cg"``: preconditioned conjugate gradients, one independent recurrence per
  column of ``Y`` (see :func:`cg_solve`).
* ``"stored_cg"``: CG on a :class:`StoredKernel` (see :func:`stored_cg_solve`); the
  kernel's products run in its storage dtype, the CG recurrences in float64.
* ``"auto"``: ``"eigh"`` for finite ``t``; otherwise ``"cholesky"`` while an N x N
  matrix of the working dtype fits in :data:`AUTO_DENSE_MAX_BYTES`, else ``"cg"``
  (always ``"cg"`` for a :class:`TiledKernel`). See :func:`auto_solver`.

Precision: everything runs in the default JAX float dtype (float64 under
:func:`nwcorrupt.precision.x64`, else float32 with ``HIGHEST``-precision matrix
products). The relative error of Cholesky and CG solves is about
``eps * cond(K + r I)`` (measured in float32, eps = 1.2e-7: 1.3e-5 at cond 1e3,
1e-3 at cond 1e5); ``"eigh"`` is about ten times less accurate and in float32 drops
all directions below ``N * eps * lam_max``. Unregularised NTKs of thousands of points
(cond 1e4-1e6) should be solved in float64 or with a ``diag_reg`` (measured tables
in ``docs/predict.md``).

None of these functions is jittable as a whole (they make decisions on values:
jitter retries, convergence checks); their inner steps are jitted.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import warnings
from collections.abc import Callable
from typing import Any, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.linalg

from nwcorrupt import kernels as _kernels
from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_array, check_choice, check_matrix, check_positive_int

Array = jax.Array
_HI = _precision.MATMUL_PRECISION

SOLVERS = ("auto", "cholesky", "eigh", "cg", "stored_cg")
PRECONDITIONERS = ("none", "jacobi", "pivoted_cholesky")

#: ``solver="auto"`` uses a dense direct solver while one N x N matrix of the working
#: dtype takes at most this many bytes (4 GiB), else conjugate gradients.
AUTO_DENSE_MAX_BYTES = 4 * 2**30
#: First Cholesky jitter, relative to the mean diagonal ``trace(K)/N``, per dtype.
JITTER_START = {"float64": 1e-12, "float32": 1e-6}
#: Factor between successive jitters.
JITTER_GROWTH = 10.0
#: Largest relative jitter tried before the Cholesky solver gives up.
JITTER_MAX = 1e-4
#: Default CG tolerance on the relative residual of every column, per dtype.
CG_TOL = {"float64": 1e-10, "float32": 1e-5}
#: Default rank of the pivoted-Cholesky CG preconditioner (capped at N).
PRECOND_RANK = 64
#: Default number of kernel rows per tile when streaming a kernel.
TILE_SIZE = 1024


class ConvergenceError(RuntimeError):
    """Conjugate gradients did not reach the tolerance; ``.info`` holds the diagnostics."""

    def __init__(self, message: str, info: "SolveInfo") -> None:
        super().__init__(message)
        self.info = info


@dataclasses.dataclass(frozen=True)
class SolveInfo:
    """Diagnostics of one kernel solve.

    Attributes:
      solver: ``"cholesky"``, ``"eigh"`` or ``"cg"`` (what ``"auto"`` resolved to).
      diag_reg: absolute regulariser ``r`` added to the diagonal (kernel units).
      jitter: absolute jitter added on top of ``r`` by the Cholesky fallback (0 if none).
      residual: ``max_t |(K + r I) A - B|_F / |Y|_F``, the relative residual of the
        system that was asked for (without jitter): ``B = Y`` at ``t = inf`` and
        ``B = (I - exp(-eta t (K + r I) / Y.size)) Y`` at finite ``t``.
      iterations: conjugate-gradient iterations (0 for direct solvers).
      converged: False only for a CG run that stopped at ``maxiter`` (with a warning).
      cond: condition-number estimate of ``K + r I`` (``inf`` if singular; NaN if
        not estimated, i.e. ``estimate_cond=False``).
      cond_method: how ``cond`` was obtained: ``"eigh"`` (exact eigenvalues),
        ``"power"`` (40 power and 40 inverse iterations with the Cholesky factor, of
        ``K + (r + jitter) I``; a lower bound, within 5% in the tests), ``"lanczos"`` (Ritz values from the CG
        coefficients; condition number of the *preconditioned* operator) or ``"none"``.
      dropped: eigen-directions dropped as numerical zeros by ``"eigh"``.
    """

    solver: str
    diag_reg: float
    jitter: float = 0.0
    residual: float = float("nan")
    iterations: int = 0
    converged: bool = True
    cond: float = float("nan")
    cond_method: str = "none"
    dropped: int = 0


@dataclasses.dataclass(frozen=True)
class TiledKernel:
    """A symmetric PSD N x N kernel matrix that is only available through row tiles.

    Attributes:
      rows: function ``idx -> K[idx, :]``; ``idx`` is a 1-D numpy int array of m row
        indices, the result an (m, N) array. It is called with contiguous tiles of
        at most ``tile_size`` rows (matrix-vector products) and with single rows
        (pivoted-Cholesky preconditioner).
      n: N, the matrix size.
      tile_size: rows per tile; peak memory is about ``tile_size * N`` numbers.
      diagonal: optional (N,) diagonal of K; computed by one streaming pass when
        absent and needed (for ``diag_reg`` relative scaling and preconditioners).
    """

    rows: Callable[[np.ndarray], Any] = dataclasses.field(compare=False)
    n: int
    tile_size: int = TILE_SIZE
    diagonal: Any = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not callable(self.rows):
            raise TypeError(f"rows must be a function idx -> K[idx, :], got {self.rows!r}")
        check_positive_int("n", self.n)
        check_positive_int("tile_size", self.tile_size)
        if self.diagonal is not None:
            d = check_array("diagonal", self.diagonal, ndim=1)
            if d.shape[0] != self.n:
                raise ValueError(f"diagonal must have shape ({self.n},), got {tuple(d.shape)}")

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    def tiles(self) -> list[tuple[int, int]]:
        """The (start, stop) row ranges of the tiles."""
        return [(s, min(s + self.tile_size, self.n)) for s in range(0, self.n, self.tile_size)]

    def row_block(self, idx: np.ndarray) -> Array:
        """``K[idx, :]`` as a (m, N) array of the working dtype, validated."""
        idx = np.asarray(idx, dtype=np.int64)
        block = jnp.asarray(self.rows(idx), dtype=_precision.default_float())
        if block.shape != (idx.shape[0], self.n):
            raise ValueError(
                f"TiledKernel.rows returned shape {tuple(block.shape)} for {idx.shape[0]} rows; "
                f"expected ({idx.shape[0]}, {self.n})"
            )
        return block

    def matvec(self, v: Array) -> Array:
        """``K @ v`` for v of shape (N,) or (N, C), streaming row tiles."""
        out = [_mm(self.row_block(np.arange(s, e)), v) for s, e in self.tiles()]
        return jnp.concatenate(out, axis=0)

    def diag(self) -> Array:
        """The (N,) diagonal (given, or extracted from one streaming pass)."""
        if self.diagonal is not None:
            return jnp.asarray(self.diagonal, dtype=_precision.default_float())
        parts = []
        for s, e in self.tiles():
            block = self.row_block(np.arange(s, e))
            parts.append(block[jnp.arange(e - s), jnp.arange(s, e)])
        return jnp.concatenate(parts)


KernelLike = Union[Array, np.ndarray, TiledKernel, "StoredKernel"]


# ----------------------------------------------------------------------------------------
# small helpers


def _mm(a: Array, b: Array) -> Array:
    return jnp.matmul(a, b, precision=_HI)


_matmul = jax.jit(_mm)


def _eps(dtype: Any) -> float:
    return float(jnp.finfo(dtype).eps)


def _dtype_key(dtype: Any) -> str:
    return "float64" if jnp.dtype(dtype) == jnp.float64 else "float32"


def _as_float(x: Any) -> Array:
    return jnp.asarray(x, dtype=_precision.default_float())


def _check_finite_out(name: str, x: Array) -> Array:
    if not bool(jnp.all(jnp.isfinite(x))):
        raise FloatingPointError(
            f"{name} contains NaN or inf although the inputs were finite; the kernel is probably "
            "singular or badly conditioned for this dtype: add diag_reg or enable float64"
        )
    return x


def _check_nonneg_float(name: str, value: Any, *, allow_inf: bool = False) -> float:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if math.isnan(v) or v < 0 or (math.isinf(v) and not allow_inf):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return v


def _check_learning_rate(learning_rate: Any) -> float:
    lr = _check_nonneg_float("learning_rate", learning_rate)
    if lr == 0:
        raise ValueError("learning_rate must be > 0, got 0")
    return lr


def _check_times(t: Any) -> tuple[np.ndarray, bool]:
    """Validate gradient-flow times; returns (times (T,) float64 numpy, is_scalar)."""
    if t is None:
        raise ValueError("t must be a number >= 0 or a 1-D array of them for finite-time predictions")
    arr = np.asarray(t, dtype=np.float64) if not hasattr(t, "dtype") else np.asarray(t).astype(np.float64)
    if arr.ndim > 1:
        raise ValueError(f"t must be a scalar or a 1-D array of times, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError("t must contain at least one time, got an empty array")
    if np.any(np.isnan(arr)) or np.any(arr < 0):
        raise ValueError(f"t must be >= 0 (inf allowed), got {t!r}")
    return arr.reshape(-1), arr.ndim == 0


def _validate_y(y_train: Any, n: int, k_name: str) -> Array:
    check_array("y_train", y_train, ndim=2)
    if y_train.shape[0] != n:
        raise ValueError(
            f"y_train has {y_train.shape[0]} rows but {k_name} is {n} x {n}; they must match"
        )
    if y_train.shape[1] < 1:
        raise ValueError(f"y_train must have at least one column (classes), got shape {tuple(y_train.shape)}")
    return _as_float(y_train)


def _validate_k_train(k_train_train: Any) -> Union[Array, TiledKernel, "StoredKernel"]:
    if isinstance(k_train_train, (TiledKernel, StoredKernel)):
        return k_train_train
    check_array("k_train_train", k_train_train, ndim=2)
    n1, n2 = k_train_train.shape
    if n1 != n2 or n1 < 1:
        raise ValueError(f"k_train_train must be a square N x N matrix with N >= 1, got shape {(n1, n2)}")
    return _as_float(k_train_train)


def _validate_k_test(k_test_train: Any, n: int) -> Array:
    check_array("k_test_train", k_test_train, ndim=2)
    if k_test_train.shape[1] != n:
        raise ValueError(
            f"k_test_train must have shape (N_test, {n}) to match k_train_train, got {tuple(k_test_train.shape)}"
        )
    return _as_float(k_test_train)


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
    diag_reg = _check_nonneg_float("diag_reg", diag_reg)
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


# ----------------------------------------------------------------------------------------
# dense direct solvers


@jax.jit
def _cholesky_attempt(k: Array, shift: Array, y: Array) -> tuple[Array, Array, Array]:
    """Solve (K + shift I) x = y; returns (x, ok, lower Cholesky factor)."""
    n = k.shape[0]
    a = k + shift * jnp.eye(n, dtype=k.dtype)
    c, lower = jsl.cho_factor(a, lower=True)
    x = jsl.cho_solve((c, lower), y)
    ok = jnp.all(jnp.isfinite(c)) & jnp.all(jnp.isfinite(x))
    return x, ok, c


@jax.jit
def _residual(k: Array, reg: Array, x: Array, b: Array, y_norm: Array) -> Array:
    r = _mm(k, x) + reg * x - b
    return jnp.linalg.norm(r) / y_norm


@functools.partial(jax.jit, static_argnames="iters")
def _power_cond(k: Array, reg: Array, chol: Array, iters: int = 40) -> tuple[Array, Array]:
    """(lam_max, 1/lam_min) of K + r I by power iteration and by inverse iteration with its Cholesky factor."""
    v0 = jax.random.normal(jax.random.PRNGKey(0), (k.shape[0],), dtype=k.dtype)  # fixed key: deterministic
    v0 = v0 / jnp.linalg.norm(v0)

    def top(op: Callable[[Array], Array]) -> Array:
        def body(_: Any, v: Array) -> Array:
            w = op(v)
            return w / jnp.linalg.norm(w)

        v = jax.lax.fori_loop(0, iters, body, v0)
        return jnp.vdot(v, op(v))

    lam_max = top(lambda v: _mm(k, v) + reg * v)
    inv_lam_min = top(lambda v: jsl.cho_solve((chol, True), v))
    return lam_max, inv_lam_min


def _solve_cholesky(k: Array, y: Array, reg: float, estimate_cond: bool) -> tuple[Array, SolveInfo]:
    mean_diag = float(jnp.mean(jnp.diagonal(k)))
    dt = k.dtype
    x, ok, c = _cholesky_attempt(k, jnp.asarray(reg, dt), y)
    jitter = 0.0
    if not bool(ok):
        scale = abs(mean_diag) if mean_diag != 0 else 1.0
        rel = JITTER_START[_dtype_key(dt)]
        while rel <= JITTER_MAX * (1 + 1e-9):
            jitter = rel * scale
            x, ok, c = _cholesky_attempt(k, jnp.asarray(reg + jitter, dt), y)
            if bool(ok):
                break
            rel *= JITTER_GROWTH
        if not bool(ok):
            raise ValueError(
                "k_train_train + diag_reg * I could not be Cholesky-factorised even with jitter up to "
                f"{JITTER_MAX:g} x mean diagonal ({JITTER_MAX * scale:.3g}): the kernel is not positive "
                "semi-definite or is singular; check it, or increase diag_reg"
            )
    y_norm = jnp.maximum(jnp.linalg.norm(y), jnp.finfo(dt).tiny)
    res = float(_residual(k, jnp.asarray(reg, dt), x, y, y_norm))
    cond, method = float("nan"), "none"
    if estimate_cond:
        lam_max, inv_lam_min = (float(v) for v in _power_cond(k, jnp.asarray(reg, dt), c))
        cond = lam_max * inv_lam_min if inv_lam_min > 0 else float("inf")
        method = "power"
    info = SolveInfo(solver="cholesky", diag_reg=reg, jitter=jitter, residual=res, cond=cond, cond_method=method)
    return x, info


@jax.jit
def _eigh_reg(k: Array, reg: Array) -> tuple[Array, Array]:
    n = k.shape[0]
    return jnp.linalg.eigh(k + reg * jnp.eye(n, dtype=k.dtype))


def _eig_decomp(k: Array, reg: float, rcond: float | None) -> tuple[Array, Array, Array, int, float]:
    """Eigendecomposition of K + r I with the documented clipping rule.

    Returns (lam (N,), V (N, N), keep mask (N,), number dropped, cond).
    """
    dt = k.dtype
    n = k.shape[0]
    lam, vec = _eigh_reg(k, jnp.asarray(reg, dt))
    if not bool(jnp.all(jnp.isfinite(lam))):
        raise FloatingPointError("the eigendecomposition of k_train_train returned NaN or inf")
    lam_max = float(lam[-1])
    lam_min = float(lam[0])
    eps = _eps(dt)
    if lam_max <= 0:
        raise ValueError(
            f"k_train_train + diag_reg * I has no positive eigenvalue (largest {lam_max:.3g}): "
            "a kernel must be positive semi-definite"
        )
    if lam_min < -math.sqrt(eps) * lam_max:
        raise ValueError(
            f"k_train_train + diag_reg * I is not positive semi-definite: smallest eigenvalue {lam_min:.3g} "
            f"< -sqrt(eps) * largest ({-math.sqrt(eps) * lam_max:.3g})"
        )
    rc = n * eps if rcond is None else _check_nonneg_float("rcond", rcond)
    keep = lam > rc * lam_max
    dropped = int(n - int(jnp.sum(keep)))
    cond = lam_max / lam_min if lam_min > 0 else float("inf")
    return lam, vec, keep, dropped, cond


@jax.jit
def _flow_coefficients(lam: Array, vec: Array, keep: Array, y: Array, scaled_t: Array) -> Array:
    """V diag(phi(lam, t)) V^T Y for each time; scaled_t = eta * t / Y.size, shape (T,).

    phi = -expm1(-lam s) / lam (1/lam at s = inf) on kept directions, 0 on dropped ones.
    """
    safe = jnp.where(keep, lam, 1.0)
    s = scaled_t[:, None]
    phi = jnp.where(jnp.isinf(s), 1.0 / safe, -jnp.expm1(-safe * s) / safe)
    phi = jnp.where(keep[None, :], phi, 0.0)  # (T, N)
    proj = _mm(vec.T, y)  # (N, C)
    return jnp.einsum("ij,tj,jc->tic", vec, phi, proj, precision=_HI)


@jax.jit
def _flow_targets(lam: Array, vec: Array, y: Array, scaled_t: Array) -> Array:
    """(I - exp(-s (K + r I))) Y for each time, with eigenvalues clipped at 0."""
    s = scaled_t[:, None]
    lam0 = jnp.maximum(lam, 0.0)
    g = jnp.where(jnp.isinf(s), 1.0, -jnp.expm1(-lam0 * s))
    proj = _mm(vec.T, y)
    return jnp.einsum("ij,tj,jc->tic", vec, g, proj, precision=_HI)


def _solve_eigh(
    k: Array, y: Array, reg: float, scaled_t: np.ndarray, rcond: float | None
) -> tuple[Array, SolveInfo]:
    lam, vec, keep, dropped, cond = _eig_decomp(k, reg, rcond)
    st = jnp.asarray(scaled_t, dtype=k.dtype)
    coef = _flow_coefficients(lam, vec, keep, y, st)  # (T, N, C)
    targets = _flow_targets(lam, vec, y, st)
    y_norm = jnp.maximum(jnp.linalg.norm(y), jnp.finfo(k.dtype).tiny)
    res = max(
        float(_residual(k, jnp.asarray(reg, k.dtype), coef[i], targets[i], y_norm)) for i in range(coef.shape[0])
    )
    info = SolveInfo(
        solver="eigh", diag_reg=reg, residual=res, cond=cond, cond_method="eigh", dropped=dropped
    )
    return coef, info


# ----------------------------------------------------------------------------------------
# conjugate gradients


def _pivoted_cholesky(
    diag: Array, row: Callable[[int], Array], rank: int, stop_rtol: float
) -> tuple[Array, list[int], Array]:
    """Greedy (largest residual diagonal first) partial Cholesky ``A ~ L^T L``.

    Args:
      diag: (N,) diagonal of the SPD matrix A.
      row: ``i -> A[i, :]`` as an (N,) array.
      rank: maximum number of pivots.
      stop_rtol: stop once the largest residual diagonal is <= stop_rtol * max(diag).

    Returns:
      L of shape (k, N) (k <= rank), the k pivot indices in order, and the residual
      diagonal ``diag(A) - diag(L^T L)`` clipped at 0. ``L[:, pivots]`` is upper
      triangular.
    """
    n = diag.shape[0]
    k_max = min(rank, n)
    lmat = jnp.zeros((k_max, n), dtype=diag.dtype)
    d = diag
    pivots: list[int] = []
    stop = stop_rtol * float(jnp.max(diag))
    for k in range(k_max):
        i = int(jnp.argmax(d))
        if not float(d[i]) > stop:
            break
        lmat, d = _pivot_step(lmat, d, row(i), k, i)
        pivots.append(i)
    return lmat[: len(pivots)], pivots, d


@jax.jit
def _pivot_step(lmat: Array, d: Array, a_row: Array, k: Array, i: Array) -> tuple[Array, Array]:
    """One pivot of the partial Cholesky (fixed shapes: rows >= k of lmat are zero)."""
    r = a_row - _mm(lmat[:, i], lmat)
    li = r / jnp.sqrt(d[i])
    lmat = lmat.at[k].set(li)
    d = jnp.maximum(d - li * li, 0.0).at[i].set(0.0)
    return lmat, d


def _partial_cholesky_preconditioner(
    lmat: Array, pivots: list[int], dres: Array, floor: float
) -> Callable[[Array], Array]:
    """``P^{-1}`` for ``P = [[A_SS, A_SR], [A_RS, A_RS A_SS^{-1} A_SR + D_R]]``.

    S are the pivots, R the other indices, ``A_SS = U^T U`` with ``U = L[:, S]`` (upper
    triangular) and ``A_SR = U^T L[:, R]``; ``D_R`` is the residual diagonal (the
    diagonal of the Schur complement), floored at ``floor``. P is symmetric positive
    definite and exact on the pivot rows and columns; ``P^{-1}`` is applied by block
    elimination (two triangular solves and two thin products per application).
    """
    n = lmat.shape[1]
    s_idx = np.asarray(pivots, dtype=np.int64)
    r_idx = np.setdiff1d(np.arange(n), s_idx)
    u = lmat[:, s_idx]  # (k, k) upper triangular
    g = jsl.solve_triangular(u, lmat[:, r_idx], lower=False)  # U^{-1} L_R = A_SS^{-1} A_SR, (k, N-k)
    d_r = jnp.maximum(dres[r_idx], floor)
    s_j, r_j = jnp.asarray(s_idx), jnp.asarray(r_idx)
    return lambda v: _apply_partial_cholesky(u, g, d_r, s_j, r_j, v)


@jax.jit
def _apply_partial_cholesky(u: Array, g: Array, d_r: Array, s_idx: Array, r_idx: Array, v: Array) -> Array:
    v_s, v_r = v[s_idx], v[r_idx]
    w_r = v_r - _mm(g.T, v_s)
    u_s = jsl.solve_triangular(u, jsl.solve_triangular(u, v_s, trans="T", lower=False), lower=False)
    x_r = w_r / d_r[:, None]
    x_s = u_s - _mm(g, x_r)
    return jnp.zeros_like(v).at[s_idx].set(x_s).at[r_idx].set(x_r)


def _make_preconditioner(
    kind: Any,
    op: Union[Array, TiledKernel, Callable],
    shift: float,
    diag: Array | None,
    rank: int,
    n: int,
) -> Callable[[Array], Array]:
    if callable(kind) and not isinstance(kind, str):
        return kind
    check_choice("preconditioner", kind, PRECONDITIONERS)
    if kind == "none":
        return lambda r: r
    if diag is None:
        if isinstance(op, TiledKernel):
            diag = op.diag()
        elif not callable(op):
            diag = jnp.diagonal(op)
        else:
            raise ValueError(
                f"preconditioner={kind!r} with a matvec function needs diag=, the (N,) diagonal of the matrix"
            )
    diag = _as_float(diag) + shift  # diagonal of A + s I
    dt = diag.dtype
    floor = _eps(dt) * float(jnp.mean(jnp.abs(diag))) + float(jnp.finfo(dt).tiny)
    if kind == "jacobi" or rank == 0:
        inv = 1.0 / jnp.maximum(diag, floor)
        return lambda r: inv[:, None] * r
    if isinstance(op, TiledKernel):
        base_row = lambda i: op.row_block(np.array([i]))[0]  # noqa: E731
    elif not callable(op):
        base_row = lambda i: op[i]  # noqa: E731
    else:
        raise ValueError(
            "preconditioner='pivoted_cholesky' needs rows of the matrix: pass the matrix or a TiledKernel, "
            "not a matvec function"
        )

    def row(i: int) -> Array:  # row i of A + s I
        return base_row(i).at[i].add(shift) if shift else base_row(i)

    lmat, pivots, dres = _pivoted_cholesky(diag, row, rank, stop_rtol=math.sqrt(_eps(dt)))
    if not pivots:
        inv = 1.0 / jnp.maximum(diag, floor)
        return lambda r: inv[:, None] * r
    return _partial_cholesky_preconditioner(lmat, pivots, dres, floor)


@jax.jit
def _cg_step(
    x: Array, r: Array, p: Array, ap: Array, rz: Array, active: Array, b_norm: Array
) -> tuple[Array, Array, Array, Array, Array]:
    """One CG update of all active columns; returns (x, r, alpha, breakdown flag, relative residuals)."""
    pap = jnp.sum(p * ap, axis=0)
    alpha = jnp.where(active, rz / jnp.where(active & (pap != 0), pap, 1.0), 0.0)
    r = r - alpha * ap
    breakdown = jnp.any(active & (pap <= 0))
    return x + alpha * p, r, alpha, breakdown, jnp.linalg.norm(r, axis=0) / b_norm


@jax.jit
def _cg_direction(z: Array, r: Array, p: Array, rz: Array, active: Array) -> tuple[Array, Array, Array]:
    rz_new = jnp.sum(r * z, axis=0)
    beta = jnp.where(active, rz_new / jnp.where(rz != 0, rz, 1.0), 0.0)
    return z + beta * p, rz_new, beta


def _lanczos_cond(alphas: list[np.ndarray], betas: list[np.ndarray]) -> float:
    """Condition number of the preconditioned operator from CG coefficients (max over columns)."""
    if not alphas:
        return float("nan")
    a = np.stack(alphas)  # (k, C)
    b = np.stack(betas) if betas else np.zeros((0, a.shape[1]))
    best = float("nan")
    for c in range(a.shape[1]):
        ac = a[:, c]
        m = int(np.argmax(ac == 0)) if np.any(ac == 0) else ac.shape[0]
        if m == 0:
            continue
        ac = ac[:m]
        bc = b[: m - 1, c] if b.shape[0] else np.zeros(0)
        bc = bc[: m - 1]
        diag = 1.0 / ac
        diag[1:] += bc / ac[:-1]
        off = np.sqrt(np.maximum(bc, 0.0)) / ac[:-1]
        ev = scipy.linalg.eigvalsh_tridiagonal(diag, off)
        if ev[0] > 0:
            cond = float(ev[-1] / ev[0])
            best = cond if math.isnan(best) else max(best, cond)
    return best


def cg_solve(
    operator: Union[Array, np.ndarray, TiledKernel, Callable[[Array], Array]],
    rhs: Any,
    *,
    shift: float = 0.0,
    tol: float | None = None,
    maxiter: int | None = None,
    preconditioner: Union[str, Callable[[Array], Array]] = "jacobi",
    precond_rank: int = PRECOND_RANK,
    diag: Any = None,
    x0: Any = None,
    on_nonconvergence: str = "raise",
    return_info: bool = False,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """Solve ``(A + shift I) X = B`` for a symmetric positive-definite A by conjugate gradients.

    Every column of B gets its own preconditioned CG recurrence (run together, one
    matrix product per iteration for all columns); a column stops updating once its
    relative residual ``|b - A x| / |b|`` is at most ``tol``. When all columns meet
    the tolerance by the recursive residual, the true residual is recomputed and CG
    restarts from the current iterate if it does not (at most 3 restarts, counted in
    ``maxiter``).

    Args:
      operator: A as an (N, N) array, a :class:`TiledKernel` (row tiles are streamed
        through every product, so A is never held in memory), or a function
        ``V (N, C) -> A @ V (N, C)``.
      rhs: B, shape (N,) or (N, C).
      shift: s >= 0 added to the diagonal (the absolute regulariser).
      tol: relative residual tolerance per column; default 1e-10 in float64, 1e-5
        in float32.
      maxiter: maximum iterations (default 2 N + 10).
      preconditioner: ``"none"``, ``"jacobi"`` (``1 / diag(A + s I)``),
        ``"pivoted_cholesky"`` (rank-``precond_rank`` greedy pivoted Cholesky
        ``L^T L`` of A plus the remaining diagonal, ``P = L^T L + diag(A - L^T L) + s I``,
        applied with the Woodbury identity; needs rows of A, so not for a matvec
        function) or a function ``R (N, C) -> P^{-1} R``.
      precond_rank: rank of the pivoted-Cholesky part (capped at N).
      diag: (N,) diagonal of A, needed for Jacobi/pivoted Cholesky with a matvec function.
      x0: initial guess of the shape of rhs (default zeros).
      on_nonconvergence: ``"raise"`` (:class:`ConvergenceError`, which carries the
        info) or ``"warn"`` (``RuntimeWarning``; the last iterate is returned with
        ``info.converged = False``).
      return_info: also return a :class:`SolveInfo`.

    Returns:
      X of the shape of rhs, or ``(X, info)``. ``info.cond`` is the Lanczos estimate
      of the condition number of the preconditioned operator.

    Raises:
      ValueError: bad shapes, non-finite inputs, or CG breakdown (``p^T A p <= 0``:
        A + s I is not positive definite).
      ConvergenceError: tolerance not reached within ``maxiter`` (with ``"raise"``).
    """
    check_choice("on_nonconvergence", on_nonconvergence, ("raise", "warn"))
    check_array("rhs", rhs)
    b = _as_float(rhs)
    if b.ndim not in (1, 2):
        raise ValueError(f"rhs must have shape (N,) or (N, C), got {tuple(b.shape)}")
    vector = b.ndim == 1
    if vector:
        b = b[:, None]
    n = b.shape[0]
    shift = _check_nonneg_float("shift", shift)

    if isinstance(operator, TiledKernel):
        if operator.n != n:
            raise ValueError(f"operator is {operator.n} x {operator.n} but rhs has {n} rows; they must match")
        matvec = operator.matvec
    elif callable(operator) and not hasattr(operator, "shape"):
        user_mv = operator

        def matvec(v: Array) -> Array:
            out = _as_float(user_mv(v))
            if out.shape != v.shape:
                raise ValueError(f"operator(v) returned shape {tuple(out.shape)}, expected {tuple(v.shape)}")
            return out

    else:
        check_array("operator", operator, ndim=2)
        if tuple(operator.shape) != (n, n):
            raise ValueError(f"operator must have shape ({n}, {n}) to match rhs, got {tuple(operator.shape)}")
        operator = _as_float(operator)
        mat = operator
        matvec = lambda v: _matmul(mat, v)  # noqa: E731

    dt = b.dtype
    if tol is None:
        tol = CG_TOL[_dtype_key(dt)]
    tol = _check_nonneg_float("tol", tol)
    if tol == 0:
        raise ValueError("tol must be > 0, got 0")
    maxiter = 2 * n + 10 if maxiter is None else check_positive_int("maxiter", maxiter)
    check_positive_int("precond_rank", precond_rank, allow_zero=True)
    if diag is not None:
        check_array("diag", diag, ndim=1)
        if diag.shape[0] != n:
            raise ValueError(f"diag must have shape ({n},), got {tuple(diag.shape)}")

    def apply_a(v: Array) -> Array:
        return matvec(v) + shift * v if shift else matvec(v)

    precond = _make_preconditioner(preconditioner, operator, shift, diag, precond_rank, n)

    if x0 is None:
        x = jnp.zeros_like(b)
        r = b
    else:
        check_array("x0", x0)
        x = _as_float(x0).reshape(b.shape) if np.size(x0) == b.size else None
        if x is None:
            raise ValueError(f"x0 must have the shape of rhs {tuple(np.shape(rhs))}, got {tuple(np.shape(x0))}")
        r = b - apply_a(x)
    b_norm = jnp.linalg.norm(b, axis=0)
    b_safe = jnp.where(b_norm > 0, b_norm, 1.0)

    def col_rel(res: Array) -> np.ndarray:
        return np.asarray(jnp.linalg.norm(res, axis=0) / b_safe)

    iterations = 0
    restarts = 0
    alphas: list[np.ndarray] = []  # CG coefficients of the first run, for the Lanczos estimate
    betas: list[np.ndarray] = []
    record = True
    converged = False
    rel = col_rel(r)
    while True:
        active = rel > tol  # numpy bool (C,)
        if not active.any():
            # all columns converged by the recursive residual: check the true residual
            r_true = b - apply_a(x)
            rel = col_rel(r_true)
            if np.all(rel <= tol):
                converged = True
                break
            if restarts >= 3 or iterations >= maxiter:
                break
            restarts += 1
            r = r_true
            continue
        if iterations >= maxiter:
            rel = col_rel(b - apply_a(x))
            converged = bool(np.all(rel <= tol))
            break
        z = precond(r)
        p = z
        rz = jnp.sum(r * z, axis=0)
        while iterations < maxiter:
            ap = apply_a(p)
            x, r, alpha, breakdown, rel = _cg_step(x, r, p, ap, rz, active, b_safe)
            alpha, breakdown, rel = jax.device_get((alpha, breakdown, rel))
            iterations += 1
            if breakdown:
                raise ValueError(
                    "conjugate gradients broke down (p^T A p <= 0): the operator + shift * I is not "
                    "positive definite; check the kernel or add diag_reg"
                )
            new_active = active & (rel > tol)
            if record:
                alphas.append(alpha)
            if not new_active.any():
                break
            z = precond(r)
            p, rz, beta = _cg_direction(z, r, p, rz, new_active)
            if record:
                betas.append(np.asarray(beta))
            active = new_active
        record = False

    _check_finite_out("the CG solution", x)
    y_norm = float(jnp.linalg.norm(b))
    residual = float(jnp.linalg.norm(b - apply_a(x)) / y_norm) if y_norm > 0 else 0.0
    info = SolveInfo(
        solver="cg",
        diag_reg=shift,
        residual=residual,
        iterations=iterations,
        converged=converged,
        cond=_lanczos_cond(alphas, betas),
        cond_method="lanczos",
    )
    if not converged:
        msg = (
            f"conjugate gradients did not converge: max relative column residual {float(np.max(rel)):.3g} > "
            f"tol={tol:g} after {iterations} iterations (maxiter={maxiter}); increase maxiter or diag_reg, "
            "or use a stronger preconditioner"
        )
        if on_nonconvergence == "raise":
            raise ConvergenceError(msg, info)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    out = x[:, 0] if vector else x
    return (out, info) if return_info else out


# ----------------------------------------------------------------------------------------
# stored kernel: the training kernel computed once, kept on the host as tiles of its upper
# triangle, solved by conjugate gradients with float64 recurrences


#: Default rows per block of a :class:`StoredKernel` (tiles of about this squared entries;
#: 2048 gives 16 MiB float32 tiles, large enough to amortise per-tile dispatch, small enough
#: to stay in a 32 MiB cache between the two products a tile takes part in).
STORED_BLOCK = 2048
#: Default rank of the pivoted-Cholesky preconditioner of ``solver="stored_cg"``.
STORED_PRECOND_RANK = 1024


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
#: Default relative-residual tolerance of ``solver="stored_cg"``, by storage dtype. In
#: float32 the stored matrix itself carries relative errors of ~1e-7 (rounding) to ~1e-6
#: (kernel recursion), so solving much further buys nothing.
STORED_TOL = {"float64": 1e-10, "float32": 1e-6}
#: Preconditioners of :func:`stored_cg_solve`: those of :func:`cg_solve` and ``"nystrom"``.
STORED_PRECONDITIONERS = PRECONDITIONERS + ("nystrom",)
#: Default maximum number of float64 residual refinements (restarts) of ``"stored_cg"``.
STORED_REFINEMENTS = 4
#: Fraction of the available memory that a memory plan may use.
MEMORY_HEADROOM = 0.9


def _block_bounds(n: int, block_size: int) -> tuple[int, ...]:
    """Start indices of ``ceil(n / block_size)`` near-equal blocks covering [0, n), plus n."""
    nb = -(-n // block_size)
    return tuple((i * n) // nb for i in range(nb + 1))


def available_memory_bytes() -> int | None:
    """``MemAvailable`` from ``/proc/meminfo`` in bytes (None where it cannot be read)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


@dataclasses.dataclass(frozen=True)
class StoredPlan:
    """Memory plan of a stored-kernel predictor (all sizes in bytes).

    Attributes:
      n: training points N; n_test: test points; classes: C; itemsize: bytes per stored entry.
      block_size: largest block of the tiling; n_blocks: number of row blocks.
      matrix_bytes: the stored upper triangle (tiles (i, j), j >= i), about N (N + b) / 2 entries.
      build_bytes: peak extra memory while one kernel tile is computed: its NNGP and NTK
        outputs plus the recursion's working buffers on cache-sized sub-tiles
        (:func:`nwcorrupt.kernels.buffers_per_entry` x :data:`nwcorrupt.kernels.DEFAULT_TILE_BYTES`).
      solve_bytes: preconditioner set-up (2 x rank x N float64 while it is built, rank x N
        entries kept) plus ~12 float64 (N, C) vectors.
      predict_bytes: one (test_tile, N) test-train tile: its NNGP and NTK, a float64 copy of
        256 of its rows, and the recursion's working buffers.
      peak_bytes: matrix_bytes + max(build, solve, predict) + 256 MiB of runtime overhead.
      available_bytes: ``MemAvailable`` when the plan was made (None if unknown).
    """

    n: int
    n_test: int
    classes: int
    itemsize: int
    block_size: int
    n_blocks: int
    matrix_bytes: int
    build_bytes: int
    solve_bytes: int
    predict_bytes: int
    peak_bytes: int
    available_bytes: int | None

    def describe(self) -> str:
        """A few human-readable lines."""
        gib = lambda b: f"{b / 2**30:.2f} GiB"  # noqa: E731
        avail = "unknown" if self.available_bytes is None else gib(self.available_bytes)
        return (
            f"stored kernel N = {self.n}: {self.n_blocks} row blocks of <= {self.block_size}, "
            f"{self.n_blocks * (self.n_blocks + 1) // 2} tiles, {self.itemsize}-byte entries\n"
            f"  matrix (upper triangle) {gib(self.matrix_bytes)}; build +{gib(self.build_bytes)}, "
            f"solve +{gib(self.solve_bytes)}, predict +{gib(self.predict_bytes)}\n"
            f"  peak estimate {gib(self.peak_bytes)}; available now {avail} "
            f"(limit {MEMORY_HEADROOM:.0%} of it)"
        )

    def check(self) -> "StoredPlan":
        """Raise ``MemoryError`` if the peak estimate exceeds 90 % of the available memory."""
        if self.available_bytes is not None and self.peak_bytes > MEMORY_HEADROOM * self.available_bytes:
            raise MemoryError(
                f"not enough memory for the stored kernel: the plan needs about {self.peak_bytes / 2**30:.2f} GiB "
                f"but only {self.available_bytes / 2**30:.2f} GiB are available ({MEMORY_HEADROOM:.0%} may be "
                "used); reduce N, use float32 (disable x64), or use solver='cg' (streaming, no stored matrix)\n"
                + self.describe()
            )
        return self


def stored_memory_plan(
    n: int,
    *,
    n_test: int = 0,
    classes: int = 10,
    depth: int = 3,
    itemsize: int | None = None,
    block_size: int = STORED_BLOCK,
    precond_rank: int = STORED_PRECOND_RANK,
    test_tile: int = TILE_SIZE,
    available_bytes: int | None = -1,
) -> StoredPlan:
    """Estimate the memory of ``solver="stored_cg"`` for N training points (see :class:`StoredPlan`).

    Args:
      n: N; n_test: test points (0: no prediction step); classes: C; depth: L of the MLP.
      itemsize: bytes per stored entry (default: the current JAX float, 4 or 8).
      block_size, precond_rank, test_tile: the tiling and preconditioner options.
      available_bytes: memory to compare with; -1 (default) reads ``MemAvailable``,
        None means unknown (``check`` then passes).
    """
    n = check_positive_int("n", n)
    n_test = check_positive_int("n_test", n_test, allow_zero=True)
    classes = check_positive_int("classes", classes)
    depth = check_positive_int("depth", depth)
    block_size = check_positive_int("block_size", block_size)
    rank = min(check_positive_int("precond_rank", precond_rank, allow_zero=True), n)
    test_tile = check_positive_int("test_tile", test_tile)
    if itemsize is None:
        itemsize = jnp.dtype(_precision.default_float()).itemsize
    itemsize = check_positive_int("itemsize", itemsize)
    bounds = _block_bounds(n, block_size)
    sizes = np.diff(np.asarray(bounds, dtype=np.int64))
    nb = len(sizes)
    cum = np.cumsum(sizes[::-1])[::-1]  # columns from block i to the end
    matrix = int(np.sum(sizes * cum)) * itemsize
    b = int(sizes.max())
    work = _kernels.buffers_per_entry(depth) * _kernels.DEFAULT_TILE_BYTES * itemsize // 4  # cache-sized tiles
    build = 2 * b * b * itemsize + work
    solve = 2 * rank * n * 8 + rank * n * itemsize + 12 * n * classes * 8
    rows = min(test_tile, n_test)
    predict = (2 * rows * n * itemsize + min(rows, 256) * n * 8 + work) if n_test else 0
    peak = matrix + max(build, solve, predict) + 256 * 2**20
    avail = available_memory_bytes() if available_bytes == -1 else available_bytes
    return StoredPlan(n, n_test, classes, itemsize, b, nb, matrix, build, solve, predict, peak, avail)


@jax.jit
def _tile_diag_mv(t: Array, v: Array, y: Array) -> Array:
    return y + _mm(t, v)


@jax.jit
def _tile_pair_mv(t: Array, vi: Array, vj: Array, yi: Array, yj: Array) -> tuple[Array, Array]:
    # K[Bi, Bj] @ v[Bj] and its mirror K[Bj, Bi] @ v[Bi] = (v[Bi]^T K[Bi, Bj])^T from one tile
    return yi + _mm(t, vj), yj + _mm(vi.T, t).T


@dataclasses.dataclass(frozen=True, eq=False)
class StoredKernel:
    """A symmetric N x N kernel matrix held in memory as the tiles of its upper triangle.

    Row blocks B_0, ..., B_{m-1} (near-equal sizes, at most ``block_size`` rows) tile
    [0, N); ``tiles[i][j - i]`` is ``K[B_i, B_j]`` for j >= i (a JAX array on the
    default device; the diagonal tiles are full and exactly symmetric). Memory is about
    N (N + b) / 2 entries, half of a dense matrix. Products ``K @ V`` read every tile
    once and use it twice (for ``K[B_i, B_j] V[B_j]`` and its mirror ``K[B_j, B_i] V[B_i]``),
    in the storage dtype; :meth:`matvec` with ``exact=True`` accumulates in float64 on the
    host instead.

    Build it with :meth:`from_matrix` (a dense matrix) or :meth:`from_arch` (the kernel of
    an architecture, computed tile by tile, never dense).

    Attributes:
      n: N.
      bounds: (m + 1,) block starts, ``bounds[0] = 0``, ``bounds[-1] = N``.
      tiles: ``tiles[i]`` is the tuple of the m - i tiles of block row i.
    """

    n: int
    bounds: tuple[int, ...]
    tiles: tuple[tuple[Any, ...], ...] = dataclasses.field(repr=False)

    def __post_init__(self) -> None:
        check_positive_int("n", self.n)
        b = tuple(int(v) for v in self.bounds)
        if len(b) < 2 or b[0] != 0 or b[-1] != self.n or any(e <= s for s, e in zip(b, b[1:])):
            raise ValueError(f"bounds must increase strictly from 0 to n={self.n}, got {self.bounds!r}")
        m = len(b) - 1
        if len(self.tiles) != m:
            raise ValueError(f"tiles must have one row per block ({m}), got {len(self.tiles)}")
        dtypes = set()
        for i, row in enumerate(self.tiles):
            if len(row) != m - i:
                raise ValueError(f"tiles[{i}] must hold the {m - i} tiles K[B_{i}, B_j], j >= {i}; got {len(row)}")
            for k, t in enumerate(row):
                want = (b[i + 1] - b[i], b[i + k + 1] - b[i + k])
                if tuple(t.shape) != want:
                    raise ValueError(f"tile ({i}, {i + k}) must have shape {want}, got {tuple(t.shape)}")
                dtypes.add(jnp.dtype(t.dtype))
        if len(dtypes) != 1 or next(iter(dtypes)).kind != "f":
            raise TypeError(f"all tiles must share one float dtype, got {sorted(str(d) for d in dtypes)}")

    # -- construction ---------------------------------------------------------------

    @classmethod
    def from_matrix(cls, k: Any, *, block_size: int = STORED_BLOCK) -> "StoredKernel":
        """Tiles of the upper triangle of a dense symmetric (N, N) matrix.

        Only the upper triangle is read (the lower one is taken as its mirror image, as a
        Cholesky factorisation would). The storage dtype is the current JAX float.
        """
        check_array("k", k, ndim=2)
        n1, n2 = k.shape
        if n1 != n2 or n1 < 1:
            raise ValueError(f"k must be a square N x N matrix with N >= 1, got shape {(n1, n2)}")
        block_size = check_positive_int("block_size", block_size)
        dt = _precision.default_float()
        a = np.asarray(k)
        bounds = _block_bounds(n1, block_size)
        m = len(bounds) - 1
        rows = []
        for i in range(m):
            s, e = bounds[i], bounds[i + 1]
            row = []
            for j in range(i, m):
                t = np.asarray(a[s:e, bounds[j] : bounds[j + 1]], dtype=np.float64)
                if j == i:
                    t = np.triu(t) + np.triu(t, 1).T
                row.append(jnp.asarray(t, dtype=dt))
            rows.append(tuple(row))
        return cls(n1, bounds, tuple(rows))

    @classmethod
    def from_arch(
        cls,
        arch: Any,
        x: Any,
        which: str = "ntk",
        *,
        block_size: int = STORED_BLOCK,
        check_memory: bool = True,
        progress: Callable[[int, int], None] | None = None,
    ) -> "StoredKernel":
        """The NTK (or NNGP) of ``arch`` on the rows of x, computed tile by tile.

        Each tile is one :func:`nwcorrupt.kernels.kernel` call: ``kernel(arch, x[B_i])``
        (symmetric, exact diagonal) on the diagonal and ``kernel(arch, x[B_i], x[B_j])``
        above it; the N x N matrix is never formed densely. In the current JAX float
        (float32 with HIGHEST-precision Gram products unless x64 is enabled).

        Args:
          arch: :class:`nwcorrupt.arch.MLP`.
          x: (N, d) inputs.
          which: ``"ntk"`` or ``"nngp"``.
          block_size: rows per block (tiles are at most block_size x block_size).
          check_memory: check :func:`stored_memory_plan` against the available memory
            first (``MemoryError`` if it does not fit).
          progress: called as ``progress(tiles_done, tiles_total)`` after every tile.
        """
        check_choice("which", which, ("ntk", "nngp"))
        check_matrix("x", x)
        block_size = check_positive_int("block_size", block_size)
        n = int(x.shape[0])
        if check_memory:
            depth = getattr(arch, "depth", 3)
            stored_memory_plan(n, depth=depth, block_size=block_size, precond_rank=0).check()
        xf = _as_float(x)
        bounds = _block_bounds(n, block_size)
        m = len(bounds) - 1
        xb = [xf[bounds[i] : bounds[i + 1]] for i in range(m)]
        total, done = m * (m + 1) // 2, 0
        rows = []
        for i in range(m):
            row = []
            for j in range(i, m):
                ks = _kernels.kernel(arch, xb[i], None if j == i else xb[j], get=(which,))
                tile = getattr(ks, which)
                del ks
                row.append(tile)
                done += 1
                if progress is not None:
                    progress(done, total)
            rows.append(tuple(row))
        return cls(n, bounds, tuple(rows))

    # -- properties -----------------------------------------------------------------

    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.tiles[0][0].dtype)

    @property
    def n_blocks(self) -> int:
        return len(self.bounds) - 1

    @property
    def nbytes(self) -> int:
        """Bytes held by the tiles."""
        return int(sum(t.size for row in self.tiles for t in row)) * self.dtype.itemsize

    def _block_of(self, i: int) -> int:
        return int(np.searchsorted(np.asarray(self.bounds), i, side="right")) - 1

    # -- access ---------------------------------------------------------------------

    def diag(self) -> np.ndarray:
        """The (N,) diagonal, float64 numpy."""
        return np.concatenate([np.diagonal(np.asarray(row[0], dtype=np.float64)) for row in self.tiles])

    def row(self, i: int) -> np.ndarray:
        """Row i of K, (N,) float64 numpy (gathered from the tiles above and right of it)."""
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < self.n:
            raise ValueError(f"row index must be an integer in [0, {self.n}), got {i!r}")
        bi = self._block_of(int(i))
        li = int(i) - self.bounds[bi]
        parts = [np.asarray(self.tiles[j][bi - j])[:, li] for j in range(bi)]
        parts += [np.asarray(t)[li, :] for t in self.tiles[bi]]
        return np.concatenate(parts).astype(np.float64)

    def rows(self, idx: Any) -> np.ndarray:
        """``K[idx, :]`` as (len(idx), N) float64 numpy; gathers block by block (vectorised)."""
        idx = np.asarray(idx)
        if idx.ndim != 1 or idx.dtype.kind not in "iu" or (idx.size and (idx.min() < 0 or idx.max() >= self.n)):
            raise ValueError(f"idx must be a 1-D integer array of row indices in [0, {self.n})")
        out = np.empty((idx.size, self.n), dtype=np.float64)
        blocks = np.searchsorted(np.asarray(self.bounds), idx, side="right") - 1
        b = self.bounds
        for bi in np.unique(blocks):
            sel = np.nonzero(blocks == bi)[0]
            local = idx[sel] - b[bi]
            for j in range(bi):  # tiles above: K[B_j, B_bi] columns, transposed
                out[sel, b[j] : b[j + 1]] = np.asarray(self.tiles[j][bi - j])[:, local].T
            for k, t in enumerate(self.tiles[bi]):
                out[sel, b[bi + k] : b[bi + k + 1]] = np.asarray(t)[local, :]
        return out

    def to_dense(self) -> np.ndarray:
        """The full (N, N) matrix as float64 numpy (for small N and tests only)."""
        out = np.empty((self.n, self.n), dtype=np.float64)
        b = self.bounds
        for i, row in enumerate(self.tiles):
            for k, t in enumerate(row):
                j = i + k
                blk = np.asarray(t, dtype=np.float64)
                out[b[i] : b[i + 1], b[j] : b[j + 1]] = blk
                out[b[j] : b[j + 1], b[i] : b[i + 1]] = blk.T
        return out

    def matvec(self, v: Any, *, exact: bool = False) -> np.ndarray:
        """``K @ v`` for v of shape (N,) or (N, C); float64 numpy result.

        Default: products in the storage dtype (v rounded to it), one pass over the tiles.
        ``exact=True``: every tile converted to float64 and multiplied on the host with
        float64 v (float64 accumulation; ~2-4x slower), used for the residuals of
        :func:`stored_cg_solve`.
        """
        v = np.asarray(v, dtype=np.float64)
        vector = v.ndim == 1
        if vector:
            v = v[:, None]
        if v.ndim != 2 or v.shape[0] != self.n:
            raise ValueError(f"v must have shape ({self.n},) or ({self.n}, C), got {tuple(np.shape(v))}")
        b = self.bounds
        m = self.n_blocks
        if exact:
            out = np.zeros_like(v)
            size = int(np.max(np.diff(b)))
            buf = np.empty(size * size, dtype=np.float64)  # reused float64 copy of one tile
            for i, row in enumerate(self.tiles):
                for k, t in enumerate(row):
                    j = i + k
                    blk = buf[: t.shape[0] * t.shape[1]].reshape(t.shape)
                    np.copyto(blk, np.asarray(t))
                    out[b[i] : b[i + 1]] += blk @ v[b[j] : b[j + 1]]
                    if j != i:
                        out[b[j] : b[j + 1]] += blk.T @ v[b[i] : b[i + 1]]
        else:
            dt = self.dtype
            vb = [jnp.asarray(v[b[i] : b[i + 1]], dtype=dt) for i in range(m)]
            y = [jnp.zeros_like(vi) for vi in vb]
            for i, row in enumerate(self.tiles):
                y[i] = _tile_diag_mv(row[0], vb[i], y[i])
                for k in range(1, len(row)):
                    j = i + k
                    y[i], y[j] = _tile_pair_mv(row[k], vb[i], vb[j], y[i], y[j])
            out = np.concatenate([np.asarray(yi, dtype=np.float64) for yi in y])
        return out[:, 0] if vector else out


@dataclasses.dataclass(frozen=True)
class StoredSolveInfo(SolveInfo):
    """:class:`SolveInfo` of ``solver="stored_cg"``, with precision and timing details.

    Extra attributes:
      precision: what ran in which dtype, e.g. ``"float32 matrix and products, float64
        CG vectors and scalars, float64 residuals"``.
      storage_dtype: dtype of the stored tiles.
      refinements: float64 residual refinements (CG restarts from the current iterate).
      matrix_bytes: bytes of the stored upper triangle.
      block_size: largest block of the tiling.
      precond_rank: pivots of the pivoted-Cholesky preconditioner actually used.
      time_kernel: seconds to compute the stored training kernel (0 if given).
      time_precond: seconds to build the preconditioner.
      time_solve: seconds of the CG iterations and residual checks.
      time_predict: seconds for the test-train kernel times the weights (0 if none).
    """

    precision: str = ""
    storage_dtype: str = ""
    refinements: int = 0
    matrix_bytes: int = 0
    block_size: int = 0
    precond_rank: int = 0
    time_kernel: float = 0.0
    time_precond: float = 0.0
    time_solve: float = 0.0
    time_predict: float = 0.0


def _np_pivoted_cholesky(
    diag: np.ndarray, row: Callable[[int], np.ndarray], rank: int, stop_rtol: float
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Greedy pivoted partial Cholesky ``A ~ L^T L`` in float64 numpy (see :func:`_pivoted_cholesky`)."""
    n = diag.shape[0]
    k_max = min(rank, n)
    lmat = np.zeros((k_max, n), dtype=np.float64)
    d = diag.astype(np.float64).copy()
    pivots: list[int] = []
    stop = stop_rtol * float(np.max(diag))
    for k in range(k_max):
        i = int(np.argmax(d))
        if not d[i] > stop:
            break
        r = row(i) - lmat[:k, i] @ lmat[:k]
        li = r / math.sqrt(d[i])
        lmat[k] = li
        d = np.maximum(d - li * li, 0.0)
        d[i] = 0.0
        pivots.append(i)
    return lmat[: len(pivots)], pivots, d


@jax.jit
def _gt_mm(g: Array, v: Array) -> Array:
    return _mm(g.T, v)


def _np_partial_cholesky_preconditioner(
    lmat: np.ndarray, pivots: list[int], dres: np.ndarray, floor: float, dtype: Any
) -> Callable[[np.ndarray], np.ndarray]:
    """Host version of :func:`_partial_cholesky_preconditioner` (same P) for float64 vectors.

    The k x k triangular solves run in float64; the thin (k, N - k) factor ``g`` is held as
    a JAX array of ``dtype`` (the stored kernel's) and its two products per application run
    in that dtype. P is defined by the rounded ``g`` and stays symmetric positive definite.
    """
    n = lmat.shape[1]
    s_idx = np.asarray(pivots, dtype=np.int64)
    r_idx = np.setdiff1d(np.arange(n), s_idx)
    u = lmat[:, s_idx]
    g_host = scipy.linalg.solve_triangular(u, lmat[:, r_idx], lower=False, overwrite_b=True)
    g = jnp.asarray(g_host, dtype=dtype)
    del g_host
    d_r = np.maximum(dres[r_idx], floor)

    def apply(v: np.ndarray) -> np.ndarray:
        v_s, v_r = v[s_idx], v[r_idx]
        w_r = v_r - np.asarray(_gt_mm(g, jnp.asarray(v_s, dtype=g.dtype)), dtype=np.float64)
        u_s = scipy.linalg.solve_triangular(u, scipy.linalg.solve_triangular(u, v_s, trans="T", lower=False))
        x_r = w_r / d_r[:, None]
        out = np.empty_like(v)
        out[r_idx] = x_r
        out[s_idx] = u_s - np.asarray(_matmul(g, jnp.asarray(x_r, dtype=g.dtype)), dtype=np.float64)
        return out

    return apply


def _np_nystrom_factor(
    k: StoredKernel, diag: np.ndarray, shift: float, rank: int, seed: int
) -> tuple[np.ndarray, list[int], np.ndarray]:
    """Partial Cholesky ``L`` (rank, N) of ``A = K + shift I`` on ``rank`` uniformly random pivots.

    ``A[S, S] = U^T U``, ``L = U^{-T} A[S, :]`` (so ``L[:, S] = U``), computed with level-3
    BLAS (one triangular solve) instead of the rank sequential steps of the greedy
    pivoted Cholesky. Returns (L, sorted pivots S, residual diagonal ``diag(A - L^T L)``).
    """
    n = k.n
    s_idx = np.sort(np.random.default_rng(seed).choice(n, size=min(rank, n), replace=False))
    a_s = k.rows(s_idx)
    a_s[np.arange(s_idx.size), s_idx] += shift
    u = scipy.linalg.cholesky(a_s[:, s_idx], lower=False)
    lmat = scipy.linalg.solve_triangular(u, a_s, trans="T", lower=False, overwrite_b=True)
    dres = np.maximum(diag - np.einsum("kn,kn->n", lmat, lmat), 0.0)
    dres[s_idx] = 0.0
    return lmat, [int(i) for i in s_idx], dres


def _stored_preconditioner(
    kind: Any, k: StoredKernel, shift: float, rank: int, seed: int = 0
) -> tuple[Callable[[np.ndarray], np.ndarray], int]:
    """(P^{-1} as a function of (N, C) float64 arrays, number of pivots used)."""
    if callable(kind) and not isinstance(kind, str):
        return (lambda r: np.asarray(kind(r), dtype=np.float64)), 0
    check_choice("preconditioner", kind, STORED_PRECONDITIONERS)
    if kind == "none":
        return (lambda r: r), 0
    diag = k.diag() + shift
    eps = _eps(k.dtype)
    floor = eps * float(np.mean(np.abs(diag))) + float(np.finfo(np.float64).tiny)
    if kind == "nystrom" and rank > 0:
        try:
            lmat, pivots, dres = _np_nystrom_factor(k, diag, shift, rank, seed)
        except np.linalg.LinAlgError as err:
            raise ValueError(
                f"the Nystrom preconditioner failed: K[S, S] + shift I of the {min(rank, k.n)} random pivots is "
                "not positive definite; the kernel is not PSD or is singular (add diag_reg, or use "
                "preconditioner='pivoted_cholesky')"
            ) from err
        return _np_partial_cholesky_preconditioner(lmat, pivots, dres, floor, k.dtype), len(pivots)
    if kind == "pivoted_cholesky" and rank > 0:

        def row(i: int) -> np.ndarray:
            r = k.row(i)
            r[i] += shift
            return r

        lmat, pivots, dres = _np_pivoted_cholesky(diag, row, rank, stop_rtol=math.sqrt(eps))
        if pivots:
            return _np_partial_cholesky_preconditioner(lmat, pivots, dres, floor, k.dtype), len(pivots)
    inv = 1.0 / np.maximum(diag, floor)
    return (lambda r: inv[:, None] * r), 0


def stored_cg_solve(
    k: StoredKernel,
    rhs: Any,
    *,
    shift: float = 0.0,
    tol: float | None = None,
    maxiter: int | None = None,
    preconditioner: Union[str, Callable[[np.ndarray], np.ndarray]] = "nystrom",
    precond_rank: int = STORED_PRECOND_RANK,
    max_refinements: int = STORED_REFINEMENTS,
    on_nonconvergence: str = "raise",
    callback: Callable[[int, float], None] | None = None,
    return_info: bool = False,
) -> Union[np.ndarray, tuple[np.ndarray, StoredSolveInfo]]:
    """Solve ``(K + shift I) X = B`` with K a :class:`StoredKernel`, by preconditioned CG.

    All C columns run their own CG recurrence and share each pass over the tiles. The
    recurrences (x, r, p, the scalars) are float64 on the host; the products ``K p`` run
    in the storage dtype (p rounded to it). When every column's recursive residual is at
    most ``tol``, the true residual ``B - (K + shift I) X`` is recomputed with float64
    accumulation (:meth:`StoredKernel.matvec` ``exact=True``), and CG restarts from X on
    that residual if some column still exceeds ``tol`` -- mixed-precision iterative
    refinement, at most ``max_refinements`` times. The reported residual is this float64
    one, relative to the stored (possibly float32-rounded) matrix.

    Args:
      k: the stored matrix.
      rhs: B, (N,) or (N, C).
      shift: s >= 0 added to the diagonal (absolute regulariser).
      tol: relative residual tolerance per column (default :data:`STORED_TOL`: 1e-10 for
        float64 storage, 1e-6 for float32).
      maxiter: maximum CG iterations over all restarts (default 2 N + 10).
      preconditioner: ``"pivoted_cholesky"`` (rank ``precond_rank``, float64; see
        :func:`cg_solve`), ``"jacobi"``, ``"none"`` or a function R -> P^{-1} R on
        float64 (N, C) numpy arrays.
      max_refinements: restarts allowed after float64 residual checks.
      on_nonconvergence: ``"raise"`` (:class:`ConvergenceError`) or ``"warn"``.
      callback: called as ``callback(iterations, max relative recursive residual)``
        after every iteration.
      return_info: also return a :class:`StoredSolveInfo`.

    Returns:
      X, float64 numpy of the shape of rhs, or ``(X, info)``.
    """
    if not isinstance(k, StoredKernel):
        raise TypeError(f"k must be a StoredKernel, got {type(k).__name__}")
    check_choice("on_nonconvergence", on_nonconvergence, ("raise", "warn"))
    check_array("rhs", rhs)
    b = np.asarray(rhs, dtype=np.float64)
    if b.ndim not in (1, 2):
        raise ValueError(f"rhs must have shape (N,) or (N, C), got {tuple(b.shape)}")
    vector = b.ndim == 1
    if vector:
        b = b[:, None]
    n = b.shape[0]
    if n != k.n:
        raise ValueError(f"k is {k.n} x {k.n} but rhs has {n} rows; they must match")
    shift = _check_nonneg_float("shift", shift)
    key = _dtype_key(k.dtype)
    tol = STORED_TOL[key] if tol is None else _check_nonneg_float("tol", tol)
    if tol == 0:
        raise ValueError("tol must be > 0, got 0")
    maxiter = 2 * n + 10 if maxiter is None else check_positive_int("maxiter", maxiter)
    rank = check_positive_int("precond_rank", precond_rank, allow_zero=True)
    max_refinements = check_positive_int("max_refinements", max_refinements, allow_zero=True)

    t0 = _now()
    precond, used_rank = _stored_preconditioner(preconditioner, k, shift, rank)
    t1 = _now()

    def apply_a(v: np.ndarray, exact: bool = False) -> np.ndarray:
        out = k.matvec(v, exact=exact)
        return out + shift * v if shift else out

    b_norm = np.linalg.norm(b, axis=0)
    b_safe = np.where(b_norm > 0, b_norm, 1.0)
    x = np.zeros_like(b)
    r = b.copy()
    rel = np.linalg.norm(r, axis=0) / b_safe
    iterations = refinements = passes = 0
    alphas: list[np.ndarray] = []
    betas: list[np.ndarray] = []
    record = True
    converged = False
    while True:
        if np.all(rel <= tol):
            converged = True
            break
        if iterations >= maxiter:
            break
        if passes > 0:
            if refinements >= max_refinements:
                break
            refinements += 1
        passes += 1
        active = rel > tol
        z = precond(r)
        p = z
        rz = np.sum(r * z, axis=0)
        while iterations < maxiter:
            ap = apply_a(p)
            pap = np.sum(p * ap, axis=0)
            if np.any(active & (pap <= 0)):
                raise ValueError(
                    "conjugate gradients broke down (p^T A p <= 0): the stored kernel + shift * I is not "
                    "positive definite; check the kernel or add diag_reg"
                )
            alpha = np.where(active, rz / np.where(active, pap, 1.0), 0.0)
            x = x + alpha * p  # not in place: p may alias r (preconditioner "none")
            r = r - alpha * ap
            iterations += 1
            rel = np.linalg.norm(r, axis=0) / b_safe
            if record:
                alphas.append(alpha)
            if callback is not None:
                callback(iterations, float(np.max(rel)))
            new_active = active & (rel > tol)
            if not new_active.any():
                break
            z = precond(r)
            rz_new = np.sum(r * z, axis=0)
            beta = np.where(new_active, rz_new / np.where(rz != 0, rz, 1.0), 0.0)
            if record:
                betas.append(beta)
            p = z + beta * p
            rz = rz_new
            active = new_active
        record = False
        # float64 true residual (iterative refinement)
        r = b - apply_a(x, exact=True)
        rel = np.linalg.norm(r, axis=0) / b_safe
    t2 = _now()
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(
            "the stored-CG solution contains NaN or inf; the kernel is probably singular or badly "
            "conditioned for this dtype: add diag_reg or enable float64"
        )
    y_norm = float(np.linalg.norm(b))
    residual = float(np.linalg.norm(r) / y_norm) if y_norm > 0 else 0.0
    info = StoredSolveInfo(
        solver="stored_cg",
        diag_reg=shift,
        residual=residual,
        iterations=iterations,
        converged=converged,
        cond=_lanczos_cond(alphas, betas),
        cond_method="lanczos",
        precision=_stored_precision(k.dtype),
        storage_dtype=str(k.dtype),
        refinements=refinements,
        matrix_bytes=k.nbytes,
        block_size=int(np.max(np.diff(k.bounds))),
        precond_rank=used_rank,
        time_precond=t1 - t0,
        time_solve=t2 - t1,
    )
    if not converged:
        msg = (
            f"stored-kernel conjugate gradients did not converge: max relative column residual "
            f"{float(np.max(rel)):.3g} > tol={tol:g} after {iterations} iterations and {refinements} "
            f"refinements (maxiter={maxiter}); increase maxiter, tol or diag_reg, or precond_rank"
        )
        if on_nonconvergence == "raise":
            raise ConvergenceError(msg, info)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    out = x[:, 0] if vector else x
    return (out, info) if return_info else out


def _stored_precision(dtype: Any) -> str:
    name = str(np.dtype(dtype))
    if name == "float64":
        return "float64 matrix, products, CG vectors and residuals"
    return f"{name} matrix and CG products, float64 CG vectors/scalars and refinement residuals"


def _now() -> float:
    return time.perf_counter()


# ----------------------------------------------------------------------------------------
# matrix-level predictors


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
      diag_reg: relative regulariser (see module docs); ``r = diag_reg * trace(K)/N``.
      diag_reg_absolute_scale: interpret ``diag_reg`` as the absolute ``r``.
      solver: ``"auto"``, ``"cholesky"``, ``"eigh"``, ``"cg"`` or ``"stored_cg"``
        (:func:`stored_cg_solve` on a :class:`StoredKernel`; a dense matrix is first
        tiled with :meth:`StoredKernel.from_matrix`). ``"auto"`` never picks
        ``"stored_cg"``, except for a :class:`StoredKernel`.
      tol, maxiter, preconditioner, precond_rank, on_nonconvergence: CG options
        (:func:`cg_solve`, :func:`stored_cg_solve`); ignored by direct solvers. None
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
        alpha = _as_float(x)
        _check_finite_out("the kernel solve", alpha)
        return (alpha, info) if return_info else alpha
    if solver == "cholesky":
        alpha, info = _solve_cholesky(k, y, reg, estimate_cond and return_info)
    elif solver == "eigh":
        coef, info = _solve_eigh(k, y, reg, np.array([np.inf]), rcond)
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
    _check_finite_out("the kernel solve", alpha)
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
    (pseudo-inverse on dropped eigen-directions, see the module docs).

    Args:
      k_train_train: (N, N) symmetric PSD training kernel (NTK).
      y_train: (N, C) targets.
      t: time >= 0 (scalar) or a 1-D array of T times (inf allowed).
      diag_reg, diag_reg_absolute_scale: regulariser (see module docs).
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
    times, scalar = _check_times(t)
    lr = _check_learning_rate(learning_rate)
    reg = absolute_regularizer(k, diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale)
    scaled = times * lr / y.size
    coef, info = _solve_eigh(k, y, reg, scaled, rcond)
    _check_finite_out("the gradient-flow weights", coef)
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
    pred = _check_finite_out("the predictions", _mm(kt, alpha))
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
    NTK (eigendecomposition; see the module docs for the eigenvalue rule).

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
    pred = _check_finite_out("the predictions", pred)
    return (pred, info) if return_info else pred


# ----------------------------------------------------------------------------------------
# architecture-level entry points


def _validate_inputs(x_train: Any, y_train: Any, x_test: Any) -> tuple[Array, Array, Array]:
    check_array("x_train", x_train, ndim=2)
    check_array("x_test", x_test, ndim=2)
    check_array("y_train", y_train, ndim=2)
    if x_train.shape[0] < 1:
        raise ValueError("x_train must have at least one row")
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"x_test has {x_test.shape[1]} features but x_train has {x_train.shape[1]}; they must match"
        )
    if y_train.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"y_train has {y_train.shape[0]} rows but x_train has {x_train.shape[0]}; they must match"
        )
    return _as_float(x_train), _as_float(y_train), _as_float(x_test)


def _arch_kernel(arch: Any, x1: Array, x2: Array | None, which: str, backend: str) -> Array:
    k = _kernels.kernel(arch, x1, x2, get=(which,), backend=backend)
    return _as_float(getattr(k, which))


def _arch_predict(
    which: str,
    arch: Any,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    t: Any,
    diag_reg: float,
    diag_reg_absolute_scale: bool,
    learning_rate: float,
    solver: str,
    tile_size: int,
    backend: str,
    return_info: bool,
    cg_options: dict[str, Any],
) -> Union[Array, tuple[Array, SolveInfo]]:
    xtr, y, xte = _validate_inputs(x_train, y_train, x_test)
    check_choice("solver", solver, SOLVERS)
    _check_nonneg_float("diag_reg", diag_reg)
    tile_size = check_positive_int("tile_size", tile_size)
    stored_options = {key: cg_options.pop(key) for key in ("block_size", "check_memory") if key in cg_options}
    n = xtr.shape[0]
    if solver == "stored_cg":
        if t is not None:
            raise ValueError(f"finite t needs solver 'eigh' (or 'auto'), got solver={solver!r}")
        if backend != "native":
            raise ValueError(f"solver='stored_cg' computes kernel tiles with backend='native', got backend={backend!r}")
        return _arch_predict_stored(
            which, arch, xtr, y, xte, diag_reg, diag_reg_absolute_scale, tile_size, return_info, cg_options,
            **stored_options,
        )
    if t is not None:
        _check_times(t)
        _check_learning_rate(learning_rate)
        if solver not in ("auto", "eigh"):
            raise ValueError(f"finite t needs solver 'eigh' (or 'auto'), got solver={solver!r}")
        solver = "eigh"
    elif solver == "auto":
        solver = auto_solver(n)

    if solver == "cg":
        diag = _as_float(getattr(_kernels.kernel_diag(arch, xtr, get=(which,)), which))
        if diag.shape != (n,):
            raise ValueError(f"kernel_diag returned shape {tuple(diag.shape)}, expected ({n},)")
        ktrain: KernelLike = TiledKernel(
            rows=lambda idx: _arch_kernel(arch, xtr[idx], xtr, which, backend),
            n=n,
            tile_size=tile_size,
            diagonal=diag,
        )
    else:
        ktrain = _arch_kernel(arch, xtr, None, which, backend)
        if ktrain.shape != (n, n):
            raise ValueError(f"kernel(arch, x_train) returned shape {tuple(ktrain.shape)}, expected ({n}, {n})")
        _check_finite_out(f"the training {which.upper()} kernel", ktrain)

    if t is None:
        weights, info = kernel_solve(
            ktrain,
            y,
            diag_reg=diag_reg,
            diag_reg_absolute_scale=diag_reg_absolute_scale,
            solver=solver,
            return_info=True,
            estimate_cond=return_info,
            **cg_options,
        )
    else:
        weights, info = gradient_flow_weights(
            ktrain,
            y,
            t,
            diag_reg=diag_reg,
            diag_reg_absolute_scale=diag_reg_absolute_scale,
            learning_rate=learning_rate,
            return_info=True,
        )
    # stream the test-train kernel in row tiles of x_test
    parts = []
    for s in range(0, xte.shape[0], tile_size):
        kt = _arch_kernel(arch, xte[s : s + tile_size], xtr, which, backend)
        parts.append(jnp.matmul(kt, weights, precision=_HI))
    pred = jnp.concatenate(parts, axis=-2)
    pred = _check_finite_out("the predictions", pred)
    return (pred, info) if return_info else pred


def _arch_predict_stored(
    which: str,
    arch: Any,
    xtr: Array,
    y: Array,
    xte: Array,
    diag_reg: float,
    diag_reg_absolute_scale: bool,
    tile_size: int,
    return_info: bool,
    cg_options: dict[str, Any],
    block_size: int = STORED_BLOCK,
    check_memory: bool = True,
) -> Union[Array, tuple[Array, StoredSolveInfo]]:
    """``solver="stored_cg"`` at the architecture level: stored training kernel, CG, tiled test kernel."""
    block_size = check_positive_int("block_size", block_size)
    n, n_test = xtr.shape[0], xte.shape[0]
    pre, rank = default_preconditioner("stored_cg", cg_options.get("preconditioner"), cg_options.get("precond_rank"))
    cg_options = {**cg_options, "preconditioner": pre, "precond_rank": rank}
    if check_memory:
        stored_memory_plan(
            n, n_test=n_test, classes=y.shape[1], depth=getattr(arch, "depth", 3), block_size=block_size,
            precond_rank=rank if cg_options.get("preconditioner") in ("pivoted_cholesky", "nystrom") else 0,
            test_tile=tile_size,
        ).check()  # fmt: skip
    t0 = _now()
    k = StoredKernel.from_arch(arch, xtr, which, block_size=block_size, check_memory=False)
    t1 = _now()
    reg = absolute_regularizer(k, diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale)
    alpha, info = stored_cg_solve(k, np.asarray(y, dtype=np.float64), shift=reg, return_info=True, **cg_options)
    del k  # free the stored matrix before the test-train tiles
    t2 = _now()
    pred = _stored_predict(arch, which, xtr, xte, alpha, tile_size)
    t3 = _now()
    info = dataclasses.replace(info, time_kernel=t1 - t0, time_predict=t3 - t2)
    out = _check_finite_out("the predictions", _as_float(pred))
    return (out, info) if return_info else out


def tiled_predict(
    arch: Any, x_train: Any, x_test: Any, weights: Any, *, which: str = "ntk", tile_size: int = TILE_SIZE
) -> np.ndarray:
    """``K(x_test, x_train) @ weights`` without forming the test-train kernel whole.

    The kernel is computed in row tiles of ``tile_size`` test points
    (``kernel(arch, x_test[tile], x_train)``, in the JAX float) and each tile is
    multiplied by the weights in float64 on the host. Peak memory is about
    ``tile_size * N`` kernel entries (times the kernel recursion's working buffers).

    Args:
      arch: :class:`nwcorrupt.arch.MLP`.
      x_train: (N, d); x_test: (N_test, d); weights: (N, C), e.g. from :func:`stored_cg_solve`.
      which: ``"ntk"`` or ``"nngp"``.
      tile_size: test rows per tile.

    Returns:
      (N_test, C) float64 numpy.
    """
    check_choice("which", which, ("ntk", "nngp"))
    check_matrix("x_train", x_train)
    check_matrix("x_test", x_test)
    check_array("weights", weights, ndim=2)
    tile_size = check_positive_int("tile_size", tile_size)
    if x_test.shape[1] != x_train.shape[1]:
        raise ValueError(
            f"x_test has {x_test.shape[1]} features but x_train has {x_train.shape[1]}; they must match"
        )
    if weights.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"weights must have {x_train.shape[0]} rows (one per training point), got {tuple(weights.shape)}"
        )
    w = np.asarray(weights, np.float64)
    return _stored_predict(arch, which, _as_float(x_train), _as_float(x_test), w, tile_size)


def _stored_predict(arch: Any, which: str, xtr: Array, xte: Array, alpha: np.ndarray, tile_size: int) -> np.ndarray:
    """``K(x_test, X) @ alpha`` in row tiles of x_test (float64 products), (N_test, C) numpy."""
    n_test = xte.shape[0]
    out = np.empty((n_test, alpha.shape[1]), dtype=np.float64)
    rows = min(tile_size, n_test)
    for s in range(0, n_test, rows):
        s0 = min(s, n_test - rows)  # keep one tile shape (one compilation): shift the last tile back
        kt = np.asarray(_arch_kernel(arch, xte[s0 : s0 + rows], xtr, which, "native"))
        for c in range(0, rows, 256):  # float64 copies of at most 256 rows at a time
            out[s0 + c : s0 + min(c + 256, rows)] = kt[c : c + 256].astype(np.float64) @ alpha
        del kt
    return out


def ntk_predict(
    arch: Any,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    t: Any = None,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    learning_rate: float = 1.0,
    solver: str = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    preconditioner: str | None = None,
    precond_rank: int | None = None,
    on_nonconvergence: str = "raise",
    tile_size: int = TILE_SIZE,
    backend: str = "native",
    return_info: bool = False,
    block_size: int = STORED_BLOCK,
    check_memory: bool = True,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """Mean output of an infinite ensemble of infinite-width networks trained by gradient flow on MSE.

    ``Theta(x_test, X) Theta^{-1} (I - exp(-eta t Theta / Y.size)) Y`` with Theta the
    NTK of ``arch`` (regularised by ``diag_reg``); ``t=None`` means t = inf.

    Args:
      arch: architecture spec, e.g. :class:`nwcorrupt.arch.MLP`.
      x_train: (N, d) training inputs; y_train: (N, C) one-hot targets;
        x_test: (N_test, d) test inputs.
      t: None (t = inf), a time >= 0, or a 1-D array of times (then the output has a
        leading time axis). Finite t always uses ``"eigh"``.
      diag_reg, diag_reg_absolute_scale, learning_rate: see the module docs.
      solver: ``"auto"``, ``"cholesky"``, ``"eigh"``, ``"cg"`` or ``"stored_cg"``. With
        ``"cg"`` the training NTK is streamed in tiles of ``tile_size`` rows
        (``kernel(arch, x_train[tile], x_train)``) and never formed whole. With
        ``"stored_cg"`` it is computed once, tile by tile, into a :class:`StoredKernel`
        (upper triangle only, about N (N + block_size) / 2 entries of the JAX float) and
        solved by :func:`stored_cg_solve`; the test-train kernel is then computed in
        tiles of ``tile_size`` test rows and multiplied by the weights in float64. This
        is the solver for N too large for a dense factorisation (N = 60000 in float32
        takes 7.5 GB; see ``docs/performance.md``); ``info`` is a
        :class:`StoredSolveInfo` with the time split.
      tol, maxiter, preconditioner, precond_rank, on_nonconvergence: CG options.
      tile_size: rows per kernel tile (training rows for CG, test rows always).
      backend: passed to :func:`nwcorrupt.kernels.kernel`.
      return_info: also return a :class:`SolveInfo`.
      block_size: ``"stored_cg"`` only: rows per block of the stored kernel.
      check_memory: ``"stored_cg"`` only: compare :func:`stored_memory_plan` with the
        available memory first and raise ``MemoryError`` if it does not fit.

    Returns:
      (N_test, C) predictions ((T, N_test, C) for an array of times), or ``(pred, info)``.
    """
    cg_options = dict(
        tol=tol,
        maxiter=maxiter,
        preconditioner=preconditioner,
        precond_rank=precond_rank,
        on_nonconvergence=on_nonconvergence,
        block_size=block_size,
        check_memory=check_memory,
    )
    return _arch_predict(
        "ntk", arch, x_train, y_train, x_test, t, diag_reg, diag_reg_absolute_scale, learning_rate,
        solver, tile_size, backend, return_info, cg_options,
    )


def nngp_predict(
    arch: Any,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    *,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    solver: str = "auto",
    tol: float | None = None,
    maxiter: int | None = None,
    preconditioner: str | None = None,
    precond_rank: int | None = None,
    on_nonconvergence: str = "raise",
    tile_size: int = TILE_SIZE,
    backend: str = "native",
    return_info: bool = False,
    block_size: int = STORED_BLOCK,
    check_memory: bool = True,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """NNGP posterior mean ``K(x_test, X) (K + r I)^{-1} Y`` of ``arch`` (Bayesian readout).

    Arguments as in :func:`ntk_predict` (without ``t``/``learning_rate``).

    Returns:
      (N_test, C) predictions, or ``(pred, info)``.
    """
    cg_options = dict(
        tol=tol,
        maxiter=maxiter,
        preconditioner=preconditioner,
        precond_rank=precond_rank,
        on_nonconvergence=on_nonconvergence,
        block_size=block_size,
        check_memory=check_memory,
    )
    return _arch_predict(
        "nngp", arch, x_train, y_train, x_test, None, diag_reg, diag_reg_absolute_scale, 1.0,
        solver, tile_size, backend, return_info, cg_options,
    )
