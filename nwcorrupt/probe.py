"""Linear probes on representations: what a (noisily trained) network's features still encode.

A probe is a linear map fitted by least squares (or ridge) from a representation to one-hot
targets on a few *clean* examples; its test accuracy is the representation's predictive power.
Shapes: M rows (examples), F features, C classes, T test rows.

- :func:`solve` — the least-squares / ridge weights for any targets, in float64 numpy:
  ``ridge = 0`` gives the minimum-norm least-squares solution (``numpy.linalg.lstsq``), ``ridge > 0``
  the unique minimiser of ‖ΦW − Y‖²_F + λ‖W‖²_F (primal normal equations when F ≤ M, the dual form
  Φᵀ(ΦΦᵀ + λI)⁻¹Y otherwise). With ``ridge_relative=True``, λ = ridge · trace(ΦΦᵀ)/M (the mean squared
  feature norm), the convention of :mod:`nwcorrupt.predict`'s ``diag_reg``, so the probe is invariant
  to the scale of the features.
- :func:`fit` → :class:`Probe` (classification on one-hot targets), :func:`fit_regression` →
  :class:`Regressor` with :func:`regression_errors` (MSE, MAE, MAPE). A bias is not added: use
  :func:`with_bias` when the probe should have one.
- :func:`clean_subsets` — several random class-balanced clean subsets of m examples per class.
- :func:`representations` — the inputs, every hidden layer's post-activations and the outputs of
  an MLP (:func:`nwcorrupt.mlp.layer_features`).
- :func:`layer_kernel` and :func:`kernel_scores` — the **infinite-width baseline**. For the features
  σ(h^l) of hidden layer l of a random-init MLP of width n, (1/n)ΦΦᵀ → K_l, the post-activation NNGP
  kernel of that layer, so the probe of a random network with relative ridge r tends, as n → ∞, to
  kernel regression with K_l and relative ridge r (``get="nngp"``, exact for every r, including the
  minimum-norm r = 0 while M < n). ``get="ntk"`` uses instead the NTK of the MLP truncated after layer l
  (l hidden layers and a linear readout): the infinite-width network with l hidden layers *trained*
  on the m clean examples by gradient flow to convergence. Layer 0 is the raw-input probe
  (K_0 = x·x'/d).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import numpy as np

from nwcorrupt import kernels as _kernels
from nwcorrupt import mlp as _mlp
from nwcorrupt._checks import (
    check_array,
    check_choice,
    check_labels,
    check_matrix,
    check_nonneg_float,
    check_positive_int,
    check_same_size,
    check_seed,
)
from nwcorrupt.arch import MLP, check_arch

__all__ = [
    "KERNEL_GETS",
    "Probe",
    "Regressor",
    "solve",
    "fit",
    "fit_regression",
    "regression_errors",
    "with_bias",
    "clean_subsets",
    "representations",
    "layer_kernel",
    "layer_kernels",
    "kernel_regression",
    "kernel_scores",
]

#: the infinite-width baselines of :func:`kernel_scores`
KERNEL_GETS = ("nngp", "ntk")


def _features(name: str, features: Any) -> np.ndarray:
    return np.asarray(check_matrix(name, features), np.float64)


def _absolute_ridge(phi: np.ndarray, ridge: Any, relative: bool) -> float:
    lam = check_nonneg_float("ridge", ridge)
    if relative:
        lam *= float(np.einsum("ij,ij->", phi, phi)) / phi.shape[0]
    return lam


def solve(features: Any, targets: Any, *, ridge: float = 0.0, ridge_relative: bool = False) -> np.ndarray:
    """Least-squares (``ridge = 0``, minimum norm) or ridge weights W (F, K) with ΦW ≈ targets.

    Args:
      features: Φ, (M, F) finite.
      targets: (M, K) or (M,) finite targets (a 1-D target gives W of shape (F,)).
      ridge: λ >= 0 (absolute, or relative with ``ridge_relative``: λ · trace(ΦΦᵀ)/M).
      ridge_relative: interpret ``ridge`` relative to the mean squared feature norm.

    Returns:
      float64 weights minimising ‖ΦW − Y‖²_F + λ‖W‖²_F (the minimum-norm minimiser at λ = 0).
    """
    phi = _features("features", features)
    y = np.asarray(check_array("targets", targets), np.float64)
    if y.ndim not in (1, 2):
        raise ValueError(f"targets must be (M,) or (M, K), got shape {y.shape}")
    check_same_size("targets", y.shape[0], "features", phi.shape[0])
    lam = _absolute_ridge(phi, ridge, ridge_relative)
    m, f = phi.shape
    if lam == 0.0:
        w = np.linalg.lstsq(phi, y, rcond=None)[0]
    elif f <= m:
        w = np.linalg.solve(phi.T @ phi + lam * np.eye(f), phi.T @ y)
    else:
        w = phi.T @ np.linalg.solve(phi @ phi.T + lam * np.eye(m), y)
    if not np.all(np.isfinite(w)):
        raise FloatingPointError("the probe's solve produced non-finite weights; add a ridge")
    return w


@dataclasses.dataclass(frozen=True, eq=False)
class Probe:
    """A linear classifier on features: scores Φ W, prediction argmax.

    Attributes:
      weights: (F, C) float64.
      ridge: the absolute λ the weights were fitted with.
    """

    weights: np.ndarray
    ridge: float = 0.0

    @property
    def num_classes(self) -> int:
        return int(self.weights.shape[1])

    def scores(self, features: Any) -> np.ndarray:
        """(T, C) scores Φ W of (T, F) features."""
        phi = _features("features", features)
        check_same_size("features", phi.shape[1], "the probe", self.weights.shape[0], "features")
        return phi @ self.weights

    def predict(self, features: Any) -> np.ndarray:
        """(T,) int predicted classes (argmax of the scores)."""
        return np.argmax(self.scores(features), axis=1)

    def accuracy(self, features: Any, labels: Any) -> float:
        """Fraction of rows whose predicted class is ``labels`` (T,)."""
        pred = self.predict(features)
        y = check_labels("labels", labels, n=pred.shape[0], num_classes=self.num_classes, data_name="features")
        return float(np.mean(pred == y))


def fit(
    features: Any, labels: Any, *, num_classes: int, ridge: float = 0.0, ridge_relative: bool = False
) -> Probe:
    """Fit a linear probe to one-hot targets of ``labels`` (see :func:`solve`).

    Args:
      features: (M, F) representations of M clean examples.
      labels: (M,) int clean labels in [0, num_classes).
      num_classes: C.
      ridge, ridge_relative: see :func:`solve`.
    """
    c = check_positive_int("num_classes", num_classes)
    phi = _features("features", features)
    y = check_labels("labels", labels, n=phi.shape[0], num_classes=c, data_name="features")
    w = solve(phi, np.eye(c)[y], ridge=ridge, ridge_relative=ridge_relative)
    return Probe(weights=w, ridge=_absolute_ridge(phi, ridge, ridge_relative))


@dataclasses.dataclass(frozen=True, eq=False)
class Regressor:
    """A linear regressor on features: predictions Φ W (W (F,) or (F, K))."""

    weights: np.ndarray
    ridge: float = 0.0

    def predict(self, features: Any) -> np.ndarray:
        phi = _features("features", features)
        check_same_size("features", phi.shape[1], "the regressor", self.weights.shape[0], "features")
        return phi @ self.weights


def fit_regression(features: Any, targets: Any, *, ridge: float = 0.0, ridge_relative: bool = False) -> Regressor:
    """Fit a linear regressor to real targets (M,) or (M, K) (see :func:`solve`)."""
    phi = _features("features", features)
    return Regressor(weights=solve(phi, targets, ridge=ridge, ridge_relative=ridge_relative),
                     ridge=_absolute_ridge(phi, ridge, ridge_relative))


def regression_errors(predictions: Any, targets: Any) -> dict[str, float]:
    """``{"mse", "mae", "mape"}`` of predictions against targets (same shape).

    MAPE is mean |prediction − target| / |target| (a fraction, not a percentage); it needs
    every target to be non-zero.
    """
    p = np.asarray(check_array("predictions", predictions), np.float64)
    t = np.asarray(check_array("targets", targets), np.float64)
    if p.shape != t.shape:
        raise ValueError(f"predictions have shape {p.shape} but targets {t.shape}; they must match")
    if np.any(t == 0):
        raise ValueError("targets contain zeros; MAPE (relative error) needs non-zero targets")
    err = p - t
    return {"mse": float(np.mean(err**2)), "mae": float(np.mean(np.abs(err))),
            "mape": float(np.mean(np.abs(err) / np.abs(t)))}


def with_bias(features: Any, scale: float = 1.0) -> np.ndarray:
    """(M, F + 1) features with a constant column ``scale`` appended (a probe with a bias)."""
    phi = _features("features", features)
    return np.concatenate([phi, np.full((phi.shape[0], 1), float(scale))], axis=1)


def clean_subsets(
    labels: Any, m_per_class: int, *, num_classes: int, num_subsets: int = 1, seed: int = 0, pool: Any = None
) -> np.ndarray:
    """Random class-balanced subsets of a clean pool: (num_subsets, m_per_class · C) row indices.

    Subset s takes, from each class, ``m_per_class`` rows drawn without replacement (numpy
    ``default_rng([seed, s])``, so subset s does not depend on how many are drawn); rows are
    sorted within a subset.

    Args:
      labels: (N,) int clean labels of the candidate rows.
      m_per_class: m >= 1 examples per class.
      num_classes: C (every class must have at least m rows in the pool).
      num_subsets: S >= 1.
      seed: subset seed.
      pool: optional (N,) bool mask or int indices restricting the candidate rows.

    Raises:
      ValueError: when a class of the pool has fewer than m rows.
    """
    c = check_positive_int("num_classes", num_classes)
    y = check_labels("labels", labels, num_classes=c)
    m = check_positive_int("m_per_class", m_per_class)
    s = check_positive_int("num_subsets", num_subsets)
    seed = check_seed("seed", seed)
    rows = np.arange(y.shape[0])
    if pool is not None:
        pool = np.asarray(pool)
        if pool.dtype == bool:
            check_same_size("pool", pool.shape[0], "labels", y.shape[0])
            rows = rows[pool]
        else:
            rows = np.unique(pool.astype(np.int64))
            if rows.size and (rows[0] < 0 or rows[-1] >= y.shape[0]):
                raise ValueError(f"pool indices must lie in [0, {y.shape[0]}), got [{rows[0]}, {rows[-1]}]")
    by_class = [rows[y[rows] == k] for k in range(c)]
    short = [(k, len(r)) for k, r in enumerate(by_class) if len(r) < m]
    if short:
        k, n = min(short, key=lambda t: t[1])
        raise ValueError(
            f"m_per_class={m} exceeds the clean pool: class {k} has only {n} clean rows "
            f"(expected at most {min(len(r) for r in by_class)} per class)"
        )
    out = np.empty((s, m * c), np.int64)
    for i in range(s):
        rng = np.random.default_rng([seed, i])
        out[i] = np.sort(np.concatenate([rng.choice(r, m, replace=False) for r in by_class]))
    return out


def representations(
    arch: MLP, params: Any, x: Any, layers: Any = None, *, width_scale: int = 1
) -> dict[int, np.ndarray]:
    """``{layer: (N, F_layer) features}`` of an MLP (see :func:`nwcorrupt.mlp.layer_features`).

    ``layers`` defaults to every layer 0..L (inputs, hidden post-activations, outputs).
    """
    check_arch(arch)
    layers = range(arch.depth + 1) if layers is None else layers
    return {int(l): np.asarray(_mlp.layer_features(arch, params, x, l, width_scale=width_scale))
            for l in layers}


def _truncated(arch: MLP, layer: Any) -> tuple[MLP, int]:
    check_arch(arch)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= int(layer) <= arch.depth - 1:
        raise ValueError(
            f"layer must be an integer in [0, {arch.depth - 1}] for depth={arch.depth} "
            f"(0: inputs, 1..{arch.depth - 1}: hidden layers), got {layer!r}"
        )
    if arch.W_std == 0:
        raise ValueError("arch.W_std must be > 0 for the layer kernels (got 0)")
    return dataclasses.replace(arch, depth=int(layer) + 1), int(layer)


@functools.partial(jax.jit, static_argnums=(0, 4, 5, 6))
def _kernel_layers_jit(arch, gram, diag1, diag2, get, d, symmetric):
    return _kernels.kernel_layers(arch, gram, diag1, diag2, get=get, input_dim=d, symmetric=symmetric)


def layer_kernels(arch: MLP, x1: Any, x2: Any = None, *, get: str = "nngp") -> dict[int, np.ndarray]:
    """:func:`layer_kernel` of every layer l = 0..L − 1 at once (one pass of the kernel recursion).

    Returns ``{l: (N1, N2) float64}``; computed in the default JAX float dtype (use
    :func:`nwcorrupt.precision.x64` for float64).
    """
    check_choice("get", get, KERNEL_GETS)
    _truncated(arch, 0)
    x1 = check_matrix("x1", x1)
    x2 = x1 if x2 is None else check_matrix("x2", x2)
    check_same_size("x2", x2.shape[1], "x1", x1.shape[1], "features")
    a = np.asarray(x1, np.float64)
    b = a if x2 is x1 else np.asarray(x2, np.float64)
    d = a.shape[1]
    gram = a @ b.T / d
    out = {0: gram}
    if arch.depth > 1:
        per = _kernel_layers_jit(arch, gram, np.einsum("ij,ij->i", a, a) / d,
                                 None if b is a else np.einsum("ij,ij->i", b, b) / d, get, d, b is a)
        for l in range(1, arch.depth):
            k = np.asarray(getattr(per[l], get), np.float64)  # layer l + 1 of the recursion
            out[l] = (k - arch.b_std**2) / arch.W_std**2 if get == "nngp" else k
    if get == "ntk":  # Θ of the depth-1 network (a linear model of x) for layer 0
        out[0] = np.asarray(_kernels.kernel(dataclasses.replace(arch, depth=1), a, None if b is a else b,
                                            get="ntk").ntk, np.float64)
    return out


def layer_kernel(arch: MLP, layer: int, x1: Any, x2: Any = None, *, get: str = "nngp") -> np.ndarray:
    """The infinite-width kernel of layer ``layer``'s features (module docstring), (N1, N2).

    ``get="nngp"``: K_l(x, x') = lim (1/n) Σ_i σ(h^l_i(x)) σ(h^l_i(x')) = (NNGP_{l+1} − b_std²)/W_std²,
    with NNGP_{l+1} the NNGP of ``arch`` truncated to depth l + 1 (K_0 = x·x'/d).
    ``get="ntk"``: the NTK of ``arch`` truncated to depth l + 1.
    Computed by :func:`nwcorrupt.kernels.kernel` in the default JAX float dtype (use
    :func:`nwcorrupt.precision.x64` for float64).
    """
    check_choice("get", get, KERNEL_GETS)
    sub, _ = _truncated(arch, layer)
    k = getattr(_kernels.kernel(sub, x1, x2, get=get), get)
    k = np.asarray(k, np.float64)
    if get == "nngp":
        k = (k - sub.b_std**2) / sub.W_std**2
    return k


def kernel_regression(
    k_train: Any, k_test_train: Any, labels: Any, *, num_classes: int, ridge: float = 0.0, ridge_relative: bool = True
) -> np.ndarray:
    """(T, C) scores K(x_test, X)(K + λI)⁻¹ onehot(labels), float64 numpy.

    λ = ``ridge`` · trace(K)/M with ``ridge_relative`` (the default), else ``ridge``; λ = 0 is the
    minimum-norm least-squares solution (``numpy.linalg.lstsq``).
    """
    c = check_positive_int("num_classes", num_classes)
    k_tr = np.asarray(check_matrix("k_train", k_train), np.float64)
    if k_tr.shape[0] != k_tr.shape[1]:
        raise ValueError(f"k_train must be square (M, M), got shape {k_tr.shape}")
    k_te = np.asarray(check_matrix("k_test_train", k_test_train), np.float64)
    check_same_size("k_test_train", k_te.shape[1], "k_train", k_tr.shape[0], "columns")
    y = check_labels("labels", labels, n=k_tr.shape[0], num_classes=c, data_name="k_train")
    lam = check_nonneg_float("ridge", ridge)
    if ridge_relative:
        lam *= float(np.trace(k_tr)) / k_tr.shape[0]
    targets = np.eye(c)[y]
    if lam == 0.0:
        alpha = np.linalg.lstsq(k_tr, targets, rcond=None)[0]
    else:
        alpha = np.linalg.solve(k_tr + lam * np.eye(k_tr.shape[0]), targets)
    out = k_te @ alpha
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the kernel regression produced non-finite scores; add a ridge")
    return out


def kernel_scores(
    arch: MLP,
    layer: int,
    x_train: Any,
    labels: Any,
    x_test: Any,
    *,
    num_classes: int,
    get: str = "nngp",
    ridge: float = 0.0,
    ridge_relative: bool = True,
) -> np.ndarray:
    """(T, C) scores of the infinite-width baseline: kernel regression on one-hot targets.

    K(x_test, X)(K + λI)⁻¹ onehot(labels) with K = :func:`layer_kernel` and λ = ``ridge`` (relative
    to trace(K)/M by default, as :func:`fit` with ``ridge_relative``), solved in float64 numpy
    (minimum-norm least squares at λ = 0).
    """
    xtr = check_matrix("x_train", x_train)
    xte = check_matrix("x_test", x_test)
    check_same_size("x_test", xte.shape[1], "x_train", xtr.shape[1], "features")
    return kernel_regression(layer_kernel(arch, layer, xtr, get=get), layer_kernel(arch, layer, xte, xtr, get=get),
                             labels, num_classes=num_classes, ridge=ridge, ridge_relative=ridge_relative)
