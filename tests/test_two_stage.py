"""nwcorrupt.two_stage: data, decomposition and its GD update formulas, stages, small-loss rule, lazy NTK."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import labels
from nwcorrupt import two_stage as ts
from nwcorrupt.two_stage import dynamics


@pytest.fixture
def x64():
    prev = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    yield
    jax.config.update("jax_enable_x64", prev)


# ------------------------------------------------------------------ data


def test_data_law_and_snr():
    ds = ts.make_data(400, 900, 3.0, 0.2, sigma_xi=2.0, seed=4)
    assert ds.x.shape == (400, 2, 900)
    np.testing.assert_array_equal(ds.x[:, 0], ds.y[:, None] * ds.mu[None, :])
    assert np.linalg.norm(ds.mu) == pytest.approx(3.0) and ds.mu[1:].sum() == 0
    assert set(np.unique(ds.y)) == {-1.0, 1.0}
    np.testing.assert_array_equal(ds.flipped, ds.y_noisy != ds.y)
    # sigma_xi: E||xi||^2 = sigma^2 d, within 5 standard errors (sd of ||xi||^2/d is sigma^2 sqrt(2/d)/sqrt(n))
    assert np.mean(np.sum(ds.xi**2, 1)) / 900 == pytest.approx(4.0, abs=5 * 4 * math.sqrt(2 / 900) / 20)
    assert ds.snr == pytest.approx(3.0 / (2.0 * 30.0))
    assert ts.mu_norm_for(4.0, 100, 2500) ** 2 * 100 / 2500 == pytest.approx(4.0)
    # flips: Bernoulli(0.2) per row, 400 rows: within 4 standard errors
    assert abs(ds.flipped.mean() - 0.2) < 4 * math.sqrt(0.2 * 0.8 / 400)


def test_data_orthogonal_and_exact_counts():
    ds = ts.make_data(60, 200, 1.5, 0.25, tau_neg=0.1, orthogonal=True, exact=True, seed=1)
    assert np.abs(ds.xi @ ds.mu).max() < 1e-12
    pos, neg = ds.y > 0, ds.y < 0
    assert ds.flipped[pos].sum() == math.floor(0.25 * pos.sum() + 1e-9)
    assert ds.flipped[neg].sum() == math.floor(0.1 * neg.sum() + 1e-9)
    # the same realisation twice; another seed differs
    again = ts.make_data(60, 200, 1.5, 0.25, tau_neg=0.1, orthogonal=True, exact=True, seed=1)
    np.testing.assert_array_equal(ds.x, again.x)
    assert not np.array_equal(ds.x, ts.make_data(60, 200, 1.5, 0.25, seed=2).x)


def test_binary_exact_count_matches_floor():
    y = np.array([1] * 37 + [0] * 23)
    out = labels.Binary(0.3, 0.5, exact=True).apply(y, 5)
    assert ((y == 1) & (out == 0)).sum() == 11 and ((y == 0) & (out == 1)).sum() == 11
    with pytest.raises(ValueError, match="indices"):
        labels.Binary(0.3, 0.5, exact=True).apply(y, 5, indices=np.arange(60))


def test_test_laws():
    ds = ts.make_data(50, 120, 2.0, 0.2, seed=3)
    study = ts.test_set(ds, 400, "study", study_noise=0.0)
    # with no fresh noise every study-law example is a training example with its TRUE label
    rows = [int(np.flatnonzero((ds.xi == x).all(1))[0]) for x in study.x[:, 1]]
    np.testing.assert_array_equal(study.y, ds.y[rows])
    iid = ts.test_set(ds, 400, "iid")
    assert not any((ds.xi == x).all(1).any() for x in iid.x[:, 1])
    np.testing.assert_array_equal(iid.x[:, 0], iid.y[:, None] * ds.mu[None, :])


# ------------------------------------------------------------------ decomposition and update formulas


def _grad_step_case():
    n, d, m, q = 6, 40, 3, 1
    ds = ts.make_data(n, d, 2.0, 0.3, seed=11)
    w0 = ts.init(jax.random.key(2), m, d, 0.5)
    pinv = jnp.asarray(dynamics._basis_pinv(ds.mu, ds.xi))
    return ds, w0, pinv, n, m, q


def test_decomposition_reconstructs_filters_and_follows_gd_updates(x64):
    ds, w0, pinv, n, m, q = _grad_step_case()
    x, yt, y = jnp.asarray(ds.x), jnp.asarray(ds.y_noisy), jnp.asarray(ds.y)
    mu, xi = jnp.asarray(ds.mu), jnp.asarray(ds.xi)
    mu_sq, xi_sq = mu @ mu, jnp.sum(xi**2, 1)
    lr = 0.7

    def loss(w):
        return ts.logistic_loss(yt * ts.forward(w, x, q)).mean()

    w = w0
    gamma, rho = ts.decompose(w, w0, pinv, mu_sq, xi_sq)
    np.testing.assert_array_equal(gamma, 0.0)
    sign = jnp.array([1.0, -1.0])
    for _ in range(5):
        # the update formulas of the decomposition, written from the definitions (not via jax.grad)
        margin = yt * ts.forward(w, x, q)
        lp = -1.0 / (1.0 + jnp.exp(margin))  # l'(z) = -1/(1 + e^z)
        act_mu = (jnp.einsum("jrd,id->jri", w, y[:, None] * mu[None, :]) > 0).astype(w.dtype)
        act_xi = (jnp.einsum("jrd,id->jri", w, xi) > 0).astype(w.dtype)
        gamma_next = gamma - lr / (n * m) * jnp.einsum("i,jri->jr", lp * yt * y, act_mu) * mu_sq
        rho_next = rho - lr / (n * m) * sign[:, None, None] * (lp * yt)[None, None, :] * act_xi * xi_sq
        w = w - lr * jax.grad(loss)(w)
        gamma, rho = ts.decompose(w, w0, pinv, mu_sq, xi_sq)
        np.testing.assert_allclose(gamma, gamma_next, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(rho, rho_next, rtol=1e-10, atol=1e-12)
        # exact reconstruction: w = w0 + j gamma mu/|mu|^2 + sum_i rho_i xi_i/|xi_i|^2
        rebuilt = w0 + sign[:, None, None] * gamma[..., None] * mu / mu_sq + jnp.einsum("jri,id->jrd", rho / xi_sq, xi)
        assert float(jnp.abs(rebuilt - w).max()) < 1e-13 * float(jnp.abs(w).max()) + 1e-15


def test_forward_matches_definition():
    ds = ts.make_data(5, 30, 1.0, 0.0, seed=0)
    w = ts.init(jax.random.key(0), 4, 30, 1.0)
    got = np.asarray(ts.forward(w, ds.x, q=3))
    wn, x = np.asarray(w), ds.x
    ref = [sum(s * np.mean([sum(max(wn[j, r] @ x[i, p], 0) ** 3 for p in range(2)) for r in range(4)])
               for j, s in ((0, 1), (1, -1))) for i in range(5)]  # fmt: skip
    np.testing.assert_allclose(got, ref, rtol=2e-5)


# ------------------------------------------------------------------ the two stages (seeded examples)

N, D, M, STEPS = 100, 5000, 20, 200


@pytest.fixture(scope="module")
def runs():
    mu = ts.mu_norm_for(4.0, N, D)
    noisy = ts.simulate_seeds(N, D, M, mu, 0.15, seeds=[0, 1], lr=0.05, steps=STEPS, log_every=2, n_test=500)
    clean = ts.simulate(N, D, M, mu, 0.0, lr=0.05, steps=STEPS, log_every=2, n_test=500)
    return noisy, clean


def test_stage_one_window_then_memorisation(runs):
    noisy, _ = runs
    for s in range(2):
        st = ts.stages(noisy.t, noisy.fit_clean[s], noisy.fit_flipped[s])
        assert st.has_window and st.memorised is not None and st.window_end < st.memorised
        i = int(np.flatnonzero(noisy.t == st.window_end)[0])
        assert noisy.fit_clean[s, i] == 1.0 and noisy.fit_flipped[s, i] == 0.0
        # the log 2 rule separates clean from flipped exactly at the end of Stage I
        precision, recall = ts.small_loss(noisy.loss[s], noisy.flipped[s])
        assert precision[i] == 1.0 and recall[i] == 1.0
        assert np.all(noisy.loss[s, i, ~noisy.flipped[s]] < ts.LOG2) and np.all(noisy.loss[s, i, noisy.flipped[s]] > ts.LOG2)
        # early stopping beats the memorised end on the study's law; the sag is about the flip fraction
        es = ts.early_stopping(noisy.t, noisy.test_study[s], st)
        assert es["at_stage1_end"] >= 0.98
        assert es["final"] < es["at_stage1_end"] - 0.5 * noisy.flipped[s].mean()
    # the signal grows and the flipped rows' own noise coefficients (j = their noisy label) grow
    assert noisy.gamma[:, -1].max() > 1.0


def test_no_sag_without_label_noise(runs):
    _, clean = runs
    assert clean.flipped.sum() == 0 and np.all(clean.fit_flipped == 0)
    i = int(np.argmax(clean.fit_clean == 1.0))
    assert np.all(clean.fit_clean[i:] == 1.0)
    assert clean.test_study[-1] >= clean.test_study[i:].max() - 0.002
    assert clean.test_iid[-1] >= 0.99


def test_no_window_at_low_snr():
    mu = ts.mu_norm_for(0.5, N, D)
    tr = ts.simulate(N, D, M, mu, 0.15, lr=0.05, steps=60, log_every=2, n_test=200, seed=0)
    assert not ts.stages(tr.t, tr.fit_clean, tr.fit_flipped).has_window


def test_stages_on_constructed_logs():
    t = np.arange(6)
    st = ts.stages(t, [0.5, 1, 1, 1, 1, 1], [0.5, 0, 0, 0.5, 1, 1])
    assert (st.window_start, st.window_end, st.memorised) == (1, 2, 4)
    st = ts.stages(t, [0.5, 0.9, 1, 1, 1, 1], [0.5, 0.5, 1, 1, 1, 1])
    assert not st.has_window and st.memorised == 2
    assert ts.stages(t, [0.5, 0.99, 1, 1, 1, 1], [0, 0.01, 0.5, 1, 1, 1], tol=0.02).window_end == 1


def test_selection_curve_and_small_loss_on_constructed_losses():
    loss = np.array([0.1, 0.2, 0.9, 0.3, 1.5])
    flipped = np.array([False, False, True, False, True])
    thr, prec, rec = ts.selection_curve(loss, flipped)
    np.testing.assert_allclose(prec, [1, 1, 1, 0.75, 0.6])
    np.testing.assert_allclose(rec, [1 / 3, 2 / 3, 1, 1, 1])
    assert np.all(np.diff(thr) > 0)
    p, r = ts.small_loss(loss[None, :], flipped, threshold=0.95)
    assert p[0] == 0.75 and r[0] == 1.0


# ------------------------------------------------------------------ lazy counterpart


def test_ntk_matches_empirical_kernel_at_large_width(x64):
    ds = ts.make_data(4, 30, 2.0, 0.0, seed=5)
    x = jnp.asarray(ds.x)
    m = 20000
    w = ts.init(jax.random.key(9), m, 30, 1.0)
    jac = jax.jacrev(lambda v: ts.forward(v, x))(w).reshape(4, -1)
    emp = np.asarray(jac @ jac.T)
    ref = 2.0 / m * np.asarray(ts.ntk(x, x))
    # Monte Carlo over m filters per sign: relative error ~ 1/sqrt(2m) = 0.5%; allow 3%
    np.testing.assert_allclose(emp, ref, rtol=0.03, atol=0.03 * np.abs(ref).max())


def test_ntk_closed_form_signal_block():
    ds = ts.make_data(6, 50, 3.0, 0.0, orthogonal=True, seed=2)
    k = np.asarray(ts.ntk(ds.x, ds.x))
    # patches y mu and y' mu: cosine yy' = +-1, kappa = 1/2 or 0; xi orthogonal to mu
    xi = ds.xi
    cos = (xi @ xi.T) / np.outer(np.linalg.norm(xi, axis=1), np.linalg.norm(xi, axis=1))
    ref = np.where(np.equal.outer(ds.y, ds.y), 9.0 / 2, 0.0) + (xi @ xi.T) * (np.pi - np.arccos(np.clip(cos, -1, 1))) / (2 * np.pi)
    np.testing.assert_allclose(k, ref, rtol=1e-5, atol=1e-4)


def test_lazy_equals_linearised_network_gd(x64):
    """Function-space GD with the kernel equals GD on the weights of the network linearised at init."""
    ds = ts.make_data(5, 12, 2.0, 0.2, seed=1)
    x, yt = jnp.asarray(ds.x), jnp.asarray(ds.y_noisy)
    m = 3
    w0 = ts.init(jax.random.key(4), m, 12, 1.0)
    f0, lin = jax.linearize(lambda v: ts.forward(v, x), w0)
    kern = jax.jacrev(lambda v: ts.forward(v, x))(w0).reshape(5, -1)
    kern = np.asarray(kern @ kern.T)
    delta = jnp.zeros_like(w0)
    f = np.asarray(f0)
    for _ in range(4):
        g = -yt * jax.nn.sigmoid(-yt * (f0 + lin(delta)))
        delta = delta - 0.3 * jax.grad(lambda dv: jnp.mean(ts.logistic_loss(yt * (f0 + lin(dv)))))(delta)
        f = f - 0.3 / 5 * kern @ np.asarray(g)
    np.testing.assert_allclose(np.asarray(f0 + lin(delta)), f, rtol=1e-10, atol=1e-12)


def test_lazy_dynamics_fit_and_learn(runs):
    noisy, _ = runs
    ds = noisy.data[0]
    lz = ts.lazy(ds, M, lr=0.05, steps=STEPS, log_every=2, n_test=500)
    assert lz.t.shape == noisy.t.shape and lz.loss.shape == noisy.loss[0].shape
    assert lz.fit_clean[0] == 0.0 and lz.loss[0] == pytest.approx(np.full(N, math.log(2)))
    # with the initial kernel the clean rows are fitted and the test laws classified by the signal
    assert lz.fit_clean[-1] == 1.0 and lz.test_iid[-1] > 0.95


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(tau=0.5), "tau"),
        (dict(tau=-0.1), "tau"),
        (dict(n=0), "n"),
        (dict(d=0), "d"),
        (dict(d=50), "d must be at least n"),
        (dict(lr=0.0), "lr"),
        (dict(steps=7, log_every=2), "multiple of log_every"),
        (dict(mu_norm=float("nan")), "mu_norm"),
    ],
)
def test_bad_input_is_refused_before_work(kwargs, match):
    args = dict(n=60, d=100, m=4, mu_norm=1.0, tau=0.1)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        ts.simulate(args.pop("n"), args.pop("d"), args.pop("m"), args.pop("mu_norm"), args.pop("tau"), **args)


def test_divergent_step_names_lr():
    with pytest.raises(ValueError, match=r"lr=1e\+30: gradient descent diverged"):
        ts.simulate(10, 40, 4, 5.0, 0.1, q=3, sigma0=1.0, lr=1e30, steps=20, log_every=5)
