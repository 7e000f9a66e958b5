"""Dual kernels E[σ^(a)(u) σ^(b)(v)]: closed forms, quadrature, Monte Carlo, errors."""

from __future__ import annotations

import math
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special

from nwcorrupt import activations as A
from nwcorrupt import precision

SMOOTH_CLOSED = ("erf", "gelu", "sin", "identity")
PIECEWISE = ("relu", "abs", "leaky_relu")


def _act(name: str) -> A.Activation:
    return A.get(name, alpha=0.2) if name == "leaky_relu" else A.get(name)


def _cov_grid(n: int = 24, seed: int = 1, vmax: float = 1.0):
    """Random valid covariances with variances in [0.05, vmax], incl. ρ = ±1 and ρ → 1."""
    rng = np.random.default_rng(seed)
    k11 = rng.uniform(0.05, vmax, n)
    k22 = rng.uniform(0.05, vmax, n)
    rho = rng.uniform(-1.0, 1.0, n)
    rho[:4] = [1.0, -1.0, 0.999999, 0.0]
    return k11, rho * np.sqrt(k11 * k22), k22


# ---------------------------------------------------------------------------
# Closed forms against independent references.


@pytest.mark.parametrize("name", SMOOTH_CLOSED)
def test_smooth_closed_forms_equal_quadrature(x64, name):
    """Closed forms (incl. Price-theorem mixed orders) = 2-D Gauss–Hermite (order 64) to 1e-10."""
    k11, k12, k22 = _cov_grid()
    act = A.get(name)
    pairs = tuple((a, b) for a in range(4) for b in range(4))
    closed = A.duals(act, k11, k12, k22, pairs, method="closed")
    quad = A.duals(act, k11, k12, k22, pairs, method="quadrature", order=64)
    for pair, c, q in zip(pairs, closed, quad):
        np.testing.assert_allclose(c, q, rtol=0, atol=1e-10, err_msg=f"{name} (a, b) = {pair}")
    np.testing.assert_allclose(closed[5], A.dual(act, k11, k12, k22, 1, 1), rtol=1e-15)


