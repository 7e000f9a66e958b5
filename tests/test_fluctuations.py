"""Finite-d fluctuations of kernel predictors over noise realisations (nwcorrupt.fluctuations), float64."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg

from nwcorrupt import corruption, data, kernels, theory
from nwcorrupt import fluctuations as fl

ERF = kernels.MLP(3, "erf")
RELU = kernels.MLP(2, "relu", W_std=1.2, b_std=0.3)
ADD = corruption.Additive()
REP = corruption.Replacement()
REP01 = corruption.Replacement(low=0.0, high=1.0)
SALT = corruption.Replacement("salt_pepper", low=0.0, high=1.0, salt_prob=0.3)
LAPLACE = corruption.Additive("laplace")


def _mixture(n, d, c=2, m=10, seed=1, raw=False):
    ds = data.gaussian_mixture(n_train=n, n_test=m * c, d=d, num_classes=c, separation=2.0, noise_std=0.5, seed=seed)
    if raw:  # positive, non-normalised inputs: x̄ ≠ 0 and ⟨x, x⟩ ≠ 1 exercise every term
        f = lambda z: 1 / (1 + np.exp(-z.astype(np.float64)))  # noqa: E731
        return f(ds.x_train), ds.y_train, f(ds.x_test)[:m], ds.y_test[:m]
    norm = lambda z: data.normalize_examples(z).astype(np.float64)  # noqa: E731
    return norm(ds.x_train), ds.y_train, norm(ds.x_test)[:m], ds.y_test[:m]


def _replicas(noise, p, x, r, seed=3):
    """r independent corrupted copies (r, N, d) of x from one call (distinct global row indices)."""
    n, d = x.shape
    big = np.tile(x, (r, 1))
    return np.asarray(noise.apply(big, p, seed), dtype=np.float64).reshape(r, n, d)


# --------------------------------------------------------------------------- noise moments


@pytest.mark.parametrize("noise", [REP01, SALT, LAPLACE], ids=["rep01", "salt", "laplace"])
def test_entry_moments_match_monte_carlo(x64, noise):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 2, size=(3, 4))
    r = 20000
    z = _replicas(noise, 0.6, x, r)
    mom = fl.entry_moments(noise, 0.6, x)
    cen = z - mom.mean
    # each sample moment against its prediction within 5 Monte Carlo standard errors (std of the summand / √r)
    for k, want in ((1, 0.0), (2, mom.var), (3, mom.k3), (4, mom.k4)):
        t = cen**k
        err = np.abs(t.mean(0) - want)
        assert np.all(err <= 5 * t.std(0) / np.sqrt(r) + 1e-12), (k, err)


def test_noise_law_closed_forms():
    assert fl.noise_law(REP01) == pytest.approx((0.5, 1 / 12, 0.0, 1 / 80))
    assert fl.noise_law(ADD) == (0.0, 1.0, 0.0, 3.0)
    assert fl.noise_law(LAPLACE) == (0.0, 1.0, 0.0, 6.0)
    assert fl.noise_law(corruption.Additive("uniform")) == (0.0, 1.0, 0.0, 1.8)
    assert fl.noise_law(corruption.Replacement("gaussian", loc=0.3, scale=0.7)) == pytest.approx((0.3, 0.49, 0.0, 3 * 0.49**2))
    m, v, k3, k4 = fl.noise_law(SALT)  # Bernoulli(0.3) on {0, 1}
    assert (m, v, k3, k4) == pytest.approx((0.3, 0.21, 0.3 * 0.7 * 0.4, 0.3 * 0.7 * (1 - 3 * 0.21)))


@pytest.mark.parametrize("noise,raw", [(REP01, True), (SALT, True), (LAPLACE, False)], ids=["rep01", "salt", "laplace"])
def test_form_variance_matches_monte_carlo(x64, noise, raw):
    """Exact variance of a linear form in the overlap fluctuations vs 40k realisations (tolerance 4√(2/R) ≈ 3%)."""
    rng = np.random.default_rng(1)
    n, d, r = 4, 6, 40000
    x = rng.uniform(0, 1, (n, d)) if raw else rng.standard_normal((n, d))
    xs = rng.uniform(0, 1, d) if raw else rng.standard_normal(d)
    a, b = rng.standard_normal(n), rng.standard_normal(n)
    c = rng.standard_normal((n, n))
    c = c + c.T
    p = 0.55
    mf = theory.meanfield_overlaps(noise, p, x, xs[None])
    z = _replicas(noise, p, x, r)
    g = np.einsum("rad,rbd->rab", z, z) / d - mf.train
    gs = z @ xs / d - mf.test_train[0]
    iu = np.triu_indices(n, 1)
    form = gs @ a + np.diagonal(g, axis1=1, axis2=2) @ b + g[:, iu[0], iu[1]] @ c[iu]
    assert abs(form.mean()) < 5 * form.std() / np.sqrt(r)  # the mean-field overlaps are the means
    pred = float(fl.form_variance(a, b, c, xs, fl.entry_moments(noise, p, x)))
    assert form.var(ddof=1) == pytest.approx(pred, rel=4 * np.sqrt(2 / (r - 1)))


# --------------------------------------------------------------------------- leading order = general formula at ε = 0


@pytest.mark.parametrize("arch,noise,raw,get,centre", [
    (ERF, ADD, False, "ntk", False),
    (RELU, REP01, True, "ntk", False),
    (RELU, REP01, True, "nngp", True),
    (kernels.MLP(3, "erf", b_std=0.4), SALT, True, "ntk", False),
], ids=["erf-add", "relu-rep01-raw", "relu-nngp-centred", "erf-bias-salt"])
def test_leading_equals_linear_at_pure_noise(x64, arch, noise, raw, get, centre):
    """p = 1: the O(N) closed form (transfer coefficients) = the general delta method (autodiff), 1e-8."""
    x, y, xt, _ = _mixture(24, 50, c=3, m=5, raw=raw)
    kw = dict(get=get, centre=centre, ridge=1e-3)
    lead = fl.output_variance(arch, noise, 1.0, x, y, xt, order="leading", **kw)
    lin = fl.output_variance(arch, noise, 1.0, x, y, xt, order="linear", **kw)
    assert lead.shape == (5, 3) and np.all(lead > 0)
    np.testing.assert_allclose(lead, lin, rtol=1e-8)


def test_leading_mean_equals_theory_first_order(x64):
    x, y, xt, _ = _mixture(24, 50, c=3, m=5, raw=True)
    fo = theory.first_order(RELU, REP01, x, y, xt)
    got = fl.predicted_mean(RELU, REP01, 0.97, x, y, xt, order="leading")
    np.testing.assert_allclose(got, fo.f0 + 0.03 * fo.f1, rtol=1e-10, atol=1e-12)
    mf = fl.predicted_mean(RELU, REP01, 0.97, x, y, xt, order="linear")
    np.testing.assert_allclose(mf, theory.meanfield_predict(RELU, REP01, 0.97, x, y, xt), rtol=1e-12)


def test_sample_outputs_equal_kernels_module(x64):
    """The sampled predictor = kernels.kernel (independent implementation) + a float64 solve."""
    x, y, xt, _ = _mixture(20, 60, m=4)
    out = fl.sample_outputs(RELU, REP, 0.7, x, y, xt, k=2, seed=5, ridge=1e-4)
    xn = np.asarray(REP.apply(x, 0.7, 6), dtype=np.float64)
    ktt = np.array(kernels.kernel(RELU, xn, get="ntk").ntk) + 1e-4 * np.eye(20)
    kst = np.asarray(kernels.kernel(RELU, xt, xn, get="ntk").ntk)
    ref = kst @ scipy.linalg.solve(ktt, np.eye(2)[y])
    np.testing.assert_allclose(out[1], ref, rtol=1e-9, atol=1e-12)


# --------------------------------------------------------------------------- theory vs sampled exact predictors


@pytest.mark.parametrize("noise", [ADD, REP], ids=["additive", "replacement"])
def test_leading_variance_matches_sampled_predictors(x64, noise):
    """K = 200 noisy data sets, N = 20, d = 1000, ε = 0.003 (εN = 0.06, N/d = 0.02).

    Sampling error of one variance ≈ √(2/(K−1)) = 0.10 relative; linearisation error ≈ N/d. The
    mean ratio over 10 test points × 2 classes must be within 0.15 of 1 and every ratio within 0.45.
    """
    x, y, xt, _ = _mixture(20, 1000)
    k = 200
    samp = fl.sample_outputs(ERF, noise, 0.997, x, y, xt, k=k).var(axis=0, ddof=1)
    lead = fl.output_variance(ERF, noise, 0.997, x, y, xt, order="leading")
    lin = fl.output_variance(ERF, noise, 0.997, x, y, xt, order="linear")
    np.testing.assert_allclose(lin, lead, rtol=0.03)  # O(εN) corrections
    ratio = samp / lead
    print(f"sampled/leading variance: mean {ratio.mean():.3f}, range [{ratio.min():.3f}, {ratio.max():.3f}]")
    assert abs(ratio.mean() - 1) < 0.15, ratio
    assert np.all(np.abs(ratio - 1) < 0.45), ratio


def test_linear_variance_at_moderate_eps(x64):
    """ε = 0.3 (p = 0.7): the delta method at p matches K = 100 samples within 0.2 (sampling 0.14 + nonlinearity
    ≈ 2.4 N/d = 0.01); the ε → 0 limit is off by far (it needs εN ≪ 1)."""
    x, y, xt, _ = _mixture(20, 4000)
    samp = fl.sample_outputs(ERF, REP, 0.7, x, y, xt, k=100).var(axis=0, ddof=1)
    lin = fl.output_variance(ERF, REP, 0.7, x, y, xt, order="linear")
    lead = fl.output_variance(ERF, REP, 0.7, x, y, xt, order="leading")
    print(f"sampled/linear {(samp / lin).mean():.3f}, sampled/leading {(samp / lead).mean():.3f}")
    assert abs((samp / lin).mean() - 1) < 0.2
    assert (samp / lead).mean() < 0.5


def test_variance_scales_as_inverse_d(x64):
    """Sampled variance at fixed N = 20, ε = 0.002 for d = 100 … 4000: log-log slope −1 within 0.12
    (each point ≈ 0.14/√(effective entries) relative error; the theory is exactly ∝ 1/d for normalised data)."""
    ds_ = (100, 1000, 4000)
    samp, pred = [], []
    for d in ds_:
        x, y, xt, _ = _mixture(20, d, seed=d)
        samp.append(fl.sample_outputs(ERF, ADD, 0.998, x, y, xt, k=100).var(axis=0, ddof=1).mean())
        pred.append(fl.output_variance(ERF, ADD, 0.998, x, y, xt).mean())
    slope = np.polyfit(np.log(ds_), np.log(samp), 1)[0]
    print(f"variance-vs-d slope {slope:.3f}")
    assert abs(slope + 1) < 0.12, slope
    np.testing.assert_allclose(np.array(pred) * np.array(ds_), pred[0] * ds_[0], rtol=1e-6)  # float32 normalisation


def test_snr_exponents_close_to_2_1_1(x64):
    """Window ε ∈ [0.005, 0.02], N ∈ [20, 80], d ∈ [1000, 4000] (εN ≤ 1.6, N/d ≤ 0.08), K = 100:
    fitted exponents within 0.25 of (2, 1, 1) (standard errors ≈ 0.05); the theory's within 0.1."""
    res = fl.snr_scaling(ERF, ADD, (0.005, 0.02), (20, 80), (1000, 4000), k=100, n_test=10, separation=2.0,
                         noise_std=0.5)
    assert res.used.all()
    print("exponents", res.fit.exponents, "±", res.fit.stderr, "theory", res.fit_predicted.exponents)
    np.testing.assert_allclose(res.fit.exponents, [2, 1, 1], atol=0.25)
    np.testing.assert_allclose(res.fit_predicted.exponents, [2, 1, 1], atol=0.1)
    assert np.all(np.abs(np.log(res.measured / res.predicted)) < 0.5)


