"""Corruption models: statistics, exactness, determinism, validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st

from nwcorrupt import corruption as C
from nwcorrupt import data, metrics, prototype

RNG = np.random.default_rng(1234)
X = RNG.standard_normal((200, 500)).astype(np.float32)  # 1e5 features


@pytest.mark.parametrize("p", [0.05, 0.5, 0.9, 0.99])
def test_replaced_fraction_matches_p(p):
    mask, _ = C.Replacement().draw(X, p, seed=3)
    n = mask.size
    frac = float(np.mean(mask))
    assert abs(frac - p) < 5 * np.sqrt(p * (1 - p) / n)
    # the output equals u where masked and x elsewhere
    out = np.asarray(C.Replacement().apply(X, p, seed=3))
    _, u = C.Replacement().draw(X, p, seed=3)
    np.testing.assert_array_equal(out, np.where(mask, u, X))


@pytest.mark.parametrize(
    "model,cdf",
    [
        (C.Replacement("uniform"), scipy.stats.uniform(-np.sqrt(3), 2 * np.sqrt(3)).cdf),
        (C.Replacement("uniform", low=0.0, high=1.0), scipy.stats.uniform(0, 1).cdf),
        (C.Replacement("gaussian", loc=0.5, scale=2.0), scipy.stats.norm(0.5, 2.0).cdf),
    ],
)
def test_replacement_values_follow_law(model, cdf):
    mask, u = model.draw(X, 0.7, seed=11)
    vals = np.asarray(u)[np.asarray(mask)].astype(np.float64)
    mu, mu2 = model.moments
    n = vals.size
    assert abs(vals.mean() - mu) < 5 * np.sqrt((mu2 - mu**2) / n)
    assert abs(np.mean(vals**2) - mu2) < 5 * np.std(vals**2) / np.sqrt(n)
    # Kolmogorov–Smirnov against the law (fixed seed: deterministic)
    assert scipy.stats.kstest(vals[:20000], cdf).pvalue > 1e-3


def test_salt_pepper_and_marginal_laws():
    sp = C.Replacement("salt_pepper", low=0.0, high=1.0, salt_prob=0.3)
    mask, u = sp.draw(X, 0.5, seed=2)
    vals = np.asarray(u)[np.asarray(mask)]
    assert set(np.unique(vals)) == {0.0, 1.0}
    assert abs(vals.mean() - 0.3) < 5 * np.sqrt(0.21 / vals.size)
    assert sp.moments == pytest.approx((0.3, 0.3))

    pixels = RNG.integers(0, 256, size=(100, 64)).astype(np.float32) / 255
    mg = C.Replacement.from_marginal(pixels, n_atoms=256)
    mask, u = mg.draw(X, 0.5, seed=2)
    vals = np.asarray(u)[np.asarray(mask)]
    assert np.isin(vals, np.asarray(mg.atoms, dtype=np.float32)).all()
    mu, mu2 = mg.moments
    assert abs(mu - pixels.mean()) < 0.01 and abs(mu2 - np.mean(pixels.astype(np.float64) ** 2)) < 0.01
    assert abs(vals.mean() - mu) < 5 * np.sqrt((mu2 - mu**2) / vals.size)


def test_uniform_moments_closed_form():
    assert C.Replacement().moments == pytest.approx((0.0, 1.0))
    assert C.Replacement(low=0.0, high=1.0).moments == pytest.approx((0.5, 1 / 3))
    assert C.Replacement("gaussian", loc=1.0, scale=2.0).moments == pytest.approx((1.0, 5.0))


@pytest.mark.parametrize(
    "dist,cdf",
    [
        ("gaussian", scipy.stats.norm().cdf),
        ("uniform", scipy.stats.uniform(-np.sqrt(3), 2 * np.sqrt(3)).cdf),
        ("laplace", scipy.stats.laplace(scale=1 / np.sqrt(2)).cdf),
    ],
)
def test_additive_is_exact_mixture_of_stored_noise(dist, cdf):
    model = C.Additive(dist)
    p = 0.37
    xi = np.asarray(model.draw(X, p, seed=5))
    out = np.asarray(model.apply(X, p, seed=5))
    p32 = np.float32(p)
    expected = (np.float32(1) - p32) * X + p32 * xi
    # exact up to float32 rounding: XLA may fuse the multiply-add, which changes the
    # result by at most one rounding of the terms' magnitude (bound: 2 eps · |terms|)
    scale = np.abs((1 - p32) * X) + np.abs(p32 * xi)
    assert np.all(np.abs(out - expected) <= 2 * np.finfo(np.float32).eps * scale)
    n = xi.size
    assert abs(xi.mean()) < 5 / np.sqrt(n)
    assert abs(xi.var() - 1.0) < 5 * np.std(xi.astype(np.float64) ** 2) / np.sqrt(n)
    assert scipy.stats.kstest(xi.ravel()[:20000].astype(np.float64), cdf).pvalue > 1e-3


def test_additive_exact_in_float64(x64):
    x = X.astype(np.float64)
    model = C.Additive()
    xi = np.asarray(model.draw(x, 0.25, seed=9))
    assert xi.dtype == np.float64
    np.testing.assert_allclose(np.asarray(model.apply(x, 0.25, seed=9)), 0.75 * x + 0.25 * xi, rtol=0, atol=1e-15)


@pytest.mark.parametrize("model", [C.Replacement(), C.Replacement("gaussian"), C.Additive(), C.Additive("laplace")])
def test_p0_identity_and_p1_no_signal(model):
    np.testing.assert_array_equal(np.asarray(model.apply(X, 0.0, seed=1)), X)
    other = RNG.standard_normal(X.shape).astype(np.float32)
    # at p = 1 the output does not depend on the data at all
    np.testing.assert_array_equal(np.asarray(model.apply(X, 1.0, seed=1)), np.asarray(model.apply(other, 1.0, seed=1)))


@pytest.mark.parametrize("model", [C.Replacement(), C.Additive()])
def test_p1_centroid_rules_at_chance(model):
    ds = data.load("digits", n_train=500, seed=0)
    accs = []
    for seed in range(30):
        noisy = C.corrupt(ds, model, 1.0, seed)
        accs.append(metrics.accuracy(prototype.predict(noisy.x_test, noisy.x_train, noisy.y_train, num_classes=10), ds.y_test))
    accs = np.asarray(accs)
    # accuracy at p = 1 fluctuates with the noise realisation (all test points share the
    # random centroids), so the error of the mean is measured across noise seeds
    assert abs(accs.mean() - 0.1) < 4 * accs.std(ddof=1) / np.sqrt(len(accs)) + 0.005
    # while the clean rule is far above chance
    clean = metrics.accuracy(prototype.predict(ds.x_test, ds.x_train, ds.y_train), ds.y_test)
    assert clean > 0.8


@pytest.mark.parametrize("model", [C.Replacement(), C.Replacement("salt_pepper"), C.Additive("uniform")])
def test_determinism_same_seed_identical_different_seed_differs(model):
    a = np.asarray(model.apply(X, 0.6, seed=42))
    b = np.asarray(model.apply(X, 0.6, seed=42))
    np.testing.assert_array_equal(a, b)
    c = np.asarray(model.apply(X, 0.6, seed=43))
    assert np.mean(a != c) > 0.3
    e = np.asarray(model.apply(X, 0.6, seed=42, epoch=1))
    assert np.mean(a != e) > 0.3
    t = np.asarray(model.apply(X, 0.6, seed=42, stream=C.TEST_STREAM))
    assert np.mean(a != t) > 0.3


@settings(max_examples=6, deadline=None)
@given(cuts=st.lists(st.integers(1, 199), max_size=4, unique=True), perm_seed=st.integers(0, 1000))
def test_any_batch_split_or_order_gives_identical_rows(cuts, perm_seed):
    model = C.Replacement()
    full = np.asarray(model.apply(X, 0.8, seed=7))
    bounds = [0, *sorted(cuts), X.shape[0]]
    parts = [np.asarray(model.apply(X[a:b], 0.8, seed=7, indices=np.arange(a, b))) for a, b in zip(bounds, bounds[1:])]
    np.testing.assert_array_equal(np.concatenate(parts), full)
    perm = np.random.default_rng(perm_seed).permutation(X.shape[0])
    shuffled = np.asarray(model.apply(X[perm], 0.8, seed=7, indices=perm))
    np.testing.assert_array_equal(shuffled, full[perm])


def test_corrupt_dataset_where():
    ds = data.load("digits", n_train=100)
    m = C.Additive()
    tr = C.corrupt(ds, m, 0.5, 1, where="train")
    assert not np.array_equal(tr.x_train, ds.x_train) and np.array_equal(tr.x_test, ds.x_test)
    te = C.corrupt(ds, m, 0.5, 1, where="test")
    assert np.array_equal(te.x_train, ds.x_train) and not np.array_equal(te.x_test, ds.x_test)
    both = C.corrupt(ds, m, 0.5, 1, where="both", p_test=0.0)
    np.testing.assert_array_equal(both.x_train, tr.x_train)
    np.testing.assert_array_equal(both.x_test, ds.x_test)
    np.testing.assert_array_equal(both.y_train, ds.y_train)
    ep = C.corrupt(ds, m, 0.5, 1, epoch=2)
    assert not np.array_equal(ep.x_train, tr.x_train)


def test_validation_errors():
    m = C.Replacement()
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        m.apply(X, 1.2, 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        m.apply(X, float("nan"), 0)
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        C.Additive().apply(X, -0.1, 0)
    bad = X.copy()
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="x contains NaN or inf"):
        m.apply(bad, 0.5, 0)
    with pytest.raises(ValueError, match="x must be 2-dimensional"):
        m.apply(X[0], 0.5, 0)
    with pytest.raises(ValueError, match="seed must be in"):
        m.apply(X, 0.5, -1)
    with pytest.raises(TypeError, match="seed must be an integer"):
        m.apply(X, 0.5, 1.5)
    with pytest.raises(ValueError, match="indices must have shape"):
        m.apply(X, 0.5, 0, indices=np.arange(3))
    with pytest.raises(ValueError, match="dist must be one of"):
        C.Replacement("poisson")
    with pytest.raises(ValueError, match="dist must be one of"):
        C.Additive("cauchy")
    with pytest.raises(ValueError, match="low < high"):
        C.Replacement(low=1.0, high=0.0)
    with pytest.raises(ValueError, match="from_marginal"):
        C.Replacement("marginal")
    with pytest.raises(ValueError, match="salt_prob must be in"):
        C.Replacement("salt_pepper", salt_prob=1.5)
    with pytest.raises(ValueError, match="where must be one of"):
        C.corrupt(data.load("digits"), m, 0.5, 0, where="val")
    with pytest.raises(ValueError, match=r"p_test must be in \[0, 1\]"):
        C.corrupt(data.load("digits"), m, 0.5, 0, where="both", p_test=2.0)


U01 = C.Replacement("uniform", low=0.0, high=1.0)


def test_online_is_the_offline_realisation_of_each_epoch_and_changes_with_set_and_epoch():
    x = np.random.default_rng(1).uniform(size=(9, 17)).astype(np.float32)
    redraw = jax.jit(C.Online(U01, 0.7, 5))
    seen = []
    for k in (0, 3):
        for e in (0, 2):
            got = np.asarray(redraw(jnp.asarray(x), jnp.int32(k), jnp.int32(e)))
            want = np.asarray(U01.apply(x, 0.7, 5 + k, epoch=e + 1))
            np.testing.assert_array_equal(got, want)
            seen.append(got)
    for i in range(len(seen)):  # a different noise realisation for every (repeat, epoch)
        for j in range(i):
            assert not np.array_equal(seen[i], seen[j])
    frac = np.mean([np.mean(s != x) for s in seen])  # replaced fraction ~ p (4·153 Bernoulli(0.7) draws)
    assert abs(frac - 0.7) < 4 * math.sqrt(0.21 / (4 * x.size))
    # additive: the same draws as apply (jitted on both sides: XLA may fuse the multiply-add)
    add = C.Additive("laplace")
    got = np.asarray(jax.jit(C.Online(add, 0.4, 2))(x, 1, 3))
    want = np.asarray(jax.jit(lambda a: add.apply(a, 0.4, 3, epoch=4))(x))
    np.testing.assert_allclose(got, want, rtol=0, atol=4 * np.finfo(np.float32).eps)


def test_online_validates_its_arguments():
    with pytest.raises(ValueError, match="p must"):
        C.Online(U01, 1.5, 0)
    with pytest.raises(TypeError, match="Replacement or Additive"):
        C.Online("uniform", 0.5, 0)
    with pytest.raises(ValueError, match="seed"):
        C.Online(U01, 0.5, -1)
    with pytest.raises(ValueError, match="stream"):
        C.Online(U01, 0.5, 0, stream=7)
