"""Bad inputs found by a reliability audit fail early with a message that names the argument.

One table row per bad input: the call, the exception type (``ValueError`` for a bad value,
``TypeError`` for a wrong type) and the argument name the message must contain. Plus the values
of :func:`nwcorrupt.data.normalize_examples` on rows whose squares overflow or underflow.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import numpy as np
import pytest

from nwcorrupt import corruption, data, metrics, mlp
from nwcorrupt.arch import MLP


def _tiny_dataset() -> data.Dataset:
    """A 4-example, 3-feature, 2-class data set (no loading, no compute)."""
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    y = np.array([0, 1, 0, 1], dtype=np.int32)
    return data.Dataset(x, y, x.copy(), y.copy(), 2, "tiny")


_X = np.linspace(0.0, 1.0, 12, dtype=np.float32).reshape(4, 3)

# (id, call, exception type, argument name the message must contain)
CASES: list[tuple[str, Callable[[], object], type[Exception], str]] = [
    ("load-seed-str", lambda: data.load("digits", seed="a"), TypeError, "seed"),
    ("load-seed-negative", lambda: data.load("digits", seed=-1), ValueError, "seed"),
    ("load-n_train-seed-negative", lambda: data.load("digits", n_train=10, seed=-1), ValueError, "seed"),
    ("load-gaussian_mixture-seed-str", lambda: data.load("gaussian_mixture", seed="a"), TypeError, "seed"),
    ("balanced_indices-seed-str", lambda: data.balanced_indices(np.array([0, 1]), 2, 2, "a"), TypeError, "seed"),
    ("balanced_indices-seed-negative", lambda: data.balanced_indices(np.array([0, 1]), 2, 2, -1), ValueError, "seed"),
    ("gaussian_mixture-seed-too-big", lambda: data.gaussian_mixture(n_train=2, n_test=2, d=2, num_classes=2, seed=2**32), ValueError, "seed"),
    ("mlp-init-int-key", lambda: mlp.init(0, MLP(2), 4, 3, 2), TypeError, "key"),
    ("mlp-init-str-key", lambda: mlp.init("0", MLP(2), 4, 3, 2), TypeError, "key"),
    ("mlp-init-int32-array-key", lambda: mlp.init(np.zeros(2, np.int32), MLP(2), 4, 3, 2), TypeError, "key"),
    ("mlp-init-batched-typed-keys", lambda: mlp.init(jax.random.split(jax.random.key(0), 3), MLP(2), 4, 3, 2), ValueError, "key"),
    ("mlp-init-batched-legacy-keys", lambda: mlp.init(jax.random.split(jax.random.PRNGKey(0), 3), MLP(2), 4, 3, 2), ValueError, "key"),
    ("corrupt-model-tuple", lambda: corruption.corrupt(_tiny_dataset(), ("replacement", 0.5), 0.5, 0), TypeError, "model"),
    ("corrupt-model-str", lambda: corruption.corrupt(_tiny_dataset(), "replacement", 0.5, 0), TypeError, "model"),
    ("corrupt-seed-negative", lambda: corruption.corrupt(_tiny_dataset(), corruption.Replacement(), 0.5, -1), ValueError, "seed"),
    ("binomial_stderr-n-zero", lambda: metrics.binomial_stderr(0.5, 0), ValueError, "n"),
    ("binomial_stderr-n-float", lambda: metrics.binomial_stderr(0.5, 10.0), TypeError, "n"),
    ("binomial_stderr-acc-above-1", lambda: metrics.binomial_stderr(1.5, 10), ValueError, "acc"),
    ("binomial_stderr-acc-negative", lambda: metrics.binomial_stderr(-0.1, 10), ValueError, "acc"),
    ("binomial_stderr-acc-nan", lambda: metrics.binomial_stderr(float("nan"), 10), ValueError, "acc"),
    ("binomial_stderr-acc-str", lambda: metrics.binomial_stderr("0.5", 10), TypeError, "acc"),
    ("from_marginal-n_atoms-float", lambda: corruption.Replacement.from_marginal(_X, n_atoms=10.5), TypeError, "n_atoms"),
    ("from_marginal-n_atoms-zero", lambda: corruption.Replacement.from_marginal(_X, n_atoms=0), ValueError, "n_atoms"),
]


@pytest.mark.parametrize("call, exc, arg", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_raises_naming_the_argument(call, exc, arg):
    with pytest.raises(exc) as info:
        call()
    assert type(info.value) is exc  # not a subclass raised by accident deeper down
    message = str(info.value)
    assert message.startswith(f"{arg} "), message


def test_messages_say_what_is_expected():
    with pytest.raises(TypeError, match=r"jax\.random key \(e\.g\. jax\.random\.key\(0\)"):
        mlp.init(0, MLP(2), 4, 3, 2)
    with pytest.raises(TypeError, match=r"Replacement.*Additive.*nwcorrupt\.corruption\.get\('replacement'\)"):
        corruption.corrupt(_tiny_dataset(), "replacement", 0.5, 0)
    with pytest.raises(ValueError, match=r"n must be >= 1, got 0"):
        metrics.binomial_stderr(0.5, 0)
    with pytest.raises(ValueError, match=r"acc must be in \[0, 1\]"):
        metrics.binomial_stderr(1.5, 10)
    with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\)"):
        data.load("digits", seed=-1)


def test_load_checks_seed_before_reading_data(monkeypatch):
    def no_load(*args, **kwargs):
        raise AssertionError("load_raw called before the seed was validated")

    monkeypatch.setattr(data, "load_raw", no_load)
    with pytest.raises(TypeError, match="seed"):
        data.load("digits", seed="a")


def test_valid_inputs_still_work():
    assert metrics.binomial_stderr(0.9, 100) == pytest.approx(0.03)
    assert metrics.binomial_stderr(1, 5) == 0.0
    assert metrics.binomial_stderr(np.float32(0.5), np.int64(4)) == pytest.approx(0.25)
    typed = mlp.init(jax.random.key(0), MLP(2), 4, 3, 2)
    legacy = mlp.init(jax.random.PRNGKey(0), MLP(2), 4, 3, 2)
    for a, b in zip(jax.tree_util.tree_leaves(typed), jax.tree_util.tree_leaves(legacy)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    batched = jax.vmap(lambda k: mlp.init(k, MLP(2), 4, 3, 2))(jax.random.split(jax.random.key(0), 2))
    assert batched[0]["W"].shape == (2, 3, 4)
    mg = corruption.Replacement.from_marginal(_X, n_atoms=np.int64(4))
    assert len(mg.atoms) == 4
    noisy = corruption.corrupt(_tiny_dataset(), corruption.get("additive"), 0.5, 0)
    assert noisy.x_train.shape == (4, 3)


# --------------------------------------------------------------------------- normalize_examples


def _plain_normalize(x: np.ndarray) -> np.ndarray:
    """The textbook formula in float64: (x − mean) / RMS(x − mean) per row."""
    x64 = np.asarray(x, dtype=np.float64)
    c = x64 - x64.mean(axis=1, keepdims=True)
    return (c / np.sqrt(np.mean(c * c, axis=1, keepdims=True))).astype(np.float32)


def _assert_normalised(out: np.ndarray) -> None:
    out64 = np.asarray(out, dtype=np.float64)
    assert out.dtype == np.float32
    assert np.all(np.isfinite(out64))
    np.testing.assert_allclose(out64.mean(axis=1), 0.0, atol=1e-6)
    np.testing.assert_allclose(np.sqrt(np.mean(out64**2, axis=1)), 1.0, rtol=1e-6)


@pytest.mark.parametrize(
    "scale, dtype",
    [(1e30, np.float32), (1e-30, np.float32), (1e200, np.float64), (1e-200, np.float64), (1e307, np.float64)],
    ids=["f32-1e30", "f32-1e-30", "f64-1e200", "f64-1e-200", "f64-1e307"],
)
def test_normalize_examples_huge_and_tiny_rows(scale, dtype):
    base = np.random.default_rng(0).normal(size=(5, 17))
    x = (base * scale).astype(dtype)
    assert np.all(np.isfinite(x)) and np.all(np.abs(x).max(axis=1) > 0)
    out = data.normalize_examples(x)
    _assert_normalised(out)
    # the same rows at an ordinary scale give the same result (normalisation is scale-free)
    np.testing.assert_allclose(out, _plain_normalize(base), rtol=1e-5, atol=1e-6)


def test_normalize_examples_ordinary_rows_unchanged():
    rng = np.random.default_rng(1)
    x = np.concatenate([rng.uniform(0, 1, size=(20, 64)), 3.0 * rng.normal(size=(20, 64)) + 5.0]).astype(np.float32)
    out = data.normalize_examples(x)
    np.testing.assert_array_equal(out, _plain_normalize(x))
    _assert_normalised(out)


def test_normalize_examples_constant_rows_map_to_zero():
    x = np.array([[0.0, 0.0, 0.0], [3.0, 3.0, 3.0], [1e30, 1e30, 1e30], [1e-30, 1e-30, 1e-30]], dtype=np.float32)
    np.testing.assert_array_equal(data.normalize_examples(x), np.zeros((4, 3), np.float32))