@pytest.mark.parametrize("arch,get", [(kernels.MLP(5, "erf", W_std=1.3), "ntk"), (kernels.MLP(2, "sin"), "nngp")])
def test_predicted_snr_closed_form(x64, arch, get):
    """Odd σ, C_b = 0, zero-mean noise: leading SNR = ε² N_y d ⟨x*, μ̂_y⟩² / (σ² ⟨x*, x*⟩), whatever the depth,
    weights, activation or kernel (T_*/Δ cancels); μ̂_y = clean class mean, σ² = noise variance."""
    x, y, xt, yt = _mixture(42, 500, c=3, m=6)
    x, y = x[:37], y[:37]  # unbalanced classes
    for noise in (ADD, REP, LAPLACE):
        snr = fl.predicted_snr(arch, noise, 0.99, x, y, xt, yt, get=get)
        mu_hat = np.stack([x[y == c].mean(0) for c in range(3)])
        n_y = np.bincount(y, minlength=3)[yt]
        want = 0.01**2 * n_y * 500 * np.sum(xt * mu_hat[yt], axis=1) ** 2 / 500**2 / (np.sum(xt * xt, axis=1) / 500)
        np.testing.assert_allclose(snr, want / fl.noise_law(noise)[1], rtol=1e-8)


def test_fit_exponents_recovers_known_law():
    rng = np.random.default_rng(0)
    e, n, d = (rng.uniform(1, 10, 12) for _ in range(3))
    snr = 3.0 * e**2 * n**0.5 * d**1.5 * np.exp(1e-3 * rng.standard_normal(12))
    fit = fl.fit_exponents(e, n, d, snr)
    np.testing.assert_allclose(fit.exponents, [2, 0.5, 1.5], atol=5 * fit.stderr.max() + 1e-9)
    assert fit.stderr.max() < 0.01 and fit.intercept == pytest.approx(np.log(3.0), abs=0.02)