def _piecewise_reference(alpha: float, a: int, b: int, k11: float, k12: float, k22: float) -> float:
    """E[f_a(u) g_b(v)] for σ = α x + (1 − α) relu(x) by 1-D adaptive quadrature over u.

    Uses the exact conditional law v | u ~ N(m, s²), m = (k12/k11) u,
    s² = k22 − k12²/k11 (s > 0 here), and E[relu(v) | u] = m Φ(m/s) + s φ(m/s).
    """
    s = math.sqrt(k22 - k12 * k12 / k11)

    def g_cond(u: float) -> float:
        m = k12 / k11 * u
        if b == 0:
            return alpha * m + (1 - alpha) * (m * special.ndtr(m / s) + s * math.exp(-0.5 * (m / s) ** 2) / math.sqrt(2 * math.pi))
        return alpha + (1 - alpha) * special.ndtr(m / s)

    def f(u: float) -> float:
        if a == 0:
            return u if u >= 0 else alpha * u
        return 1.0 if u >= 0 else alpha

    def integrand(u: float) -> float:
        return math.exp(-0.5 * u * u / k11) / math.sqrt(2 * math.pi * k11) * f(u) * g_cond(u)

    lim = 40 * math.sqrt(k11)
    left = integrate.quad(integrand, -lim, 0.0, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    right = integrate.quad(integrand, 0.0, lim, epsabs=1e-14, epsrel=1e-13, limit=200)[0]
    return left + right


@pytest.mark.parametrize("name,alpha", [("relu", 0.0), ("abs", -1.0), ("leaky_relu", 0.2)])
def test_piecewise_linear_closed_forms_equal_adaptive_integration(x64, name, alpha):
    """Arc-cosine closed forms = independent 1-D adaptive integration (scipy.quad) to 1e-10."""
    act = _act(name)
    rng = np.random.default_rng(7)
    for _ in range(5):
        k11, k22 = rng.uniform(0.2, 2.0, 2)
        rho = rng.uniform(-0.95, 0.95)
        k12 = rho * math.sqrt(k11 * k22)
        for a, b in ((0, 0), (1, 1), (0, 1), (1, 0)):
            got = float(A.dual(act, k11, k12, k22, a, b))
            want = _piecewise_reference(alpha, a, b, k11, k12, k22)
            assert got == pytest.approx(want, abs=1e-10), (name, a, b, k11, k12, k22)


def test_sin_matches_stated_formula(x64):
    k11, k12, k22 = _cov_grid()
    pref = np.exp(-(k11 + k22) / 2)
    np.testing.assert_allclose(A.dual("sin", k11, k12, k22), pref * np.sinh(k12), atol=1e-15)
    np.testing.assert_allclose(A.dual("sin", k11, k12, k22, 1, 1), pref * np.cosh(k12), atol=1e-15)
    np.testing.assert_allclose(A.dual("sin", k11, k12, k22, 2, 2), pref * np.sinh(k12), atol=1e-15)


def test_erf_closed_forms_match_stated_formulas(x64):
    k11, k12, k22 = _cov_grid()
    D = (1 + 2 * k11) * (1 + 2 * k22) - 4 * k12**2
    np.testing.assert_allclose(
        A.dual("erf", k11, k12, k22), 2 / np.pi * np.arcsin(2 * k12 / np.sqrt((1 + 2 * k11) * (1 + 2 * k22))), atol=1e-15
    )
    np.testing.assert_allclose(A.dual("erf", k11, k12, k22, 1, 1), 4 / np.pi / np.sqrt(D), rtol=1e-14)
    np.testing.assert_allclose(A.dual("erf", k11, k12, k22, 2, 2), 16 / np.pi * k12 * D**-1.5, atol=1e-14)
    np.testing.assert_allclose(
        A.dual("erf", k11, k12, k22, 3, 3), 16 / np.pi * (D**-1.5 + 12 * k12**2 * D**-2.5), rtol=1e-14
    )


def test_price_theorem_holds_for_autodiff_of_closed_forms(x64):
    """∂⟨σσ⟩/∂k12 = ⟨σ'σ'⟩ and ∂⟨σσ⟩/∂k11 = ½ E[σ''(u)σ(v)] (gelu: independent closed forms)."""
    k11, k12, k22 = (jnp.asarray(v) for v in _cov_grid(seed=3))
    k12 = 0.9 * k12  # stay inside the boundary
    for name in ("gelu", "erf"):
        act = A.get(name)
        f = lambda a, b, c: A.dual(act, a, b, c)  # noqa: E731
        d12 = jax.jvp(f, (k11, k12, k22), (0 * k11, jnp.ones_like(k12), 0 * k22))[1]
        d11 = jax.jvp(f, (k11, k12, k22), (jnp.ones_like(k11), 0 * k12, 0 * k22))[1]
        np.testing.assert_allclose(d12, A.dual(act, k11, k12, k22, 1, 1), rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(2 * d11, A.dual(act, k11, k12, k22, 2, 0), rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# Monte Carlo for every registered activation.

BUILTIN = ("abs", "erf", "gelu", "identity", "leaky_relu", "relu", "sigmoid", "silu", "sin", "softplus", "swish", "tanh")

@pytest.mark.parametrize("name", BUILTIN)
def test_duals_agree_with_monte_carlo(x64, name):
    """|dual − MC mean| <= 5 standard errors (200k correlated Gaussian pairs, fixed seed), all orders used."""
    assert name in A.names()
    act = _act(name)
    pairs = ((0, 0), (1, 1), (0, 1)) if name in PIECEWISE else ((0, 0), (1, 1), (0, 1), (2, 2), (1, 3), (3, 3))
    k11, k22, rho = 0.8, 1.3, 0.6
    k12 = rho * math.sqrt(k11 * k22)
    rng = np.random.default_rng(zlib.crc32(name.encode()))
    z = rng.standard_normal((2, 200_000))
    u = jnp.asarray(math.sqrt(k11) * z[0])
    v = jnp.asarray(math.sqrt(k22) * (rho * z[0] + math.sqrt(1 - rho**2) * z[1]))
    got = A.duals(act, k11, k12, k22, pairs, order=64)
    for (a, b), value in zip(pairs, got):
        vals = np.asarray(act.derivative(a)(u) * act.derivative(b)(v))
        se = vals.std() / math.sqrt(vals.size)
        assert abs(float(value) - vals.mean()) <= 5 * se + 1e-12, (name, (a, b), float(value), vals.mean(), se)


# ---------------------------------------------------------------------------
# Quadrature error.


def test_quadrature_error_decreases_with_order_smooth(x64):
    """tanh & co. (no closed form): geometric convergence; order 64 within 1e-8 of order 150 at variance ≲ 1."""
    k11, k12, k22 = _cov_grid(n=12, seed=5)
    for name in ("tanh", "softplus"):
        ref = A.dual_pair(name, k11, k12, k22, order=128)
        errs = []
        for order in (8, 16, 32, 64):
            got = A.dual_pair(name, k11, k12, k22, order=order)
            errs.append(max(float(jnp.max(jnp.abs(g - r))) for g, r in zip(got, ref)))
        assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:])), (name, errs)
        assert errs[-1] < 1e-8, (name, errs)
        assert errs[2] < 1e-5, (name, errs)  # default order 32 (documented accuracy)


