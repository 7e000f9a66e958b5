"""Dense direct solvers of ``(K + r I) X = Y``: Cholesky with jitter, eigendecomposition.

* :func:`solve_cholesky` (``solver="cholesky"``): Cholesky factorisation of ``K + r I``.
  If it fails (non-finite factor or solution), jitter ``j * trace(K)/N`` is added to
  the diagonal with ``j =`` :data:`JITTER_START` (``1e-12`` in float64, ``1e-6`` in
  float32), multiplied by :data:`JITTER_GROWTH` ``= 10`` on each retry up to
  :data:`JITTER_MAX` ``= 1e-4``; the absolute jitter used is reported in
  :class:`~nwcorrupt.predict.base.SolveInfo`. If the largest jitter still fails,
  ``ValueError`` says the kernel is not positive semi-definite or is singular. Every
  solution is then checked: if its relative residual ‖(K + r I) X − Y‖/‖Y‖ exceeds
  :data:`RESIDUAL_TOL` (``1e-6`` in float64, ``1e-2`` in float32) it does not solve the
  system asked for (a singular kernel with targets outside its range, or a condition
  number beyond the working precision) and ``ValueError`` reports the residual and the
  condition estimate and says what to do, instead of returning it.
* :func:`solve_eigh` (``solver="eigh"``, needed for finite gradient-flow times ``t``):
  eigendecomposition ``K + r I = V diag(lam) V^T``. Eigenvalue rule: if
  ``lam_min < -sqrt(eps) * lam_max`` the matrix is clearly indefinite and ``ValueError``
  is raised; eigenvalues with ``lam <= rcond * lam_max`` (``rcond = N * eps`` by default,
  numpy's matrix-rank rule; ``eps`` the machine epsilon of the dtype) are treated as
  numerical zeros and their eigen-directions are dropped (pseudo-inverse), at every
  ``t``. The other directions get the gradient-flow weight
  ``-expm1(-lam t eta / Y.size) / lam`` (``1/lam`` at ``t = inf``). neural-tangents
  clips negative eigenvalues to 0 with the same effect for negative ones; it keeps tiny
  positive ones (and gives NaN for an exact zero); for positive-definite kernels the two
  agree exactly.

* :func:`solve_mixed_cholesky` (``solver="mixed_cholesky"``, for float32 kernels, e.g. a
  60 000 x 60 000 NTK on one GPU): the Cholesky factor is computed in float32 (the jitter
  rule above) and used as the preconditioner of a float64 CG on ``K + r I``, whose products
  convert K to float64 in row blocks (:data:`MIXED_BLOCK_BYTES` at a time) -- iterative
  refinement with CG acceleration. It returns the solution of the given matrix to a float64
  relative residual :data:`MIXED_TOL` (default ``1e-10``) at the cost of one float32
  factorisation plus a few float64 products, where a float32 solve alone carries errors of
  ``eps32 * cond`` (1e-3 at cond 1e4). Measured on 300 x 300 matrices with log-spaced
  spectra: 3, 5, 8 and 25 iterations at cond 1e4, 1e6, 1e7 (tol 1e-8) and 1e8 (tol 1e-7,
  with jitter in the factor). A tol below ``eps64 * cond`` cannot be met by any float64
  solve; the solver then raises :class:`~nwcorrupt.predict.base.ConvergenceError`.

All take the kernel as an (N, N) array of the working float and return the solution
with its :class:`~nwcorrupt.predict.base.SolveInfo`; the predictors of
:mod:`nwcorrupt.predict.matrix` validate the inputs and call them.
"""

from __future__ import annotations

import functools
import math
import warnings
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_choice, check_positive_float, check_positive_int
from nwcorrupt.predict.base import (
    Array,
    ConvergenceError,
    SolveInfo,
    check_nonneg_float,
    dtype_key,
    machine_eps,
    mm,
)
from nwcorrupt.predict.cg import lanczos_cond, refined_cg

