"""Signal–noise data of the two-stage study: x = [yμ, ξ] with binary labels and class-conditional flips.

Each example has two patches of dimension d: a **signal patch** y·μ (μ = ‖μ‖ e₁, a fixed
direction) and a **noise patch** ξ ~ N(0, σ_ξ² I_d) (or, with ``orthogonal=True``, ξ drawn in the
orthogonal complement of μ: N(0, σ_ξ² (I − μμᵀ/‖μ‖²))). The true label y is ±1 with probability
1/2 each. The observed label ỹ flips a positive with probability τ₊ and a negative with
probability τ₋ (:class:`nwcorrupt.labels.Binary`, or exactly ⌊τN_class⌋ flips per class with
``exact=True``). The signal-to-noise ratio is SNR = ‖μ‖/(σ_ξ √d).

Two test laws, both with **true** labels:

- ``iid``: fresh examples from the training law;
- ``study``: the training noise vectors again plus small fresh noise: example k picks a training
  row i uniformly and is x = [y_i μ, ξ_i + s ζ], ζ ~ N(0, σ_ξ² I), s = ``study_noise``. A network that
  memorised ξ_i with a flipped label misclassifies it, so after memorisation its error is about the
  flip fraction (the law on which the source measures the Stage II loss of accuracy).

Everything is a pure function of (parameters, seed): the patches and labels come from
``jax.random`` keys derived from the seed, the flips from the label stream of
:mod:`nwcorrupt.labels` (row j's flip depends only on (seed, j)).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import labels as _labels
from nwcorrupt._checks import check_positive_float, check_positive_int, check_real, check_seed

__all__ = ["SignalNoiseData", "TestSet", "check_tau", "make_data", "mu_norm_for", "snr", "test_set"]

_TRAIN_STREAM, _IID_STREAM, _STUDY_STREAM = 0, 1, 2


@dataclasses.dataclass(frozen=True)
class SignalNoiseData:
    """A signal–noise training set (n examples, patch dimension d).

    Attributes:
      x: (n, 2, d) patches, x[:, 0] = y μ and x[:, 1] = ξ.
      y: (n,) true labels in {−1, +1} (float).
      y_noisy: (n,) observed labels in {−1, +1} (float).
      flipped: (n,) bool, ``y_noisy != y``.
      mu: (d,) the signal vector.
      sigma_xi: the noise scale σ_ξ.
      orthogonal: whether ξ ⟂ μ.
      seed: the seed it was drawn from.
    """

    x: np.ndarray
    y: np.ndarray
    y_noisy: np.ndarray
    flipped: np.ndarray
    mu: np.ndarray
    sigma_xi: float
    orthogonal: bool
    seed: int

    @property
    def n(self) -> int:
        return int(self.x.shape[0])

    @property
    def d(self) -> int:
        return int(self.x.shape[2])

    @property
    def xi(self) -> np.ndarray:
        """(n, d) noise patches."""
        return self.x[:, 1]

    @property
    def snr(self) -> float:
        return snr(float(np.linalg.norm(self.mu)), self.d, self.sigma_xi)


@dataclasses.dataclass(frozen=True)
class TestSet:
    """Test examples with true labels: x (k, 2, d), y (k,) in {−1, +1}."""

    x: np.ndarray
    y: np.ndarray


def snr(mu_norm: float, d: int, sigma_xi: float = 1.0) -> float:
    """SNR = ‖μ‖ / (σ_ξ √d)."""
    return float(mu_norm) / (float(sigma_xi) * math.sqrt(d))


def mu_norm_for(n_snr2: float, n: int, d: int, sigma_xi: float = 1.0) -> float:
    """The ‖μ‖ that gives n·SNR² = ``n_snr2``: σ_ξ √(d · n_snr2 / n)."""
    check_positive_float("n_snr2", n_snr2)
    return float(sigma_xi) * math.sqrt(check_positive_int("d", d) * n_snr2 / check_positive_int("n", n))


def check_tau(name: str, tau) -> float:
    """A flip probability in [0, 0.5) (at 0.5 the observed labels carry no signal)."""
    return check_real(name, tau, lo=0.0, hi=0.5, hi_open=True)


def _noise(key, k: int, d: int, mu: np.ndarray, sigma_xi: float, orthogonal: bool) -> np.ndarray:
    xi = np.asarray(jax.random.normal(key, (k, d), dtype=jnp.float32), dtype=np.float64) * sigma_xi
    if orthogonal:
        u = mu / np.linalg.norm(mu)
        xi = xi - np.outer(xi @ u, u)
    return xi


def _signs(key, k: int) -> np.ndarray:
    return np.where(np.asarray(jax.random.bernoulli(key, 0.5, (k,))), 1.0, -1.0)


def make_data(
    n: int,
    d: int,
    mu_norm: float,
    tau: float,
    *,
    tau_neg: float | None = None,
    sigma_xi: float = 1.0,
    orthogonal: bool = False,
    exact: bool = False,
    seed: int = 0,
) -> SignalNoiseData:
    """Draw a signal–noise training set.

    Args:
      n: number of examples (≥ 1); d: patch dimension (≥ 1).
      mu_norm: ‖μ‖ > 0 (μ = ‖μ‖ e₁).
      tau: τ₊, the flip probability of positives, in [0, 0.5); ``tau_neg`` (τ₋) defaults to it.
      sigma_xi: noise scale σ_ξ > 0.
      orthogonal: draw ξ ⟂ μ.
      exact: flip exactly ⌊τ₊N₊⌋ positives and ⌊τ₋N₋⌋ negatives.
      seed: 32-bit seed.
    """
    n, d = check_positive_int("n", n), check_positive_int("d", d)
    mu_norm = check_positive_float("mu_norm", mu_norm)
    tau = check_tau("tau", tau)
    tau_neg = tau if tau_neg is None else check_tau("tau_neg", tau_neg)
    sigma_xi = check_positive_float("sigma_xi", sigma_xi)
    seed = check_seed("seed", seed)
    key = jax.random.fold_in(jax.random.key(seed), _TRAIN_STREAM)
    ky, kx = jax.random.split(key)
    mu = np.zeros(d)
    mu[0] = mu_norm
    y = _signs(ky, n)
    xi = _noise(kx, n, d, mu, sigma_xi, bool(orthogonal))
    y01 = (y > 0).astype(np.int32)
    noisy01 = _labels.Binary(tau, tau_neg, exact=bool(exact)).apply(y01, seed)
    y_noisy = np.where(noisy01 == 1, 1.0, -1.0)
    x = np.stack([y[:, None] * mu[None, :], xi], axis=1)
    return SignalNoiseData(x, y, y_noisy, y_noisy != y, mu, sigma_xi, bool(orthogonal), seed)


def test_set(data: SignalNoiseData, k: int, law: str = "iid", *, study_noise: float = 0.1) -> TestSet:
    """k test examples with true labels from ``law`` (``"iid"`` or ``"study"``; see the module doc).

    The draw depends on (data.seed, law, k) only, so every model trained on ``data`` is scored on
    the same test examples.
    """
    k = check_positive_int("k", k)
    if law not in ("iid", "study"):
        raise ValueError(f"law must be 'iid' or 'study', got {law!r}")
    s = check_real("study_noise", study_noise, lo=0.0)
    stream = _IID_STREAM if law == "iid" else _STUDY_STREAM
    key = jax.random.fold_in(jax.random.key(data.seed), stream)
    k1, k2 = jax.random.split(key)
    if law == "iid":
        y = _signs(k1, k)
        xi = _noise(k2, k, data.d, data.mu, data.sigma_xi, data.orthogonal)
    else:
        rows = np.asarray(jax.random.randint(k1, (k,), 0, data.n))
        y = data.y[rows]
        xi = data.xi[rows] + s * _noise(k2, k, data.d, data.mu, data.sigma_xi, data.orthogonal)
    return TestSet(np.stack([y[:, None] * data.mu[None, :], xi], axis=1), y)
