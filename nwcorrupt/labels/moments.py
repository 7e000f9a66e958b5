"""Exact moments of kernel predictors over label draws, and the accuracy they predict.

Every kernel predictor of :mod:`nwcorrupt.predict` is linear in the targets:
``f(x*) = w(x*)ᵀ Ỹ`` with the weight rows

* NTK or NNGP at t = ∞: ``W = K_* (K + r I)⁻¹``;
* gradient flow to time t (NTK, or NNGP = training the last layer only):
  ``W_t = K_* V diag(φ_t(λ)) Vᵀ``, ``φ_t(λ) = (1 − exp(−λ s))/λ``, ``s = η t/(N C)``
  (the convention of :mod:`nwcorrupt.predict`: loss ``|f − Y|²/(2 N C)``).

These are the predictors averaged over network initialisations (zero-mean initial
function). Over independent label draws (row α's one-hot target has mean t_α and
covariance D_α = diag(t_α) − t_α t_αᵀ), exactly:

* ``E f(x*) = W(x*) E[Ỹ]`` (M, C);
* ``Cov f(x*) = Σ_α W_α(x*)² D_α = Σ_g s_g(x*) D_g`` (M, C, C), where the rows are grouped by
  their label law g (:class:`~nwcorrupt.labels.LabelLaw`) and s_g(x*) = Σ_{α∈g} W_α(x*)².

Cost: one Cholesky factorisation (t = ∞) or eigendecomposition (finite t) of the N × N
training kernel, then per test tile two triangular solves (or two products with V)
against the test–train kernel — O(N³/3 + N² M) in all, the same order as one kernel
solve with the test points as right-hand sides — and O(N M G + M G C²) for the moments.
No loop over label draws. Under symmetric noise
``E f = (1 − r) f_clean + (r/C)(w·1) 1ᵀ``: the class-dependent part shrinks by 1 − r and
the mean predictor's decisions do not change for r < 1.

Accuracy: the logit vector of a test point is a sum of N independent terms, so it is
close to Gaussian when no single weight dominates; :func:`predicted_accuracy` computes
P(argmax N(mean, cov) = y) per test point (exactly for C = 2, else Monte Carlo with a
reported standard error) and averages over the test set.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from scipy import special

from nwcorrupt import kernels as _kernels
from nwcorrupt import precision as _precision
from nwcorrupt import predict as _predict
from nwcorrupt._checks import (
    check_choice,
    check_int,
    check_labels,
    check_matrix,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_real,
    check_same_size,
    check_seed,
)
from nwcorrupt.labels.models import InstanceDependent, LabelLaw

__all__ = [
    "AccuracyPrediction",
    "predictor_moments",
    "predicted_accuracy",
    "noisy_class_means",
    "clean_size_for_accuracy",
]

_HI = _precision.MATMUL_PRECISION


def _resolve_law(model: Any, y_train: Any, num_classes: int, x_train: Any) -> LabelLaw:
    if isinstance(model, LabelLaw):
        return model.law(y_train, num_classes)
    if isinstance(model, InstanceDependent):
        return model.law(y_train, num_classes, x=x_train)
    if not hasattr(model, "law"):
        raise TypeError(
            f"model must be a label-noise model (Symmetric, Pair, Transition, Structured, ...) or a LabelLaw, got {model!r}"
        )
    return model.law(y_train, num_classes)


def _weights_fn(ktrain, reg: float, t: float | None, learning_rate: float, n: int, c: int):
    """A function K_* (m, N) -> W (m, N) of the predictor's weights."""
    if t is None:
        chol, _ = _predict.cholesky_factor(ktrain, reg)

        def weights(kst):
            z = jsl.solve_triangular(chol, kst.T, lower=True)
            return jsl.solve_triangular(chol.T, z, lower=False).T

        return weights
    lam, vec, keep, _, _ = _predict.eigen_decomposition(ktrain, reg, None)
    s = learning_rate * t / (n * c)
    safe = jnp.where(keep, lam, 1.0)
    phi = jnp.where(keep, -jnp.expm1(-safe * s) / safe, 0.0)

    def weights_t(kst):
        return jnp.matmul(jnp.matmul(kst, vec, precision=_HI) * phi, vec.T, precision=_HI)

    return weights_t


