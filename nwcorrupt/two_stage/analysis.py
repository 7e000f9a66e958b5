"""Reading a two-stage trajectory: the stages, the small-loss rule, early stopping, the lazy counterpart.

- :func:`stages`: Stage I is the first run of logged steps at which every clean row is fitted and
  no flipped row is (``fit_clean ≥ 1 − tol`` and ``fit_flipped ≤ tol``); its last step is the
  **end of Stage I**. Stage II ends when the flipped rows are memorised as well (every row fitted).
  Without a Stage I window the flipped rows were fitted before the clean ones were.
- :func:`small_loss`: the small-loss selection rule "loss < threshold ⇒ clean" at every logged step,
  scored against the true clean mask (precision = clean fraction of the selected rows, recall =
  selected fraction of the clean rows). At the logistic loss, loss < log 2 ⇔ the row is fitted, so at
  the end of Stage I the log 2 rule selects exactly the clean rows. :func:`selection_curve` sweeps
  the threshold at one step.
- :func:`ntk` and :func:`lazy`: the lazy (kernel) counterpart. The network's tangent kernel at
  initialisation has, for ReLU filters and m → ∞, the expectation (2/m)·Θ(x, x') with

      Θ(x, x') = Σ_{p, p'} ⟨x^(p), x'^(p')⟩ κ(ρ_{pp'}),   κ(ρ) = (π − arccos ρ)/(2π),

  ρ_{pp'} the cosine between the two patches (the probability that a Gaussian filter is active on
  both). :func:`lazy` runs gradient descent of the linearised network in function space with that
  kernel, the same logistic loss, step and steps (f = 0 at t = 0, the σ₀ → 0 limit): what the
  network would do if its features stayed those of its initialisation.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_int, check_positive_float, check_positive_int, check_real
from nwcorrupt.two_stage import data as _data
from nwcorrupt.two_stage import dynamics as _dynamics

__all__ = [
    "LOG2",
    "LazyTrajectory",
    "Stages",
    "early_stopping",
    "lazy",
    "ntk",
    "selection_curve",
    "small_loss",
    "stages",
]

#: The small-loss threshold of the logistic loss: ℓ(z) < log 2 ⇔ z > 0.
LOG2 = math.log(2.0)


@dataclasses.dataclass(frozen=True)
class Stages:
    """Stage boundaries of one trajectory, as logged step numbers (None: not reached).

    Attributes:
      window_start, window_end: first and last logged step of Stage I (all clean rows fitted, no
        flipped row fitted); None when there is no such window.
      memorised: first logged step at which every row, flipped ones included, is fitted.
    """

    window_start: int | None
    window_end: int | None
    memorised: int | None

    @property
    def has_window(self) -> bool:
        return self.window_end is not None


def _check_tol(tol) -> float:
    return check_real("tol", tol, lo=0.0, hi=0.5, hi_open=True)


def stages(t, fit_clean, fit_flipped, *, tol: float = 0.0) -> Stages:
    """Stage I window and memorisation time from one run's (S,) logs (see the module doc).

    Args:
      t: (S,) logged steps; fit_clean, fit_flipped: (S,) fractions (:class:`Trajectory` fields).
      tol: slack on "all" and "none" (0 = exact).
    """
    tol = _check_tol(tol)
    t, fc, ff = (np.asarray(a) for a in (t, fit_clean, fit_flipped))
    if not (t.ndim == fc.ndim == ff.ndim == 1 and t.shape == fc.shape == ff.shape):
        raise ValueError(f"t, fit_clean, fit_flipped must be (S,) arrays of one length, got {t.shape}, {fc.shape}, "
                         f"{ff.shape} (pass one seed's logs)")  # fmt: skip
    ok = (fc >= 1.0 - tol - 1e-12) & (ff <= tol + 1e-12)
    start = end = None
    if ok.any():
        i = int(np.argmax(ok))
        j = i
        while j + 1 < ok.size and ok[j + 1]:
            j += 1
        start, end = int(t[i]), int(t[j])
    done = (fc >= 1.0 - tol - 1e-12) & (ff >= 1.0 - tol - 1e-12)
    return Stages(start, end, int(t[int(np.argmax(done))]) if done.any() else None)


def small_loss(loss, flipped, *, threshold: float = LOG2) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall (both (S,)) of "loss < threshold ⇒ clean" at every logged step.

    Args:
      loss: (S, n) per-example losses; flipped: (n,) bool.

    Precision is 1 where nothing is selected (no flipped row was let through); recall is 1 where
    there is no clean row.
    """
    loss = np.asarray(loss, dtype=np.float64)
    flipped = np.asarray(flipped, dtype=bool)
    if loss.ndim != 2 or flipped.shape != (loss.shape[1],):
        raise ValueError(f"loss must be (S, n) and flipped (n,), got {loss.shape} and {flipped.shape}")
    threshold = check_real("threshold", threshold)
    sel = loss < threshold
    clean = ~flipped
    n_sel = sel.sum(axis=1)
    hit = (sel & clean).sum(axis=1)
    precision = np.where(n_sel > 0, hit / np.maximum(n_sel, 1), 1.0)
    recall = np.full(loss.shape[0], 1.0) if not clean.any() else hit / clean.sum()
    return precision, recall


