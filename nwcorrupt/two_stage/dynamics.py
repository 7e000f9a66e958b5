"""The two-layer weight-shared CNN of the two-stage study, trained by full-batch gradient descent.

Model (m filters per output sign j ∈ {+1, −1}, weights W of shape (2, m, d), row 0 for j = +1):

    f(W, x) = F₊₁(x) − F₋₁(x),   F_j(x) = (1/m) Σ_r Σ_{p=1,2} σ(⟨w_{j,r}, x^(p)⟩),

σ(z) = max(z, 0)^q (q = 1: ReLU; q ≥ 2: polynomial ReLU), second layer fixed at ±1/m, w ~ N(0, σ₀² I).
Loss: logistic, ℓ(z) = log(1 + e^{−z}) of the margin z = ỹ f(x), averaged over the n examples;
gradient descent with a constant step η on the first layer.

**Signal–noise decomposition.** Every gradient is a combination of the patches yμ and ξ_i, so
w_{j,r}(t) − w_{j,r}(0) lies in span{μ, ξ_1..ξ_n} and is written exactly (for d ≥ n + 1 and
independent patches) as

    w_{j,r}(t) = w_{j,r}(0) + j γ_{j,r}(t) μ/‖μ‖² + Σ_i ρ_{j,r,i}(t) ξ_i/‖ξ_i‖²,

with the coefficients found by the exact least-squares projection on that basis (the ξ_i are not
exactly orthogonal to each other or to μ). With ξ ⟂ μ, γ_{j,r} = j⟨w_{j,r} − w_{j,r}(0), μ⟩. Gradient
descent moves them by (ℓ'_i = ℓ'(ỹ_i f(x_i)) < 0)

    γ_{j,r} ← γ_{j,r} − (η/(nm)) Σ_i ℓ'_i ỹ_i y_i σ'(⟨w_{j,r}, y_i μ⟩) ‖μ‖²,
    ρ_{j,r,i} ← ρ_{j,r,i} − (η/(nm)) j ℓ'_i ỹ_i σ'(⟨w_{j,r}, ξ_i⟩) ‖ξ_i‖²,

which the test suite checks step by step. :func:`simulate` runs one seed, :func:`simulate_seeds`
several at once (``jax.vmap`` over the seeds' data and initialisations).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_int, check_positive_float, check_positive_int, check_real, check_seed
from nwcorrupt.two_stage import data as _data

__all__ = [
    "Trajectory",
    "decompose",
    "forward",
    "init",
    "logistic_loss",
    "simulate",
    "simulate_seeds",
]


@dataclasses.dataclass(frozen=True)
class Trajectory:
    """What one gradient-descent run logged at S steps (for :func:`simulate_seeds`, every array
    field has a leading seed axis R).

    Attributes:
      t: (S,) the logged step numbers (0 = initialisation).
      fit_clean: (S,) fraction of clean rows fitted (ỹ f > 0, ỹ = y).
      fit_flipped: (S,) fraction of flipped rows fitted to their noisy label (memorised); NaN-free:
        0 when no row is flipped.
      gamma: (S, 2, m) signal coefficients γ_{j,r}.
      rho: (S, 2, m, n) noise coefficients ρ_{j,r,i}.
      loss: (S, n) per-example training loss ℓ(ỹ_i f(x_i)).
      test_iid: (S,) test accuracy on fresh iid examples (true labels).
      test_study: (S,) test accuracy on the study's law (training noise + small fresh noise).
      flipped: (n,) bool mask of the flipped rows.
      data: the training set (for several seeds: a tuple of them).
    """

    t: np.ndarray
    fit_clean: np.ndarray
    fit_flipped: np.ndarray
    gamma: np.ndarray
    rho: np.ndarray
    loss: np.ndarray
    test_iid: np.ndarray
    test_study: np.ndarray
    flipped: np.ndarray
    data: object

    @property
    def train_loss(self) -> np.ndarray:
        """(S,) mean training loss."""
        return self.loss.mean(axis=-1)

    @property
    def train_accuracy(self) -> np.ndarray:
        """(S,) fraction of rows fitted to their observed label."""
        n_f = self.flipped.sum(axis=-1)[..., None]
        n = self.flipped.shape[-1]
        return ((n - n_f) * self.fit_clean + n_f * self.fit_flipped) / n


def init(key, m: int, d: int, sigma0: float) -> jax.Array:
    """First-layer weights W (2, m, d), entries N(0, σ₀²)."""
    return sigma0 * jax.random.normal(key, (2, m, d))


def _act(z, q: int):
    r = jnp.maximum(z, 0.0)
    return r if q == 1 else r**q


def forward(w, x, q: int = 1):
    """f(W, x) (k,) for weights W (2, m, d) and patches x (k, 2, d)."""
    pre = jnp.einsum("jrd,kpd->kjrp", w, x)
    f = _act(pre, q).sum(axis=-1).mean(axis=-1)  # (k, 2): F_{+1}, F_{-1}
    return f[:, 0] - f[:, 1]


def logistic_loss(margin):
    """ℓ(z) = log(1 + e^{−z}), stable for every z."""
    return jax.nn.softplus(-margin)


def decompose(w, w0, basis_pinv, mu_sq, xi_sq):
    """(γ (2, m), ρ (2, m, n)) of W from the pseudo-inverse of the basis [μ, ξ_1..ξ_n] (see module doc)."""
    coef = jnp.einsum("jrd,bd->jrb", w - w0, basis_pinv)
    sign = jnp.array([1.0, -1.0])[:, None]
    return sign * coef[..., 0] * mu_sq, coef[..., 1:] * xi_sq


def _basis_pinv(mu: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """(n + 1, d) pseudo-inverse of B = [μ, ξ_1..ξ_n], computed with unit columns for conditioning."""
    b = np.concatenate([mu[None, :], xi], axis=0).T  # (d, n + 1)
    norms = np.linalg.norm(b, axis=0)
    return np.linalg.pinv(b / norms) / norms[:, None]


def _check(n, d, m, mu_norm, tau, sigma_xi, sigma0, lr, steps, log_every, q, n_test, study_noise):
    n, d, m = check_positive_int("n", n), check_positive_int("d", d), check_positive_int("m", m)
    if d < n + 1:
        raise ValueError(f"d must be at least n + 1 = {n + 1} for the exact signal-noise decomposition, got d={d}")
    return dict(
        n=n,
        d=d,
        m=m,
        mu_norm=check_positive_float("mu_norm", mu_norm),
        tau=_data.check_tau("tau", tau),
        sigma_xi=check_positive_float("sigma_xi", sigma_xi),
        sigma0=check_real("sigma0", sigma0, lo=0.0),
        lr=check_positive_float("lr", lr),
        steps=check_positive_int("steps", steps),
        log_every=check_positive_int("log_every", log_every),
        q=check_int("q", q, lo=1),
        n_test=check_positive_int("n_test", n_test),
        study_noise=check_real("study_noise", study_noise, lo=0.0),
    )


@functools.partial(jax.jit, static_argnames=("steps", "log_every", "q", "m"))
def _run(key, x, y_noisy, xt_iid, yt_iid, xt_study, yt_study, pinv, mu_sq, xi_sq, flipped, *, sigma0, lr, steps,
         log_every, q, m):  # fmt: skip
    d = x.shape[-1]
    w0 = init(key, m, d, sigma0).astype(x.dtype)
    clean = ~flipped
    n_clean = jnp.maximum(clean.sum(), 1)
    n_flip = jnp.maximum(flipped.sum(), 1)

    def loss_fn(w):
        return logistic_loss(y_noisy * forward(w, x, q)).mean()

    grad = jax.grad(loss_fn)

    def log(w):
        margin = y_noisy * forward(w, x, q)
        fitted = margin > 0
        gamma, rho = decompose(w, w0, pinv, mu_sq, xi_sq)
        acc_iid = jnp.mean(jnp.sign(forward(w, xt_iid, q)) == yt_iid)
        acc_study = jnp.mean(jnp.sign(forward(w, xt_study, q)) == yt_study)
        return dict(
            fit_clean=(fitted & clean).sum() / n_clean,
            fit_flipped=(fitted & flipped).sum() / n_flip,
            gamma=gamma,
            rho=rho,
            loss=logistic_loss(margin),
            test_iid=acc_iid,
            test_study=acc_study,
            finite=jnp.all(jnp.isfinite(w)),
        )

    def block(w, _):
        w = jax.lax.fori_loop(0, log_every, lambda _, v: v - lr * grad(v), w)
        return w, log(w)

    w_end, logs = jax.lax.scan(block, w0, None, length=steps // log_every)
    first = log(w0)
    out = {k: jnp.concatenate([first[k][None], v]) for k, v in logs.items()}
    out["finite"] = out["finite"] & jnp.all(jnp.isfinite(w_end))
    return out


def _prepare(p: dict, seed: int, tau_neg, orthogonal: bool, exact: bool):
    ds = _data.make_data(p["n"], p["d"], p["mu_norm"], p["tau"], tau_neg=tau_neg, sigma_xi=p["sigma_xi"],
                         orthogonal=orthogonal, exact=exact, seed=seed)  # fmt: skip
    iid = _data.test_set(ds, p["n_test"], "iid")
    study = _data.test_set(ds, p["n_test"], "study", study_noise=p["study_noise"])
    arrays = (
        ds.x,
        ds.y_noisy,
        iid.x,
        iid.y,
        study.x,
        study.y,
        _basis_pinv(ds.mu, ds.xi),
        float(ds.mu @ ds.mu),
        np.sum(ds.xi**2, axis=1),
        ds.flipped,
    )
    return ds, arrays


def simulate_seeds(
    n: int,
    d: int,
    m: int,
    mu_norm: float,
    tau: float,
    *,
    seeds: Sequence[int],
    tau_neg: float | None = None,
    sigma_xi: float = 1.0,
    sigma0: float = 1e-3,
    lr: float = 0.1,
    steps: int = 200,
    log_every: int = 1,
    q: int = 1,
    n_test: int = 1000,
    study_noise: float = 0.1,
    orthogonal: bool = False,
    exact: bool = False,
) -> Trajectory:
    """:func:`simulate` for several seeds at once (one ``vmap``); every array gets a leading seed axis.

    Seed s draws its own training set, test sets and initialisation (key ``fold_in(key(s), 3)``).
    """
    p = _check(n, d, m, mu_norm, tau, sigma_xi, sigma0, lr, steps, log_every, q, n_test, study_noise)
    seeds = [check_seed("seeds", s) for s in seeds]
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    if p["steps"] % p["log_every"]:
        raise ValueError(f"steps ({p['steps']}) must be a multiple of log_every ({p['log_every']})")
    prepared = [_prepare(p, s, tau_neg, orthogonal, exact) for s in seeds]
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    stacked = [jnp.asarray(np.stack(column)) for column in zip(*(arrays for _, arrays in prepared))]
    stacked = [a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating) else a for a in stacked]
    keys = jnp.stack([jax.random.fold_in(jax.random.key(s), 3) for s in seeds])
    run = functools.partial(_run, sigma0=p["sigma0"], lr=p["lr"], steps=p["steps"], log_every=p["log_every"],
                            q=p["q"], m=p["m"])  # fmt: skip
    out = jax.device_get(jax.vmap(run)(keys, *stacked))
    finite = np.asarray(out.pop("finite"))
    if not finite.all():
        bad = int(np.argmax(~finite.all(axis=0)))
        raise ValueError(
            f"lr={p['lr']}: gradient descent diverged (non-finite weights at logged step "
            f"{bad * p['log_every']} of seed {seeds[int(np.argmax(~finite.all(axis=1)))]}); use a smaller lr"
        )
    t = np.arange(p["steps"] // p["log_every"] + 1) * p["log_every"]
    flipped = np.stack([ds.flipped for ds, _ in prepared])
    arr = {k: np.asarray(v, dtype=np.float64) for k, v in out.items()}
    return Trajectory(t=t, flipped=flipped, data=tuple(ds for ds, _ in prepared), **arr)


def simulate(
    n: int,
    d: int,
    m: int,
    mu_norm: float,
    tau: float,
    *,
    tau_neg: float | None = None,
    sigma_xi: float = 1.0,
    sigma0: float = 1e-3,
    lr: float = 0.1,
    steps: int = 200,
    log_every: int = 1,
    q: int = 1,
    n_test: int = 1000,
    study_noise: float = 0.1,
    orthogonal: bool = False,
    exact: bool = False,
    seed: int = 0,
) -> Trajectory:
    """Train the two-layer CNN by full-batch GD on a fresh signal–noise set; log every ``log_every`` steps.

    Args:
      n, d, m: examples, patch dimension (d ≥ n + 1), filters per sign.
      mu_norm: ‖μ‖; tau: τ₊ (``tau_neg`` = τ₋ defaults to τ₊), flip probabilities in [0, 0.5).
      sigma_xi, sigma0: noise scale σ_ξ and initialisation scale σ₀.
      lr, steps: constant step η and number of GD steps (a multiple of ``log_every``).
      q: σ = ReLU^q.
      n_test: size of each test set; study_noise: s of the study's test law.
      orthogonal, exact: ξ ⟂ μ; exact flip counts.
      seed: data, test sets and initialisation.

    Returns:
      a :class:`Trajectory` (S = steps/log_every + 1 logged steps, t = 0 first).

    Raises:
      ValueError: for bad arguments (before any work), or naming ``lr`` when GD diverges.
    """
    tr = simulate_seeds(n, d, m, mu_norm, tau, seeds=[seed], tau_neg=tau_neg, sigma_xi=sigma_xi, sigma0=sigma0,
                        lr=lr, steps=steps, log_every=log_every, q=q, n_test=n_test, study_noise=study_noise,
                        orthogonal=orthogonal, exact=exact)  # fmt: skip
    fields = {f.name: getattr(tr, f.name) for f in dataclasses.fields(tr)}
    out = {k: (v[0] if k not in ("t", "data") else v) for k, v in fields.items()}
    out["data"] = tr.data[0]
    return Trajectory(**out)