def predictor_moments(
    arch,
    x_train,
    y_train,
    x_test,
    model,
    *,
    num_classes: int,
    get: str = "ntk",
    t: float | None = None,
    diag_reg: float = 0.0,
    diag_reg_absolute_scale: bool = False,
    learning_rate: float = 1.0,
    tile_size: int = 1024,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact mean and covariance of every test logit of a kernel predictor over label draws.

    Args:
      arch: architecture (e.g. :class:`nwcorrupt.arch.MLP`) whose kernel is used.
      x_train: (N, d) training inputs (possibly corrupted: they are held fixed).
      y_train: (N,) true labels in [0, C) (what the noise model acts on; for a
        :class:`LabelLaw`, e.g. a dilution's ``Diluted.law``, only its length is checked).
      x_test: (M, d) test inputs.
      model: a label-noise model (its :meth:`law` for ``y_train``) or a :class:`LabelLaw`.
      num_classes: C.
      get: ``"ntk"`` or ``"nngp"``.
      t: gradient-flow time (None: t = ∞).
      diag_reg, diag_reg_absolute_scale, learning_rate: as in :func:`nwcorrupt.predict.ntk_predict`.
      tile_size: test points per tile (memory O(tile_size · N)).

    Returns:
      ``(mean (M, C), cov (M, C, C))`` as float64 numpy arrays (computed in the working
      float: float64 under :func:`nwcorrupt.precision.x64`).
    """
    check_choice("get", get, ("ntk", "nngp"))
    xtr = check_matrix("x_train", x_train)
    xte = check_matrix("x_test", x_test)
    check_same_size("x_test", xte.shape[1], "x_train", xtr.shape[1], "features")
    c = check_int("num_classes", num_classes, lo=2)
    y = check_labels("y_train", y_train, n=xtr.shape[0], num_classes=c, data_name="x_train")
    check_nonneg_float("diag_reg", diag_reg)
    if t is not None:
        check_real("t", t, lo=0.0, allow_inf=True)
        check_positive_float("learning_rate", learning_rate)
    tile_size = check_positive_int("tile_size", tile_size)
    law = _resolve_law(model, y, c, xtr)

    xtr_f, xte_f = _predict.base.as_float(xtr), _predict.base.as_float(xte)
    ktrain = _predict.base.as_float(getattr(_kernels.kernel(arch, xtr_f, None, get=(get,)), get))
    _predict.base.check_finite_out(f"the training {get.upper()} kernel", ktrain)
    reg = float(_predict.absolute_regularizer(ktrain, diag_reg, diag_reg_absolute_scale=diag_reg_absolute_scale))
    n = xtr.shape[0]
    t_finite = None if t is None or math.isinf(t) else float(t)
    weights = _weights_fn(ktrain, reg, t_finite, learning_rate, n, c)

    dt = ktrain.dtype
    targets = jnp.asarray(law.mean_targets(), dt)  # (N, C)
    onehot_groups = jnp.asarray(np.eye(law.probs.shape[0])[law.groups], dt)  # (N, G)
    dcov = np.asarray(law.group_covariances())  # (G, C, C)
    means, covs = [], []
    for s in range(0, xte.shape[0], tile_size):
        kst = _predict.base.as_float(getattr(_kernels.kernel(arch, xte_f[s : s + tile_size], xtr_f, get=(get,)), get))
        w = weights(kst)  # (m, N)
        means.append(np.asarray(jnp.matmul(w, targets, precision=_HI), np.float64))
        sq = np.asarray(jnp.matmul(w * w, onehot_groups, precision=_HI), np.float64)  # (m, G)
        covs.append(np.einsum("mg,gij->mij", sq, dcov))
    mean, cov = np.concatenate(means), np.concatenate(covs)
    if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(cov))):
        raise FloatingPointError(
            "the predictor moments contain NaN or inf: the training kernel is singular for this dtype; "
            "use float64 (nwcorrupt.precision.x64) or a diag_reg"
        )
    return mean, cov


@dataclasses.dataclass(frozen=True)
class AccuracyPrediction:
    """Predicted test accuracy of a Gaussian logit model.

    Attributes:
      accuracy: mean over test points of P(argmax = true class).
      stderr: Monte Carlo standard error of ``accuracy`` (0 for the exact C = 2 formula).
      per_point: (M,) probability of a correct decision at each test point.
    """

    accuracy: float
    stderr: float
    per_point: np.ndarray


def _psd_sqrt(cov: np.ndarray) -> np.ndarray:
    lam, vec = np.linalg.eigh(cov)
    return vec * np.sqrt(np.clip(lam, 0.0, None))[..., None, :]


def predicted_accuracy(
    mean, cov, y_test, *, n_samples: int = 4000, seed: int = 0, block: int = 256
) -> AccuracyPrediction:
    """P(argmax of N(mean, cov) = y) per test point, averaged over the test set.

    Args:
      mean: (M, C) mean logits; cov: (M, C, C) their covariance (PSD; a singular one, e.g.
        along 1 when every target row sums to one, is fine).
      y_test: (M,) true labels.
      n_samples: normal draws per test point for C > 2 (the same draws at every point).
      seed: seed of those draws.
      block: test points per batch of the Monte Carlo.

    Returns:
      :class:`AccuracyPrediction`. For C = 2 the probability is exact,
      Φ((μ_y − μ_o)/σ) with σ² the variance of the difference; for C > 2 each point's
      estimate has variance p(1 − p)/n_samples and ``stderr`` is that of the mean.
    """
    mu = np.asarray(check_matrix("mean", mean), np.float64)
    m, c = mu.shape
    sig = np.asarray(cov, np.float64)
    if sig.shape != (m, c, c):
        raise ValueError(f"cov must have shape ({m}, {c}, {c}) to match mean, got {sig.shape}")
    if not np.all(np.isfinite(sig)):
        raise ValueError("cov contains NaN or inf values; expected finite covariances")
    y = check_labels("y_test", y_test, n=m, num_classes=c, data_name="mean")
    n_samples = check_positive_int("n_samples", n_samples)
    check_seed("seed", seed)
    block = check_positive_int("block", block)
    if c == 2:
        o = 1 - y
        rows = np.arange(m)
        diff = mu[rows, y] - mu[rows, o]
        var = sig[rows, y, y] + sig[rows, o, o] - 2 * sig[rows, y, o]
        sd = np.sqrt(np.clip(var, 0.0, None))
        with np.errstate(divide="ignore", invalid="ignore"):
            z = np.where(sd > 0, diff / np.where(sd > 0, sd, 1.0), np.sign(diff) * np.inf)
        p = np.where((sd == 0) & (diff == 0), 0.5, special.ndtr(z))
        return AccuracyPrediction(float(p.mean()), 0.0, p)
    z = np.random.default_rng(seed).standard_normal((n_samples, c))
    p = np.empty(m)
    for s in range(0, m, block):
        root = _psd_sqrt(sig[s : s + block])  # (b, C, C)
        logits = mu[s : s + block, None, :] + np.einsum("sj,bij->bsi", z, root)
        p[s : s + block] = np.mean(np.argmax(logits, axis=-1) == y[s : s + block, None], axis=1)
    stderr = float(np.sqrt(np.sum(p * (1 - p) / n_samples)) / m)
    return AccuracyPrediction(float(p.mean()), stderr, p)


def noisy_class_means(x_train, law: LabelLaw) -> np.ndarray:
    """(C, d) expected class means under label noise, at leading order in 1/N.

    μ̃_i = Σ_α P(ỹ_α = i) x_α / Σ_α P(ỹ_α = i); for class-conditional noise this is
    Σ_a n_a T_ai μ_a / Σ_a n_a T_ai (μ_a the clean class means, n_a the class counts):
    symmetric noise mixes every prototype with the grand mean, pair noise mixes the
    prototypes of paired classes.
    """
    x = np.asarray(check_matrix("x_train", x_train), np.float64)
    if not isinstance(law, LabelLaw):
        raise TypeError(f"law must be a LabelLaw (e.g. model.law(y, C)), got {law!r}")
    check_same_size("law", law.n, "x_train", x.shape[0], "rows")
    p = law.mean_targets()
    weight = p.sum(axis=0)
    if np.any(weight <= 0):
        raise ValueError(f"class {int(np.argmin(weight))} has zero probability of being observed; it has no mean")
    return (p.T @ x) / weight[:, None]


def clean_size_for_accuracy(n_clean, accuracy, target: float) -> float:
    """The clean-set size at which an accuracy curve first reaches ``target``.

    Interpolates linearly in log N between the two grid points that bracket the first
    crossing. Args: n_clean (K,) increasing sizes; accuracy (K,) accuracies at those
    sizes; target in (0, 1). Returns NaN when the curve never reaches the target, and
    ``n_clean[0]`` when it starts above it.
    """
    n = np.asarray(n_clean, np.float64)
    a = np.asarray(accuracy, np.float64)
    if n.ndim != 1 or n.shape != a.shape or n.size < 1:
        raise ValueError(f"n_clean and accuracy must be 1-D of the same length, got {n.shape} and {a.shape}")
    if np.any(n <= 0) or np.any(np.diff(n) <= 0):
        raise ValueError("n_clean must be positive and strictly increasing")
    target = check_real("target", target, lo=0.0, hi=1.0)
    above = np.flatnonzero(a >= target)
    if above.size == 0:
        return float("nan")
    i = int(above[0])
    if i == 0:
        return float(n[0])
    f = (target - a[i - 1]) / (a[i] - a[i - 1])
    return float(np.exp(np.log(n[i - 1]) + f * (np.log(n[i]) - np.log(n[i - 1]))))