# --------------------------------------------------------------------------- bad input


def test_bad_inputs(x64):
    x, y, xt, yt = _mixture(10, 20, m=3)
    with pytest.raises(ValueError, match="order"):
        fl.output_variance(ERF, ADD, 0.9, x, y, xt, order="quadratic")
    with pytest.raises(ValueError, match="get"):
        fl.output_variance(ERF, ADD, 0.9, x, y, xt, get="cntk")
    with pytest.raises(ValueError, match="p must be in"):
        fl.output_variance(ERF, ADD, 1.5, x, y, xt)
    with pytest.raises(ValueError, match="x_test has 19 features"):
        fl.output_variance(ERF, ADD, 0.9, x, y, xt[:, :19])
    with pytest.raises(ValueError, match="NaN"):
        fl.output_variance(ERF, ADD, 0.9, np.where(x > 1, np.nan, x), y, xt)
    with pytest.raises(ValueError, match="y_train has 9 labels"):
        fl.output_variance(ERF, ADD, 0.9, x, y[:9], xt)
    with pytest.raises(ValueError, match="noise must be"):
        fl.output_variance(ERF, "gaussian", 0.9, x, y, xt)
    with pytest.raises(ValueError, match="ridge"):
        fl.output_variance(ERF, ADD, 0.9, x, y, xt, ridge=-1.0)
    with pytest.raises(ValueError, match="parameterization"):
        fl.output_variance(kernels.MLP(2, "erf", parameterization="standard", width=8), ADD, 0.9, x, y, xt)
    with pytest.raises(ValueError, match="y_test"):
        fl.predicted_snr(ERF, ADD, 0.9, x, y, xt, yt[:2])
    with pytest.raises(ValueError, match="k must be"):
        fl.sample_outputs(ERF, ADD, 0.9, x, y, xt, k=0)
    with pytest.raises(ValueError, match="outputs needs K >= 2"):
        fl.sample_snr(np.zeros((1, 3, 2)), yt)
    with pytest.raises(ValueError, match="eps_grid needs at least two"):
        fl.snr_scaling(ERF, ADD, (0.1,), (10, 20), (20, 40))
    with pytest.raises(ValueError, match="multiple of num_classes"):
        fl.snr_scaling(ERF, ADD, (0.1, 0.2), (11, 20), (20, 40))
    with pytest.raises(ValueError, match="at least 5 grid points"):
        fl.fit_exponents([1, 2, 3], [1, 2, 3], [2, 1, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="n must take at least two"):
        fl.fit_exponents([1, 2, 3, 4, 5], [2] * 5, [1, 2, 3, 1, 2], [1, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="snr must be positive"):
        fl.fit_exponents([1, 2, 3, 4, 5], [1, 2, 1, 2, 1], [1, 2, 3, 1, 2], [1, 2, -3, 4, 5])
    with pytest.raises(ValueError, match="no known higher moments"):
        fl.noise_law(_FakeNoise())


class _FakeNoise:
    kind = "replacement"
    dist = "cauchy"
    moments = (0.0, 1.0)
