"""Finite-d fluctuations of kernel predictors trained on one noise realisation, and their SNR.

A corrupted training set X̃ is one random draw; its first-layer overlaps
G_αβ = ⟨x̃_α, x̃_β⟩ and g*_α = ⟨x*, x̃_α⟩ (⟨a, b⟩ = a·b/d) fluctuate around the
mean-field values of :mod:`nwcorrupt.theory` by O(1/√d). Linearising the exact
predictor f = K(x*, X̃) K(X̃, X̃)⁻¹ Y in these fluctuations gives its variance
over noise realisations (docs/theory.md, "Fluctuations and SNR"):

  δf_i = Σ_α a_α δg*_α + Σ_α b_α δG_αα + Σ_{α<β} c_αβ δG_αβ,
  a_α = T*_α A_αi,
  b_α = S*_α A_αi − B_α S^d_α A_αi − Σ_{β≠α} F1_αβ (B_α A_βi + B_β A_αi),
  c_αβ = −F12_αβ (B_α A_βi + B_β A_αi),

with A = K⁻¹Y, B = K⁻¹k*, T* = ∂k*/∂g*, S* = ∂k*/∂G_αα, S^d = dK_αα/dG_αα,
F1 = ∂K_αβ/∂G_αα, F12 = ∂K_αβ/∂G_αβ. Feature entries z_αj = x̃_αj are
independent with mean m, variance v and central moments κ3, κ4
(:func:`entry_moments`), which gives the exact variance of this form
(:func:`form_variance`):

  Var δf_i = (1/d²) Σ_j { Σ_α [v L² + 2κ3 b L + (κ4 − v²) b²]_αj + ½ Σ_{α≠β} c_αβ² v_αj v_βj },
  L_αj = a_α x*_j + 2 b_α m_αj + Σ_{β≠α} c_αβ m_βj.

``order="linear"`` evaluates this at the given p (O((M + C) N² d)); ``order="leading"``
at ε = 0, where every training point is pure noise and the train kernel is
θ_o 11ᵀ + Δ I: then every sum is over exchangeable terms and the cost is
O(N C) per test point (transfer coefficients of :func:`nwcorrupt.theory.transfer`).

Conventions as in :mod:`nwcorrupt.theory`: ``get`` (``"ntk"`` or ``"nngp"``) picks the kernel and
``ridge`` is an absolute ridge added to the train-train kernel diagonal (not the relative
``diag_reg`` of :mod:`nwcorrupt.predict`). All kernels come from the recursion of
:mod:`nwcorrupt.kernels` through the public functions of :mod:`nwcorrupt.theory`.

Kernels, sensitivities and :func:`sample_outputs` run in JAX's default float type (the solve of
``order="linear"`` is float64 SciPy): enable x64 (``nwcorrupt.precision.x64()``).
Measured float32 error of :func:`output_variance` (erf L = 3, N = 40, d = 1000, p = 0.7 and 0.997,
additive and U[0, 1] replacement): ≤ 5e-6 relative.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import theory as _th
from nwcorrupt._checks import check_array, check_choice, check_matrix, check_positive_int, check_probability

__all__ = [
    "ORDERS",
    "EntryMoments",
    "PureNoiseSensitivities",
    "ScalingFit",
    "SNRScaling",
    "entry_moments",
    "fit_exponents",
    "form_variance",
    "noise_law",
    "output_variance",
    "predicted_mean",
    "predicted_snr",
    "pure_noise_sensitivities",
    "sample_outputs",
    "sample_snr",
    "snr_scaling",
]

ORDERS = ("leading", "linear")

#: Central moments (variance, κ3, κ4) of the unit-variance additive laws of ``corruption.Additive``.
_ADDITIVE_CENTRAL = {"gaussian": (1.0, 0.0, 3.0), "uniform": (1.0, 0.0, 1.8), "laplace": (1.0, 0.0, 6.0)}


# ---------------------------------------------------------------------------
# Noise laws and per-entry moments
# ---------------------------------------------------------------------------


def _atoms_central(values, weights) -> tuple[float, float, float, float]:
    x = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    mean = float(w @ x)
    c = x - mean
    return mean, float(w @ c**2), float(w @ c**3), float(w @ c**4)


def noise_law(noise) -> tuple[float, float, float, float]:
    """(mean, variance, κ3, κ4) of one noise entry: central moments of u (replacement) or ξ (additive).

    Args:
      noise: ``corruption.Replacement`` (laws uniform, gaussian, salt_pepper, marginal) or
        ``corruption.Additive`` (gaussian, uniform, laplace).

    Returns:
      floats (E u, Var u, E(u − Eu)³, E(u − Eu)⁴).
    """
    kind = _th.noise_kind(noise)
    dist = getattr(noise, "dist", None)
    if kind == "additive":
        if dist not in _ADDITIVE_CENTRAL:
            raise ValueError(f"noise.dist must be one of {sorted(_ADDITIVE_CENTRAL)} for additive noise, got {dist!r}")
        return (0.0, *_ADDITIVE_CENTRAL[dist])
    if dist == "uniform":
        w = noise.high - noise.low
        return (noise.low + noise.high) / 2, w * w / 12, 0.0, w**4 / 80
    if dist == "gaussian":
        s2 = float(noise.scale) ** 2
        return float(noise.loc), s2, 0.0, 3 * s2 * s2
    if dist == "salt_pepper":
        q = float(noise.salt_prob)
        return _atoms_central([noise.low, noise.high], [1 - q, q])
    if dist == "marginal":
        n = len(noise.atoms)
        return _atoms_central(noise.atoms, np.full(n, 1.0 / n))
    raise ValueError(f"noise.dist {dist!r} has no known higher moments; expected uniform, gaussian, salt_pepper or marginal")


@dataclasses.dataclass(frozen=True)
class EntryMoments:
    """Mean and central moments of the corrupted entries z_αj = x̃_αj (independent over α, j).

    Attributes (arrays broadcastable to (N, d), float64):
      mean: E z; var: E(z − Ez)²; k3: E(z − Ez)³; k4: E(z − Ez)⁴.
    """

    mean: np.ndarray
    var: np.ndarray
    k3: np.ndarray
    k4: np.ndarray


def entry_moments(noise, p: float, x_train) -> EntryMoments:
    """Per-entry moments of a corrupted training set at corruption level p (ε = 1 − p).

    Replacement: z = x with probability ε, else u; raw moments E z^k = ε x^k + (1 − ε) E u^k.
    Additive: z = ε x + (1 − ε) ξ, so m = ε x + (1 − ε) E ξ and the central moments of ξ scale by (1 − ε)^k.

    Args:
      noise: corruption model; p: corruption level in [0, 1]; x_train: (N, d) clean inputs.

    Returns:
      :class:`EntryMoments` of shape (N, d) (additive: var, k3, k4 are scalars broadcast).
    """
    kind = _th.noise_kind(noise)
    eps = 1.0 - check_probability("p", p)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    mu, var, k3, k4 = noise_law(noise)
    s = 1.0 - eps
    if kind == "additive":
        full = np.ones_like(x)
        return EntryMoments(eps * x + s * mu, full * s**2 * var, full * s**3 * k3, full * s**4 * k4)
    r1 = mu
    r2 = var + mu * mu
    r3 = k3 + 3 * mu * var + mu**3
    r4 = k4 + 4 * mu * k3 + 6 * mu * mu * var + mu**4
    e1 = eps * x + s * r1
    e2 = eps * x**2 + s * r2
    e3 = eps * x**3 + s * r3
    e4 = eps * x**4 + s * r4
    v = e2 - e1**2
    c3 = e3 - 3 * e1 * e2 + 2 * e1**3
    c4 = e4 - 4 * e1 * e3 + 6 * e1**2 * e2 - 3 * e1**4
    return EntryMoments(e1, np.maximum(v, 0.0), c3, np.maximum(c4, 0.0))


# ---------------------------------------------------------------------------
# Variance of a linear form in the overlap fluctuations
# ---------------------------------------------------------------------------


def form_variance(a, b, c, x_star, moments: EntryMoments):
    """Exact variance of Σ_α a_α δg*_α + Σ_α b_α δG_αα + Σ_{α<β} c_αβ δG_αβ.

    δG, δg* are the deviations of ⟨x̃_α, x̃_β⟩ and ⟨x*, x̃_α⟩ from their means for
    independent entries with the given moments (the module docstring has the formula).

    Args:
      a, b: (..., N) coefficients of the test–train and diagonal overlaps.
      c: (..., N, N) symmetric coefficients of the off-diagonal overlaps (diagonal ignored).
      x_star: (d,) the clean test point.
      moments: :class:`EntryMoments` of shape (N, d).

    Returns:
      (...) variances (jnp, default float type).
    """
    m, v, k3, k4 = (jnp.broadcast_to(jnp.asarray(t), jnp.shape(moments.mean)) for t in
                    (moments.mean, moments.var, moments.k3, moments.k4))
    n, d = m.shape
    c = jnp.asarray(c)
    c = jnp.where(jnp.eye(n, dtype=bool), 0.0, c)
    return _form_variance(jnp.asarray(a), jnp.asarray(b), c, jnp.asarray(x_star), m, v, k3, k4, v @ v.T)


@jax.jit
def _form_variance(a, b, c, xs, m, v, k3, k4, vv):
    d = m.shape[1]
    lin = a[..., :, None] * xs + 2 * b[..., :, None] * m + c @ m
    bb = b[..., :, None]
    s1 = jnp.sum(v * lin * lin + 2 * k3 * bb * lin + (k4 - v * v) * bb * bb, axis=(-2, -1))
    s2 = 0.5 * jnp.sum(c * c * vv, axis=(-2, -1))
    return (s1 + s2) / (d * d)


# ---------------------------------------------------------------------------
# Output variance of the kernel predictor
# ---------------------------------------------------------------------------


def _prepare(arch, noise, p, x_train, y_train, x_test, get, num_classes, centre, ridge):
    _th.check_arch_get(arch, get)
    p = check_probability("p", p)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    xt = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    if xt.shape[1] != x.shape[1]:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has {x.shape[1]}; they must match")
    _th.noise_kind(noise)
    noise_law(noise)
    reg = _th.check_ridge(ridge)
    y = _th.as_targets(y_train, x.shape[0], num_classes)
    if centre:
        y = y - y.mean(axis=1, keepdims=True)
    return p, x, xt, y, reg


@functools.partial(jax.jit, static_argnames=("arch", "get", "quad_order"))
def _linear_sensitivities(g, tt, td, hyper, *, arch, get, quad_order):
    """Train and test-train kernels at the mean-field overlaps and their entrywise first derivatives.

    Returns K_train (N, N), F1 = ∂K_αβ/∂G_αα and F12 = ∂K_αβ/∂G_αβ (zero diagonals), S^d (N,),
    k* (M, N), T* = ∂k*/∂g* and S* = ∂k*/∂G_αα (forward-mode autodiff of :func:`nwcorrupt.theory.pair_kernel`).
    """
    n = g.shape[0]
    gd = jnp.diagonal(g)
    eye = jnp.eye(n, dtype=bool)
    kw = dict(get=get, quad_order=quad_order, hyper=hyper)
    # diagonal pairs are evaluated at g12 = 0 (finite derivatives) and replaced by the single-point kernel
    off, f1, f12, _ = _th.pair_kernel_partials(arch, gd[:, None], jnp.where(eye, 0.0, g), gd[None, :], **kw)
    kd, sd = jax.jvp(lambda q: _th.diag_kernel(arch, q, **kw), (gd,), (jnp.ones_like(gd),))
    ktt = jnp.where(eye, kd[None, :], off)
    kst, _, tstar, sstar = _th.pair_kernel_partials(arch, td[:, None], tt, gd[None, :], **kw)
    return ktt, jnp.where(eye, 0.0, f1), jnp.where(eye, 0.0, f12), sd, kst, tstar, sstar


@jax.jit
def _linear_point(xs, kst, tstar, sstar, a_mat, ktt_inv_kst, f1, f12, sd, p_cls, m, v, k3, k4, vv):
    """Variances (C,) of the outputs at one test point; p_cls = (C, N, d) F12 @ (A_i ∘ m)."""
    d = m.shape[1]
    bt = ktt_inv_kst  # (N,)
    at = a_mat.T  # (C, N)
    a = tstar[None, :] * at
    b = (sstar - bt * sd)[None, :] * at - bt[None, :] * (at @ f1.T) - at * (f1 @ bt)[None, :]
    q = f12 @ (bt[:, None] * m)  # (N, d)
    cm = -(bt[None, :, None] * p_cls) - at[:, :, None] * q[None]
    lin = a[:, :, None] * xs + 2 * b[:, :, None] * m + cm
    bb = b[:, :, None]
    s1 = jnp.sum(v * lin * lin + 2 * k3 * bb * lin + (k4 - v * v) * bb * bb, axis=(1, 2))
    cc = -f12[None] * (bt[None, :, None] * at[:, None, :] + at[:, :, None] * bt[None, None, :])
    s2 = 0.5 * jnp.sum(cc * cc * vv[None], axis=(1, 2))
    return (s1 + s2) / (d * d)


def _linear_variance(arch, noise, p, x, xt, y, reg, get, quad_order):
    ov = _th.meanfield_overlaps(noise, p, x, xt)
    canonical, hyper = _th.split_hyper(arch)
    dt = jnp.result_type(float)
    ktt, f1, f12, sd, kst, tstar, sstar = _linear_sensitivities(
        jnp.asarray(ov.train, dt), jnp.asarray(ov.test_train, dt), jnp.asarray(ov.test_diag, dt), hyper,
        arch=canonical, get=get, quad_order=quad_order,
    )
    import scipy.linalg

    kmat = np.asarray(ktt, dtype=np.float64) + reg * np.eye(x.shape[0])
    cho = scipy.linalg.cho_factor(kmat, lower=True)
    a_mat = jnp.asarray(scipy.linalg.cho_solve(cho, y), dt)  # (N, C)
    b_all = jnp.asarray(scipy.linalg.cho_solve(cho, np.asarray(kst, dtype=np.float64).T), dt)  # (N, M)
    mom = entry_moments(noise, p, x)
    m, v, k3, k4 = (jnp.asarray(np.broadcast_to(t, x.shape), dt) for t in (mom.mean, mom.var, mom.k3, mom.k4))
    vv = v @ v.T
    p_cls = jnp.einsum("ab,bc,bj->caj", f12, a_mat, m)  # (C, N, d)
    out = [
        _linear_point(jnp.asarray(xt[t], dt), kst[t], tstar[t], sstar[t], a_mat, b_all[:, t], f1, f12, sd, p_cls,
                      m, v, k3, k4, vv)
        for t in range(xt.shape[0])
    ]
    return np.asarray(jnp.stack(out), dtype=np.float64)


@dataclasses.dataclass(frozen=True)
class PureNoiseSensitivities:
    """Kernel values and first derivatives at the ε = 0 (pure-noise) point.

    Attributes:
      pure: :class:`nwcorrupt.theory.PureNoise` (θ_d incl. ridge, θ_o, N).
      S_d: dK_αα/dG_αα; T_o, S_o: ∂K_αβ/∂G_αβ and ∂K_αβ/∂G_αα off the diagonal.
      theta_star, T_star, S_star: (M,) test–train kernel and its derivatives w.r.t. ⟨x*, x̃_α⟩ and ⟨x̃_α, x̃_α⟩.
    """

    pure: _th.PureNoise
    S_d: float
    T_o: float
    S_o: float
    theta_star: np.ndarray
    T_star: np.ndarray
    S_star: np.ndarray


def pure_noise_sensitivities(arch, noise, n: int, x_test, *, get: str = "ntk", ridge: float = 0.0,
                             quad_order: int = _th.SERIES_QUAD_ORDER) -> PureNoiseSensitivities:
    """Transfer coefficients at the pure-noise point (μ₂, μ², μ₂) and at (⟨x*,x*⟩, μ x̄*, μ₂).

    Args:
      arch: MLP (``parameterization="ntk"``); noise: corruption model; n: N training points;
      x_test: (M, d) clean test inputs; get: ``"ntk"`` or ``"nngp"``;
      ridge: absolute ridge added to the train kernel diagonal (θ_d).
    """
    _th.check_arch_get(arch, get)
    _th.noise_kind(noise)
    n = check_positive_int("n", n)
    xt = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    reg = _th.check_ridge(ridge)
    quad_order = _th.check_quad_order(quad_order)
    mu, mu2 = (float(t) for t in noise.moments)
    td = np.sum(xt * xt, axis=1) / xt.shape[1]
    dt = jnp.result_type(float)
    train, star = _pure_noise_transfer(arch, get, quad_order, jnp.asarray([mu, mu2], dt), jnp.asarray(td, dt),
                                       jnp.asarray(mu * xt.mean(axis=1), dt))
    fd, sd, theta_o, t_o, s_o = (float(t) for t in train)
    pure = _th.PureNoise(fd + reg, theta_o, n).check_invertible()
    return PureNoiseSensitivities(pure, sd, t_o, s_o, *(np.asarray(t, dtype=np.float64) for t in star))


def _pure_noise_transfer(arch, get, quad_order, moments, td, tt):
    """Transfer coefficients at the pure-noise points (``theory.transfer`` is jitted once per activation)."""
    mu, mu2 = moments[0], moments[1]
    off = _th.transfer(arch, mu2, mu * mu, mu2, get=get, quad_order=quad_order)
    fd, sd = _th.transfer_diag(arch, mu2, get=get, quad_order=quad_order)
    ts = _th.transfer(arch, td, tt, jnp.full_like(td, mu2), get=get, quad_order=quad_order)
    return jnp.stack([fd, sd, off.value, off.T, off.S]), (ts.value, ts.T, ts.S)


def _leading_variance(arch, noise, x, xt, y, reg, get, quad_order):
    n, d = x.shape
    sens = pure_noise_sensitivities(arch, noise, n, xt, get=get, ridge=reg, quad_order=quad_order)
    pn = sens.pure
    mu, var, k3, k4 = noise_law(noise)
    a_mat = np.asarray(pn.solve(jnp.asarray(y)), dtype=np.float64)  # (N, C) = K0⁻¹Y
    beta = sens.theta_star / (pn.delta + n * pn.theta_o)  # (M,): K0⁻¹k* = β 1
    sum_a = a_mat.sum(axis=0)  # (C,)
    sum_a2 = np.sum(a_mat**2, axis=0)
    r_star = np.sum(xt * xt, axis=1) / d  # ⟨x*, x*⟩
    xbar = xt.mean(axis=1)  # x̄*
    # coefficients (M, N, C): a = T* A, b = S* A − β[(S_d + (N−2) S_o) A + S_o ΣA], c_αβ = −T_o β (A_α + A_β)
    a = sens.T_star[:, None, None] * a_mat[None]
    b = (sens.S_star - beta * (sens.S_d + (n - 2) * sens.S_o))[:, None, None] * a_mat[None] \
        - (beta * sens.S_o)[:, None, None] * sum_a[None, None, :]
    c_row = -(sens.T_o * beta)[:, None, None] * ((n - 2) * a_mat[None] + sum_a[None, None, :])  # Σ_{β≠α} c_αβ
    ell = 2 * mu * b + mu * c_row  # L_αj = a_α x*_j + ℓ_α
    s_lin = np.sum(a * a, axis=1) * r_star[:, None] + 2 * np.sum(a * ell, axis=1) * xbar[:, None] + np.sum(ell * ell, axis=1)
    s_k3 = np.sum(b * a, axis=1) * xbar[:, None] + np.sum(b * ell, axis=1)
    s_k4 = np.sum(b * b, axis=1)
    sum_c2 = (sens.T_o * beta)[:, None] ** 2 * (2 * (n - 2) * sum_a2 + 2 * sum_a**2)[None, :]  # Σ_{α≠β} c_αβ²
    return (var * s_lin + 2 * k3 * s_k3 + (k4 - var * var) * s_k4 + 0.5 * var * var * sum_c2) / d


def output_variance(arch, noise, p: float, x_train, y_train, x_test, *, get: str = "ntk", order: str = "leading",
                    ridge: float = 0.0, num_classes: int | None = None, centre: bool = False,
                    quad_order: int | None = None) -> np.ndarray:
    """Variance (N_test, C) of the kernel predictor's outputs over noise realisations of the training set.

    Leading order in 1/d: the overlaps of one corrupted data set are linearised around their
    mean-field values (module docstring, docs/theory.md).

    Args:
      arch: :class:`nwcorrupt.arch.MLP` (``parameterization="ntk"``).
      noise: ``corruption.Replacement`` or ``corruption.Additive``.
      p: corruption level in [0, 1] (ε = 1 − p). Ignored by ``order="leading"`` except for validation.
      x_train: (N, d) clean training inputs; x_test: (M, d) clean test inputs (not corrupted).
      y_train: (N,) integer labels or (N, C) targets.
      get: ``"ntk"`` (t = ∞ gradient flow) or ``"nngp"`` (posterior mean).
      order: ``"leading"``: the ε → 0 limit (pure-noise training set), O(N C) per test point, exact in
        1/d at leading order, with relative corrections O(εN) and O(N/d); ``"linear"``: the
        delta-method variance at the given p with the exact overlap covariance (any ε),
        O((M + C) N² d).
      ridge: absolute ridge added to the train kernel diagonal (not relative like
        ``nwcorrupt.predict``'s ``diag_reg``; see :func:`nwcorrupt.theory.meanfield_ridge`).
      num_classes: C when ``y_train`` holds labels (default max + 1).
      centre: use the centred outputs f_i − (1/C) Σ_c f_c (equivalently targets Y − mean_c Y_c).
      quad_order: Gauss–Hermite nodes per dimension for activations without a closed-form dual
        (default theory.SERIES_QUAD_ORDER for "leading", theory.QUAD_ORDER for "linear").

    Returns:
      float64 numpy array (M, C) of variances (units: squared output).
    """
    check_choice("order", order, ORDERS)
    p, x, xt, y, reg = _prepare(arch, noise, p, x_train, y_train, x_test, get, num_classes, centre, ridge)
    if order == "leading":
        q = _th.SERIES_QUAD_ORDER if quad_order is None else _th.check_quad_order(quad_order)
        return _leading_variance(arch, noise, x, xt, y, reg, get, q)
    q = _th.QUAD_ORDER if quad_order is None else _th.check_quad_order(quad_order)
    return _linear_variance(arch, noise, p, x, xt, y, reg, get, q)


def predicted_mean(arch, noise, p: float, x_train, y_train, x_test, *, get: str = "ntk", order: str = "leading",
                   ridge: float = 0.0, num_classes: int | None = None, centre: bool = False) -> np.ndarray:
    """Mean outputs (M, C) that pair with :func:`output_variance`.

    ``order="leading"``: the first-order mean-field predictor f0 + ε f1 (:func:`nwcorrupt.theory.first_order`);
    ``order="linear"``: the exact mean-field predictor (:func:`nwcorrupt.theory.meanfield_predict`).
    """
    check_choice("order", order, ORDERS)
    p, x, xt, y, reg = _prepare(arch, noise, p, x_train, y_train, x_test, get, num_classes, centre, ridge)
    if order == "leading":
        f0, f1 = _first_order(arch, noise, x, y, xt, get, reg)
        return f0 + (1.0 - p) * f1
    return _th.meanfield_predict(arch, noise, p, x, y, xt, get=get, ridge=reg)


def _first_order(arch, noise, x, y, xt, get, reg):
    """(f0, f1) of theory.first_order from the jitted pure-noise sensitivities (theory's structured assembly)."""
    sens = pure_noise_sensitivities(arch, noise, x.shape[0], xt, get=get, ridge=reg)
    fo = _th.assemble_first_order(
        _th.first_order_inputs(noise, x, xt), y,
        _th.Sensitivities(theta_d=sens.pure.theta_d, theta_o=sens.pure.theta_o, S_o=sens.S_o, T_o=sens.T_o,
                           S_d=sens.S_d, theta_star=sens.theta_star, T_star=sens.T_star, S_star=sens.S_star),
    )
    return fo.f0, fo.f1


def _check_test_labels(y_test, m: int, c: int) -> np.ndarray:
    from nwcorrupt._checks import check_labels

    return check_labels("y_test", y_test, n=m, num_classes=c, data_name="x_test")


def predicted_snr(arch, noise, p: float, x_train, y_train, x_test, y_test, *, get: str = "ntk",
                  order: str = "leading", ridge: float = 0.0, num_classes: int | None = None,
                  centre: bool = False) -> np.ndarray:
    """Predicted SNR (M,) = mean² / variance of the true-class output f_{y*}(x*) over noise realisations.

    Mean from :func:`predicted_mean`, variance from :func:`output_variance` (same ``order``).
    With ``order="leading"``, balanced classes and f0 = 0 (odd σ, C_b = 0, μ = 0, or ``centre=True``),
    this is ε² (f1_{y*})² / V0 with f1 ∝ N and V0 ∝ N/d: SNR ∝ ε² N d.

    Args:
      y_test: (M,) integer true classes of the test points; other arguments as in :func:`output_variance`.
    """
    _, _, xt, y, _ = _prepare(arch, noise, p, x_train, y_train, x_test, get, num_classes, centre, ridge)
    yt = _check_test_labels(y_test, xt.shape[0], y.shape[1])
    mean = predicted_mean(arch, noise, p, x_train, y_train, x_test, get=get, order=order, ridge=ridge,
                          num_classes=num_classes, centre=centre)
    var = output_variance(arch, noise, p, x_train, y_train, x_test, get=get, order=order, ridge=ridge,
                          num_classes=num_classes, centre=centre)
    rows = np.arange(mean.shape[0])
    return mean[rows, yt] ** 2 / var[rows, yt]


# ---------------------------------------------------------------------------
# Sampling: exact kernel predictors on K corrupted data sets
# ---------------------------------------------------------------------------


def sample_outputs(arch, noise, p: float, x_train, y_train, x_test, *, k: int, seed: int = 0, get: str = "ntk",
                   ridge: float = 0.0, num_classes: int | None = None, centre: bool = False,
                   chunk: int = 16, quad_order: int = _th.QUAD_ORDER) -> np.ndarray:
    """Outputs (K, M, C) of the exact kernel predictor trained on K corrupted copies of the training set.

    Copy k is ``noise.apply(x_train, p, seed + k)``. Its exact first-layer overlaps go through the
    infinite-width recursion (:func:`nwcorrupt.theory.kernels_from_overlaps`, i.e.
    :func:`nwcorrupt.kernels.kernel_layers`), then K(x*, X̃)[K(X̃, X̃) + ridge·I]⁻¹Y by a
    batched Cholesky solve; ``chunk`` copies at a time (memory ∝ chunk · N · (N + d)).
    ``ridge`` is absolute (added as it is to every copy's train kernel diagonal).
    """
    k = check_positive_int("k", k)
    check_positive_int("seed", seed, allow_zero=True)
    chunk = check_positive_int("chunk", chunk)
    quad_order = _th.check_quad_order(quad_order)
    p, x, xt, y, reg = _prepare(arch, noise, p, x_train, y_train, x_test, get, num_classes, centre, ridge)
    dt = jnp.result_type(float)
    xj, xtj, yj = jnp.asarray(x, dt), jnp.asarray(xt, dt), jnp.asarray(y, dt)
    chunk = min(chunk, k)
    canonical, hyper = _th.split_hyper(arch)
    out = []
    for s0 in range(seed, seed + k, chunk):
        seeds = [min(s, seed + k - 1) for s in range(s0, s0 + chunk)]  # pad the last chunk: one compiled shape
        xn = jnp.stack([noise.apply(xj, p, s) for s in seeds])
        res = np.asarray(_sample_jit(xn, xtj, yj, reg, hyper, arch=canonical, get=get, quad_order=quad_order),
                         dtype=np.float64)
        out.append(res[: min(chunk, seed + k - s0)])
    return np.concatenate(out)


@functools.partial(jax.jit, static_argnames=("arch", "get", "quad_order"))
def _sample_jit(xn, xt, y, reg, hyper, *, arch, get, quad_order):
    d = xn.shape[-1]
    td = jnp.sum(xt * xt, axis=1) / d

    def one(xk):
        g = jnp.matmul(xk, xk.T, precision=jax.lax.Precision.HIGHEST) / d
        tt = jnp.matmul(xt, xk.T, precision=jax.lax.Precision.HIGHEST) / d
        ov = _th.Overlaps(train=g, test_train=tt, test_diag=td)
        ktt, kst = _th.kernels_from_overlaps(arch, ov, get=get, quad_order=quad_order, hyper=hyper)
        ktt = ktt + reg * jnp.eye(ktt.shape[0], dtype=ktt.dtype)
        chol = jnp.linalg.cholesky(ktt)
        sol = jax.scipy.linalg.cho_solve((chol, True), y)
        return kst @ sol

    return jax.lax.map(one, xn)


def sample_snr(outputs, y_test) -> tuple[np.ndarray, np.ndarray]:
    """Per-test-point (signal², variance) of the true-class output across K noise draws.

    signal² = mean_k(z)² − var_k(z)/K (unbiased for the squared mean), variance with ddof = 1.

    Args:
      outputs: (K, M, C) from :func:`sample_outputs` (K ≥ 2); y_test: (M,) true classes.
    """
    o = np.asarray(check_array("outputs", outputs, ndim=3), dtype=np.float64)
    if o.shape[0] < 2:
        raise ValueError(f"outputs needs K >= 2 noise draws along axis 0, got {o.shape[0]}")
    yt = _check_test_labels(y_test, o.shape[1], o.shape[2])
    z = o[:, np.arange(o.shape[1]), yt]  # (K, M)
    var = z.var(axis=0, ddof=1)
    return z.mean(axis=0) ** 2 - var / o.shape[0], var


# ---------------------------------------------------------------------------
# SNR scaling with ε, N and d
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ScalingFit:
    """Least-squares fit log SNR = a log ε + b log N + c log d + const.

    Attributes:
      exponents: (3,) (a, b, c); stderr: (3,) their standard errors; intercept: const;
      residual_rms: rms residual of log SNR.
    """

    exponents: np.ndarray
    stderr: np.ndarray
    intercept: float
    residual_rms: float


def fit_exponents(eps, n, d, snr) -> ScalingFit:
    """Fit log snr = a log ε + b log N + c log d + const by least squares (standard errors from the residuals).

    Args:
      eps, n, d, snr: (P,) positive values at P grid points (P ≥ 5 for standard errors; each of
        ε, N, d must take at least two values).
    """
    cols = []
    for name, v in (("eps", eps), ("n", n), ("d", d), ("snr", snr)):
        arr = np.asarray(check_array(name, v, ndim=1), dtype=np.float64)
        if np.any(arr <= 0):
            raise ValueError(f"{name} must be positive for a log-log fit, got minimum {arr.min()}")
        cols.append(np.log(arr))
    if len({c.size for c in cols}) != 1:
        raise ValueError(f"eps, n, d and snr must have the same length, got {[c.size for c in cols]}")
    for name, c in zip(("eps", "n", "d"), cols):
        if np.ptp(c) == 0:
            raise ValueError(f"{name} must take at least two distinct values to fit its exponent")
    design = np.stack([cols[0], cols[1], cols[2], np.ones_like(cols[0])], axis=1)
    if cols[0].size < 5:
        raise ValueError(f"a 3-exponent fit with standard errors needs at least 5 grid points, got {cols[0].size}")
    coef, *_ = np.linalg.lstsq(design, cols[3], rcond=None)
    resid = cols[3] - design @ coef
    dof = cols[0].size - 4
    s2 = float(resid @ resid) / dof
    cov = s2 * np.linalg.inv(design.T @ design)
    return ScalingFit(coef[:3], np.sqrt(np.diag(cov)[:3]), float(coef[3]), float(np.sqrt(np.mean(resid**2))))


@dataclasses.dataclass(frozen=True)
class SNRScaling:
    """Measured and predicted SNR on a grid of (ε, N, d), with fitted exponents.

    Attributes:
      eps, n, d: (P,) grid points.
      measured: (P,) pooled SNR of the sampled exact predictors, Σ_t signal²_t / Σ_t var_t over test points.
      predicted: (P,) the same ratio from the theory (:func:`predicted_mean`, :func:`output_variance` at ``order``).
      used: (P,) bool, the points entering the fits (measured SNR > 0: the bias-corrected signal² can
        be negative when the signal is below the sampling error).
      fit, fit_predicted: :class:`ScalingFit` of ``measured`` and ``predicted`` over the used points.
    """

    eps: np.ndarray
    n: np.ndarray
    d: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    used: np.ndarray
    fit: ScalingFit
    fit_predicted: ScalingFit


def snr_scaling(arch, noise, eps_grid, n_grid, d_grid, *, k: int = 50, n_test: int = 20, num_classes: int = 2,
                separation: float = 1.0, noise_std: float = 1.0, get: str = "ntk", ridge: float = 0.0,
                centre: bool = False, order: str = "leading", seed: int = 0) -> SNRScaling:
    """Measure the SNR of the true-class output over K corrupted data sets on the grid ε × N × d and fit exponents.

    Data: for each d, a balanced Gaussian mixture (``data.gaussian_mixture``, seed ``seed``)
    normalised per example; the training set of size N is the first N/C points of every class
    (nested balanced subsets; the same mixture and test points for every N and ε). Noise seeds
    0..K−1 (shared across the grid, so sampling errors are correlated along ε).

    Args:
      eps_grid, n_grid, d_grid: values of ε ∈ (0, 1], N (multiples of ``num_classes``) and d.
      k: noisy data sets per grid point; n_test: clean test points (from the mixture's test set).
      order: the theory used for ``predicted`` (:func:`output_variance`, :func:`predicted_mean`).

    Returns:
      :class:`SNRScaling`.
    """
    from nwcorrupt import data as _data

    check_choice("order", order, ORDERS)

    k = check_positive_int("k", k)
    if k < 2:
        raise ValueError(f"k must be >= 2 noise draws for a variance, got {k}")
    grids = []
    for name, g in (("eps_grid", eps_grid), ("n_grid", n_grid), ("d_grid", d_grid)):
        arr = np.asarray(g, dtype=np.float64).ravel()
        if arr.size < 2 or np.unique(arr).size < 2:
            raise ValueError(f"{name} needs at least two distinct values, got {g!r}")
        grids.append(arr)
    if np.any(grids[0] <= 0) or np.any(grids[0] > 1):
        raise ValueError(f"eps_grid must lie in (0, 1], got {eps_grid!r}")
    for name, g in (("n_grid", grids[1]), ("d_grid", grids[2])):
        if np.any(g < 1) or np.any(g != np.round(g)):
            raise ValueError(f"{name} must hold positive integers, got {g.tolist()}")
    ns, ds = [int(v) for v in grids[1]], [int(v) for v in grids[2]]
    for v in ns:
        if v % num_classes:
            raise ValueError(f"every n_grid entry must be a multiple of num_classes={num_classes}, got {v}")
    rows = []
    for d in ds:
        ds_ = _data.gaussian_mixture(n_train=max(ns), n_test=n_test * num_classes, d=d, num_classes=num_classes,
                                     separation=separation, noise_std=noise_std, seed=seed)
        xall = _data.normalize_examples(ds_.x_train).astype(np.float64)
        xt = _data.normalize_examples(ds_.x_test).astype(np.float64)[:n_test]
        yt = ds_.y_test[:n_test]
        for n in ns:
            # nested balanced subsets: the first N/C training points of every class
            idx = np.concatenate([np.flatnonzero(ds_.y_train == c)[: n // num_classes] for c in range(num_classes)])
            x, y = xall[idx], ds_.y_train[idx]
            y_onehot = np.eye(num_classes)[y]
            for e in grids[0]:
                p = 1.0 - float(e)
                outs = sample_outputs(arch, noise, p, x, y_onehot, xt, k=k, get=get, ridge=ridge,
                                      centre=centre)
                sig2, var = sample_snr(outs, yt)
                kw = dict(get=get, ridge=ridge, centre=centre, order=order)
                mean_th = predicted_mean(arch, noise, p, x, y_onehot, xt, **kw)
                var_th = output_variance(arch, noise, p, x, y_onehot, xt, **kw)
                sel = np.arange(len(yt)), yt
                rows.append((float(e), n, d, float(sig2.sum() / var.sum()),
                             float(np.sum(mean_th[sel] ** 2) / np.sum(var_th[sel]))))
    arr = np.asarray(rows, dtype=np.float64)
    meas = arr[:, 3]
    ok = meas > 0
    if ok.sum() < 5:
        raise ValueError(f"only {int(ok.sum())} grid points have a measured SNR > 0 (signal below the sampling "
                         "error); increase k, ε, N or d")
    e, n, d = arr[ok, 0], arr[ok, 1], arr[ok, 2]
    return SNRScaling(arr[:, 0], arr[:, 1], arr[:, 2], meas, arr[:, 4], ok,
                      fit_exponents(e, n, d, meas[ok]), fit_exponents(e, n, d, arr[ok, 4]))