__all__ = [
    "JITTER_START",
    "JITTER_GROWTH",
    "JITTER_MAX",
    "RESIDUAL_TOL",
    "MIXED_TOL",
    "MIXED_MAXITER",
    "MIXED_REFINEMENTS",
    "MIXED_BLOCK_BYTES",
    "cholesky_factor",
    "eigen_decomposition",
    "flow_coefficients",
    "solve_cholesky",
    "solve_eigh",
    "solve_mixed_cholesky",
]

_HI = _precision.MATMUL_PRECISION

#: First Cholesky jitter, relative to the mean diagonal ``trace(K)/N``, per dtype.
JITTER_START = {"float64": 1e-12, "float32": 1e-6}
#: Factor between successive jitters.
JITTER_GROWTH = 10.0
#: Largest relative jitter tried before the Cholesky solver gives up.
JITTER_MAX = 1e-4
#: Largest relative residual ‖(K + r I) X − Y‖/‖Y‖ a Cholesky solution may have, per dtype: above it the
#: solution does not solve the system that was asked (a singular kernel with targets outside its range, e.g.
#: duplicated training points with different labels, or a condition number beyond the working precision),
#: and ``solve_cholesky`` raises instead of returning it.
RESIDUAL_TOL = {"float64": 1e-6, "float32": 1e-2}

#: Default float64 relative-residual tolerance of ``solver="mixed_cholesky"``.
MIXED_TOL = 1e-10
#: Default iteration limit of ``solver="mixed_cholesky"`` (a usable float32 factor needs ~2-10).
MIXED_MAXITER = 100
#: Restarts after float64 residual checks allowed to ``solver="mixed_cholesky"`` (none were
#: needed in the tests up to cond 1e8: the recurrences are float64, only the factor is float32).
MIXED_REFINEMENTS = 3
#: Bytes of the float64 copy of K's rows that one product of the mixed solver makes at a time.
MIXED_BLOCK_BYTES = 2**28


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
    # norms of r / s and b / s, s = max|b|: targets near the overflow limit give no inf / inf
    s = jnp.maximum(jnp.max(jnp.abs(b)), jnp.finfo(b.dtype).tiny)
    r = (mm(k, x) + reg * x - b) / s
    return jnp.linalg.norm(r) / jnp.maximum(jnp.linalg.norm(b / s), jnp.finfo(b.dtype).tiny)


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

    lam_max = top(lambda v: mm(k, v) + reg * v)
    inv_lam_min = top(lambda v: jsl.cho_solve((chol, True), v))
    return lam_max, inv_lam_min


def solve_cholesky(k: Array, y: Array, reg: float, estimate_cond: bool) -> tuple[Array, SolveInfo]:
    """Solve ``(K + reg I) X = Y`` by Cholesky, with the jitter fallback of the module docs.

    Args:
      k: (N, N) symmetric kernel, working float.
      y: (N, C) right-hand sides.
      reg: absolute regulariser r >= 0 (kernel units).
      estimate_cond: estimate cond(K + r I) by power and inverse iteration (about 80
        extra O(N^2) products); else ``info.cond`` is NaN.

    Returns:
      X (N, C) and a :class:`SolveInfo` (``solver="cholesky"``, the jitter used, the
      residual of the system without jitter).

    Raises:
      ValueError: not factorisable even with jitter :data:`JITTER_MAX` x mean diagonal.
    """
    mean_diag = float(jnp.mean(jnp.diagonal(k)))
    dt = k.dtype
    x, ok, c = _cholesky_attempt(k, jnp.asarray(reg, dt), y)
    jitter = 0.0
    if not bool(ok):
        scale = abs(mean_diag) if mean_diag != 0 else 1.0
        rel = JITTER_START[dtype_key(dt)]
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
    tol = RESIDUAL_TOL[dtype_key(dt)]
    if estimate_cond or not res <= tol:
        lam_max, inv_lam_min = (float(v) for v in _power_cond(k, jnp.asarray(reg, dt), c))
        cond = lam_max * inv_lam_min if inv_lam_min > 0 else float("inf")
        method = "power"
    if not res <= tol:
        raise ValueError(
            f"the Cholesky solution of (k_train_train + diag_reg * I) x = y does not solve it: relative residual "
            f"{res:.3g} > {tol:g} ({dtype_key(dt)}; condition number ~{cond:.3g}"
            + (f", jitter {jitter:.3g} added to factorise" if jitter else "")
            + "). The kernel is singular or too ill-conditioned for the targets (e.g. duplicated training points "
            "with different labels); set diag_reg > 0 (e.g. 1e-6), compute in float64, or use solver='eigh' for "
            "the least-squares (pseudo-inverse) solution"
        )
    info = SolveInfo(solver="cholesky", diag_reg=reg, jitter=jitter, residual=res, cond=cond, cond_method=method)
    return x, info


