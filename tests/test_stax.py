"""nwcorrupt.stax: composable layers, convolutional kernels and their finite networks.

Reference values come from outside the code under test: the MLP recursion of
nwcorrupt.kernels (an independent implementation of the dense case), Monte Carlo
over finite random networks built by the layers' apply functions, exact
symmetries (translation invariance under circular padding), a hand-written
direct sum for a 1-D convolution kernel and XLA's compiled memory statistics.
The comparison with neural-tangents is in tests/oracle/test_stax_oracle.py.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import kernels as K
from nwcorrupt import stax, train
from nwcorrupt.stax import tiling


def _images(seed: int, n: int, shape=(6, 5, 2)) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n,) + shape)


# ----------------------------------------------------------------------------- dense = MLP


@pytest.mark.parametrize("act", ["relu", "erf", "tanh", "gelu"])
@pytest.mark.parametrize("param", ["ntk", "standard"])
@pytest.mark.parametrize("symmetric", [False, True])
def test_serial_dense_reproduces_mlp(x64, act, param, symmetric):
    width, depth, w_std, b_std = 37, 4, 1.3, 0.4
    arch = K.MLP(depth, act, w_std, b_std, param, width=width)
    layers = []
    for i in range(depth):
        if i:
            layers.append(stax.Nonlinearity(act))
        layers.append(stax.Dense(width if i < depth - 1 else 1, w_std, b_std, param))
    _, _, kernel_fn = stax.serial(*layers)
    rng = np.random.default_rng(3)
    x1, x2 = rng.standard_normal((9, 11)), rng.standard_normal((7, 11))
    ref = K.kernel(arch, x1, None if symmetric else x2)
    got = kernel_fn(x1, None if symmetric else x2)
    for name in ("nngp", "ntk"):
        a, b = np.asarray(getattr(got, name)), np.asarray(getattr(ref, name))
        assert np.max(np.abs(a - b)) <= 1e-12 * np.max(np.abs(b)), name


# ----------------------------------------------------------------------------- a direct 1-D reference


def test_conv1d_kernel_equals_direct_sum(x64):
    """Conv(SAME) -> Relu -> Flatten -> Dense in 1-D against a direct double loop over positions."""
    rng = np.random.default_rng(0)
    n, w, c, k = 3, 7, 2, 3
    x = rng.standard_normal((n, w, c))
    w_std, b_std = 1.2, 0.3
    net = stax.serial(stax.Conv(5, (k,), padding="SAME", W_std=w_std, b_std=b_std), stax.Relu(), stax.Flatten(),
                      stax.Dense(1, 0.9, 0.2))  # fmt: skip
    got = np.asarray(net[2](x, None, "nngp"))
    pad = np.pad(x, ((0, 0), (1, 1), (0, 0)))
    # first-layer covariance at position t of examples a, b: Cw/(k c) Σ_j Σ_ch x_a[t+j] x_b[t+j] + Cb
    K1 = np.zeros((n, n, w))
    for t in range(w):
        patch = pad[:, t : t + k, :].reshape(n, -1)
        K1[:, :, t] = w_std**2 * patch @ patch.T / (k * c) + b_std**2
    var = np.stack([np.diag(K1[:, :, t]) for t in range(w)], -1)
    norms = np.sqrt(var[:, None, :] * var[None, :, :])
    theta = np.arccos(np.clip(K1 / norms, -1, 1))
    relu = norms * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi)  # arc-cosine kernel
    ref = 0.81 * relu.mean(-1) + 0.04
    np.testing.assert_allclose(got, ref, rtol=1e-12)


# ----------------------------------------------------------------------------- Monte Carlo


def _empirical_readout_kernel(body, x, width_key, n_draws, w_std, b_std):
    """Mean over draws of W_std² ⟨φ(x), φ(x')⟩ / fan_in + b_std² from the body's finite features."""
    init_fn, apply_fn, _ = body
    ks = []
    for key in jax.random.split(width_key, n_draws):
        _, params = init_fn(key, (-1,) + x.shape[1:])
        phi = np.asarray(apply_fn(params, jnp.asarray(x))).reshape(x.shape[0], -1)
        ks.append(w_std**2 * phi @ phi.T / phi.shape[1] + b_std**2)
    return np.asarray(ks)


@pytest.mark.parametrize("readout", ["flatten", "global_pool"])
def test_nngp_matches_finite_networks_with_fitted_slope(x64, readout):
    """The finite networks' readout kernel converges to the NNGP as width^(-1/2) (fitted slope)."""
    x = _images(1, 5)
    errors, widths = [], [16, 64, 256, 1024]
    for n in widths:
        body = stax.serial(
            stax.Conv(n, (3, 3), padding="SAME", W_std=1.4, b_std=0.1), stax.Relu(),
            stax.Conv(n, (2, 2), strides=(2, 1), padding="VALID", W_std=1.3), stax.Erf(),
            stax.Flatten() if readout == "flatten" else stax.GlobalAvgPool(),
        )  # fmt: skip
        exact = np.asarray(stax.serial(body, stax.Dense(1, 1.1, 0.2))[2](x, None, "nngp"))
        draws = _empirical_readout_kernel(body, x, jax.random.PRNGKey(n), 4, 1.1, 0.2)
        errors.append(np.sqrt(np.mean((draws - exact) ** 2)) / np.abs(exact).max())
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -0.7 < slope < -0.3, (slope, errors)
    assert errors[-1] < 0.05, errors


def test_ntk_matches_finite_network_jacobians(x64):
    """Empirical NTK (Jacobian products of finite networks, ntk parameterisation) within 8% at width 512."""
    x = jnp.asarray(_images(2, 4, (5, 5, 1)))
    net = stax.serial(
        stax.Conv(512, (3, 3), padding="CIRCULAR", b_std=0.2), stax.Relu(),
        stax.Conv(512, (3, 3), padding="SAME"), stax.Relu(), stax.AvgPool((2, 2), padding="SAME"),
        stax.GlobalAvgPool(), stax.Dense(1, 1.2, 0.1),
    )  # fmt: skip
    init_fn, apply_fn, kernel_fn = net
    exact = np.asarray(kernel_fn(x, None, "ntk"))
    ests = []
    for key in jax.random.split(jax.random.PRNGKey(0), 3):
        _, params = init_fn(key, x.shape)
        jac = jax.jacobian(lambda p: apply_fn(p, x)[:, 0])(params)
        flat = jnp.concatenate([j.reshape(x.shape[0], -1) for j in jax.tree_util.tree_leaves(jac)], axis=1)
        ests.append(np.asarray(flat @ flat.T))
    err = np.abs(np.mean(ests, 0) - exact).max() / np.abs(exact).max()
    assert err < 0.08, err


# ----------------------------------------------------------------------------- symmetries and layouts


def test_circular_padding_makes_the_pooled_kernel_translation_invariant(x64):
    x1, x2 = _images(4, 3, (6, 6, 2)), _images(5, 4, (6, 6, 2))
    shifted = np.roll(x1, (2, -1), axis=(1, 2))

    def net(padding):
        return stax.serial(
            stax.Conv(4, (3, 3), padding=padding, b_std=0.2), stax.Relu(),
            stax.Conv(4, (3, 3), padding=padding), stax.Relu(), stax.GlobalAvgPool(), stax.Dense(1),
        )[2]  # fmt: skip

    circ = net("CIRCULAR")
    a, b = circ(x1, x2), circ(shifted, x2)
    for name in ("nngp", "ntk"):
        np.testing.assert_allclose(getattr(b, name), getattr(a, name), rtol=1e-12)
    same = net("SAME")
    diff = np.abs(np.asarray(same(shifted, x2, "nngp")) - np.asarray(same(x1, x2, "nngp"))).max()
    assert diff > 1e-3  # zero padding breaks the invariance, so the check above can fail


def test_spatial_output_kernel_layouts(x64):
    """A conv-only network returns the full covariance (N1, N2, H, H', W, W'); its diagonal is Flatten's input."""
    x1, x2 = _images(6, 3), _images(7, 2)
    body = stax.serial(stax.Conv(3, (3, 3), padding="SAME", b_std=0.3), stax.Relu(), stax.Conv(3, (2, 2)))
    full = np.asarray(body[2](x1, x2, "nngp"))
    assert full.shape == (3, 2, 5, 5, 4, 4)
    flat = np.asarray(stax.serial(body, stax.Flatten())[2](x1, x2, "nngp"))
    diag = np.einsum("abhhww->abhw", full).mean(axis=(2, 3))
    np.testing.assert_allclose(flat, diag, rtol=1e-12)
    pooled = np.asarray(stax.serial(body, stax.GlobalAvgPool())[2](x1, x2, "nngp"))
    np.testing.assert_allclose(pooled, full.mean(axis=(2, 3, 4, 5)), rtol=1e-12)


def test_symmetric_call_equals_explicit_x2_and_mirrors_blocks(x64):
    x = _images(8, 7)
    _, _, kernel_fn = stax.serial(
        stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(1)
    )
    sym = kernel_fn(x, None, block_size=3)  # blocks of 3: upper triangle + mirrored lower
    full = kernel_fn(x, x + 0.0, block_size=3)
    for name in ("nngp", "ntk"):
        a = np.asarray(getattr(sym, name))
        np.testing.assert_allclose(a, a.T, rtol=0, atol=0)
        np.testing.assert_allclose(a, np.asarray(getattr(full, name)), rtol=1e-9)


def test_jit_grad_vmap_path_agrees_with_the_blocked_path(x64):
    x1, x2 = _images(9, 4), _images(10, 3)
    _, _, kernel_fn = stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.Erf(), stax.GlobalAvgPool(), stax.Dense(1))
    eager = np.asarray(kernel_fn(x1, x2, "ntk", block_size=2))
    traced = np.asarray(jax.jit(lambda a, b: kernel_fn(a, b, "ntk"))(x1, x2))
    np.testing.assert_allclose(traced, eager, rtol=1e-12)
    g = jax.grad(lambda a: kernel_fn(a, x2, "nngp").sum())(jnp.asarray(x1))
    eps = 1e-6
    e = np.zeros_like(x1)
    e[0, 1, 2, 0] = eps
    fd = (np.asarray(kernel_fn(x1 + e, x2, "nngp")).sum() - np.asarray(kernel_fn(x1 - e, x2, "nngp")).sum()) / (2 * eps)
    np.testing.assert_allclose(np.asarray(g)[0, 1, 2, 0], fd, rtol=1e-6)


