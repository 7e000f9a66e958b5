"""Noise-averaged (mean-field) first-layer overlaps of a corrupted training set.

For large d the first-layer overlaps ⟨x̃_α, x̃_β⟩ of corrupted points
concentrate on their average over the noise (docs/science.md#mean-field-first-layer). With ε = 1 − p,
inner product ⟨x, x'⟩ = (1/d) Σ_i x_i x'_i, feature mean x̄ = (1/d) Σ_i x_i and
the noise moments (μ, μ₂) of the model (``model.moments``):

Replacement (x̃_i = x_i with probability ε, else u_i ~ D_u):
  E⟨x̃_α, x̃_α⟩ = ε ⟨x_α, x_α⟩ + (1 − ε) μ₂
  E⟨x̃_α, x̃_β⟩ = ε² ⟨x_α, x_β⟩ + ε(1 − ε) μ (x̄_α + x̄_β) + (1 − ε)² μ²        (α ≠ β)

Additive (x̃ = ε x + (1 − ε) ξ, ξ_i i.i.d. with moments μ, μ₂; the supported
laws have μ = 0, μ₂ = 1):
  E⟨x̃_α, x̃_β⟩ = ε² ⟨x_α, x_β⟩ + ε(1 − ε) μ (x̄_α + x̄_β) + (1 − ε)² (μ² + δ_αβ (μ₂ − μ²))

A clean point x* against a corrupted one (both models):
  E⟨x*, x̃_α⟩ = ε ⟨x*, x_α⟩ + (1 − ε) μ x̄*

For per-example normalised data (⟨x, x⟩ = 1, x̄ = 0) and additive Gaussian
noise these reduce to ε²⟨x_α, x_β⟩ + δ_αβ (1 − ε)² and ε⟨x*, x_α⟩.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt._checks import check_matrix, check_probability

__all__ = [
    "KINDS",
    "OverlapPoly",
    "Overlaps",
    "empirical_overlaps",
    "meanfield_overlaps",
    "meanfield_self_overlaps",
    "noise_kind",
    "overlap_poly",
]

#: The corruption kinds the theory covers (``noise.kind`` of :mod:`nwcorrupt.corruption`).
KINDS = ("replacement", "additive")


@dataclasses.dataclass(frozen=True)
class Overlaps:
    """Noise-averaged first-layer overlaps (all already divided by d).

    Attributes:
      train: (N, N) E⟨x̃_α, x̃_β⟩ among corrupted training points (diagonal included).
      test_train: (M, N) E⟨x*, x̃_α⟩ between clean test and corrupted training points.
      test_diag: (M,) ⟨x*, x*⟩ of the clean test points.
    """

    train: np.ndarray
    test_train: np.ndarray
    test_diag: np.ndarray

    @property
    def train_diag(self) -> np.ndarray:
        """(N,) E⟨x̃_α, x̃_α⟩."""
        return np.diagonal(self.train).copy()


def noise_kind(noise) -> str:
    """The kind (``"replacement"`` or ``"additive"``) of a corruption model; raises ``ValueError`` otherwise.

    Args:
      noise: a model of :mod:`nwcorrupt.corruption` (only its ``kind`` attribute is read).
    """
    kind = getattr(noise, "kind", None)
    if kind not in KINDS:
        raise ValueError(f"noise must be a corruption model of kind {KINDS} (nwcorrupt.corruption), got {noise!r}")
    return kind


def _self_overlaps(kind: str, eps: float, sq: np.ndarray, mean: np.ndarray, mu: float, mu2: float) -> np.ndarray:
    """E⟨x̃_α, x̃_α⟩ from ⟨x_α, x_α⟩ (``sq``) and x̄_α (``mean``), module docstring."""
    if kind == "replacement":
        return eps * sq + (1 - eps) * mu2
    return eps**2 * sq + 2 * eps * (1 - eps) * mu * mean + (1 - eps) ** 2 * mu2


def meanfield_self_overlaps(noise, p: float, x_train) -> np.ndarray:
    """E⟨x̃_α, x̃_α⟩ (N,) float64: the diagonal of :func:`meanfield_overlaps`' ``train``, in O(N d).

    Args: as in :func:`meanfield_overlaps`.
    """
    kind = noise_kind(noise)
    eps = 1.0 - check_probability("p", p)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    mu, mu2 = (float(m) for m in noise.moments)
    return _self_overlaps(kind, eps, np.einsum("nd,nd->n", x, x) / x.shape[1], x.mean(axis=1), mu, mu2)


def meanfield_overlaps(noise, p: float, x_train, x_test=None) -> Overlaps:
    """Noise-averaged first-layer overlaps of a corrupted training set and clean test points.

    Args:
      noise: a corruption model (``Replacement`` or ``Additive``); only its kind
        and moments (μ, μ₂) enter.
      p: corruption level in [0, 1] (ε = 1 − p).
      x_train: (N, d) clean training inputs (any scaling; not required to be normalised).
      x_test: (M, d) clean test inputs, or None for an empty test set.

    Returns:
      :class:`Overlaps` in float64.
    """
    kind = noise_kind(noise)
    eps = 1.0 - check_probability("p", p)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    n, d = x.shape
    xt = np.zeros((0, d)) if x_test is None else np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    if xt.shape[1] != d:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has {d}; they must match")
    mu, mu2 = (float(m) for m in noise.moments)
    gram = x @ x.T / d
    mean = x.mean(axis=1)
    train = eps**2 * gram + eps * (1 - eps) * mu * (mean[:, None] + mean[None, :]) + (1 - eps) ** 2 * mu**2
    train[np.diag_indices(n)] = _self_overlaps(kind, eps, np.diagonal(gram), mean, mu, mu2)
    test_train = eps * (xt @ x.T / d) + (1 - eps) * mu * xt.mean(axis=1)[:, None]
    return Overlaps(train=train, test_train=test_train, test_diag=np.sum(xt * xt, axis=1) / d)


def empirical_overlaps(x_noisy, x_test=None) -> Overlaps:
    """The same overlaps computed from one corrupted realisation (for Monte Carlo checks).

    Args:
      x_noisy: (N, d) corrupted training inputs.
      x_test: (M, d) clean test inputs or None.
    """
    x = np.asarray(check_matrix("x_noisy", x_noisy), dtype=np.float64)
    d = x.shape[1]
    xt = np.zeros((0, d)) if x_test is None else np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    return Overlaps(train=x @ x.T / d, test_train=xt @ x.T / d, test_diag=np.sum(xt * xt, axis=1) / d)


# ---------------------------------------------------------------------------
# Overlaps as polynomials in ε
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OverlapPoly:
    """Mean-field overlaps as polynomials in ε = 1 − p (coefficients of ε⁰, ε¹, ε²).

    Attributes:
      train: (3, N, N) coefficients of the off-diagonal E⟨x̃_α, x̃_β⟩ (the diagonal
        of these arrays is not used).
      train_diag: (3, N) coefficients of E⟨x̃_α, x̃_α⟩.
      test_train: (2, M, N) coefficients of E⟨x*, x̃_α⟩ (linear in ε).
      test_diag: (M,) ⟨x*, x*⟩ (independent of ε: test points are clean).
      mu, mu2: the noise moments E[u], E[u²].
    """

    train: np.ndarray
    train_diag: np.ndarray
    test_train: np.ndarray
    test_diag: np.ndarray
    mu: float
    mu2: float

    def at(self, eps) -> Overlaps:
        """The overlaps at ε (numpy float64), identical to :func:`meanfield_overlaps` at p = 1 − ε."""
        e = np.array([1.0, eps, eps * eps])
        train = np.tensordot(e, self.train, axes=1)
        n = train.shape[0]
        train[np.diag_indices(n)] = e @ self.train_diag
        return Overlaps(train=train, test_train=np.tensordot(e[:2], self.test_train, axes=1), test_diag=self.test_diag)


def overlap_poly(noise, x_train, x_test) -> OverlapPoly:
    """Coefficients in ε of the mean-field overlaps (module docstring), float64.

    Args:
      noise: ``Replacement`` or ``Additive`` model (only kind and moments enter).
      x_train: (N, d) clean training inputs.
      x_test: (M, d) clean test inputs.
    """
    kind = noise_kind(noise)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    xt = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    n, d = x.shape
    if xt.shape[1] != d:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has {d}; they must match")
    mu, mu2 = (float(m) for m in noise.moments)
    gram = x @ x.T / d
    m = x.mean(axis=1)
    msum = m[:, None] + m[None, :]
    train = np.stack([np.full((n, n), mu * mu), mu * msum - 2 * mu * mu, gram - mu * msum + mu * mu])
    sq = np.diagonal(gram).copy()
    if kind == "replacement":
        diag = np.stack([np.full(n, mu2), sq - mu2, np.zeros(n)])
    else:
        diag = np.stack([np.full(n, mu2), 2 * mu * m - 2 * mu2, sq - 2 * mu * m + mu2])
    mt = xt.mean(axis=1)
    tt0 = np.broadcast_to(mu * mt[:, None], (xt.shape[0], n))
    tt = np.stack([tt0, xt @ x.T / d - tt0])
    return OverlapPoly(train, diag, tt, np.sum(xt * xt, axis=1) / d, mu, mu2)
