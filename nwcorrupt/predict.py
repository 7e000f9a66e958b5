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
from nwcorrupt._checks import check_array, check_choice, check_positive_int

Array = jax.Array
_HI = _precision.MATMUL_PRECISION

SOLVERS = ("auto", "cholesky", "eigh", "cg")
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


KernelLike = Union[Array, np.ndarray, TiledKernel]


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


def _validate_k_train(k_train_train: Any) -> Union[Array, TiledKernel]:
    if isinstance(k_train_train, TiledKernel):
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


def _mean_diag(k: Union[Array, TiledKernel]) -> Array:
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
    preconditioner: Union[str, Callable[[Array], Array]] = "pivoted_cholesky",
    precond_rank: int = PRECOND_RANK,
    on_nonconvergence: str = "raise",
    rcond: float | None = None,
    estimate_cond: bool = True,
    return_info: bool = False,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """``alpha = (K + r I)^{-1} Y``, the weights of the infinite-time predictors.

    Args:
      k_train_train: (N, N) symmetric PSD training kernel, or a :class:`TiledKernel`
        (then only ``"cg"`` applies).
      y_train: (N, C) targets (one-hot labels).
      diag_reg: relative regulariser (see module docs); ``r = diag_reg * trace(K)/N``.
      diag_reg_absolute_scale: interpret ``diag_reg`` as the absolute ``r``.
      solver: ``"auto"``, ``"cholesky"``, ``"eigh"`` or ``"cg"``.
      tol, maxiter, preconditioner, precond_rank, on_nonconvergence: CG options
        (:func:`cg_solve`); ignored by direct solvers.
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
        solver = "cg" if isinstance(k, TiledKernel) else auto_solver(n, k.dtype)
    if isinstance(k, TiledKernel) and solver != "cg":
        raise ValueError(f"a TiledKernel can only be solved with solver='cg', got solver={solver!r}")
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
    n = xtr.shape[0]
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
    preconditioner: str = "pivoted_cholesky",
    precond_rank: int = PRECOND_RANK,
    on_nonconvergence: str = "raise",
    tile_size: int = TILE_SIZE,
    backend: str = "native",
    return_info: bool = False,
) -> Union[Array, tuple[Array, SolveInfo]]:
    """Mean output of an infinite ensemble of infinite-width networks trained by gradient flow on MSE.

    ``Theta(x_test, X) Theta^{-1} (I - exp(-eta t Theta / Y.size)) Y`` with Theta the
    NTK of ``arch`` (regularised by ``diag_reg``); ``t=None`` means t = inf.

    Args:
      arch: architecture spec, e.g. :class:`nwcorrupt.kernels.MLP`.
      x_train: (N, d) training inputs; y_train: (N, C) one-hot targets;
        x_test: (N_test, d) test inputs.
      t: None (t = inf), a time >= 0, or a 1-D array of times (then the output has a
        leading time axis). Finite t always uses ``"eigh"``.
      diag_reg, diag_reg_absolute_scale, learning_rate: see the module docs.
      solver: ``"auto"``, ``"cholesky"``, ``"eigh"`` or ``"cg"``. With ``"cg"`` the
        training NTK is streamed in tiles of ``tile_size`` rows
        (``kernel(arch, x_train[tile], x_train)``) and never formed whole.
      tol, maxiter, preconditioner, precond_rank, on_nonconvergence: CG options.
      tile_size: rows per kernel tile (training rows for CG, test rows always).
      backend: passed to :func:`nwcorrupt.kernels.kernel`.
      return_info: also return a :class:`SolveInfo`.

    Returns:
      (N_test, C) predictions ((T, N_test, C) for an array of times), or ``(pred, info)``.
    """
    cg_options = dict(
        tol=tol,
        maxiter=maxiter,
        preconditioner=preconditioner,
        precond_rank=precond_rank,
        on_nonconvergence=on_nonconvergence,
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
    preconditioner: str = "pivoted_cholesky",
    precond_rank: int = PRECOND_RANK,
    on_nonconvergence: str = "raise",
    tile_size: int = TILE_SIZE,
    backend: str = "native",
    return_info: bool = False,
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
    )
    return _arch_predict(
        "nngp", arch, x_train, y_train, x_test, None, diag_reg, diag_reg_absolute_scale, 1.0,
        solver, tile_size, backend, return_info, cg_options,
    )
