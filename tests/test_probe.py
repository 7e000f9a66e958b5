"""Linear probes: direct least-squares solutions, the infinite-width limit, clean subsets, errors."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nwcorrupt import metrics, mlp, precision, probe
from nwcorrupt.arch import MLP


def _data(m: int, f: int, c: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(m, f)), rng.integers(0, c, m)


@pytest.mark.parametrize("m,f", [(40, 7), (7, 40)])
@pytest.mark.parametrize("ridge", [0.0, 0.3])
def test_probe_equals_the_direct_numpy_solution(m, f, ridge):
    phi, y = _data(m, f, 4)
    onehot = np.eye(4)[y]
    if ridge > 0:  # the normal equations, in the primal form whatever the shape
        direct = np.linalg.solve(phi.T @ phi + ridge * np.eye(f), phi.T @ onehot)
    else:  # the minimum-norm least-squares solution through the pseudo-inverse
        direct = np.linalg.pinv(phi) @ onehot
    p = probe.fit(phi, y, num_classes=4, ridge=ridge)
    np.testing.assert_allclose(p.weights, direct, rtol=0, atol=1e-10)
    xt = np.random.default_rng(1).normal(size=(9, f))
    np.testing.assert_array_equal(p.predict(xt), np.argmax(xt @ direct, 1))
    assert p.accuracy(xt, p.predict(xt)) == 1.0


def test_relative_ridge_makes_the_probe_scale_invariant():
    phi, y = _data(30, 50, 3)
    a = probe.fit(phi, y, num_classes=3, ridge=0.1, ridge_relative=True)
    b = probe.fit(1000.0 * phi, y, num_classes=3, ridge=0.1, ridge_relative=True)
    np.testing.assert_allclose(a.scores(phi), b.scores(1000.0 * phi), rtol=1e-9)
    assert b.ridge == pytest.approx(0.1 * np.sum((1000.0 * phi) ** 2) / 30)


def test_regression_probe_and_its_errors():
    rng = np.random.default_rng(2)
    phi = rng.normal(size=(50, 5))
    w = rng.normal(size=5)
    t = phi @ w
    reg = probe.fit_regression(phi, t)
    np.testing.assert_allclose(reg.weights, w, atol=1e-10)
    e = probe.regression_errors(np.array([1.0, 3.0]), np.array([2.0, 2.0]))
    assert e == {"mse": 1.0, "mae": 1.0, "mape": 0.5}
    with pytest.raises(ValueError, match="non-zero targets"):
        probe.regression_errors(np.ones(2), np.array([0.0, 1.0]))
    with pytest.raises(ValueError, match="must match"):
        probe.regression_errors(np.ones(2), np.ones(3))


def test_with_bias_appends_a_constant_column():
    b = probe.with_bias(np.zeros((3, 2)), scale=2.0)
    assert b.shape == (3, 3) and np.all(b[:, 2] == 2.0)


def test_clean_subsets_are_balanced_reproducible_and_respect_the_pool():
    y = np.repeat(np.arange(3), 10)
    s = probe.clean_subsets(y, 4, num_classes=3, num_subsets=5, seed=7)
    assert s.shape == (5, 12)
    for row in s:
        assert np.all(np.bincount(y[row], minlength=3) == 4) and len(set(row)) == 12
    # subset i does not depend on how many are drawn
    np.testing.assert_array_equal(probe.clean_subsets(y, 4, num_classes=3, num_subsets=2, seed=7), s[:2])
    assert not np.array_equal(s[0], s[1])
    pool = np.arange(30) % 2 == 0
    sp = probe.clean_subsets(y, 5, num_classes=3, num_subsets=3, pool=pool)
    assert np.all(pool[sp])
    with pytest.raises(ValueError, match="m_per_class=6 exceeds the clean pool: class 0 has only 5"):
        probe.clean_subsets(y, 6, num_classes=3, pool=pool)
    with pytest.raises(ValueError, match="m_per_class=11 exceeds the clean pool"):
        probe.clean_subsets(y, 11, num_classes=3)


def test_representations_are_inputs_hidden_post_activations_and_outputs():
    arch = MLP(depth=3, activation="relu", parameterization="standard")
    params = mlp.init(jax.random.PRNGKey(0), arch, 16, 5, 3)
    x = np.random.default_rng(0).normal(size=(4, 5)).astype(np.float32)
    reps = probe.representations(arch, params, x)
    assert sorted(reps) == [0, 1, 2, 3]
    np.testing.assert_allclose(reps[0], x)
    np.testing.assert_allclose(reps[3], mlp.apply(arch, params, x), rtol=1e-6)
    np.testing.assert_allclose(reps[2], mlp.penultimate(arch, params, x), rtol=1e-6)
    h1 = np.maximum(x @ np.asarray(params[0]["W"]) + np.asarray(params[0]["b"]), 0.0)
    np.testing.assert_allclose(reps[1], h1, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"layer must be an integer in \[0, 3\]"):
        mlp.layer_features(arch, params, x, 4)
    with pytest.raises(ValueError, match=r"layer must be an integer in \[0, 2\]"):
        probe.layer_kernel(arch, 3, x)


def test_layer_zero_baseline_is_the_raw_input_probe():
    # K_0 = x·x'/d: kernel regression with it is the minimum-norm probe on raw inputs (M < d)
    phi, y = _data(12, 30, 3, seed=3)
    xt = np.random.default_rng(4).normal(size=(6, 30))
    arch = MLP(depth=2, activation="relu", W_std=1.3, b_std=0.4)
    with precision.x64():
        k = probe.kernel_scores(arch, 0, phi, y, xt, num_classes=3, ridge=0.0)
    np.testing.assert_allclose(k, probe.fit(phi, y, num_classes=3).scores(xt), rtol=1e-8, atol=1e-10)


def test_infinite_width_baseline_is_the_limit_of_random_init_probes():
    # the random-init probe of hidden layer l, minimum-norm least squares on m << n examples, tends to
    # kernel regression with the post-activation NNGP of layer l; the gap falls like n^(-1/2)
    rng = np.random.default_rng(5)
    x = rng.normal(size=(20, 8))
    x /= np.sqrt(np.mean(x**2, 1, keepdims=True))
    xt = rng.normal(size=(15, 8))
    y = np.arange(20) % 4
    with precision.x64():
        for layer, widths in ((1, (256, 1024, 4096, 16384)), (2, (128, 512, 2048))):
            # depth layer + 1: no unused n x n matrix is drawn
            arch = MLP(depth=layer + 1, activation="relu", W_std=1.4, b_std=0.3, parameterization="standard")
            exact = probe.kernel_scores(arch, layer, x, y, xt, num_classes=4)
            gaps = []
            for n in widths:
                errs = []
                for s in range(4):
                    params = mlp.init(jax.random.PRNGKey(100 * s + 1), arch, n, 8, 4)
                    phi = np.asarray(mlp.layer_features(arch, params, x, layer))
                    phit = np.asarray(mlp.layer_features(arch, params, xt, layer))
                    errs.append(np.sqrt(np.mean((probe.fit(phi, y, num_classes=4).scores(phit) - exact) ** 2)))
                gaps.append(np.mean(errs))
            slope, _, _ = metrics.loglog_slope(np.array(widths, float), np.array(gaps))
            assert -0.65 < slope < -0.35, (layer, slope, gaps)
            assert gaps[-1] < 0.2 * np.sqrt(np.mean(exact**2))  # within 20% at the widest


def test_ntk_baseline_is_the_truncated_network_ntk_regression():
    from nwcorrupt import predict

    arch = MLP(depth=4, activation="relu", W_std=1.2, b_std=0.1)
    phi, y = _data(10, 6, 2, seed=6)
    xt = np.random.default_rng(7).normal(size=(5, 6))
    with precision.x64():
        got = probe.kernel_scores(arch, 2, phi, y, xt, num_classes=2, get="ntk", ridge=1e-3)
        ref = predict.ntk_predict(MLP(depth=3, activation="relu", W_std=1.2, b_std=0.1), phi, np.eye(2)[y], xt,
                                  diag_reg=1e-3)
    np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-7, atol=1e-9)


def test_bad_probe_inputs_raise():
    phi, y = _data(10, 3, 2)
    with pytest.raises(ValueError, match="labels has 9 labels but features has 10 rows"):
        probe.fit(phi, y[:9], num_classes=2)
    with pytest.raises(ValueError, match="ridge"):
        probe.fit(phi, y, num_classes=2, ridge=-1.0)
    with pytest.raises(ValueError, match="NaN or inf"):
        probe.fit(np.full((2, 2), np.nan), np.zeros(2, int), num_classes=2)
    with pytest.raises(ValueError, match="features has 4 features but the probe has 3"):
        probe.fit(phi, y, num_classes=2).predict(np.zeros((2, 4)))
    with pytest.raises(ValueError, match="get must be one of"):
        probe.layer_kernel(MLP(depth=2), 1, phi, get="cov")


@pytest.mark.parametrize("get", ["nngp", "ntk"])
def test_layer_kernels_in_one_pass_equal_the_truncated_kernels(get):
    arch = MLP(depth=4, activation="relu", W_std=1.3, b_std=0.2)
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=(7, 5)), rng.normal(size=(4, 5))
    with precision.x64():
        for x1, x2 in ((a, None), (b, a)):
            allk = probe.layer_kernels(arch, x1, x2, get=get)
            assert sorted(allk) == [0, 1, 2, 3]
            for l in range(4):
                np.testing.assert_allclose(allk[l], probe.layer_kernel(arch, l, x1, x2, get=get), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(probe.layer_kernels(arch, a, get="nngp")[0], a @ a.T / 5, rtol=1e-6)


def test_kernel_regression_checks_its_matrices():
    k = np.eye(3)
    with pytest.raises(ValueError, match="k_train must be square"):
        probe.kernel_regression(np.ones((3, 2)), np.ones((2, 3)), [0, 1, 0], num_classes=2)
    with pytest.raises(ValueError, match="k_test_train has 2 columns but k_train has 3"):
        probe.kernel_regression(k, np.ones((2, 2)), [0, 1, 0], num_classes=2)
    np.testing.assert_allclose(probe.kernel_regression(k, k, [0, 1, 0], num_classes=2, ridge=0.0), np.eye(2)[[0, 1, 0]])
