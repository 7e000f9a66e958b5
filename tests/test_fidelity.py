"""The study networks as the studies defined them, checked against independent numpy code.

* initial-parameter statistics of the standard parameterisation (fan-in Gaussian weights, zero
  trainable biases) and of PyTorch's ``nn.Linear`` default (U(±1/√fan_in) weights and biases);
* the forward pass h = x W + b of a standard-parameterised network against numpy;
* one Adam step, computed here with a hand-written backward pass and Adam's update rule, against
  :func:`nwcorrupt.train.train_member` (full batch, so the minibatch order cannot matter);
* an epoch without ``drop_last`` visits every row once, the last batch smaller, and its loss is the
  mean over that batch's rows: reproduced by numpy SGD on the same shuffled order.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import erf

from nwcorrupt import mlp, precision, train
from nwcorrupt.arch import MLP


def _np_forward(params, x, act):
    hs, zs = [], [x]
    h = x
    for i, layer in enumerate(params):
        if i > 0:
            h = act(h)
            zs.append(h)
        h = h @ np.asarray(layer["W"], np.float64) + np.asarray(layer["b"], np.float64)
        hs.append(h)
    return hs, zs


def test_standard_gaussian_init_statistics_and_zero_biases():
    arch = MLP(3, "erf", W_std=1.0, b_std=0.0, parameterization="standard")
    d, n, c = 300, 400, 10
    params = mlp.init(jax.random.PRNGKey(0), arch, n, d, c)
    for layer, fan_in in zip(params, (d, n, n)):
        w = np.asarray(layer["W"], np.float64)
        # variance 1/fan_in: the sample variance of w·√fan_in is 1 within 5 standard errors √(2/size)
        assert np.var(w * np.sqrt(fan_in)) == pytest.approx(1.0, abs=5 * np.sqrt(2 / w.size))
        assert abs(np.mean(w * np.sqrt(fan_in))) < 5 / np.sqrt(w.size)
        assert np.all(np.asarray(layer["b"]) == 0.0)  # b_std = 0: biases start at zero


def test_torch_default_init_is_uniform_with_fan_in_bound():
    arch = MLP(4, "relu", parameterization="standard")
    d, n, c = 784, 128, 10
    params = mlp.init(jax.random.PRNGKey(1), arch, n, d, c, law="torch_default")
    for layer, fan_in in zip(params, (d, n, n, n)):
        bound = 1.0 / np.sqrt(fan_in)
        for name in ("W", "b"):
            v = np.asarray(layer[name], np.float64)
            assert np.all(np.abs(v) <= bound)
            if v.size >= 1000:
                # U(-a, a) has variance a²/3 (standard error of the sample variance: √(4/(5 size)) a²/3)
                assert np.var(v) == pytest.approx(bound**2 / 3, rel=5 * np.sqrt(0.8 / v.size))
                assert np.max(np.abs(v)) > 0.99 * bound
        assert np.any(np.asarray(layer["b"]) != 0.0)  # PyTorch biases are not zero


def test_torch_default_needs_standard_parameterisation():
    with pytest.raises(ValueError, match="init='torch_default'.*parameterization='standard'"):
        mlp.init(jax.random.PRNGKey(0), MLP(2, parameterization="ntk"), 4, 3, 2, law="torch_default")
    with pytest.raises(ValueError, match="init"):
        mlp.init(jax.random.PRNGKey(0), MLP(2, parameterization="standard"), 4, 3, 2, law="pytorch")
    with pytest.raises(ValueError, match="init='torch_default'"):
        train.TrainConfig(arch=MLP(2), width=4, num_classes=2, epochs=1, init="torch_default")


def test_standard_forward_pass_equals_numpy(x64):
    arch = MLP(3, "erf", W_std=1.0, b_std=0.0, parameterization="standard")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(7, 12))
    params = mlp.init(jax.random.PRNGKey(2), arch, 16, 12, 5)
    # nonzero biases, to check they enter as + b
    params = [{"W": p["W"], "b": p["b"] + rng.normal(size=p["b"].shape)} for p in params]
    hs, _ = _np_forward(params, x, erf)
    np.testing.assert_allclose(np.asarray(mlp.apply(arch, params, x)), hs[-1], rtol=1e-12, atol=1e-12)


def _np_mse_grads(params, x, y_onehot, act, dact):
    """Gradients of mean over N·C of (f − Y)² by a hand-written backward pass."""
    hs, zs = _np_forward(params, x, act)
    f = hs[-1]
    delta = 2.0 * (f - y_onehot) / f.size  # dL/dh^L
    grads = [None] * len(params)
    for i in range(len(params) - 1, -1, -1):
        grads[i] = {"W": zs[i].T @ delta, "b": delta.sum(0)}
        if i > 0:
            delta = (delta @ np.asarray(params[i]["W"], np.float64).T) * dact(hs[i - 1])
    return f, grads


@pytest.mark.parametrize("lr", [1e-4, 1e-2])
def test_one_adam_step_matches_numpy(x64, lr):
    arch = MLP(3, "erf", W_std=1.0, b_std=0.0, parameterization="standard")
    rng = np.random.default_rng(3)
    n, d, c, width = 12, 10, 3, 32
    x = rng.normal(size=(n, d))
    y = np.arange(n) % c
    cfg = train.TrainConfig(arch=arch, width=width, num_classes=c, optimizer=train.Optimizer("adam", lr),
                            loss="mse", batch_size=n, steps=1, seed=5)
    p0 = train.member_init(cfg, d)
    x_test = rng.normal(size=(4, d))

    dact = lambda h: 2.0 / np.sqrt(np.pi) * np.exp(-(h**2))  # noqa: E731
    _, grads = _np_mse_grads(p0, x, np.eye(c)[y], erf, dact)
    b1, b2, eps = 0.9, 0.999, 1e-8
    p1 = []
    for layer, g in zip(p0, grads):
        new = {}
        for name in ("W", "b"):
            m_hat = (1 - b1) * g[name] / (1 - b1)
            v_hat = (1 - b2) * g[name] ** 2 / (1 - b2)
            new[name] = np.asarray(layer[name], np.float64) - lr * m_hat / (np.sqrt(v_hat) + eps)
        p1.append(new)
    before = _np_forward(p0, x_test, erf)[0][-1]
    after = _np_forward(p1, x_test, erf)[0][-1]

    res = train.train_member(cfg, x, y, x_test)
    got = np.asarray(res.test_logits, np.float64)
    np.testing.assert_allclose(got - before, after - before, rtol=1e-6, atol=1e-12)
    # the first Adam step moves every parameter with a nonzero gradient by lr (up to eps)
    moved = np.abs(np.asarray(res.params[1]["W"]) - np.asarray(p0[1]["W"]))
    assert np.allclose(moved[np.abs(grads[1]["W"]) > 1e-6], lr, rtol=1e-3)


def test_epoch_without_drop_last_visits_every_row_once(x64):
    # depth-1 linear network, SGD: the trajectory is reproduced in numpy from the same batch order
    arch = MLP(1, "identity", W_std=1.0, b_std=0.0, parameterization="standard")
    rng = np.random.default_rng(4)
    n, d, c, bsz, lr, epochs = 10, 3, 2, 4, 0.1, 2
    x = rng.normal(size=(n, d))
    y = np.array([0, 1] * 5)
    cfg = train.TrainConfig(arch=arch, width=1, num_classes=c,
                            optimizer=train.Optimizer("sgd", lr), loss="mse", batch_size=bsz,
                            epochs=epochs, drop_last=False, seed=1)
    res = train.train_member(cfg, x, y, x)
    assert res.step_losses.shape == (epochs * 3,)  # ceil(10 / 4) = 3 steps per epoch

    w = np.asarray(train.member_init(cfg, d)[0]["W"], np.float64)
    b = np.asarray(train.member_init(cfg, d)[0]["b"], np.float64)
    _, shuffle_key = train.member_keys(1, 0, 0)
    yo = np.eye(c)[y]
    losses = []
    for e in range(epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(shuffle_key, e), n))
        for start in range(0, n, bsz):
            rows = perm[start : start + bsz]  # the last batch has 2 rows
            f = x[rows] @ w + b
            losses.append(np.mean((f - yo[rows]) ** 2))
            g = 2.0 * (f - yo[rows]) / f.size
            w, b = w - lr * x[rows].T @ g, b - lr * g.sum(0)
    np.testing.assert_allclose(res.step_losses, losses, rtol=1e-10)
    np.testing.assert_allclose(np.asarray(res.params[0]["W"]), w, rtol=1e-10)


def test_drop_last_drops_the_remainder(x64):
    arch = MLP(1, "identity", parameterization="standard")
    x = np.random.default_rng(0).normal(size=(10, 3))
    cfg = train.TrainConfig(arch=arch, width=1, num_classes=2, optimizer=train.Optimizer("sgd", 0.1),
                            batch_size=4, epochs=2, seed=1)
    assert cfg.drop_last and train.train_member(cfg, x, np.arange(10) % 2, x).step_losses.shape == (4,)
    with pytest.raises(TypeError, match="drop_last"):
        train.TrainConfig(arch=arch, width=1, num_classes=2, batch_size=4, epochs=2, drop_last=1)