def selection_curve(loss_at_step, flipped) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(thresholds, precision, recall) of the small-loss rule at one step, over every distinct threshold.

    Threshold k is just above the k-th smallest loss, so selecting k rows; sorted increasingly.
    """
    loss = np.asarray(loss_at_step, dtype=np.float64)
    flipped = np.asarray(flipped, dtype=bool)
    if loss.ndim != 1 or flipped.shape != loss.shape:
        raise ValueError(f"loss_at_step and flipped must be (n,) arrays, got {loss.shape} and {flipped.shape}")
    order = np.argsort(loss, kind="stable")
    clean_sorted = ~flipped[order]
    k = np.arange(1, loss.size + 1)
    hits = np.cumsum(clean_sorted)
    n_clean = max(int((~flipped).sum()), 1)
    return np.nextafter(loss[order], np.inf), hits / k, hits / n_clean


def early_stopping(t, test, st: Stages) -> dict:
    """Test accuracy at the end of Stage I (None without a window), at its best and at the last step."""
    t, test = np.asarray(t), np.asarray(test, dtype=np.float64)
    at_end = None
    if st.window_end is not None:
        at_end = float(test[int(np.flatnonzero(t == st.window_end)[0])])
    best = int(np.argmax(test))
    return {"at_stage1_end": at_end, "best": float(test[best]), "best_step": int(t[best]), "final": float(test[-1])}


def ntk(x1, x2) -> np.ndarray:
    """Θ(x1, x2) (k1, k2) of the module doc for patches x1 (k1, P, d), x2 (k2, P, d), in float64.

    Computed in NumPy float64 whatever JAX's precision: at coincident patches (ρ = 1) the
    arc-cosine has a √(1 − ρ) singularity, where float32 rounding of ρ would cost ~1e-4.
    """
    x1, x2 = np.asarray(x1, dtype=np.float64), np.asarray(x2, dtype=np.float64)
    if x1.ndim != 3 or x2.ndim != 3 or x1.shape[1:] != x2.shape[1:]:
        raise ValueError(f"x1 and x2 must be (k, P, d) patch arrays of one (P, d), got {x1.shape} and {x2.shape}")
    g = np.einsum("apd,bqd->abpq", x1, x2)
    n1 = np.broadcast_to(np.einsum("apd,apd->ap", x1, x1)[:, None, :, None], g.shape)
    n2 = np.broadcast_to(np.einsum("bqd,bqd->bq", x2, x2)[None, :, None, :], g.shape)
    prod = n1 * n2
    rho = np.clip(np.divide(g, np.sqrt(prod), out=np.zeros_like(g), where=prod > 0), -1.0, 1.0)
    kappa = (math.pi - np.arccos(rho)) / (2.0 * math.pi)
    return np.sum(g * kappa, axis=(2, 3))


@dataclasses.dataclass(frozen=True)
class LazyTrajectory:
    """Lazy (kernel) gradient descent logged at steps t (S,): fit_clean, fit_flipped, test_iid,
    test_study (S,) as in :class:`~nwcorrupt.two_stage.Trajectory`; loss (S, n)."""

    t: np.ndarray
    fit_clean: np.ndarray
    fit_flipped: np.ndarray
    loss: np.ndarray
    test_iid: np.ndarray
    test_study: np.ndarray


def lazy(data: _data.SignalNoiseData, m: int, *, lr: float = 0.1, steps: int = 200, log_every: int = 1,
         n_test: int = 1000, study_noise: float = 0.1) -> LazyTrajectory:  # fmt: skip
    """Gradient descent of the linearised ReLU network (kernel (2/m)·Θ, f(0) = 0) on ``data``.

    Same loss, step and logging as :func:`~nwcorrupt.two_stage.simulate` with the same (m, lr,
    steps, log_every), scored on the same test sets (``n_test``, ``study_noise``).
    """
    m = check_positive_int("m", m)
    lr = check_positive_float("lr", lr)
    steps, log_every = check_positive_int("steps", steps), check_positive_int("log_every", log_every)
    if steps % log_every:
        raise ValueError(f"steps ({steps}) must be a multiple of log_every ({log_every})")
    check_int("n_test", n_test, lo=1)
    iid = _data.test_set(data, n_test, "iid")
    study = _data.test_set(data, n_test, "study", study_noise=study_noise)
    scale = 2.0 / m
    k_tr, k_iid, k_st = (jnp.asarray(scale * ntk(a, data.x)) for a in (data.x, iid.x, study.x))
    y = jnp.asarray(data.y_noisy, k_tr.dtype)
    flipped = jnp.asarray(data.flipped)
    n = y.shape[0]

    def log(f, fi, fs):
        margin = y * f
        fitted = margin > 0
        return (
            (fitted & ~flipped).sum() / jnp.maximum((~flipped).sum(), 1),
            (fitted & flipped).sum() / jnp.maximum(flipped.sum(), 1),
            _dynamics.logistic_loss(margin),
            jnp.mean(jnp.sign(fi) == iid.y),
            jnp.mean(jnp.sign(fs) == study.y),
        )

    def step(carry, _):
        f, fi, fs = carry
        g = -y * jax.nn.sigmoid(-y * f)  # ∂ℓ(ỹ f)/∂f
        return (f - (lr / n) * k_tr @ g, fi - (lr / n) * k_iid @ g, fs - (lr / n) * k_st @ g), None

    @jax.jit
    def run():
        z = (jnp.zeros(n, k_tr.dtype), jnp.zeros(n_test, k_tr.dtype), jnp.zeros(n_test, k_tr.dtype))

        def block(carry, _):
            carry, _ = jax.lax.scan(step, carry, None, length=log_every)
            return carry, log(*carry)

        _, logs = jax.lax.scan(block, z, None, length=steps // log_every)
        first = log(*z)
        return [jnp.concatenate([a[None], b]) for a, b in zip(first, logs)]

    fc, ff, loss, ti, ts = (np.asarray(a, dtype=np.float64) for a in jax.device_get(run()))
    if not np.all(np.isfinite(loss)):
        raise ValueError(f"lr={lr}: lazy gradient descent diverged (non-finite loss); use a smaller lr")
    t = np.arange(steps // log_every + 1) * log_every
    return LazyTrajectory(t, fc, ff, loss, ti, ts)
