"""Architecture-level predictors: the kernels of an architecture, then the matrix level.

:func:`ntk_predict` and :func:`nngp_predict` compute the kernels of an architecture with
:func:`nwcorrupt.kernels.kernel` and call the matrix-level predictors of
:mod:`nwcorrupt.predict.matrix`; the test-train kernel is always computed in row tiles of
``tile_size`` test points. With ``solver="cg"`` the N x N training kernel is never
formed: the training rows are streamed in tiles through every matrix-vector product (a
:class:`~nwcorrupt.predict.cg.TiledKernel`). With ``solver="stored_cg"`` it is computed
once into a :class:`~nwcorrupt.predict.stored.StoredKernel` after a memory check
(:func:`~nwcorrupt.predict.memory.stored_memory_plan`), solved by
:func:`~nwcorrupt.predict.stored.stored_cg_solve`, and the predictions come from
:func:`tiled_predict` (float64 products with the weights).

``get`` names the kernel, ``"ntk"`` or ``"nngp"``, as everywhere in nwcorrupt.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Union

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import distributed as _distributed
from nwcorrupt import kernels as _kernels
from nwcorrupt import precision as _precision
from nwcorrupt._checks import check_array, check_choice, check_matrix, check_positive_int, check_same_size
from nwcorrupt.predict.base import (
    TILE_SIZE,
    Array,
    SolveInfo,
    as_float,
    check_finite_out,
    check_learning_rate,
    check_nonneg_float,
    check_times,
    single_get,
)
from nwcorrupt.predict.cg import TiledKernel
from nwcorrupt.predict.matrix import (
    SOLVERS,
    KernelLike,
    absolute_regularizer,
    auto_solver,
    default_preconditioner,
    gradient_flow_weights,
    kernel_solve,
)
from nwcorrupt.predict.memory import STORED_BLOCK, check_dense_memory, stored_memory_plan
from nwcorrupt.predict.resident import float64_product, platform_of
from nwcorrupt.predict.stored import StoredKernel, StoredSolveInfo, stored_cg_solve

__all__ = ["ntk_predict", "nngp_predict", "tiled_predict"]

_HI = _precision.MATMUL_PRECISION


def _validate_inputs(x_train: Any, y_train: Any, x_test: Any) -> tuple[Array, Array, Array]:
    check_array("x_train", x_train, ndim=2)
    check_array("x_test", x_test, ndim=2)
    check_array("y_train", y_train, ndim=2)
    if x_train.shape[0] < 1:
        raise ValueError("x_train must have at least one row")
    check_same_size("x_test", x_test.shape[1], "x_train", x_train.shape[1], "features")
    check_same_size("y_train", y_train.shape[0], "x_train", x_train.shape[0], "rows")
    return as_float(x_train), as_float(y_train), as_float(x_test)


def _arch_kernel(arch: Any, x1: Array, x2: Array | None, get: str, backend: str) -> Array:
    k = _kernels.kernel(arch, x1, x2, get=(get,), backend=backend)
    return as_float(getattr(k, get))


def _arch_predict(
    get: str,
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
    check_nonneg_float("diag_reg", diag_reg)
    tile_size = check_positive_int("tile_size", tile_size)
    stored_options = {
        key: cg_options.pop(key) for key in ("block_size", "check_memory", "distributed") if key in cg_options
    }
    n = xtr.shape[0]
    if stored_options.get("distributed") and solver != "stored_cg":
        raise ValueError(f"distributed=True needs solver='stored_cg', got solver={solver!r}")
    if solver == "stored_cg":
        if t is not None:
            raise ValueError(f"finite t needs solver 'eigh' (or 'auto'), got solver={solver!r}")
        if backend != "native":
            raise ValueError(f"solver='stored_cg' computes kernel tiles with backend='native', got backend={backend!r}")
        return _arch_predict_stored(
            get, arch, xtr, y, xte, diag_reg, diag_reg_absolute_scale, tile_size, return_info, cg_options,
            **stored_options,
        )
    if t is not None:
        check_times(t)
        check_learning_rate(learning_rate)
        if solver not in ("auto", "eigh"):
            raise ValueError(f"finite t needs solver 'eigh' (or 'auto'), got solver={solver!r}")
        solver = "eigh"
    elif solver == "auto":
        solver = auto_solver(n)

    if solver == "cg":
        diag = as_float(getattr(_kernels.kernel_diag(arch, xtr, get=(get,)), get))
        if diag.shape != (n,):
            raise ValueError(f"kernel_diag returned shape {tuple(diag.shape)}, expected ({n},)")
        ktrain: KernelLike = TiledKernel(
            rows=lambda idx: _arch_kernel(arch, xtr[idx], xtr, get, backend),
            n=n,
            tile_size=tile_size,
            diagonal=diag,
        )
    else:
        if stored_options.get("check_memory", True):
            check_dense_memory(n, solver)  # before the N x N kernel is computed
        ktrain = _arch_kernel(arch, xtr, None, get, backend)
        if ktrain.shape != (n, n):
            raise ValueError(f"kernel(arch, x_train) returned shape {tuple(ktrain.shape)}, expected ({n}, {n})")
        check_finite_out(f"the training {get.upper()} kernel", ktrain)

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
        kt = _arch_kernel(arch, xte[s : s + tile_size], xtr, get, backend)
        parts.append(jnp.matmul(kt, weights, precision=_HI))
    pred = jnp.concatenate(parts, axis=-2)
    pred = check_finite_out("the predictions", pred)
    return (pred, info) if return_info else pred


def _arch_predict_stored(
    get: str,
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
    distributed: bool = False,
) -> Union[Array, tuple[Array, StoredSolveInfo]]:
    """``solver="stored_cg"`` at the architecture level: stored training kernel, CG, tiled test kernel."""
    block_size = check_positive_int("block_size", block_size)
    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True or False, got {distributed!r}")
    processes = jax.process_count() if distributed else 1
    n, n_test = xtr.shape[0], xte.shape[0]
    pre, rank = default_preconditioner("stored_cg", cg_options.get("preconditioner"), cg_options.get("precond_rank"))
    cg_options = {**cg_options, "preconditioner": pre, "precond_rank": rank}
    if check_memory:
        stored_memory_plan(
            n, n_test=n_test, classes=y.shape[1], depth=getattr(arch, "depth", 3), block_size=block_size,
            precond_rank=rank if cg_options.get("preconditioner") in ("pivoted_cholesky", "nystrom") else 0,
            test_tile=tile_size, processes=processes,
        ).check()  # fmt: skip
    t0 = time.perf_counter()
    k = StoredKernel.from_arch(arch, xtr, get, block_size=block_size, check_memory=False, distributed=distributed)
    t1 = time.perf_counter()
    reg = absolute_regularizer(k, diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale)
    alpha, info = stored_cg_solve(k, np.asarray(y, dtype=np.float64), shift=reg, return_info=True, **cg_options)
    del k  # free the stored matrix before the test-train tiles
    t2 = time.perf_counter()
    if distributed:
        pred = _distributed_predict(arch, get, xtr, xte, alpha, tile_size)
    else:
        pred = _stored_predict(arch, get, xtr, xte, alpha, tile_size)
    t3 = time.perf_counter()
    info = dataclasses.replace(info, time_kernel=t1 - t0, time_predict=t3 - t2)
    out = check_finite_out("the predictions", as_float(pred))
    return (out, info) if return_info else out


def tiled_predict(
    arch: Any,
    x_train: Any,
    x_test: Any,
    weights: Any,
    *,
    get: str = "ntk",
    tile_size: int = TILE_SIZE,
    which: str | None = None,
) -> np.ndarray:
    """``K(x_test, x_train) @ weights`` without forming the test-train kernel whole.

    The kernel is computed in row tiles of ``tile_size`` test points
    (``kernel(arch, x_test[tile], x_train)``, in the JAX float) and each tile is
    multiplied by the weights in float64 on the host. Peak memory is about
    ``tile_size * N`` kernel entries (times the kernel recursion's working buffers).

    Args:
      arch: :class:`nwcorrupt.arch.MLP`.
      x_train: (N, d); x_test: (N_test, d); weights: (N, C), e.g. from :func:`stored_cg_solve`.
      get: ``"ntk"`` or ``"nngp"`` (or a one-element tuple of it).
      tile_size: test rows per tile.
      which: deprecated name of ``get`` (warns).

    Returns:
      (N_test, C) float64 numpy.
    """
    get = single_get(get, which)
    check_matrix("x_train", x_train)
    check_matrix("x_test", x_test)
    check_array("weights", weights, ndim=2)
    tile_size = check_positive_int("tile_size", tile_size)
    check_same_size("x_test", x_test.shape[1], "x_train", x_train.shape[1], "features")
    if weights.shape[0] != x_train.shape[0]:
        raise ValueError(
            f"weights must have {x_train.shape[0]} rows (one per training point), got {tuple(weights.shape)}"
        )
    w = np.asarray(weights, np.float64)
    return _stored_predict(arch, get, as_float(x_train), as_float(x_test), w, tile_size)


def _stored_predict(arch: Any, get: str, xtr: Array, xte: Array, alpha: np.ndarray, tile_size: int) -> np.ndarray:
    """``K(x_test, X) @ alpha`` in row tiles of x_test (float64 products), (N_test, C) numpy.

    On the host the tile's rows are converted to float64 256 at a time; on an accelerator the
    float64 product runs there (:func:`~nwcorrupt.predict.resident.float64_product`) and only
    the (rows, C) result crosses.
    """
    n_test = xte.shape[0]
    out = np.empty((n_test, alpha.shape[1]), dtype=np.float64)
    rows = min(tile_size, n_test)
    alpha_dev = None
    for s in range(0, n_test, rows):
        s0 = min(s, n_test - rows)  # keep one tile shape (one compilation): shift the last tile back
        kt = _arch_kernel(arch, xte[s0 : s0 + rows], xtr, get, "native")
        if platform_of(kt) != "cpu":
            with _precision.x64():
                if alpha_dev is None:
                    alpha_dev = jax.device_put(np.asarray(alpha, dtype=np.float64), next(iter(kt.devices())))
                out[s0 : s0 + rows] = np.asarray(float64_product(kt, alpha_dev))
        else:
            kt = np.asarray(kt)
            for c in range(0, rows, 256):  # float64 copies of at most 256 rows at a time
                out[s0 + c : s0 + min(c + 256, rows)] = kt[c : c + 256].astype(np.float64) @ alpha
        del kt
    return out


def _distributed_predict(arch: Any, get: str, xtr: Array, xte: Array, alpha: np.ndarray, tile_size: int) -> np.ndarray:
    """:func:`_stored_predict` with the test rows split among the processes, gathered on every process."""
    n_test = xte.shape[0]
    start, stop = _distributed.local_range(n_test)
    part = np.zeros((stop - start, alpha.shape[1]), dtype=np.float64)
    if stop > start:
        part = _stored_predict(arch, get, xtr, xte[start:stop], alpha, tile_size)
    return _distributed.gather_shares(part, n_test)


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
    distributed: bool = False,
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
      diag_reg, diag_reg_absolute_scale, learning_rate: see :mod:`nwcorrupt.predict`.
      solver: ``"auto"``, ``"cholesky"``, ``"mixed_cholesky"`` (float32 Cholesky factor
        refined to a float64 residual; see :func:`kernel_solve`), ``"eigh"``, ``"cg"`` or
        ``"stored_cg"``. With
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
      check_memory: compare the memory the solve needs with the free memory first and raise
        ``MemoryError`` if it does not fit: :func:`stored_memory_plan` for ``"stored_cg"``,
        :func:`~nwcorrupt.predict.memory.check_dense_memory` (the N x N matrices held at once)
        for ``"cholesky"``, ``"mixed_cholesky"`` and ``"eigh"``.
      distributed: ``"stored_cg"`` only: spread the work over the processes of a
        multi-process run (:mod:`nwcorrupt.distributed`; every process calls this with the
        same arguments): each holds its tiles of the training kernel (memory ~ N^2 / (2 P)),
        the CG products are summed over processes, the test rows are split; every process
        returns the whole prediction.

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
        distributed=distributed,
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
    distributed: bool = False,
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
        distributed=distributed,
    )
    return _arch_predict(
        "nngp", arch, x_train, y_train, x_test, None, diag_reg, diag_reg_absolute_scale, 1.0,
        solver, tile_size, backend, return_info, cg_options,
    )