# ----------------------------------------------------------------------------- memory


@pytest.mark.parametrize("depth,act,budget", [(1, "gelu", 8 << 20), (2, "relu", 8 << 20), (5, "erf", 24 << 20)])
def test_blocks_keep_compiled_memory_under_the_budget(x64, depth, act, budget):
    """A pooled CNN whose dense (N², (HW)²) intermediates exceed the budget runs in blocks that fit it."""
    n, shape = 16, (8, 8, 1)
    x = _images(11, n, shape)
    layers = []
    for _ in range(depth):
        layers += [stax.Conv(4, (3, 3), padding="SAME"), stax.Nonlinearity(act)]
    spec = stax.serial(*layers, stax.GlobalAvgPool(), stax.Dense(1)).spec
    sizes = tiling.pair_sizes(spec, jnp.asarray(x[:1]), True, True)
    assert sizes[0] == 64**2
    dense_bytes = 4 * n * n * sizes[0] * 8  # only nngp + ntk + two duals of all pairs at once
    assert dense_bytes > budget
    b = tiling.choose_block(n, n, sizes, 8, budget)
    assert 1 < b < n
    xa = jnp.asarray(x[:b])[None]
    idx = jnp.zeros((1,), jnp.int32)
    compiled = tiling._group.lower(
        xa, xa, idx, idx, spec=spec, in_full=True, want_ntk=True, symmetric=True
    ).compile()
    stats = compiled.memory_analysis()
    used = stats.temp_size_in_bytes + stats.argument_size_in_bytes + stats.output_size_in_bytes
    assert used <= budget, (b, used, budget)
    got = stax.layer(spec)[2](x, None, memory_budget=budget)
    ref = jax.jit(lambda a: stax.layer(spec)[2](a, None))(jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got.ntk), np.asarray(ref.ntk), rtol=1e-12)
    with pytest.raises(MemoryError, match="memory_budget"):
        stax.layer(spec)[2](x, None, memory_budget=1000)


