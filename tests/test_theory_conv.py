"""Mean-field theory of stax networks on corrupted images (nwcorrupt.theory.conv).

References: a direct Monte Carlo of the corrupted pixel products, the MLP mean-field theory of
nwcorrupt.theory (an independent implementation of the dense case), finite differences of the exact
mean-field predictor in ε for the Taylor coefficients, and the structure of the leading-order rule.
"""

from __future__ import annotations

import numpy as np
import pytest

import jax.numpy as jnp

from nwcorrupt import corruption, data, precision, stax, theory
from nwcorrupt.arch import MLP
from nwcorrupt.theory import conv as T


@pytest.fixture(scope="module")
def digits():
    with precision.x64():
        ds = data.load("digits", n_train=30, seed=0)
    return ds.x_train.astype(np.float64), ds.y_train, ds.x_test[:12].astype(np.float64), ds.y_test[:12]


def _cnn(readout: str, padding: str = "CIRCULAR"):
    return stax.serial(
        stax.Conv(4, (3, 3), padding=padding, W_std=1.3), stax.Relu(),
        stax.Conv(4, (3, 3), padding=padding, W_std=1.2), stax.Relu(),
        stax.Flatten() if readout == "flatten" else stax.GlobalAvgPool(), stax.Dense(1),
    )  # fmt: skip


@pytest.mark.parametrize("kind", ["replacement", "additive"])
def test_pixel_overlaps_equal_the_average_over_corruptions(x64, kind):
    """The noise-averaged input state against a Monte Carlo mean of the corrupted pixel products."""
    rng = np.random.default_rng(0)
    imgs = rng.uniform(0, 1, (3, 4, 4, 2))
    noise = corruption.Replacement("uniform") if kind == "replacement" else corruption.Additive("gaussian")
    mu, mu2 = noise.moments
    p, draws = 0.6, 20000
    flat = imgs.reshape(3, -1)
    # one call: row j of the tiled array has its own noise (rows are keyed by their global index)
    xs = np.asarray(noise.apply(np.tile(flat, (draws, 1)), p, seed=0)).reshape((draws,) + imgs.shape)

    def check(expected, per_draw):  # within 5 standard errors of the Monte Carlo mean, entry by entry
        mean, se = per_draw.mean(0), per_draw.std(0) / np.sqrt(draws) + 1e-12
        z = np.abs(np.asarray(expected) - mean) / se
        assert z.max() < 5.0, z.max()

    pairs = np.einsum("nahwc,nbgvc->nabhgwv", xs, xs) / 2  # per draw, channel-averaged (a, b, h, h', w, w')
    same = jnp.eye(3, dtype=bool)
    state = T._train_state(kind, 1 - p, mu, mu2, jnp.asarray(imgs), jnp.asarray(imgs), same, True, False)
    check(state.nngp, pairs)
    check(state.cov1, np.einsum("naahgwv->nahgwv", pairs))
    test = T._test_state(kind, 1 - p, mu, mu2, jnp.asarray(imgs), jnp.asarray(imgs), True, False)
    check(test.nngp, np.einsum("ahwc,nbgvc->nabhgwv", imgs, xs) / 2)


def test_dense_network_reproduces_the_mlp_meanfield_predictor(x64, digits):
    x, y, xt, _ = digits
    noise = corruption.Additive("gaussian")
    net = stax.serial(stax.Flatten(), stax.Dense(16, 1.2, 0.3), stax.Erf(), stax.Dense(16, 1.2, 0.3), stax.Erf(),
                      stax.Dense(1, 1.2, 0.3))  # fmt: skip
    got = T.conv_meanfield_predict(net, noise, 0.9, x, y, xt, (8, 8), ridge=1e-3)
    ref = theory.meanfield_predict(MLP(3, "erf", 1.2, 0.3), noise, 0.9, x, y, xt, ridge=1e-3)
    np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("readout", ["flatten", "gap"])