def test_quadrature_error_decreases_with_order_closed_form_reference(x64):
    k11, k12, k22 = _cov_grid(n=12, seed=6)
    pairs = ((0, 0), (1, 1), (2, 2))
    for name in ("erf", "gelu"):
        exact = A.duals(name, k11, k12, k22, pairs)
        errs = [
            [float(jnp.max(jnp.abs(q - e))) for q, e in zip(A.duals(name, k11, k12, k22, pairs, method="quadrature", order=o), exact)]
            for o in (4, 8, 16)
        ]
        for i, pair in enumerate(pairs):
            assert errs[0][i] > errs[1][i] > errs[2][i], (name, pair, errs)


def test_relu_quadrature_converges_only_slowly(x64):
    """The kink makes Gauss–Hermite converge algebraically (documented): still ~1e-4 at order 128."""
    k11, k12, k22 = 1.0, 0.3, 0.8
    exact = float(A.dual("relu", k11, k12, k22))
    errs = [abs(float(A.dual("relu", k11, k12, k22, method="quadrature", order=o)) - exact) for o in (8, 32, 128)]
    assert errs[0] > errs[1] > errs[2]
    assert 1e-6 < errs[2] < 1e-2


def test_quadrature_is_exact_for_polynomials_and_used_for_registered_functions(x64):
    """A user-registered x³ falls back to quadrature; E[u³v³] = 9 k11 k22 k12 + 6 k12³ (Isserlis)."""
    A.register("cube_dual_test", lambda x: x**3, overwrite=True)
    assert not A.has_closed_form("cube_dual_test")
    k11, k12, k22 = _cov_grid(seed=9)
    np.testing.assert_allclose(
        A.dual("cube_dual_test", k11, k12, k22, order=8), 9 * k11 * k22 * k12 + 6 * k12**3, rtol=1e-12, atol=1e-14
    )
    # σ' = 3x²: E[9 u² v²] = 9 (k11 k22 + 2 k12²)
    np.testing.assert_allclose(
        A.dual("cube_dual_test", k11, k12, k22, 1, 1, order=8), 9 * (k11 * k22 + 2 * k12**2), rtol=1e-12
    )


