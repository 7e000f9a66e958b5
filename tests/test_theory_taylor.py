"""Mean-field predictor, its Taylor series in ε (autodiff) and the closed-form first order."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import corruption as C
from nwcorrupt import activations, data, theory
from nwcorrupt.kernels import MLP

ADD = C.Additive()
REP01 = C.Replacement("uniform", low=0.0, high=1.0)  # μ = 1/2, μ₂ = 1/3: every replacement term is non-zero


def _raw(n=20, m=4, seed=0):
    ds = data.load("digits", n_train=n, normalize="none", seed=seed)
    return ds.x_train.astype(np.float64), ds.y_train, ds.x_test[:m].astype(np.float64)


def _direct_predictor(arch, noise, x, y, xt, get="ntk", quad_order=80):
    """f(ε) written directly: overlaps polynomial → kernels → dense solve (differentiable reference)."""
    poly = theory.overlap_poly(noise, x, xt)
    n = x.shape[0]
    yy = jnp.asarray(np.eye(int(y.max()) + 1)[y])

    def f(eps):
        e = jnp.stack([jnp.ones_like(eps), eps, eps * eps])
        g = jnp.tensordot(e, jnp.asarray(poly.train), axes=1)
        g = jnp.where(jnp.eye(n, dtype=bool), e @ jnp.asarray(poly.train_diag), g)
        tt = jnp.tensordot(e[:2], jnp.asarray(poly.test_train), axes=1)
        ov = theory.Overlaps(train=g, test_train=tt, test_diag=jnp.asarray(poly.test_diag))
        ktt, kst = theory.kernels_from_overlaps(arch, ov, get=get, quad_order=quad_order)
        return kst @ jnp.linalg.solve(ktt, yy)

    return f


def _nested_taylor(f, order):
    """Taylor coefficients f^(k)(0)/k! by nested jvp."""
    out, g = [], f
    for k in range(order + 1):
        out.append(np.asarray(g(jnp.asarray(0.0))) / np.prod(np.arange(1, k + 1)))
        g = (lambda h: (lambda e: jax.jvp(h, (e,), (jnp.ones_like(e),))[1]))(g)
    return np.stack(out)


@pytest.mark.parametrize("noise", [REP01, ADD, C.Replacement("gaussian", loc=-0.3, scale=1.5)], ids=["rep01", "add", "repgauss"])
def test_overlap_poly_equals_meanfield_overlaps(noise):
    x, _, xt = _raw()
    poly = theory.overlap_poly(noise, x, xt)
    for p in (0.0, 0.37, 1.0):
        a, b = poly.at(1 - p), theory.meanfield_overlaps(noise, p, x, xt)
        np.testing.assert_allclose(a.train, b.train, rtol=1e-13, atol=1e-14)
        np.testing.assert_allclose(a.test_train, b.test_train, rtol=1e-13, atol=1e-14)


def test_meanfield_predict_linear_limit_and_labels(x64):
    # depth 1 (linear model), p = 0: kernel C_b + C_w ⟨x, x'⟩, so f = K* K⁻¹ Y with the clean Gram
    x, y, xt = _raw(n=20)
    arch = MLP(1, "erf", W_std=1.2, b_std=0.5)
    f = theory.meanfield_predict(arch, ADD, 0.0, x, y, xt, ridge=1e-3)
    d = x.shape[1]
    k = 0.25 + 1.44 * x @ x.T / d + 1e-3 * np.eye(20)
    ref = (0.25 + 1.44 * xt @ x.T / d) @ np.linalg.solve(k, np.eye(10)[y])
    np.testing.assert_allclose(f, ref, rtol=1e-9, atol=1e-10)
    # integer labels and one-hot targets give the same predictor
    f1 = theory.meanfield_predict(arch, ADD, 0.0, x, np.eye(10)[y], xt, ridge=1e-3)
    np.testing.assert_allclose(f, f1, rtol=1e-12)


@pytest.mark.parametrize("act", ["erf", "relu", "tanh"])
def test_meanfield_predict_pure_noise_is_chance(x64, act):
    # p = 1: every class gets θ_* ψ N_i / N (balanced: the same value)
    x, y, xt = _raw(n=20)
    arch = MLP(3, act, W_std=1.3, b_std=0.2)
    f = theory.meanfield_predict(arch, REP01, 1.0, x, y, xt)
    fo = theory.first_order(arch, REP01, x, y, xt)
    assert np.ptp(f, axis=1).max() < 1e-9
    np.testing.assert_allclose(f[:, 0], fo.theta_star * fo.pure.psi / 10, rtol=1e-6)


def test_erf_closed_form_dual_matches_quadrature(x64):
    # the duals the theory's recursion uses (nwcorrupt.activations): closed form against quadrature
    k11, k12, k22 = jnp.asarray(1.3), jnp.asarray(0.4), jnp.asarray(0.7)
    v, d = activations.duals("erf", k11, k12, k22, ((0, 0), (1, 1)), method="closed")
    vq, dq = activations.duals("erf", k11, k12, k22, ((0, 0), (1, 1)), method="quadrature", order=120)
    np.testing.assert_allclose([v, d], [vq, dq], rtol=1e-12)


@pytest.mark.parametrize(
    "act,noise,get", [("erf", REP01, "ntk"), ("relu", ADD, "nngp"), ("tanh", REP01, "ntk")], ids=["erf", "relu", "tanh"]
)
def test_taylor_equals_nested_jvp_of_dense_solve(x64, act, noise, get):
    # same quadrature rule on both sides (tanh), so agreement is to round-off, independent of quadrature error
    x, y, xt = _raw(n=10, m=2)
    arch = MLP(3, act, W_std=1.2, b_std=0.3)
    co = theory.taylor(arch, noise, x, y, xt, order=2, get=get, quad_order=24)
    ref = _nested_taylor(_direct_predictor(arch, noise, x, y, xt, get, quad_order=24), 2)
    scale = np.abs(ref).max(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(co / scale, ref / scale, atol=1e-9)


@pytest.mark.parametrize("order", [0, 1, 2])
def test_truncation_error_shrinks_like_eps_to_order_plus_one(x64, order):
    x, y, xt = _raw(n=20, m=3)
    arch = MLP(3, "erf", W_std=1.3, b_std=0.2)
    co = theory.taylor(arch, REP01, x, y, xt, order=order)
    eps = np.array([2e-2, 1e-2, 5e-3, 2.5e-3])
    err = [np.abs(theory.meanfield_predict(arch, REP01, 1 - e, x, y, xt) - theory.series_sum(co, e)).max() for e in eps]
    slope = np.polyfit(np.log(eps), np.log(err), 1)[0]
    assert abs(slope - (order + 1)) < 0.15, (slope, err)
    np.testing.assert_allclose(
        theory.taylor_predict(arch, REP01, x, y, xt, 0.01, order=order), theory.series_sum(co, 0.01), rtol=1e-12
    )


ACTS = ["erf", "tanh", "gelu", "swish", "sin", "relu"]


@pytest.mark.parametrize("act", ACTS)
def test_closed_form_first_order_equals_autodiff(x64, act):
    # depths 1-6, both noise models (raw pixels: x̄ ≠ 0 and ⟨x, x⟩ ≠ 1, so every term counts), several C_w, C_b
    x, y, xt = _raw(n=20, m=3)
    q = 200  # Gauss–Hermite nodes (the most activations allow): both sides use the same rule for tanh, swish
    cases = [(L, 1.0, 0.0) for L in range(1, 7)] + [(3, 0.6, 0.0), (3, 2.0, 0.5), (5, 1.5, 0.3)]
    if act == "tanh":
        # tanh has poles at ±iπ/2: product Gauss–Hermite converges only like exp(−c√n/√k), so at kernel
        # variance k ≈ 6 (C_w = 4) it is inaccurate (the two sides would still agree: same rule). Keep C_w ≤ 1.44.
        cases = [c for c in cases if c[1] <= 1.2] + [(3, 1.2, 0.5), (5, 1.2, 0.3)]
    # every case with additive noise; replacement noise (which enters only through the moments of x) on the
    # depths 1, 3 and 6 and the two off-default scales (half the compilations of the full product)
    rep_cases = [c for c in cases if c[0] in (1, 3, 6) and c[1:] == (1.0, 0.0)] + [c for c in cases if c[2] > 0]
    for noise, chosen in ((ADD, cases), (REP01, rep_cases)):
        for L, w, b in chosen:
            arch = MLP(L, act, W_std=w, b_std=b)
            co = theory.taylor(arch, noise, x, y, xt, order=1, quad_order=q)
            fo = theory.first_order(arch, noise, x, y, xt, quad_order=q)
            # relative to the largest coefficient (θ_* = 0 makes f0 vanish for depth 1 without bias)
            np.testing.assert_allclose(fo.f0, co[0], rtol=0, atol=1e-8 * np.abs(co[:2]).max())
            np.testing.assert_allclose(fo.f1, co[1], rtol=0, atol=1e-8 * np.abs(co[1]).max(), err_msg=f"{L} {w} {b}")


@pytest.mark.parametrize("act", ["erf", "relu", "gelu"])
def test_science_transfer_formula_equals_recursion(x64, act):
    # docs/science.md#transfer-coefficients: T_* = C_w^L T^{1→L} with T^{a→b} = P + Σ (⟨σ'σ'⟩ + Θ⟨σ''σ''⟩) P P — confirmed
    for L, w, b in [(1, 1.0, 0.0), (2, 1.3, 0.0), (4, 0.9, 0.4), (6, 1.2, 0.1)]:
        tr = theory.transfer(MLP(L, act, W_std=w, b_std=b), 1.0, 0.1, 0.8)
        np.testing.assert_allclose(tr.T_science, tr.T, rtol=1e-12)
        # and ∂F/∂g12 from autodiff of the recursion
        grad = jax.grad(lambda g: theory.pair_kernel(MLP(L, act, W_std=w, b_std=b), 1.0, g, 0.8))(0.1)
        np.testing.assert_allclose(tr.T, grad, rtol=1e-8)


def test_balanced_normalized_class_term_is_the_overlap_rule(x64):
    ds = data.load("digits", n_train=50, seed=1)
    x, y, xt = ds.x_train.astype(np.float64), ds.y_train, ds.x_test[:40].astype(np.float64)
    arch = MLP(3, "erf")
    fo = theory.first_order(arch, ADD, x, y, xt)
    # class-dependent part of f1 = (N T_*/(CΔ)) ΔE_i[⟨x*, x_α⟩]; with normalised data it is all of f1 up to a constant
    centred = fo.f1 - fo.f1.mean(axis=1, keepdims=True)
    s = (xt @ x.T / x.shape[1]) @ np.eye(10)[y] * (10 / 50)  # ⟨x*, μ_i⟩
    pred = (50 * fo.T_star / (10 * fo.pure.delta))[:, None] * (s - s.mean(axis=1, keepdims=True))
    np.testing.assert_allclose(centred, pred, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(theory.leading_decision(np.stack([fo.f0, fo.f1])), np.argmax(s, axis=1))


def test_validation():
    x, y, xt = _raw(n=20)
    with pytest.raises(ValueError, match="get must be one of"):
        theory.meanfield_predict(MLP(2, "erf"), ADD, 0.5, x, y, xt, get="gp")
    with pytest.raises(ValueError, match="parameterization must be 'ntk'"):
        theory.meanfield_predict(MLP(2, "erf", parameterization="standard"), ADD, 0.5, x, y, xt)
    with pytest.raises(ValueError, match="ridge must be a finite number >= 0"):
        theory.meanfield_predict(MLP(2, "erf"), ADD, 0.5, x, y, xt, ridge=-1.0)
    with pytest.raises(ValueError, match="y_train has 3 labels but x_train has 20"):
        theory.meanfield_predict(MLP(2, "erf"), ADD, 0.5, x, y[:3], xt)
    with pytest.raises(ValueError, match="y_train has 19 rows but x_train has 20"):
        theory.taylor(MLP(2, "erf"), ADD, x, np.eye(10)[y][:19], xt)
    with pytest.raises(ValueError, match="order must be >= 0"):
        theory.taylor(MLP(2, "erf"), ADD, x, y, xt, order=-1)
    with pytest.raises(ValueError, match="p must be in"):
        theory.meanfield_predict(MLP(2, "erf"), ADD, 1.2, x, y, xt)


@pytest.mark.parametrize(
    "act,get,noise",
    [("erf", "ntk", REP01), ("gelu", "nngp", ADD), ("relu", "ntk", ADD), ("tanh", "ntk", REP01)],
    ids=["erf-ntk-rep01", "gelu-nngp-add", "relu-ntk-add", "tanh-ntk-rep01"],
)
def test_structured_first_order_equals_dense_series(x64, act, get, noise):
    # raw pixels and U[0, 1] replacement: x̄ ≠ 0, ⟨x, x⟩ ≠ μ₂, μ ≠ 0, so every structured term is exercised
    x, y, xt = _raw(n=30, m=5, seed=3)
    arch = MLP(3, act, W_std=1.2, b_std=0.3)
    dense = theory.taylor(arch, noise, x, y, xt, order=1, get=get, method="dense", ridge=1e-3)
    structured = theory.taylor(arch, noise, x, y, xt, order=1, get=get, method="structured", ridge=1e-3)
    scale = np.max(np.abs(dense), axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(structured / scale, dense / scale, rtol=0, atol=1e-9)
    order0 = theory.taylor(arch, noise, x, y, xt, order=0, get=get, ridge=1e-3)
    np.testing.assert_allclose(order0, structured[:1], rtol=1e-12, atol=0)


def test_structured_first_order_never_forms_an_n_by_n_array(x64):
    # regression: the first order went through overlap_poly, which builds (3, N, N) float64 arrays
    import tracemalloc

    rng = np.random.default_rng(0)
    n, d, m = 3000, 64, 50
    x = rng.standard_normal((n, d))
    xt = rng.standard_normal((m, d))
    y = np.arange(n) % 10
    arch = MLP(3, "erf")
    tracemalloc.start()
    try:
        coeffs = theory.taylor(arch, ADD, x, y, xt, order=1)
        fo = theory.first_order(arch, ADD, x, y, xt)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < n * n * 8 / 4, f"numpy peak {peak / 1e6:.1f} MB suggests an N x N array"
    np.testing.assert_allclose(coeffs[1], fo.f1, rtol=1e-9, atol=1e-12 * np.abs(fo.f1).max())


def test_taylor_method_errors():
    x, y, xt = _raw(n=10, m=2)
    with pytest.raises(ValueError, match="method"):
        theory.taylor(MLP(2, "erf"), ADD, x, y, xt, method="sparse")
    with pytest.raises(ValueError, match="orders 0 and 1"):
        theory.taylor(MLP(2, "erf"), ADD, x, y, xt, order=2, method="structured")
