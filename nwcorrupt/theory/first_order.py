"""Closed-form zeroth and first order in ε = 1 − p of the mean-field predictor, O((N + M) d C).

At ε = 0 (pure noise) the train kernel is exchangeable, θ_o 11ᵀ + Δ I
(:class:`PureNoise`), and every test-train pair of a test point sits at the same
overlaps. The first order then needs only the kernel's values and first derivatives
at these points (:class:`Sensitivities`) and O((N + M) d) data summaries
(:class:`FirstOrderInputs`), combined by :func:`assemble_first_order` (docs/theory.md,
"First order"). :func:`first_order` takes the sensitivities from the forward transfer
recursion (:func:`nwcorrupt.theory.transfer`) or from forward-mode autodiff of the
kernel recursion; :mod:`nwcorrupt.fluctuations` reuses the assembly.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import check_choice, check_matrix
from nwcorrupt.theory.meanfield import as_targets, check_ridge
from nwcorrupt.theory.overlaps import noise_kind
from nwcorrupt.theory.recursion import (
    SERIES_QUAD_ORDER,
    check_arch_get,
    check_quad_order,
    diag_kernel,
    pair_kernel_partials,
    split_hyper,
)
from nwcorrupt.theory.transfer import transfer, transfer_diag

__all__ = [
    "SENSITIVITY_METHODS",
    "FirstOrder",
    "FirstOrderInputs",
    "PureNoise",
    "Sensitivities",
    "assemble_first_order",
    "first_order",
    "first_order_inputs",
]

#: How :func:`first_order` obtains the kernel's first derivatives.
SENSITIVITY_METHODS = ("transfer", "autodiff")


@dataclasses.dataclass(frozen=True)
class PureNoise:
    """The exchangeable ε = 0 train kernel θ_o 11ᵀ + Δ I and its Sherman–Morrison inverse.

    Attributes: theta_d (diagonal, ridge included), theta_o (off-diagonal),
    delta = θ_d − θ_o, n = N, psi = N / (Δ + N θ_o), q = θ_o ψ.
    """

    theta_d: float
    theta_o: float
    n: int

    @property
    def delta(self) -> float:
        return self.theta_d - self.theta_o

    @property
    def psi(self) -> float:
        return self.n / (self.delta + self.n * self.theta_o)

    @property
    def q(self) -> float:
        return self.theta_o * self.psi

    def solve(self, b):
        """K0⁻¹ b for b of shape (N, ...) in O(N) per column."""
        return (b - (self.q / self.n) * jnp.sum(b, axis=0, keepdims=True)) / self.delta

    def check_invertible(self) -> "PureNoise":
        """Return self, or raise ``ValueError`` if Δ ≤ 0 (K0 singular or indefinite)."""
        if not self.delta > 0:
            raise ValueError(
                f"the pure-noise kernel has Δ = θ_d − θ_o = {self.delta} <= 0: K(ε=0) is singular; add a ridge"
            )
        return self


@dataclasses.dataclass(frozen=True)
class FirstOrderInputs:
    """The O((N + M) d) data summaries the first order needs (float64).

    Attributes:
      x: (N, d) clean training inputs; xt: (M, d) test inputs.
      xbar: (N,) feature means x̄_α.
      gdd: (N,) ε-coefficient of the diagonal overlap E⟨x̃_α, x̃_α⟩.
      test_sq: (M,) ⟨x*, x*⟩; test_xbar: (M,) x̄*.
      mu, mu2: the noise moments E u, E u².
    """

    x: np.ndarray
    xt: np.ndarray
    xbar: np.ndarray
    gdd: np.ndarray
    test_sq: np.ndarray
    test_xbar: np.ndarray
    mu: float
    mu2: float

    @property
    def n(self) -> int:
        return self.x.shape[0]


def first_order_inputs(noise, x_train, x_test) -> FirstOrderInputs:
    """:class:`FirstOrderInputs` of clean training inputs (N, d) and test inputs (M, d) under ``noise``."""
    kind = noise_kind(noise)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    xt = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    d = x.shape[1]
    if xt.shape[1] != d:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has {d}; they must match")
    mu, mu2 = (float(m) for m in noise.moments)
    xbar = x.mean(axis=1)
    sq = np.einsum("nd,nd->n", x, x) / d
    gdd = sq - mu2 if kind == "replacement" else 2 * mu * xbar - 2 * mu2  # as overlap_poly's train_diag[1]
    return FirstOrderInputs(x, xt, xbar, gdd, np.einsum("md,md->m", xt, xt) / d, xt.mean(axis=1), mu, mu2)


@dataclasses.dataclass(frozen=True)
class Sensitivities:
    """Kernel values and first derivatives at the pure-noise points (see :class:`FirstOrder`).

    Attributes:
      theta_d: F_diag(μ₂) + ridge; theta_o: F(μ₂, μ², μ₂).
      S_o, T_o: ∂F/∂g11 (= ∂F/∂g22) and ∂F/∂g12 at the off-diagonal pure-noise point; S_d: dF_diag/dg.
      theta_star, T_star, S_star: (M,) F, ∂F/∂g12 and ∂F/∂g22 at (⟨x*, x*⟩, μ x̄*, μ₂).
    """

    theta_d: float
    theta_o: float
    S_o: float
    T_o: float
    S_d: float
    theta_star: np.ndarray
    T_star: np.ndarray
    S_star: np.ndarray


@dataclasses.dataclass(frozen=True)
class FirstOrder:
    """Closed-form zeroth and first Taylor coefficients of the mean-field predictor.

    Attributes:
      f0, f1: (M, C) coefficients of ε⁰ and ε¹.
      pure: :class:`PureNoise` (θ_d, θ_o, Δ, ψ, q) of the train kernel at ε = 0.
      theta_star, T_star, S_star: (M,) test-train kernel at ε = 0 and its sensitivities.
      S_o, T_o: off-diagonal train sensitivities at the pure-noise point; S_d: diagonal.
      class_term: (M, C) the class-dependent part (N/(CΔ)) T_* ΔE_i[⟨x*, x_α⟩] for balanced
        classes (general: T_* Σ_α ⟨x*, x_α⟩ A_αi with A = K0⁻¹Y).
    """

    f0: np.ndarray
    f1: np.ndarray
    pure: PureNoise
    theta_star: np.ndarray
    T_star: np.ndarray
    S_star: np.ndarray
    T_o: float
    S_o: float
    S_d: float
    class_term: np.ndarray


def assemble_first_order(t: FirstOrderInputs, y: np.ndarray, sens: Sensitivities) -> FirstOrder:
    """f0, f1 from the sensitivities through the exchangeable structure, O((N + M) d C).

    Args:
      t: :func:`first_order_inputs`; y: (N, C) float targets; sens: :class:`Sensitivities`.
    """
    n, d = t.x.shape
    pure = PureNoise(sens.theta_d, sens.theta_o, n).check_invertible()
    so, to, sd, mu = sens.S_o, sens.T_o, sens.S_d, t.mu
    a_mat = (y - pure.q * y.sum(axis=0)[None, :] / n) / pure.delta  # (N, C)
    a_sum = a_mat.sum(axis=0)
    c = (sd + (n - 2) * so) * t.gdd + so * t.gdd.sum() + to * (mu * ((n - 2) * t.xbar + t.xbar.sum()) - 2 * (n - 1) * mu * mu)
    xs_a = t.xt @ (t.x.T @ a_mat) / d  # (M, C): Σ_α ⟨x*, x_α⟩ A_αi
    gstar_a = xs_a - mu * t.test_xbar[:, None] * a_sum[None, :]  # Σ_α ġ*_α A_αi
    coef = sens.theta_star / (pure.delta + n * pure.theta_o)
    f1 = (sens.T_star[:, None] * gstar_a + sens.S_star[:, None] * (t.gdd @ a_mat)[None, :]
          - coef[:, None] * (c @ a_mat)[None, :])
    f0 = sens.theta_star[:, None] * a_sum[None, :]
    return FirstOrder(f0, f1, pure, sens.theta_star, sens.T_star, sens.S_star, to, so, sd, sens.T_star[:, None] * xs_a)


def _transfer_sensitivities(arch, t: FirstOrderInputs, reg: float, get: str, quad_order: int) -> Sensitivities:
    off = transfer(arch, t.mu2, t.mu * t.mu, t.mu2, get=get, quad_order=quad_order)
    fd, sd = transfer_diag(arch, t.mu2, get=get, quad_order=quad_order)
    ts = transfer(arch, t.test_sq, t.mu * t.test_xbar, np.full_like(t.test_sq, t.mu2), get=get, quad_order=quad_order)
    return Sensitivities(theta_d=float(fd) + reg, theta_o=float(off.value), S_o=float(off.S), T_o=float(off.T),
                         S_d=float(sd), theta_star=np.asarray(ts.value, np.float64),
                         T_star=np.asarray(ts.T, np.float64), S_star=np.asarray(ts.S, np.float64))


@functools.partial(jax.jit, static_argnames=("arch", "get", "quad_order"))
def _autodiff_grads(moments, test_sq, test_xbar, hyper, *, arch, get, quad_order):
    """F and its partials at the off-diagonal pure-noise point (entry 0) and the test points (entries 1..M),
    in one evaluation (one compilation); F_diag(μ₂) and its derivative."""
    mu, mu2 = moments[0], moments[1]
    g11 = jnp.concatenate([mu2[None], test_sq])
    g12 = jnp.concatenate([(mu * mu)[None], mu * test_xbar])
    parts = pair_kernel_partials(arch, g11, g12, jnp.full_like(g11, mu2), get=get, quad_order=quad_order, hyper=hyper)
    fd, sd = jax.jvp(lambda g: diag_kernel(arch, g, get=get, quad_order=quad_order, hyper=hyper), (mu2,), (jnp.ones_like(mu2),))
    return parts, fd, sd


def _autodiff_sensitivities(arch, t: FirstOrderInputs, reg: float, get: str, quad_order: int,
                            test_chunk: int = 1024) -> Sensitivities:
    dt = jnp.result_type(float)
    moments = jnp.asarray([t.mu, t.mu2], dt)
    canonical, hyper = split_hyper(arch)
    outs = [_autodiff_grads(moments, jnp.asarray(t.test_sq[i:i + test_chunk], dt),
                            jnp.asarray(t.test_xbar[i:i + test_chunk], dt), hyper,
                            arch=canonical, get=get, quad_order=quad_order)
            for i in range(0, t.test_sq.shape[0], test_chunk)]
    (val, d11, d12, d22), fd, sd = outs[0]
    th_s, t_s, s_s = (np.concatenate([np.asarray(o[0][j][1:], np.float64) for o in outs]) for j in (0, 2, 3))
    return Sensitivities(theta_d=float(fd) + reg, theta_o=float(val[0]), S_o=float(d11[0]), T_o=float(d12[0]),
                         S_d=float(sd), theta_star=th_s, T_star=t_s, S_star=s_s)


def first_order(arch, noise, x_train, y_train, x_test, *, get: str = "ntk", ridge: float = 0.0,
                num_classes: int | None = None, quad_order: int = SERIES_QUAD_ORDER,
                sensitivities: str = "transfer") -> FirstOrder:
    """Closed-form first-order expansion f̄ = f0 + ε f1 + O(ε²) (cost O((N + M) d C), no N × N array).

    With A = K0⁻¹Y = (Y − q N_i/N)/Δ (Sherman–Morrison), ġ the ε-coefficients of the
    overlaps (ġ_αα diagonal, ġ_αβ = μ(x̄_α + x̄_β) − 2μ² off-diagonal,
    ġ*_α = ⟨x*, x_α⟩ − μ x̄*):
      f0_i = θ_* ψ N_i / N,
      f1 = w A,  w_α = T_* ġ*_α + S_* ġ_αα − θ_*/(Δ + N θ_o) c_α,
      c_β = (K1 1)_β = (S_d + (N−2) S_o) ġ_ββ + S_o Σ_α ġ_αα + T_o [μ((N−2) x̄_β + Σ_α x̄_α) − 2(N−1)μ²].

    Args:
      arch, noise, x_train, y_train, x_test, get, num_classes: as in
        :func:`nwcorrupt.theory.meanfield_predict`.
      ridge: absolute ridge added to the train kernel diagonal (θ_d).
      quad_order: Gauss–Hermite nodes for activations without closed-form duals.
      sensitivities: ``"transfer"`` (default): the forward transfer recursion
        (:func:`nwcorrupt.theory.transfer`, Price's theorem); ``"autodiff"``: forward-mode
        autodiff of the kernel recursion (what ``taylor(order=1)`` uses).
    """
    check_arch_get(arch, get)
    check_choice("sensitivities", sensitivities, SENSITIVITY_METHODS)
    reg = check_ridge(ridge)
    quad_order = check_quad_order(quad_order)
    t = first_order_inputs(noise, x_train, x_test)
    y = as_targets(y_train, t.n, num_classes)
    if sensitivities == "transfer":
        sens = _transfer_sensitivities(arch, t, reg, get, quad_order)
    else:
        sens = _autodiff_sensitivities(arch, t, reg, get, quad_order)
    return assemble_first_order(t, y, sens)

