"""The architectures study: its networks, its leading-order choice and one point against the theory."""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from nwcorrupt import prototype, stax
from nwcorrupt.arch import MLP
from nwcorrupt.experiments import catalog, runner
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import architectures as S
from nwcorrupt.kernels import kernel

SMALL = S.Params(datasets=("digits",), noises=("additive",), ps=(0.999,), n_train=30, n_test=20, size=6, width=16,
                 channels=4, epochs=2, batch_size=15, k=2, m=1, block=10)


def test_the_three_networks_have_the_described_layers(x64):
    """The MLP's kernel is the MLP kernel of nwcorrupt.kernels (an independent implementation); the CNNs'
    readouts see positions one by one (Flatten) or their average (pooling, exactly shift invariant)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5, 36))
    params = dataclasses.replace(SMALL, padding="CIRCULAR")
    mlp = stax.Network(S.layers(params, "mlp", 10, "ntk"), (6, 6, 1))
    ref = kernel(MLP(3, "relu", W_std=np.sqrt(2.0), b_std=0.0), x[:2], x[2:], get=("ntk",)).ntk
    np.testing.assert_allclose(mlp.kernel_fn(x[:2], x[2:], "ntk"), ref, rtol=1e-12, atol=1e-12)
    pool = stax.Network(S.layers(params, "cnn_pool", 10, "ntk"), (6, 6, 1))
    flat = stax.Network(S.layers(params, "cnn_flatten", 10, "ntk"), (6, 6, 1))
    shifted = np.roll(x.reshape(5, 6, 6), (2, 1), axis=(1, 2)).reshape(5, 36)
    np.testing.assert_allclose(pool.kernel_fn(shifted, x, "ntk"), pool.kernel_fn(x, x, "ntk"), rtol=1e-11)
    assert not np.allclose(flat.kernel_fn(shifted, x, "ntk"), flat.kernel_fn(x, x, "ntk"), rtol=1e-3)
    net = stax.Network(S.layers(params, "cnn_flatten", 10, "standard"), (6, 6, 1))
    w = net.init(jax.random.PRNGKey(0))[0]
    assert np.asarray(w[0]).shape == (3, 3, 1, 4)  # a 3 x 3 convolution of 4 channels on one input channel
    assert abs(float(np.std(np.asarray(w[0]))) - np.sqrt(2.0 / 9)) < 0.15  # He: N(0, 2 / fan_in)


def test_leading_order_picks_the_first_coefficient_that_separates_the_classes():
    rng = np.random.default_rng(1)
    f0 = np.full((20, 4), 0.25)
    f1, f2 = rng.standard_normal((20, 4)), rng.standard_normal((20, 4))
    j, f, sig = S.leading_order(np.stack([f0, f1, f2]))
    assert j == 1 and f is not None and np.array_equal(f, f1) and sig[0] > 1
    blind = np.tile(rng.standard_normal((20, 1)), (1, 4)) + 1e-12 * f1  # class-blind up to rounding
    j, f, sig = S.leading_order(np.stack([f0, blind, f2]))
    assert j == 2 and np.array_equal(f, f2) and sig[0] < 1e-9
    j, f, sig = S.leading_order(np.stack([f0, blind, blind]))
    assert j is None and f is None and max(sig) < 1e-9


def test_params_reject_bad_values_before_any_work():
    with pytest.raises(ValueError, match="archs must be one of"):
        S.Params(archs=("resnet",))
    with pytest.raises(ValueError, match="padding must be one of"):
        S.Params(padding="REFLECT")
    with pytest.raises(ValueError, match="depth must be >= 2"):
        S.Params(depth=1)
    with pytest.raises(ValueError, match="leaves no pixel"):
        S.Params(size=4, padding="VALID", filter_size=3, depth=4)
    with pytest.raises(ValueError, match=r"batch_size \(250\) must not exceed n_train \(100\)"):
        S.Params(n_train=100)
    with pytest.raises(ValueError, match="ps must not repeat"):
        S.Params(ps=(0.9, 0.9))
    with pytest.raises(ConfigError, match="gaussian_mixture has no images"):
        S.preflight(S.Params(datasets=("gaussian_mixture",)))


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """The tiny scale run end to end once (runner, records, report): (config, folder, tables)."""
    cfg = catalog.load("architectures", "tiny")
    out = tmp_path_factory.mktemp("architectures_tiny")
    summary = runner.run(cfg, out, quiet=True)
    assert summary.ran == summary.total == 3
    return cfg, out, runner.report(out, formats=("png",))


def test_tiny_scale_runs_end_to_end(tiny_run):
    """What tests/test_experiments.py checks for every other study: records, tables, figures, the fit table."""
    _, out, tables = tiny_run
    assert tables and all(len(t) >= 2 for t in tables.values())
    assert any((out / "figures").glob("*.png"))
    for path in (out / "records").glob("*.json"):
        assert {"train_loss_mean", "train_accuracy_mean", "train_accuracy_min"} <= set(json.loads(path.read_text())["metrics"])
    assert tables["training_fit"][0][-1] == "fit" and len(tables["training_fit"]) >= 2


def test_one_point_the_pooled_network_decides_at_second_order_and_the_mlp_by_the_prototype(tiny_run):
    """At p = 0.999 the mean-field predictor follows its leading order (the theory's claim, 1e-3 from pure
    noise); the MLP's leading order is the prototype rule argmax <x*, mu_c> (closed form, checked with
    nwcorrupt.prototype), the pooled network's first order is class-blind (circular padding, zero-mean
    images) and its second order decides. (The records of the tiny run: SMALL's sizes, all three networks.)"""
    cfg, out, _ = tiny_run
    assert dataclasses.replace(cfg.params, archs=SMALL.archs) == dataclasses.replace(SMALL, seed=cfg.params.seed)
    by_arch = {rec["point"]["arch"]: rec["metrics"]
               for rec in (json.loads(p.read_text()) for p in (out / "records").glob("*.json"))}  # fmt: skip
    mlp, pool = by_arch["mlp"], by_arch["cnn_pool"]
    assert mlp["leading_order"] == 1 and mlp["class_signals"][0] > 0.1
    assert pool["leading_order"] == 2 and pool["class_signals"][0] < 1e-8 < 0.1 < pool["class_signals"][1]
    (row,) = mlp["per_p"]
    assert row["agreement"]["leading~prototype"] == [1.0]
    assert row["agreement"]["meanfield~leading"][0] >= 0.95
    (row,) = pool["per_p"]
    assert row["agreement"]["meanfield~leading"][0] >= 0.95
    assert len(row["accuracy"]["network"]) == 2 and len(row["agreement"]["network~ntk"]) == 2
    assert row["train_accuracy_min"] is not None and "train_loss_mean" in row
    ds = S._dataset(SMALL, "digits")
    proto = prototype.predict(ds.x_test, ds.x_train, ds.y_train, num_classes=10)
    assert row["accuracy"]["prototype"] == [float(np.mean(proto == ds.y_test))]


def test_quick_scale_is_the_full_recipe_made_smaller():
    full, quick = catalog.load("architectures", "full").params, catalog.load("architectures", "quick").params
    for key in ("archs", "noises", "datasets", "activation", "depth", "W_std", "b_std", "width", "channels",
                "filter_size", "padding", "parameterization", "epochs", "learning_rate", "diag_reg"):
        assert getattr(quick, key) == getattr(full, key), key
    assert set(quick.ps) <= set(full.ps) and min(full.ps) == 0.5 and max(full.ps) == 1.0
    # 4 steps per epoch at both scales
    assert -(-quick.n_train // quick.batch_size) == -(-full.n_train // full.batch_size) == 4


def test_an_odd_activation_leaves_the_pooled_network_without_a_leading_order_up_to_two(x64):
    """erf without biases makes the predictor odd in the test image: the pooled network's second order
    (quadratic in the image) vanishes with its first (the image's zero mean), so no order up to 2 decides."""
    from nwcorrupt import corruption, theory

    params = dataclasses.replace(SMALL, activation="erf", W_std=1.0, size=4)
    ds = S._dataset(params, "digits")
    x, xt = ds.x_train[:10].astype(np.float64), ds.x_test[:10].astype(np.float64)
    coeffs = theory.conv_taylor(S.layers(params, "cnn_pool", 10, "ntk"), corruption.Additive("gaussian"), x,
                                ds.y_train[:10], xt, (4, 4), order=2, ridge=1e-6, num_classes=10, block=10)
    j, f, signals = S.leading_order(coeffs)
    assert j is None and f is None and max(signals) < 1e-7


def test_networks_train_with_the_main_recipe():
    """Standard parameterisation, Gaussian He weights, MSE on one-hot targets, Adam 1e-4, batch 250 with the
    last partial batch kept, 30 epochs (the recipe, written out here)."""
    params = catalog.load("architectures", "full").params
    for arch in S.ARCHS:
        cfg = S.train_config(params, arch, 28, 10)
        assert (cfg.loss, cfg.optimizer.name, cfg.optimizer.learning_rate) == ("mse", "adam", 1e-4)
        assert (cfg.batch_size, cfg.epochs, cfg.drop_last, cfg.init, cfg.width) == (250, 30, False, "gaussian", None)
        affine = [s for s in cfg.arch.spec.layers if s.kind in ("Dense", "Conv")]
        assert len(affine) == 3 and all(s.parameterization == "standard" for s in affine)
        assert all(abs(s.W_std - np.sqrt(2.0)) < 1e-12 and s.b_std == 0.0 for s in affine)
        assert cfg.arch.has_convolution == (arch != "mlp")