@jax.jit
def _factor_attempt(k: Array, shift: Array) -> tuple[Array, Array]:
    c = jnp.linalg.cholesky(k + shift * jnp.eye(k.shape[0], dtype=k.dtype))
    return c, jnp.all(jnp.isfinite(c))


def cholesky_factor(k: Array, reg: float) -> tuple[Array, float]:
    """Lower Cholesky factor of ``K + (reg + jitter) I`` with the jitter rule of :func:`solve_cholesky`.

    Args:
      k: (N, N) symmetric kernel, working float; reg: absolute regulariser r >= 0.

    Returns:
      (L (N, N) lower triangular, absolute jitter added (0.0 when none was needed)).

    Raises:
      ValueError: not factorisable even with jitter :data:`JITTER_MAX` x mean diagonal.
    """
    dt = k.dtype
    c, ok = _factor_attempt(k, jnp.asarray(reg, dt))
    if bool(ok):
        return c, 0.0
    mean_diag = float(jnp.mean(jnp.diagonal(k)))
    scale = abs(mean_diag) if mean_diag != 0 else 1.0
    rel = JITTER_START[dtype_key(dt)]
    while rel <= JITTER_MAX * (1 + 1e-9):
        c, ok = _factor_attempt(k, jnp.asarray(reg + rel * scale, dt))
        if bool(ok):
            return c, rel * scale
        rel *= JITTER_GROWTH
    raise ValueError(
        "k_train_train + diag_reg * I could not be Cholesky-factorised even with jitter up to "
        f"{JITTER_MAX:g} x mean diagonal ({JITTER_MAX * scale:.3g}): the kernel is not positive "
        "semi-definite or is singular; check it, or increase diag_reg"
    )


@jax.jit
def _eigh_reg(k: Array, reg: Array) -> tuple[Array, Array]:
    n = k.shape[0]
    return jnp.linalg.eigh(k + reg * jnp.eye(n, dtype=k.dtype))


def eigen_decomposition(k: Array, reg: float, rcond: float | None) -> tuple[Array, Array, Array, int, float]:
    """Eigendecomposition of K + r I with the eigenvalue rule of the module docs.

    Args:
      k: (N, N) symmetric kernel, working float; reg: absolute regulariser r >= 0;
      rcond: eigenvalue cut-off relative to the largest (None: ``N * eps``).

    Returns:
      (lam (N,) ascending, V (N, N) eigenvectors as columns, keep mask (N,) of the
      directions above the cut-off, number dropped, exact condition number).

    Raises:
      FloatingPointError: non-finite eigenvalues; ValueError: K + r I clearly indefinite.
    """
    dt = k.dtype
    n = k.shape[0]
    lam, vec = _eigh_reg(k, jnp.asarray(reg, dt))
    if not bool(jnp.all(jnp.isfinite(lam))):
        raise FloatingPointError("the eigendecomposition of k_train_train returned NaN or inf")
    lam_max = float(lam[-1])
    lam_min = float(lam[0])
    eps = machine_eps(dt)
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
    rc = n * eps if rcond is None else check_nonneg_float("rcond", rcond)
    keep = lam > rc * lam_max
    dropped = int(n - int(jnp.sum(keep)))
    cond = lam_max / lam_min if lam_min > 0 else float("inf")
    return lam, vec, keep, dropped, cond