def test_taylor_coefficients_match_the_exact_predictor_near_pure_noise(x64, digits, readout):
    """|f(ε) − (f₀ + εf₁ + ε²f₂)| falls as ε³ (finite differences of the exact mean-field predictor)."""
    x, y, xt, _ = digits
    x, y, xt = x[:16], y[:16], xt[:4]
    noise = corruption.Replacement("gaussian")
    net = _cnn(readout, "SAME")
    co = T.conv_taylor(net, noise, x, y, xt, (8, 8), order=2, ridge=1e-4, num_classes=10, block=16)
    errs = []
    for h in (4e-2, 2e-2, 1e-2):
        f = T.conv_meanfield_predict(net, noise, 1 - h, x, y, xt, (8, 8), ridge=1e-4, num_classes=10, block=16)
        errs.append(np.abs(f - (co[0] + h * co[1] + h * h * co[2])).max())
    rates = np.log2(np.array(errs[:-1]) / np.array(errs[1:]))
    assert np.all(rates > 2.5), (errs, rates)


def test_flatten_cnn_decides_by_its_weighted_overlap_rule(x64, digits):
    """Flatten readout: the first order decides, by Σ_s w(s) x*(s) μ_c(s) (a diagonal W), and the exact
    predictor at p = 0.999 agrees."""
    x, y, xt, _ = digits
    noise = corruption.Additive("gaussian")
    net = _cnn("flatten", "SAME")
    w = T.pixel_weights(net, noise, xt, (8, 8))
    assert w.shape == (12, 8, 8)  # diagonal layout: one weight per pixel
    assert np.all(w > 0) and w.std() > 1e-3 * w.mean()  # SAME padding: edge pixels weigh less than the centre
    co = T.conv_taylor(net, noise, x, y, xt, (8, 8), order=1, ridge=1e-6, block=30)
    lead = theory.leading_decision(co)
    _, rule = T.conv_leading_rule(net, noise, x, y, xt, (8, 8))
    np.testing.assert_array_equal(rule, lead)
    exact = T.conv_meanfield_predict(net, noise, 0.999, x, y, xt, (8, 8), ridge=1e-6, block=30)
    np.testing.assert_array_equal(exact.argmax(1), lead)


def test_global_pooling_has_no_first_order_class_signal_on_zero_mean_images(x64, digits):
    """GAP couples every pair of positions equally at pure noise (W(s, s') = w(s)), so the first order is
    Σ_s w(s) x*(s) · Σ_s' μ_c(s'): zero for per-example zero-mean images, the class's total ink otherwise."""
    x, y, xt, _ = digits
    noise = corruption.Additive("gaussian")
    net = _cnn("gap")
    w = T.pixel_weights(net, noise, xt, (8, 8))
    assert w.shape == (12, 8, 8, 8, 8)
    np.testing.assert_allclose(w, np.broadcast_to(w[:, :, :1, :, :1], w.shape), rtol=1e-9, atol=1e-14)
    scores, _ = T.conv_leading_rule(net, noise, x, y, xt, (8, 8))
    assert np.abs(scores).max() < 1e-10
    raw = x - x.min() + 0.1  # positive pixels: the rule picks the class mean with the most ink, for every x*
    raw_t = xt - x.min() + 0.1
    _, rule = T.conv_leading_rule(net, noise, raw, y, raw_t, (8, 8))
    ink = np.array([raw[y == c].sum(1).mean() for c in range(10)])
    assert np.all(rule == ink.argmax())


def test_errors(digits):
    x, y, xt, _ = digits
    noise = corruption.Additive("gaussian")
    with precision.x64(False), pytest.raises(RuntimeError, match="float64"):
        T.conv_meanfield_kernels(_cnn("flatten"), noise, 0.9, x, xt, (8, 8))
    with precision.x64(), pytest.raises(ValueError, match="image_shape"):
        T.conv_meanfield_kernels(_cnn("flatten"), noise, 0.9, x, xt, (7, 7))
    with pytest.raises(TypeError, match="stax network"):
        T.pixel_weights((None, None, None), noise, xt, (8, 8))