def test_registered_closed_form_is_used(x64):
    def my_dual(a, b, k11, k12, k22):
        return 2.0 * k12 if (a, b) == (0, 0) else None

    A.register("twice_identity_test", lambda x: math.sqrt(2.0) * x, dual=my_dual, overwrite=True)
    assert A.has_closed_form("twice_identity_test", 0, 0)
    assert not A.has_closed_form("twice_identity_test", 1, 1)
    k11, k12, k22 = _cov_grid(seed=2)
    np.testing.assert_allclose(A.dual("twice_identity_test", k11, k12, k22), 2 * k12, rtol=1e-15)
    # (1, 1) falls back to quadrature: σ' = √2, so E = 2.
    np.testing.assert_allclose(A.dual("twice_identity_test", k11, k12, k22, 1, 1), 2.0, rtol=1e-13)


# ---------------------------------------------------------------------------
# Structure: symmetry, diagonal, degenerate boundary, float32.


@pytest.mark.parametrize("name", ["erf", "gelu", "relu", "softplus"])
def test_exchange_symmetry_and_diagonal(x64, name):
    act = A.get(name)
    k11, k12, k22 = _cov_grid(seed=4)
    max_order = 1 if name == "relu" else 2
    pairs = tuple((a, b) for a in range(max_order + 1) for b in range(max_order + 1))
    swapped = tuple((b, a) for a, b in pairs)
    q = k11
    for x, y, z in zip(A.duals(act, k11, k12, k22, pairs), A.duals(act, k22, k12, k11, swapped), A.duals(act, q, q, q, pairs)):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-14)
    for pair, z in zip(pairs, A.duals(act, q, q, q, pairs)):
        np.testing.assert_allclose(z, A.dual_diag(act, q, *pair), rtol=1e-9, atol=1e-12)


def test_dual_pair_equals_individual_duals(x64):
    k11, k12, k22 = _cov_grid(seed=8)
    for name in ("relu", "erf", "tanh", "gelu(tanh)"):
        act = A.get("gelu", approximate=True) if name == "gelu(tanh)" else A.get(name)
        s, sd = A.dual_pair(act, k11, k12, k22)
        np.testing.assert_allclose(s, A.dual(act, k11, k12, k22), rtol=1e-13, atol=1e-15)
        np.testing.assert_allclose(sd, A.dual(act, k11, k12, k22, 1, 1), rtol=1e-13, atol=1e-15)


def test_degenerate_boundary_is_finite_and_correct(x64):
    """ρ = ±1 (and a rounding overshoot) and zero variances give finite, correct values."""
    q = np.array([0.5, 1.0, 2.0])
    over = q * (1 + 1e-12)  # |k12| slightly above √(k11 k22): clipped
    for name in ("relu", "abs", "erf", "tanh", "gelu"):
        s, sd = A.dual_pair(name, q, over, q)
        assert np.all(np.isfinite(s)) and np.all(np.isfinite(sd))
        np.testing.assert_allclose(s, A.dual_diag(name, q), rtol=1e-9)
        np.testing.assert_allclose(sd, A.dual_diag(name, q, 1, 1), rtol=1e-9)
    # relu at ρ = −1: u = −v, so relu(u) relu(v) = 0 and P(u > 0, v > 0) = 0.
    s, sd = A.dual_pair("relu", q, -q, q)
    np.testing.assert_allclose(s, 0.0, atol=1e-15)
    np.testing.assert_allclose(sd, 0.0, atol=1e-15)
    # relu on the diagonal: E[relu(u)²] = q/2, P(u > 0) = 1/2.
    np.testing.assert_allclose(A.dual("relu", q, q, q), q / 2, rtol=1e-15)
    np.testing.assert_allclose(A.dual_diag("relu", q, 1, 1), 0.5, rtol=1e-15)
    # a vanishing variance: u ≡ 0, so E[σ(u)σ(v)] = σ(0) E[σ(v)] (0 for odd σ).
    zero = np.zeros(3)
    for name in ("relu", "erf", "tanh"):
        np.testing.assert_allclose(A.dual(name, zero, zero, q), 0.0, atol=1e-14)
    np.testing.assert_allclose(A.dual("sigmoid", zero, zero, q, order=48), 0.5 * 0.5, atol=1e-12)