@jax.jit
def flow_coefficients(lam: Array, vec: Array, keep: Array, y: Array, scaled_t: Array) -> Array:
    """V diag(phi(lam, s)) V^T Y (T, N, C) for scaled times s (T,) = eta * t / Y.size; Y: (N, C) right-hand sides.

    phi = -expm1(-lam s) / lam (1/lam at s = inf) on kept directions, 0 on dropped ones.
    """
    safe = jnp.where(keep, lam, 1.0)
    s = scaled_t[:, None]
    phi = jnp.where(jnp.isinf(s), 1.0 / safe, -jnp.expm1(-safe * s) / safe)
    phi = jnp.where(keep[None, :], phi, 0.0)  # (T, N)
    proj = mm(vec.T, y)  # (N, C)
    return jnp.einsum("ij,tj,jc->tic", vec, phi, proj, precision=_HI)


@jax.jit
def _flow_targets(lam: Array, vec: Array, y: Array, scaled_t: Array) -> Array:
    """(I - exp(-s (K + r I))) Y for each time, with eigenvalues clipped at 0."""
    s = scaled_t[:, None]
    lam0 = jnp.maximum(lam, 0.0)
    g = jnp.where(jnp.isinf(s), 1.0, -jnp.expm1(-lam0 * s))
    proj = mm(vec.T, y)
    return jnp.einsum("ij,tj,jc->tic", vec, g, proj, precision=_HI)


def solve_eigh(
    k: Array, y: Array, reg: float, scaled_t: np.ndarray, rcond: float | None
) -> tuple[Array, SolveInfo]:
    """Gradient-flow weights ``V diag(phi) V^T Y`` of ``K + reg I`` at several times.

    Args:
      k: (N, N) symmetric kernel, working float.
      y: (N, C) targets.
      reg: absolute regulariser r >= 0.
      scaled_t: (T,) scaled times ``s = eta * t / Y.size`` (``inf`` allowed: ``K^{-1} Y``).
      rcond: eigenvalue cut-off relative to the largest (None: ``N * eps``).

    Returns:
      (T, N, C) weights with ``phi = -expm1(-lam s) / lam`` on kept directions (the
      eigenvalue rule of the module docs), and a :class:`SolveInfo` with the exact
      condition number and the number of dropped directions.

    Raises:
      ValueError: K + r I is clearly indefinite or has no positive eigenvalue.
    """
    lam, vec, keep, dropped, cond = eigen_decomposition(k, reg, rcond)
    st = jnp.asarray(scaled_t, dtype=k.dtype)
    coef = flow_coefficients(lam, vec, keep, y, st)  # (T, N, C)
    targets = _flow_targets(lam, vec, y, st)
    y_norm = jnp.maximum(jnp.linalg.norm(y), jnp.finfo(k.dtype).tiny)
    res = max(
        float(_residual(k, jnp.asarray(reg, k.dtype), coef[i], targets[i], y_norm)) for i in range(coef.shape[0])
    )
    info = SolveInfo(
        solver="eigh", diag_reg=reg, residual=res, cond=cond, cond_method="eigh", dropped=dropped
    )
    return coef, info


@functools.partial(jax.jit, static_argnames="rows")
def _rows_float64_product(k: Array, v: Array, start: Array, rows: int) -> Array:
    """``K[start:start + rows] @ v`` with the rows converted to v's dtype (float64)."""
    blk = jax.lax.dynamic_slice_in_dim(k, start, rows, axis=0)
    return mm(blk.astype(v.dtype), v)


@jax.jit
def _factor_solve(c: Array, r: Array) -> Array:
    return jsl.cho_solve((c, True), r.astype(c.dtype)).astype(r.dtype)