# ----------------------------------------------------------------------------- errors before compute


@pytest.mark.parametrize(
    "layers,shape,match",
    [
        (lambda: [stax.Conv(4, (3, 3)), stax.Relu(), stax.Flatten(), stax.Dense(1)], (20,), r"Conv.*\(N, H, W, C\)"),
        (lambda: [stax.Conv(4, (7, 7)), stax.Relu(), stax.Flatten(), stax.Dense(1)], (6, 6, 1),
         r"serial layer 0: Conv.*window 7 is larger than spatial axis 0 of size 6"),
        (lambda: [stax.AvgPool((3,)), stax.Flatten(), stax.Dense(1)], (6, 6, 1), r"AvgPool.*\(N, W, C\)"),
        (lambda: [stax.FanOut(2), stax.parallel(stax.Conv(3, (1, 1)), stax.Conv(4, (1, 1))), stax.FanInSum()],
         (5, 5, 2), r"FanInSum.*equal per-example shapes"),
        (lambda: [stax.Dense(3), stax.FanInSum()], (5,), r"FanInSum.*list of branches"),
    ],
)
def test_bad_shapes_name_the_layer(layers, shape, match):
    net = stax.serial(*layers())
    with pytest.raises(stax.ShapeError, match=match):
        net[2](np.ones((2,) + shape), None, "nngp")
    with pytest.raises(stax.ShapeError, match=match):
        net[0](jax.random.PRNGKey(0), (-1,) + shape)


