"""Label-noise models and dilution: frequencies, exact counts, determinism, composition, errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.stats

from nwcorrupt import corruption, data
from nwcorrupt import labels as L

C = 5
Y = np.repeat(np.arange(C), 3000).astype(np.int32)  # 3000 rows per class
CONF = np.arange(C * C, dtype=float).reshape(C, C) % 7  # an arbitrary confusion table

MODELS = [
    L.Symmetric(0.4),
    L.Symmetric(0.4, include_true=False),
    L.Pair(0.3),
    L.Pair(0.25, mapping=(2, 0, 1, 4, 3)),
    L.Transition(np.random.default_rng(0).dirichlet(np.ones(C), size=C)),
    L.Structured(0.6, order="confusing", confusion=CONF),
    L.Structured(0.6, order="reverse", confusion=CONF),
    L.Structured(1.0, order="random", order_seed=3),
]


def _frequencies(y, y_noisy, c):
    counts = np.zeros((c, c))
    np.add.at(counts, (y, y_noisy), 1.0)
    return counts / counts.sum(axis=1, keepdims=True), counts.sum(axis=1)


@pytest.mark.parametrize("model", MODELS, ids=lambda m: type(m).__name__)
def test_frequencies_match_transition_within_binomial_error(model):
    t = model.transition(C)
    np.testing.assert_allclose(t.sum(axis=1), 1.0, atol=1e-12)
    noisy = model.apply(Y, 11, num_classes=C)
    freq, n = _frequencies(Y, noisy, C)
    se = np.sqrt(t * (1 - t) / n[:, None]) + 1e-12
    assert np.max(np.abs(freq - t) / se) < 5.0
    assert L.flip_fraction(Y, noisy) == pytest.approx(1 - np.mean(np.diag(t)), abs=5 * np.sqrt(0.25 / Y.size))


def test_closed_forms_of_the_transitions():
    r = 0.3
    np.testing.assert_allclose(L.Symmetric(r).transition(4), (1 - r) * np.eye(4) + r / 4)
    other = L.Symmetric(r, include_true=False).transition(4)
    np.testing.assert_allclose(np.diag(other), 1 - r)
    np.testing.assert_allclose(other[0, 1:], r / 3)
    np.testing.assert_allclose(L.Pair(r).transition(3), [[1 - r, r, 0], [0, 1 - r, r], [r, 0, 1 - r]])
    np.testing.assert_allclose(L.Binary(0.1, 0.2).transition(2), [[0.8, 0.2], [0.1, 0.9]])
    # structured: diagonal 1/C; delta = 0 uniform; delta = 1 gives 2/C to the most confused class, 0 to the last
    s0 = L.Structured(0.0, order="random").transition(10)
    np.testing.assert_allclose(s0, np.full((10, 10), 0.1))
    conf = np.eye(10) * 100 + np.arange(10)[None, :]  # class 9 is everyone's most confused other class
    s1 = L.Structured(1.0, confusion=conf).transition(10)
    np.testing.assert_allclose(np.diag(s1), 0.1)
    assert s1[0, 9] == pytest.approx(0.2) and s1[0, 1] == pytest.approx(0.0)
    rev = L.Structured(1.0, order="reverse", confusion=conf).transition(10)
    assert rev[0, 1] == pytest.approx(0.2) and rev[0, 9] == pytest.approx(0.0)
    # the most frequent wrong label overtakes the true one in a diluted class at delta > C / alpha
    alpha, c = 20.0, 10
    for delta, overtakes in ((0.45, False), (0.55, True)):
        t = L.Structured(delta, confusion=conf).transition(c)
        true_count = 1.0 + alpha * t[0, 0]  # clean rows + noisy rows of the class keeping its label
        assert bool(alpha * t[0, 9] > true_count) == overtakes


@pytest.mark.parametrize("model", [L.Symmetric(0.35, include_true=False, exact=True), L.Pair(0.35, exact=True)])
def test_exact_variants_flip_exactly_floor_rn(model):
    y = Y[:1001]
    noisy = model.apply(y, 4, num_classes=C)
    assert int(np.sum(noisy != y)) == int(np.floor(0.35 * 1001))


def test_exact_transition_realises_the_counts():
    t = np.array([[0.5, 0.25, 0.25], [0.1, 0.8, 0.1], [0.0, 0.0, 1.0]])
    y = np.repeat(np.arange(3), 40).astype(np.int32)
    noisy = L.Transition(t, exact=True).apply(y, 0, num_classes=3)
    counts = np.zeros((3, 3))
    np.add.at(counts, (y, noisy), 1)
    np.testing.assert_array_equal(counts, [[20, 10, 10], [4, 32, 4], [0, 0, 40]])


@pytest.mark.parametrize("model", MODELS[:5], ids=lambda m: type(m).__name__)
def test_determinism_and_independence_from_batches(model):
    a = model.apply(Y, 9, num_classes=C)
    np.testing.assert_array_equal(a, model.apply(Y, 9, num_classes=C))
    assert np.any(a != model.apply(Y, 10, num_classes=C))
    parts = [model.apply(Y[s : s + 4000], 9, num_classes=C, indices=np.arange(s, min(s + 4000, Y.size)))
             for s in range(0, Y.size, 4000)]
    np.testing.assert_array_equal(np.concatenate(parts), a)
    # the law's sampler draws the same labels as the model
    np.testing.assert_array_equal(model.law(Y, C).sample(9), a)


@pytest.mark.parametrize("model", [L.Symmetric(0.0), L.Pair(0.0), L.Symmetric(0.0, exact=True), L.Binary(0.0, 0.0)])
def test_zero_rate_is_the_identity(model):
    c = 2 if isinstance(model, L.Binary) else C
    y = Y % c
    np.testing.assert_array_equal(model.apply(y, 1, num_classes=c), y)


def test_binary_rates_are_class_conditional():
    y = np.repeat([0, 1], 20000).astype(np.int32)
    noisy = L.Binary(tau_pos=0.3, tau_neg=0.1).apply(y, 2)
    assert np.mean(noisy[y == 1] == 0) == pytest.approx(0.3, abs=0.015)
    assert np.mean(noisy[y == 0] == 1) == pytest.approx(0.1, abs=0.01)


def test_instance_dependent_relabels_to_g():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4000, 3))
    y = rng.integers(0, 3, 4000).astype(np.int32)
    g = lambda xx: (np.asarray(xx)[:, 0] > 0).astype(np.int32) * 2  # noqa: E731 - labels from the input
    model = L.InstanceDependent(0.4, g)
    noisy = model.apply(y, 5, num_classes=3, x=x)
    other = g(x)
    changed = noisy != y
    assert np.all(noisy[changed] == other[changed])
    frac = np.mean(noisy == other)  # selected rows plus rows where g already agrees with y
    expect = 0.4 + 0.6 * np.mean(other == y)
    assert frac == pytest.approx(expect, abs=0.03)
    t = model.transition(3, y=y, x=x)
    np.testing.assert_allclose(t.sum(axis=1), 1.0)
    mean = model.law(y, 3, x=x).mean_targets()
    np.testing.assert_allclose(mean, 0.6 * np.eye(3)[y] + 0.4 * np.eye(3)[other])
    np.testing.assert_array_equal(L.InstanceDependent(0.4, other).apply(y, 5, num_classes=3), noisy)


def test_class_mean_confusion_orders_structured_noise():
    ds = data.gaussian_mixture(n_train=300, n_test=3, d=20, num_classes=3, separation=0.5, seed=0)
    conf = L.class_mean_confusion(ds.x_train, ds.y_train, 3)
    assert conf.sum() == 300 and np.all(np.diag(conf) > conf.sum(axis=1) / 3)
    model = L.Structured.from_class_means(1.0, ds.x_train, ds.y_train, 3)
    t = model.transition(3)
    for a in range(3):
        others = [b for b in range(3) if b != a]
        first = max(others, key=lambda b: (conf[a, b], -b))
        assert t[a, first] == pytest.approx(2 / 3)


def test_structured_noise_without_confusion_takes_the_class_mean_rules_on_the_data():
    ds = data.gaussian_mixture(n_train=300, n_test=3, d=20, num_classes=3, separation=0.5, seed=0)
    noisy, _ = L.corrupt(ds, L.Structured(0.8), 5)
    explicit, _ = L.corrupt(ds, L.Structured.from_class_means(0.8, ds.x_train, ds.y_train, 3), 5)
    np.testing.assert_array_equal(noisy.y_train, explicit.y_train)
    out = L.Dilution(2.0, "copies", noise=L.Structured(0.8)).apply(ds, 1)
    np.testing.assert_allclose(out.law.probs[3:6], L.Structured.from_class_means(0.8, ds.x_train, ds.y_train, 3).transition(3))


def test_regression_noise_laws():
    y = np.zeros(40000)
    for model, dist in [
        (L.RegressionNoise(1.0), scipy.stats.norm(0, 40)),
        (L.RegressionNoise(1.0, loc=10, scale=15), scipy.stats.norm(10, 15)),
        (L.RegressionNoise(1.0, dist="gamma", scale=15), scipy.stats.gamma(2, loc=-30, scale=15)),
        (L.RegressionNoise(1.0, dist="student_t", scale=1.0), scipy.stats.t(1)),
    ]:
        z = model.apply(y, 3)
        assert scipy.stats.kstest(z, dist.cdf).pvalue > 1e-3
    half = L.RegressionNoise(0.5).apply(y, 3)
    assert np.mean(half != 0) == pytest.approx(0.5, abs=0.01)
    m, v = L.RegressionNoise(0.5, loc=10, scale=15).target_moments(np.ones(3))
    np.testing.assert_allclose(m, 6.0)
    np.testing.assert_allclose(v, 0.5 * (225 + 100) - 25)
    np.testing.assert_array_equal(L.RegressionNoise(0.0).apply(np.arange(5.0), 1), np.arange(5.0))


def test_label_noise_composes_with_input_corruption():
    ds = data.gaussian_mixture(n_train=200, n_test=20, d=30, num_classes=4, seed=1)
    model, inputs = L.Symmetric(0.5), (corruption.Replacement(), 0.8)
    one, mask = L.corrupt(ds, model, 7, inputs=inputs)
    first = corruption.corrupt(L.corrupt(ds, model, 7)[0], *inputs, 7)
    second, _ = L.corrupt(corruption.corrupt(ds, *inputs, 7), model, 7)
    for other in (first, second):
        np.testing.assert_array_equal(one.x_train, other.x_train)
        np.testing.assert_array_equal(one.y_train, other.y_train)
    np.testing.assert_array_equal(mask, one.y_train == ds.y_train)
    np.testing.assert_array_equal(one.y_test, ds.y_test)
    assert not np.array_equal(one.x_train, ds.x_train)


# --------------------------------------------------------------------------- dilution


def _mixture(n=100, d=12, c=4, seed=0):
    return data.gaussian_mixture(n_train=n, n_test=c, d=d, num_classes=c, seed=seed)


@pytest.mark.parametrize("source", ["pool", "copies", "external", "white"])
def test_dilution_sizes_masks_and_label_law(source):
    ds = _mixture()
    pool = _mixture(n=400, seed=5)
    ext = np.random.default_rng(0).random((300, ds.d))
    kwargs = {"pool": pool} if source == "pool" else {"external": ext} if source == "external" else {}
    out = L.Dilution(2.5, source).apply(ds, 3, **kwargs)
    n_total = 100 + 250
    assert out.dataset.n_train == n_total and out.n_noisy == 250
    np.testing.assert_array_equal(out.clean_mask, np.arange(n_total) < 100)
    np.testing.assert_array_equal(out.dataset.x_train[:100], ds.x_train)
    np.testing.assert_array_equal(out.dataset.y_train[:100], ds.y_train)
    np.testing.assert_array_equal(out.law.sample(3), out.dataset.y_train)
    mean = out.law.mean_targets()
    np.testing.assert_allclose(mean[:100], np.eye(4)[ds.y_train])
    np.testing.assert_allclose(mean[100:], 0.25)
    if source == "copies":
        np.testing.assert_array_equal(out.dataset.x_train[100:], ds.x_train[np.arange(250) % 100])
    if source == "pool":
        assert not out.with_replacement
        rows = [np.flatnonzero((pool.x_train == r).all(axis=1)) for r in out.dataset.x_train[100:]]
        assert all(len(r) == 1 for r in rows) and len({int(r[0]) for r in rows}) == 250
        np.testing.assert_array_equal(out.source_labels[100:], pool.y_train[[int(r[0]) for r in rows]])
    if source == "white":
        xs = out.dataset.x_train[100:].astype(np.float64)
        assert xs.mean() == pytest.approx(ds.x_train.mean(), abs=0.02)
        assert xs.std() == pytest.approx(ds.x_train.std(), rel=0.02)
    again, mask = L.dilute(ds, 2.5, 3, source=source, **kwargs)
    np.testing.assert_array_equal(again.x_train, out.dataset.x_train)
    np.testing.assert_array_equal(mask, out.clean_mask)


def test_dilution_labels_are_uniform_and_keep_the_plurality():
    ds = _mixture(n=200)
    out = L.Dilution(30.0, "copies").apply(ds, 1)
    noisy = out.dataset.y_train[~out.clean_mask]
    counts = np.bincount(noisy, minlength=4)
    assert scipy.stats.chisquare(counts).pvalue > 1e-3
    # labels seen for each clean image: e_y/(1 + a) + a/((1 + a) C); the true label is the plurality
    src = out.source_labels
    for c in range(4):
        n_c = np.sum(src == c)
        seen = np.bincount(out.dataset.y_train[src == c], minlength=4) / n_c
        expect = L.smoothed_targets(np.array([c]), 30.0, 4)[0]
        assert np.all(np.abs(seen - expect) < 5 * np.sqrt(expect * (1 - expect) / n_c))


def test_pool_smaller_than_alpha_n_draws_with_replacement():
    ds, pool = _mixture(n=40), _mixture(n=60, seed=2)
    out = L.Dilution(3.0, "pool").apply(ds, 0, pool=pool)
    assert out.with_replacement and out.n_noisy == 120
    with pytest.raises(ValueError, match="replace=False needs at least 120"):
        L.Dilution(3.0, "pool", replace=False).apply(ds, 0, pool=pool)


def test_structured_dilution_follows_the_source_class():
    ds, pool = _mixture(n=200, c=4), _mixture(n=4000, c=4, seed=3)
    noise = L.Structured(1.0, order="random", order_seed=1)
    out = L.Dilution(10.0, "pool", noise=noise).apply(ds, 2, pool=pool)
    t = noise.transition(4)
    noisy = ~out.clean_mask
    freq, n = _frequencies(out.source_labels[noisy], out.dataset.y_train[noisy], 4)
    assert np.all(np.abs(freq - t) <= 5 * np.sqrt(t * (1 - t) / n[:, None]))
    with pytest.raises(ValueError, match="true class of each noisy input"):
        L.Dilution(1.0, "white", noise=noise).apply(ds, 0)


def test_smoothed_targets_closed_form():
    y = np.array([0, 2])
    np.testing.assert_allclose(L.smoothed_targets(y, 3.0, 4), [[0.25 + 0.75 / 4, 0.1875, 0.1875, 0.1875],
                                                               [0.1875, 0.1875, 0.25 + 0.1875, 0.1875]])
    np.testing.assert_allclose(L.smoothed_targets(y, 0.0, 4), np.eye(4)[y])


def test_non_integer_alpha_and_zero():
    ds = _mixture(n=100)
    assert L.Dilution(0.37, "copies").apply(ds, 0).n_noisy == 37
    out, mask = L.dilute(ds, 0.0, 0, source="copies")
    assert out.n_train == 100 and mask.all()


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "build,match",
    [
        (lambda: L.Symmetric(1.2), "r must be in \\[0, 1\\]"),
        (lambda: L.Pair(-0.1), "r must be"),
        (lambda: L.Structured(1.5), "delta must be"),
        (lambda: L.Structured(0.5, order="sideways"), "order must be one of"),
        (lambda: L.Transition([[0.5, 0.4], [0.0, 1.0]]), "row 0 sums to 0.9"),
        (lambda: L.Transition([[1.2, -0.2], [0.0, 1.0]]), "entry \\[0, 1\\].*negative"),
        (lambda: L.Transition([[1.0, 0.0, 0.0]]), "square"),
        (lambda: L.Pair(0.2, mapping=(0, 1)), "maps class 0 to itself"),
        (lambda: L.Dilution(-1.0), "alpha must be"),
        (lambda: L.Dilution(1.0, source="magic"), "source must be one of"),
        (lambda: L.Binary(0.1, 1.5), "tau_neg must be"),
        (lambda: L.RegressionNoise(0.5, dist="cauchy"), "dist must be one of"),
    ],
)
def test_bad_parameters_raise_clear_errors(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_bad_labels_and_data_raise_clear_errors():
    with pytest.raises(ValueError, match="y must lie in \\[0, 3\\)"):
        L.Symmetric(0.2).apply(np.array([0, 3]), 0, num_classes=3)
    with pytest.raises(ValueError, match="mapping has 2 entries but num_classes=3"):
        L.Pair(0.2, mapping=(1, 0)).apply(np.array([0, 1]), 0, num_classes=3)
    with pytest.raises(ValueError, match="needs confusion="):
        L.Structured(0.5).transition(4)
    ds = _mixture()
    with pytest.raises(ValueError, match="external has 5 features but the data set has 12"):
        L.dilute(ds, 1.0, 0, source="external", external=np.zeros((10, 5)))
    with pytest.raises(ValueError, match="needs external="):
        L.dilute(ds, 1.0, 0, source="external")
    with pytest.raises(ValueError, match="Binary noise needs num_classes=2"):
        L.Binary(0.1, 0.1).transition(3)