def solve_mixed_cholesky(
    k: Array,
    y: Array,
    reg: float,
    *,
    tol: float | None = None,
    maxiter: int | None = None,
    on_nonconvergence: str = "raise",
) -> tuple[np.ndarray, SolveInfo]:
    """Solve ``(K + reg I) X = Y`` with a float32 Cholesky factor and float64 refinement.

    The factor of ``K + (reg + jitter) I`` is computed in float32 (K rounded to float32 if
    it is not; the jitter rule of :func:`solve_cholesky`) and preconditions CG on the
    float64 system ``K + reg I`` (without jitter), run on K's device with 64-bit types
    enabled for the solve; each product converts :data:`MIXED_BLOCK_BYTES` of K's rows to
    float64 at a time (:func:`~nwcorrupt.predict.cg.refined_cg`, closed by a float64
    residual check). The result solves the given matrix, not its float32 rounding.

    Args:
      k: (N, N) symmetric kernel (float32 or float64).
      y: (N, C) right-hand sides.
      reg: absolute regulariser r >= 0 (kernel units).
      tol: float64 relative residual per column (default :data:`MIXED_TOL`).
      maxiter: CG iterations allowed (default :data:`MIXED_MAXITER`).
      on_nonconvergence: ``"raise"`` (:class:`~nwcorrupt.predict.base.ConvergenceError`)
        or ``"warn"``.

    Returns:
      X as (N, C) float64 numpy, and a :class:`SolveInfo` (``solver="mixed_cholesky"``, the
      jitter of the factor, the float64 residual, the CG iterations, and the Lanczos
      condition number of the factor-preconditioned operator).

    Raises:
      ValueError: K + r I cannot be factorised in float32 even with jitter, or is not
        positive definite in float64.
    """
    tol = MIXED_TOL if tol is None else check_positive_float("tol", tol)
    maxiter = MIXED_MAXITER if maxiter is None else check_positive_int("maxiter", maxiter)
    check_choice("on_nonconvergence", on_nonconvergence, ("raise", "warn"))
    n = int(k.shape[0])
    with _precision.x64():  # float64 vectors and products; the factor stays float32
        k = jnp.asarray(k)
        k32 = k if k.dtype == jnp.float32 else k.astype(jnp.float32)
        c, jitter = cholesky_factor(k32, reg)
        del k32
        rows = max(1, min(n, MIXED_BLOCK_BYTES // (8 * n)))
        starts = [min(s, n - rows) for s in range(0, n, rows)]  # the last block shifted back: one shape

        def apply_a(v: Array, exact: bool = False) -> Array:
            parts = []
            for i, s0 in enumerate(starts):
                part = _rows_float64_product(k, v, jnp.asarray(s0), rows)
                skip = i * rows - s0  # rows the shifted last block shares with the one before
                parts.append(part[skip:])
            out = jnp.concatenate(parts)
            return out + reg * v if reg else out

        state = refined_cg(
            jnp, apply_a, lambda r: _factor_solve(c, r), jnp.asarray(np.asarray(y, dtype=np.float64)),
            tol, 0.0, maxiter, MIXED_REFINEMENTS, None,
        )  # fmt: skip
        x = np.asarray(state.x, dtype=np.float64)
        rel = np.asarray(state.rel)
        y_norm = float(np.linalg.norm(np.asarray(y, dtype=np.float64)))
        residual = float(np.linalg.norm(np.asarray(state.r)) / y_norm) if y_norm > 0 else 0.0
        alphas = [np.asarray(a) for a in state.alphas]
        betas = [np.asarray(a) for a in state.betas]
    if not np.all(np.isfinite(x)):
        raise FloatingPointError(
            "the mixed-precision Cholesky solution contains NaN or inf; the kernel is singular or too badly "
            "conditioned for a float32 factor: add diag_reg or solve in float64 (solver='cholesky' under x64)"
        )
    info = SolveInfo(
        solver="mixed_cholesky", diag_reg=reg, jitter=jitter, residual=residual, iterations=state.iterations,
        converged=state.converged, cond=lanczos_cond(alphas, betas), cond_method="lanczos",
    )  # fmt: skip
    if not state.converged:
        msg = (
            f"the mixed-precision Cholesky solve did not reach tol={tol:g}: max relative column residual "
            f"{float(np.max(rel)):.3g} after {state.iterations} iterations (maxiter={maxiter}); float64 itself "
            "cannot resolve a relative residual much below 1e-16 x cond(K + r I), and the float32 factor stops "
            "preconditioning as 1e-7 x cond approaches 1: raise tol, add diag_reg, or raise maxiter"
        )
        if on_nonconvergence == "raise":
            raise ConvergenceError(msg, info)
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    return x, info