def test_float32_error_is_small():
    """Without x64 the duals are float32 and within ~1e-6 of float64 for |ρ| <= 0.99 (documented).

    (Near |ρ| = 1 the relu-family ⟨σ'σ'⟩ = (π − arccos ρ)/2π has a √(1 − |ρ|)
    singularity: float32 rounding of ρ costs up to ~3e-4 there; exactly ±1 is exact.)
    """
    k11, k12, k22 = _cov_grid(seed=11)
    keep = np.abs(k12 / np.sqrt(k11 * k22)) <= 0.99
    keep[:2] = True  # ρ = ±1 exactly
    k11, k12, k22 = k11[keep], k12[keep], k22[keep]
    with precision.x64():
        ref = {n: np.asarray(A.dual_pair(n, k11, k12, k22)) for n in ("relu", "erf", "gelu", "tanh")}
    for name, want in ref.items():
        got = A.dual_pair(name, np.float32(k11), np.float32(k12), np.float32(k22))
        assert got[0].dtype == jnp.float32
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-6, err_msg=name)


def test_activation_is_frozen_and_hashable():
    a, b = A.get("leaky_relu", alpha=0.3), A.get("leaky_relu", alpha=0.3)
    assert a == b and hash(a) == hash(b)
    assert A.get("relu").max_dual_order == 1 and A.get("erf").max_dual_order is None
    with pytest.raises(Exception):
        a.name = "x"  # type: ignore[misc]


# ---------------------------------------------------------------------------
# Errors.


def test_dual_validation_errors(x64):
    k = np.array([1.0, 0.5])
    with pytest.raises(ValueError, match="unknown activation 'nope'"):
        A.dual("nope", k, k, k)
    with pytest.raises(ValueError, match="a must be >= 0"):
        A.dual("erf", k, k, k, a=-1)
    with pytest.raises(TypeError, match="b must be an integer"):
        A.dual("erf", k, k, k, b=1.5)
    with pytest.raises(ValueError, match="method must be one of"):
        A.dual("erf", k, k, k, method="exact")
    with pytest.raises(ValueError, match="order must be >= 1"):
        A.dual("tanh", k, k, k, order=0)
    with pytest.raises(ValueError, match="order must be <= 200"):
        A.dual("tanh", k, k, k, order=500)
    with pytest.raises(ValueError, match="no closed-form dual kernel"):
        A.dual("tanh", k, k, k, method="closed")
    with pytest.raises(ValueError, match="Dirac deltas"):
        A.dual("relu", k, k, k, a=2, b=2)
    with pytest.raises(ValueError, match="Dirac deltas"):
        A.dual("leaky_relu", k, k, k, a=0, b=3)
    with pytest.raises(ValueError, match="Dirac deltas"):
        A.dual_diag("abs", k, 2, 2)
    with pytest.raises(ValueError, match="k12 contains NaN"):
        A.dual("erf", k, np.array([np.nan, 0.0]), k)
    with pytest.raises(ValueError, match="k11 contains NaN or inf"):
        A.dual("erf", np.array([np.inf, 1.0]), k, k)
    with pytest.raises(ValueError, match="broadcastable"):
        A.dual("erf", np.ones(2), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="k22 is a variance"):
        A.dual("erf", k, 0 * k, -k)
    with pytest.raises(ValueError, match=r"\|k12\| <= sqrt\(k11 k22\)"):
        A.dual("erf", k, 2 * k, k)
    with pytest.raises(ValueError, match="q is a variance"):
        A.dual_diag("erf", -k)
    with pytest.raises(ValueError, match="q contains NaN"):
        A.dual_diag("erf", np.array([np.nan]))


