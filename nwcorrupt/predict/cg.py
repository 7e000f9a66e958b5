"""Preconditioned conjugate gradients for ``(A + s I) X = B``, and kernels given by row tiles.

* :func:`cg_solve` (``solver="cg"``): one independent preconditioned CG recurrence per
  column of B, run together (one matrix product per iteration for all columns), with a
  true-residual check and up to 3 restarts; :class:`~nwcorrupt.predict.base.ConvergenceError`
  (or a warning) when :data:`CG_TOL` is not reached.
* :class:`TiledKernel`: a symmetric PSD N x N kernel available only through row tiles;
  every product streams the tiles, so the matrix is never held in memory.
* Preconditioners (:data:`PRECONDITIONERS`): ``"none"``, ``"jacobi"`` and
  ``"pivoted_cholesky"`` (greedy pivoted partial Cholesky of rank :data:`PRECOND_RANK`,
  exact on the pivot rows and columns, the Schur-complement diagonal elsewhere).
* :func:`lanczos_cond`: the condition number of the preconditioned operator from the CG
  coefficients (also used by the stored-kernel solver).
* :func:`refined_cg`: CG in passes closed by float64 residual checks, on host or device
  arrays (the loop of the stored-kernel and mixed-precision dense solvers).

Everything runs in the working float; the CG steps are jitted, the convergence logic
runs on the host.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Callable
from typing import Any, Union

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
import scipy.linalg

from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_array, check_choice, check_positive_float, check_positive_int
from nwcorrupt.predict.base import (
    TILE_SIZE,
    Array,
    ConvergenceError,
    SolveInfo,
    as_float,
    check_finite_out,
    check_nonneg_float,
    dtype_key,
    machine_eps,
    matmul,
    mm,
)

__all__ = [
    "PRECONDITIONERS",
    "CG_TOL",
    "PRECOND_RANK",
    "TiledKernel",
    "cg_solve",
    "lanczos_cond",
    "RefinedCG",
    "refined_cg",
]

PRECONDITIONERS = ("none", "jacobi", "pivoted_cholesky")
#: Default CG tolerance on the relative residual of every column, per dtype.
CG_TOL = {"float64": 1e-10, "float32": 1e-5}
#: Default rank of the pivoted-Cholesky CG preconditioner (capped at N).
PRECOND_RANK = 64


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
        out = [mm(self.row_block(np.arange(s, e)), v) for s, e in self.tiles()]
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
    r = a_row - mm(lmat[:, i], lmat)
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
    w_r = v_r - mm(g.T, v_s)
    u_s = jsl.solve_triangular(u, jsl.solve_triangular(u, v_s, trans="T", lower=False), lower=False)
    x_r = w_r / d_r[:, None]
    x_s = u_s - mm(g, x_r)
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
    diag = as_float(diag) + shift  # diagonal of A + s I
    dt = diag.dtype
    floor = machine_eps(dt) * float(jnp.mean(jnp.abs(diag))) + float(jnp.finfo(dt).tiny)
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

    lmat, pivots, dres = _pivoted_cholesky(diag, row, rank, stop_rtol=math.sqrt(machine_eps(dt)))
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


def lanczos_cond(alphas: list[np.ndarray], betas: list[np.ndarray]) -> float:
    """Condition number of the preconditioned operator from CG coefficients (max over columns).

    Args:
      alphas: the step lengths of each iteration, one (C,) array per iteration; a 0
        marks a column that had stopped.
      betas: the direction coefficients, one (C,) array per iteration but the last.

    Returns:
      max over columns of ``lam_max / lam_min`` of the Lanczos tridiagonal matrix built
      from the coefficients (its Ritz values); NaN without iterations.
    """
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
    b = as_float(rhs)
    if b.ndim not in (1, 2):
        raise ValueError(f"rhs must have shape (N,) or (N, C), got {tuple(b.shape)}")
    vector = b.ndim == 1
    if vector:
        b = b[:, None]
    n = b.shape[0]
    shift = check_nonneg_float("shift", shift)

    if isinstance(operator, TiledKernel):
        if operator.n != n:
            raise ValueError(f"operator is {operator.n} x {operator.n} but rhs has {n} rows; they must match")
        matvec = operator.matvec
    elif callable(operator) and not hasattr(operator, "shape"):
        user_mv = operator

        def matvec(v: Array) -> Array:
            out = as_float(user_mv(v))
            if out.shape != v.shape:
                raise ValueError(f"operator(v) returned shape {tuple(out.shape)}, expected {tuple(v.shape)}")
            return out

    else:
        check_array("operator", operator, ndim=2)
        if tuple(operator.shape) != (n, n):
            raise ValueError(f"operator must have shape ({n}, {n}) to match rhs, got {tuple(operator.shape)}")
        operator = as_float(operator)
        mat = operator
        matvec = lambda v: matmul(mat, v)  # noqa: E731

    dt = b.dtype
    if tol is None:
        tol = CG_TOL[dtype_key(dt)]
    tol = check_positive_float("tol", tol)
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
        x = as_float(x0).reshape(b.shape) if np.size(x0) == b.size else None
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

    check_finite_out("the CG solution", x)
    y_norm = float(jnp.linalg.norm(b))
    residual = float(jnp.linalg.norm(b - apply_a(x)) / y_norm) if y_norm > 0 else 0.0
    info = SolveInfo(
        solver="cg",
        diag_reg=shift,
        residual=residual,
        iterations=iterations,
        converged=converged,
        cond=lanczos_cond(alphas, betas),
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


@dataclasses.dataclass
class RefinedCG:
    """What :func:`refined_cg` leaves: iterate, residual, counts, CG coefficients.

    Attributes:
      x: (N, C) float64 iterate; r: its float64 residual ``B - A x`` (the last exact one);
      rel: (C,) relative residual norms of r; iterations: CG iterations over all passes;
      refinements: restarts after float64 residual checks; converged: every column met tol;
      alphas, betas: the first pass's CG coefficients (for :func:`lanczos_cond`).
    """

    x: Any
    r: Any
    rel: Any
    iterations: int
    refinements: int
    converged: bool
    alphas: list
    betas: list


def refined_cg(
    xp: Any,
    apply_a: Callable[..., Any],
    precond: Callable[[Any], Any],
    b: Any,
    tol: float,
    pass_reduction: float,
    maxiter: int,
    max_refinements: int,
    callback: Callable[[int, float], None] | None,
) -> RefinedCG:
    """Preconditioned CG in passes, each closed by a float64 residual check (iterative refinement).

    Every column of B runs its own CG recurrence; all share each product. A pass stops when
    every active column's recursive residual is at most ``tol`` or has fallen by
    ``pass_reduction`` since the pass began; then the true residual ``B - A x`` is computed
    with ``apply_a(x, exact=True)`` and, while some column exceeds ``tol``, CG restarts from x
    on it (at most ``max_refinements`` times, ``maxiter`` iterations in all). Used by the
    stored-kernel solver (float32 products, float64 checks) and the mixed-precision dense
    solver (a float32 Cholesky factor as preconditioner, float64 products).

    Args:
      xp: ``numpy`` (vectors on the host) or ``jax.numpy`` (vectors on a device, with 64-bit
        types enabled); the arithmetic is the same in both.
      apply_a: ``apply_a(v, exact=False)``: A v for (N, C) float64 v, e.g. in a storage
        dtype, or with float64 accumulation for ``exact=True``.
      precond: ``r -> P^{-1} r`` on (N, C) float64 arrays.
      b: (N, C) float64 right-hand sides.
      tol: relative residual tolerance per column.
      pass_reduction: residual reduction at which a pass stops early (0: only at tol).
      maxiter, max_refinements: iteration and restart limits.
      callback: ``callback(iterations, max relative recursive residual)`` after every iteration.

    Raises:
      ValueError: ``p^T A p <= 0`` (A is not positive definite).
    """
    b_norm = xp.linalg.norm(b, axis=0)
    b_safe = xp.where(b_norm > 0, b_norm, 1.0)
    x = xp.zeros_like(b)
    r = b
    rel = xp.linalg.norm(r, axis=0) / b_safe
    iterations = refinements = passes = 0
    alphas: list = []
    betas: list = []
    record = True
    converged = False
    while True:
        if bool(xp.all(rel <= tol)):
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
        inner_tol = xp.maximum(tol, rel * pass_reduction)  # this pass's target
        z = precond(r)
        p = z
        rz = xp.sum(r * z, axis=0)
        while iterations < maxiter:
            ap = apply_a(p)
            pap = xp.sum(p * ap, axis=0)
            if bool(xp.any(active & (pap <= 0))):
                raise ValueError(
                    "conjugate gradients broke down (p^T A p <= 0): the kernel + shift * I is not "
                    "positive definite; check the kernel or add diag_reg"
                )
            alpha = xp.where(active, rz / xp.where(active, pap, 1.0), 0.0)
            x = x + alpha * p  # not in place: p may alias r (preconditioner "none")
            r = r - alpha * ap
            iterations += 1
            rel = xp.linalg.norm(r, axis=0) / b_safe
            if record:
                alphas.append(alpha)
            if callback is not None:
                callback(iterations, float(xp.max(rel)))
            new_active = active & (rel > inner_tol)
            if not bool(xp.any(new_active)):
                break
            z = precond(r)
            rz_new = xp.sum(r * z, axis=0)
            beta = xp.where(new_active, rz_new / xp.where(rz != 0, rz, 1.0), 0.0)
            if record:
                betas.append(beta)
            p = z + beta * p
            rz = rz_new
            active = new_active
        record = False
        # float64 true residual (iterative refinement)
        r = b - apply_a(x, exact=True)
        rel = xp.linalg.norm(r, axis=0) / b_safe
    return RefinedCG(x, r, rel, iterations, refinements, converged, alphas, betas)
