"""Additive noise on real-valued targets (regression): ỹ = y + ζ on a fraction r of rows.

Laws of ζ (:data:`REGRESSION_DISTS`; the defaults are those of Li et al.'s regression
experiments): ``"gaussian"`` N(loc, scale²) (default N(0, 40²); N(10, 15²) is
``loc=10, scale=15``), ``"gamma"`` a centred Gamma(shape, scale) (default Gamma(2, 15) − 30),
``"student_t"`` scale · t_df (default df = 1, the Cauchy law: no mean, no variance).

Row j's ζ is the inverse CDF of its own uniform (:func:`nwcorrupt.labels.row_uniforms`,
label stream), so a realisation is a pure function of (model, y, seed) and independent
of batching, as for the class-label models.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import stats

from nwcorrupt._checks import check_array, check_choice, check_positive_float, check_probability, check_real, check_seed
from nwcorrupt.labels.models import row_uniforms

__all__ = ["REGRESSION_DISTS", "RegressionNoise"]

REGRESSION_DISTS = ("gaussian", "gamma", "student_t")


@dataclasses.dataclass(frozen=True)
class RegressionNoise:
    """ỹ = y + m ζ, m ~ Bernoulli(r) per row, ζ from ``dist``.

    Attributes:
      r: fraction of noisy rows.
      dist: ``"gaussian"``, ``"gamma"`` (centred) or ``"student_t"``.
      loc, scale: location and scale (Gaussian mean and std; Gamma scale θ; Student-t scale).
      shape: Gamma shape k.
      df: Student-t degrees of freedom.
    """

    r: float
    dist: str = "gaussian"
    loc: float = 0.0
    scale: float = 40.0
    shape: float = 2.0
    df: float = 1.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "r", check_probability("r", self.r))
        check_choice("dist", self.dist, REGRESSION_DISTS)
        check_real("loc", self.loc)
        check_positive_float("scale", self.scale)
        check_positive_float("shape", self.shape)
        check_positive_float("df", self.df)

    def _ppf(self, u: np.ndarray) -> np.ndarray:
        if self.dist == "gaussian":
            return self.loc + self.scale * stats.norm.ppf(u)
        if self.dist == "gamma":
            return stats.gamma.ppf(u, self.shape, scale=self.scale) - self.shape * self.scale
        return self.loc + self.scale * stats.t.ppf(u, self.df)

    def noise_moments(self) -> tuple[float, float]:
        """(E ζ, Var ζ); NaN mean for t with df ≤ 1, inf variance for df ≤ 2."""
        if self.dist == "gaussian":
            return self.loc, self.scale**2
        if self.dist == "gamma":
            return 0.0, self.shape * self.scale**2
        mean = self.loc if self.df > 1 else float("nan")
        var = self.scale**2 * self.df / (self.df - 2) if self.df > 2 else float("inf")
        return mean, var

    def target_moments(self, y) -> tuple[np.ndarray, np.ndarray]:
        """Per-row mean and variance of ỹ: (y + r Eζ, r E[ζ²] − (r Eζ)²)."""
        y = np.asarray(check_array("y", y), np.float64)
        m, v = self.noise_moments()
        return y + self.r * m, np.full(y.shape, self.r * (v + m * m) - (self.r * m) ** 2)

    def apply(self, y, seed: int, *, indices: Any = None) -> np.ndarray:
        """Noisy targets, same shape as y ((N,) or (N, k); one ζ per row and output)."""
        y = np.asarray(check_array("y", y), np.float64)
        if y.ndim not in (1, 2):
            raise ValueError(f"y must be (N,) or (N, k) targets, got shape {y.shape}")
        n = y.shape[0]
        idx = np.arange(n) if indices is None else np.asarray(indices)
        if idx.shape != (n,):
            raise ValueError(f"indices must have shape ({n},), got {idx.shape}")
        k = 1 if y.ndim == 1 else y.shape[1]
        u = row_uniforms(check_seed("seed", seed), idx, count=1 + k)
        zeta = self._ppf(u[:, 1:])
        noisy = y.reshape(n, k) + (u[:, :1] < self.r) * zeta
        return noisy.reshape(y.shape)
