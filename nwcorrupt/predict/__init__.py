"""Kernel predictors (NNGP posterior mean, NTK gradient flow) and their linear solvers.

Two layers:

* **Matrix level** (:mod:`nwcorrupt.predict.matrix`) -- functions of kernel matrices (or
  of a :class:`TiledKernel`, a training kernel available only through row tiles):
  :func:`kernel_solve` (``alpha = (K + r I)^{-1} Y``), :func:`gradient_flow_weights`
  (the finite-time analogue), :func:`gp_mean`, :func:`gradient_flow_mean`, on top of the
  solvers: dense Cholesky (also float32 with float64 refinement) and eigendecomposition
  (:mod:`nwcorrupt.predict.dense`) and the
  multi-right-hand-side conjugate-gradient solver :func:`cg_solve`
  (:mod:`nwcorrupt.predict.cg`).
* **Architecture level** (:mod:`nwcorrupt.predict.architecture`) -- :func:`ntk_predict`
  and :func:`nngp_predict` compute the kernels of an architecture with
  :func:`nwcorrupt.kernels.kernel` and call the matrix level. With ``solver="cg"`` the
  N x N training kernel is never formed: the training rows are streamed in tiles through
  every matrix-vector product.
* **Stored kernel** (large N, e.g. all 60000 MNIST images; :mod:`nwcorrupt.predict.stored`)
  -- ``solver="stored_cg"``: the training kernel is computed once, tile by tile, into a
  :class:`StoredKernel` (upper triangle only, on the host), solved by
  :func:`stored_cg_solve` (Nystrom-preconditioned CG, float64 recurrences, float64
  residual refinement) and the test predictions come from :func:`tiled_predict`;
  :func:`stored_memory_plan` (:mod:`nwcorrupt.predict.memory`) checks the memory first.

Shared diagnostics (:class:`SolveInfo`, :class:`ConvergenceError`) and checks are in
:mod:`nwcorrupt.predict.base`. Every public name of the submodules listed in
:data:`__all__` is importable from ``nwcorrupt.predict`` directly.

Conventions (those of neural-tangents' ``predict.gradient_descent_mse_ensemble``):

* ``diag_reg`` is relative: the absolute regulariser added to the diagonal of the
  training kernel is ``r = diag_reg * trace(K) / N``; with
  ``diag_reg_absolute_scale=True`` it is ``r = diag_reg``.
* Gradient flow on the MSE loss ``|f(X) - Y|^2 / (2 * Y.size)`` with learning rate
  ``eta`` gives, from a zero-mean initial function, the mean test output at time ``t``
  ``K_* K^{-1} (I - exp(-eta t K / Y.size)) Y`` (``K`` the regularised NTK); ``t=None``
  means ``t = inf``, i.e. ``K_* K^{-1} Y``. The NNGP posterior mean is the same
  infinite-time formula with the NNGP kernel.

Solvers (``solver=``, :data:`SOLVERS`): ``"cholesky"`` (with a jitter fallback),
``"mixed_cholesky"`` (a float32 factor preconditioning float64 CG: float64 accuracy at about
the cost of a float32 factorisation) and ``"eigh"`` (needed for finite ``t``; drops
numerically zero eigen-directions), see :mod:`nwcorrupt.predict.dense`; ``"cg"``, see :func:`cg_solve`; ``"stored_cg"``, see
:func:`stored_cg_solve`; ``"auto"``, see :func:`auto_solver` and
:mod:`nwcorrupt.predict.matrix`.

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

from nwcorrupt.predict.architecture import nngp_predict, ntk_predict, tiled_predict
from nwcorrupt.predict.base import TILE_SIZE, Array, ConvergenceError, SolveInfo
from nwcorrupt.predict.cg import CG_TOL, PRECOND_RANK, PRECONDITIONERS, TiledKernel, cg_solve
from nwcorrupt.predict.dense import (
    JITTER_GROWTH,
    JITTER_MAX,
    JITTER_START,
    MIXED_TOL,
    cholesky_factor,
    eigen_decomposition,
    solve_mixed_cholesky,
)
from nwcorrupt.predict.ensemble import Gaussian, gradient_descent_mse_ensemble
from nwcorrupt.predict.matrix import (
    AUTO_DENSE_MAX_BYTES,
    SOLVERS,
    KernelLike,
    absolute_regularizer,
    auto_solver,
    default_preconditioner,
    gp_mean,
    gradient_flow_mean,
    gradient_flow_weights,
    kernel_solve,
)
from nwcorrupt.predict.memory import (
    MEMORY_HEADROOM,
    STORED_BLOCK,
    STORED_PRECOND_RANK,
    StoredPlan,
    available_memory_bytes,
    stored_memory_plan,
)
from nwcorrupt.predict.stored import (
    STORED_PRECONDITIONERS,
    STORED_PASS_REDUCTION,
    STORED_REFINEMENTS,
    STORED_TOL,
    StoredKernel,
    StoredSolveInfo,
    stored_cg_solve,
)

__all__ = [
    # the neural-tangents-shaped predictor closure (mean and covariance)
    "gradient_descent_mse_ensemble",
    "Gaussian",
    # architecture level
    "ntk_predict",
    "nngp_predict",
    "tiled_predict",
    # matrix level
    "kernel_solve",
    "gradient_flow_weights",
    "gp_mean",
    "gradient_flow_mean",
    "cholesky_factor",
    "eigen_decomposition",
    "absolute_regularizer",
    "auto_solver",
    "default_preconditioner",
    "KernelLike",
    "SOLVERS",
    "AUTO_DENSE_MAX_BYTES",
    # diagnostics and shared
    "Array",
    "SolveInfo",
    "ConvergenceError",
    "TILE_SIZE",
    # dense solvers
    "JITTER_START",
    "JITTER_GROWTH",
    "JITTER_MAX",
    "MIXED_TOL",
    "solve_mixed_cholesky",
    # conjugate gradients
    "cg_solve",
    "TiledKernel",
    "PRECONDITIONERS",
    "CG_TOL",
    "PRECOND_RANK",
    # stored kernel
    "StoredKernel",
    "StoredSolveInfo",
    "stored_cg_solve",
    "STORED_TOL",
    "STORED_PRECONDITIONERS",
    "STORED_PASS_REDUCTION",
    "STORED_REFINEMENTS",
    # memory plan
    "stored_memory_plan",
    "available_memory_bytes",
    "StoredPlan",
    "STORED_BLOCK",
    "STORED_PRECOND_RANK",
    "MEMORY_HEADROOM",
]