def test_other_bad_input_errors():
    with pytest.raises(stax.ShapeError, match="Nonlinearity.*Gaussian"):
        stax.serial(stax.Relu(), stax.Dense(1))[2](np.ones((2, 3)), None, "nngp")
    with pytest.raises(stax.ShapeError, match="FanInSum.*every branch must end in a Dense or Conv"):
        stax.serial(stax.Dense(2), stax.FanOut(2), stax.parallel(stax.Relu(), stax.Dense(2)), stax.FanInSum())[2](
            np.ones((2, 3)), None, "nngp"
        )
    with pytest.raises(TypeError, match="serial: argument 1 must be an nwcorrupt.stax layer"):
        stax.serial(stax.Dense(1), (None, None, None))
    with pytest.raises(ValueError, match="Conv: padding must be one of"):
        stax.Conv(3, (3, 3), padding="REFLECT")
    with pytest.raises(ValueError, match="Conv: strides must have 2 entries"):
        stax.Conv(3, (3, 3), strides=(1, 1, 1))
    with pytest.raises(ValueError, match="Dense: out_dim must be an integer >= 1"):
        stax.Dense(0)
    with pytest.raises(ValueError, match="x1 and x2 must have the same per-example shape"):
        stax.serial(stax.Dense(1))[2](np.ones((2, 3)), np.ones((2, 4)))
    with pytest.raises(ValueError, match="x1 contains NaN"):
        stax.serial(stax.Dense(1))[2](np.array([[np.nan, 1.0]]))
    _, params = stax.Conv(4, (3, 3))[0](jax.random.PRNGKey(0), (-1, 5, 5, 2))
    with pytest.raises(stax.ShapeError, match="inputs have 3 channels but the filters expect 2"):
        stax.Conv(4, (3, 3))[1](params, jnp.ones((1, 5, 5, 3)))


# ----------------------------------------------------------------------------- finite networks


def test_layers_are_hashable_descriptions_and_unpack_as_triples():
    a = stax.serial(stax.Conv(4, [3, 3], padding="same"), stax.Relu(), stax.Flatten(), stax.Dense(2))
    b = stax.serial(stax.Conv(4, (3, 3), padding="SAME"), stax.Relu(), stax.Flatten(), stax.Dense(2))
    assert a == b and hash(a) == hash(b) and a != stax.serial(stax.Dense(2))
    init_fn, apply_fn, kernel_fn = a
    out_shape, params = init_fn(jax.random.PRNGKey(0), (-1, 6, 6, 1))
    assert out_shape == (-1, 2)
    assert apply_fn(params, jnp.ones((3, 6, 6, 1))).shape == (3, 2)
    assert a.describe()["layers"][0] == {
        "layer": "Conv", "out_chan": 4, "filter_shape": [3, 3], "strides": [1, 1], "padding": "SAME",
        "W_std": 1.0, "b_std": None, "parameterization": "ntk",
    }  # fmt: skip