def test_register_validation_errors():
    with pytest.raises(TypeError, match="dual must be callable"):
        A.register("bad_dual_test", lambda x: x, dual=3, overwrite=True)
    with pytest.raises(ValueError, match="go with fn"):
        A.register("bad_factory_test", factory=lambda: A.get("relu"), dual=lambda *a: None, overwrite=True)
    with pytest.raises(ValueError, match="max_dual_order must be >= 0"):
        A.register("bad_order_test", lambda x: x, max_dual_order=-1, overwrite=True)


def test_registered_piecewise_function_can_block_higher_orders(x64):
    A.register("hardtanh_test", lambda x: jnp.clip(x, -1.0, 1.0), max_dual_order=1, overwrite=True)
    k = np.array([0.7])
    assert np.isfinite(float(A.dual("hardtanh_test", k, 0.5 * k, k)[0]))
    with pytest.raises(ValueError, match="Dirac deltas"):
        A.dual("hardtanh_test", k, 0.5 * k, k, 2, 2)


# ---------------------------------------------------------------------------
# Fused layer forms (LayerDuals) used by the kernel recursion.

FUSED = ("relu", "abs", "leaky_relu", "erf")


@pytest.mark.parametrize("name", FUSED)
def test_fused_layer_duals_equal_closed_forms(x64, name):
    """pair(k12, point(k11), point(k22)) = the closed-form (⟨σσ⟩, ⟨σ'σ'⟩), incl. ρ = ±1 and ρ → 1."""
    act = _act(name)
    assert act.layer is not None
    k11, k12, k22 = (jnp.asarray(v) for v in _cov_grid(40, seed=3, vmax=3.0))
    ss, dd = act.layer.pair(k12, act.layer.point(k11), act.layer.point(k22), True, lambda x: x)
    ref_ss, ref_dd = A.duals(act, k11, k12, k22, ((0, 0), (1, 1)), method="closed")
    # ρ from per-point 1/√k carries a few ulps; near ρ = ±1 the arc-cosine's √(1 − ρ) turns
    # them into ~1e-8 in ⟨σ'σ'⟩ (see _leaky_layer); elsewhere agreement is at rounding level.
    far = np.abs(np.asarray(k12)) / np.sqrt(np.asarray(k11 * k22)) < 0.999
    np.testing.assert_allclose(np.asarray(ss), ref_ss, rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(dd)[far], np.asarray(ref_dd)[far], rtol=1e-13, atol=1e-15)
    np.testing.assert_allclose(np.asarray(dd), ref_dd, rtol=0, atol=5e-8)
    only_ss, none = act.layer.pair(k12, act.layer.point(k11), act.layer.point(k22), False, lambda x: x)
    assert none is None
    np.testing.assert_array_equal(np.asarray(only_ss), np.asarray(ss))


@pytest.mark.parametrize("name", ("relu", "leaky_relu"))
def test_fused_layer_duals_zero_variance_point(x64, name):
    """A point with K(x, x) = 0 (zero input) has ρ = 0 against everything, as in the closed form."""
    act = _act(name)
    k11 = jnp.asarray([0.0, 0.0, 1.3])
    k22 = jnp.asarray([0.7, 0.0, 0.0])
    k12 = jnp.zeros(3)
    ss, dd = act.layer.pair(k12, act.layer.point(k11), act.layer.point(k22), True, lambda x: x)
    ref_ss, ref_dd = A.duals(act, k11, k12, k22, ((0, 0), (1, 1)), method="closed")
    assert np.all(np.isfinite(ss)) and np.all(np.isfinite(dd))
    np.testing.assert_allclose(ss, ref_ss, atol=1e-15)
    np.testing.assert_allclose(dd, ref_dd, rtol=1e-15)