def test_finite_conv_matches_lax_and_standard_init_variance(x64):
    """Standard parameterisation: W ~ N(0, W_std²/fan_in); the layer is conv(x, W) + b (checked by hand)."""
    conv = stax.Conv(64, (3, 3), strides=(2, 1), padding="SAME", W_std=1.5, b_std=0.5, parameterization="standard")
    _, (w, b) = conv[0](jax.random.PRNGKey(1), (-1, 7, 6, 8))
    assert w.shape == (3, 3, 8, 64) and b.shape == (1, 1, 1, 64)
    np.testing.assert_allclose(np.var(np.asarray(w)), 1.5**2 / (9 * 8), rtol=0.05)
    x = jnp.asarray(_images(12, 2, (7, 6, 8)))
    y = np.asarray(conv[1]((w, b), x))
    xp = np.pad(np.asarray(x), ((0, 0), (1, 1), (1, 1), (0, 0)))  # SAME for k=3: one on each side
    ref = np.zeros((2, 4, 6, 64))
    for i in range(4):
        for j in range(6):
            patch = xp[:, 2 * i : 2 * i + 3, j : j + 3, :]
            ref[:, i, j] = np.einsum("nhwc,hwco->no", patch, np.asarray(w)) + np.asarray(b)[0, 0, 0]
    np.testing.assert_allclose(y, ref, rtol=1e-12, atol=1e-12)


def test_torch_default_init_law():
    dense = stax.Dense(50, parameterization="standard", b_std=0.0)
    _, (w, b) = dense[0](jax.random.PRNGKey(0), (-1, 400), law="torch_default")
    bound = 1 / np.sqrt(400)
    assert np.abs(np.asarray(w)).max() <= bound and np.abs(np.asarray(w)).max() > 0.95 * bound
    with pytest.raises(stax.ShapeError, match="torch_default.*standard"):
        stax.Dense(5)[0](jax.random.PRNGKey(0), (-1, 4), law="torch_default")


def test_train_trains_a_cnn_network_like_an_mlp():
    """A stax Network goes through train_member / train_ensemble; nested members agree with train_member."""
    net = stax.Network(
        stax.serial(
            stax.Conv(6, (3, 3), padding="SAME", parameterization="standard", b_std=0.0), stax.Relu(),
            stax.AvgPool((2, 2), (2, 2)), stax.Flatten(), stax.Dense(3, parameterization="standard", b_std=0.0),
        ),
        (6, 6, 1),
    )  # fmt: skip
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 160)
    protos = rng.standard_normal((3, 36))
    x = (protos[y] + 0.6 * rng.standard_normal((160, 36))).astype(np.float32)
    cfg = train.TrainConfig(arch=net, width=None, num_classes=3, optimizer=train.Optimizer("adam", 3e-3),
                            batch_size=16, epochs=8, init="torch_default")  # fmt: skip
    one = train.train_member(cfg, x[:120], y[:120], x[120:], k=1, m=1)
    assert one.train_accuracy > 0.9 and one.train_loss < 0.2
    assert np.mean(np.argmax(one.test_logits, 1) == y[120:]) > 0.8
    ens = train.train_ensemble(cfg, np.stack([x[:120]] * 2), y[:120], x[120:], y[120:], num_inits=2, quiet=True)
    np.testing.assert_allclose(ens.test_logits[1, 1], one.test_logits, rtol=1e-5, atol=1e-5)
    assert cfg.describe()["arch"]["input_shape"] == [6, 6, 1]
    with pytest.raises(ValueError, match="num_classes=4 but the network has 3 outputs"):
        train.TrainConfig(arch=net, width=None, num_classes=4, epochs=1)
    with pytest.raises(ValueError, match="width must be None for a stax Network"):
        train.TrainConfig(arch=net, width=8, num_classes=3, epochs=1)
    with pytest.raises(ValueError, match="the network takes inputs of shape"):
        train.train_member(cfg, x[:120, :30], y[:120], x[120:, :30])
