"""Data sets: loaders, preprocessing, balanced subsets, validation."""

from __future__ import annotations

import gzip
import struct

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import data


def requires(name: str) -> None:
    if not data.available(name):
        pytest.skip(f"data set {name!r} is not installed: run `bash scripts/setup.sh` (CI installs it)")


def test_normalize_examples_zero_mean_unit_rms_and_constant_to_zero():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (50, 300)).astype(np.float32) * rng.uniform(0.01, 100, (50, 1)).astype(np.float32)
    x[7] = 0.25  # constant image
    x[8] = 0.0
    z = data.normalize_examples(x)
    assert z.dtype == np.float32
    ok = np.ones(50, bool)
    ok[[7, 8]] = False
    np.testing.assert_allclose(z[ok].mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(np.sqrt((z[ok].astype(np.float64) ** 2).mean(axis=1)), 1, atol=1e-6)
    np.testing.assert_array_equal(z[[7, 8]], 0)


def test_resize_matches_jax_bilinear_upsampling_and_keeps_range():
    rng = np.random.default_rng(1)
    img = rng.uniform(0, 1, (3, 8, 8)).astype(np.float32)
    ours = data.resize_images(img, (13, 11))
    ref = np.asarray(jax.image.resize(jnp.asarray(img), (3, 13, 11), "bilinear", antialias=False))
    np.testing.assert_allclose(ours, ref, atol=1e-6)
    assert ours.min() >= 0 and ours.max() <= 1
    const = np.full((1, 5, 7), 0.3, np.float32)
    np.testing.assert_allclose(data.resize_images(const, (9, 4)), 0.3, atol=1e-7)
    np.testing.assert_array_equal(data.resize_images(img, (8, 8)), img)
    with pytest.raises(ValueError, match="size must be a pair of positive integers"):
        data.resize_images(img, (0, 4))


def test_digits_split_and_options():
    ds = data.load("digits")
    assert ds.x_train.shape == (1437, 64) and ds.x_test.shape == (360, 64)
    assert ds.num_classes == 10 and ds.image_shape == (8, 8)
    raw = data.load("digits", normalize="none")
    assert raw.x_train.min() >= 0 and raw.x_train.max() <= 1
    small = data.load("digits", n_train=200, seed=3, size=(4, 4))
    assert small.x_train.shape == (200, 16) and small.name == "digits@4x4"
    np.testing.assert_array_equal(np.bincount(small.y_train), [20] * 10)


def test_balanced_subsets_exact_and_seeded():
    raw = data.load("digits", normalize="none")
    a = data.load("digits", n_train=500, seed=1, normalize="none")
    b = data.load("digits", n_train=500, seed=1, normalize="none")
    c = data.load("digits", n_train=500, seed=2, normalize="none")
    np.testing.assert_array_equal(np.bincount(a.y_train, minlength=10), [50] * 10)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert not np.array_equal(a.x_train, c.x_train)
    # drawn without replacement from the full training set, with the right labels
    idx = data.balanced_indices(raw.y_train, 500, 10, seed=1)
    assert len(np.unique(idx)) == 500
    np.testing.assert_array_equal(raw.x_train[idx], a.x_train)
    np.testing.assert_array_equal(raw.y_train[idx], a.y_train)
    np.testing.assert_array_equal(a.x_test, raw.x_test)  # test set: the full clean test set


def test_mnist_shapes_and_class_counts():
    requires("mnist")
    ds = data.load("mnist", normalize="none")
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    np.testing.assert_array_equal(
        np.bincount(ds.y_train), [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    )
    np.testing.assert_array_equal(np.bincount(ds.y_test), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009])
    # pixels are bytes / 255: 0 and 1 both occur and every value is a multiple of 1/255
    assert ds.x_train.min() == 0.0 and ds.x_train.max() == 1.0
    np.testing.assert_allclose(ds.x_train[:50] * 255, np.rint(ds.x_train[:50] * 255), atol=1e-4)
    sub = data.load("mnist", n_train=4000, seed=0)
    np.testing.assert_array_equal(np.bincount(sub.y_train), [400] * 10)
    np.testing.assert_allclose(sub.x_train.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(np.sqrt((sub.x_train.astype(np.float64) ** 2).mean(axis=1)), 1, atol=1e-6)


def test_fashion_mnist_shapes_and_class_counts():
    requires("fashion_mnist")
    ds = data.load("fashion_mnist", normalize="none")
    assert ds.x_train.shape == (60000, 784) and ds.x_test.shape == (10000, 784)
    np.testing.assert_array_equal(np.bincount(ds.y_train), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(ds.y_test), [1000] * 10)


def _write_idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    header = struct.pack(">BBBB", 0, 0, 0x08, arr.ndim) + b"".join(struct.pack(">I", s) for s in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.tobytes())


def test_idx_and_npz_directories(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    xtr, xte = rng.integers(0, 256, (30, 6, 6)), rng.integers(0, 256, (10, 6, 6))
    ytr, yte = np.repeat(np.arange(3), 10), np.arange(10) % 3
    idx_dir = tmp_path / "idx"
    idx_dir.mkdir()
    _write_idx(idx_dir / "train-images-idx3-ubyte.gz", xtr)
    _write_idx(idx_dir / "train-labels-idx1-ubyte.gz", ytr)
    _write_idx(idx_dir / "t10k-images-idx3-ubyte.gz", xte)
    _write_idx(idx_dir / "t10k-labels-idx1-ubyte.gz", yte)
    ds = data.load("idx", data_dir=str(idx_dir), normalize="none")
    assert ds.num_classes == 3 and ds.x_train.shape == (30, 36)
    np.testing.assert_allclose(ds.x_train, xtr.reshape(30, -1) / 255, atol=1e-7)
    np.testing.assert_array_equal(ds.y_test, yte)

    k_dir = tmp_path / "kmnist"
    k_dir.mkdir()
    for part, arr in [("train-imgs", xtr), ("train-labels", ytr), ("test-imgs", xte), ("test-labels", yte)]:
        np.savez_compressed(k_dir / f"kmnist-{part}.npz", arr.astype(np.uint8))
    monkeypatch.setenv("NWCORRUPT_KMNIST_DIR", str(k_dir))
    km = data.load("kmnist", n_train=9, normalize="none")
    monkeypatch.setenv("NWCORRUPT_KMNIST_DIR", str(tmp_path / "elsewhere"))  # the cache must not hide this
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.load("kmnist")
    np.testing.assert_array_equal(np.bincount(km.y_train), [3, 3, 3])

    one = tmp_path / "one"
    one.mkdir()
    np.savez(one / "set.npz", x_train=xtr / 255, y_train=ytr, x_test=xte / 255, y_test=yte)
    np.testing.assert_allclose(data.load("npz", data_dir=str(one)).x_train, km_like := data.load("idx", data_dir=str(idx_dir)).x_train, atol=1e-6)
    assert km_like.shape == (30, 36)


def test_missing_data_sets_say_how_to_install(tmp_path, monkeypatch):
    with pytest.raises(data.DatasetNotFoundError, match="apt-get install dataset-fashion-mnist"):
        data.load("fashion_mnist", data_dir=str(tmp_path))
    monkeypatch.delenv("NWCORRUPT_KMNIST_DIR", raising=False)
    with pytest.raises(data.DatasetNotFoundError, match="NWCORRUPT_KMNIST_DIR"):
        data.load("kmnist")
    with pytest.raises(data.DatasetNotFoundError, match="no npz file"):
        data.load("npz", data_dir=str(tmp_path))
    with pytest.raises(data.DatasetNotFoundError, match="does not exist"):
        data.load("idx", data_dir=str(tmp_path / "nope"))
    with pytest.raises(ValueError, match="needs data_dir="):
        data.load("idx")
    assert not data.available("fashion_mnist", data_dir=str(tmp_path))


def test_gaussian_mixture():
    ds = data.load("gaussian_mixture", n_train=60, n_test=30, d=2000, num_classes=3, separation=2.0, noise_std=0.0, normalize="none")
    assert ds.x_train.shape == (60, 2000) and ds.num_classes == 3
    np.testing.assert_array_equal(np.bincount(ds.y_train), [20] * 3)
    # no within-class noise: every example equals its class mean, of RMS = separation
    np.testing.assert_allclose(np.sqrt((ds.x_train.astype(np.float64) ** 2).mean(axis=1)), 2.0, rtol=1e-5)
    same = data.gaussian_mixture(n_train=60, n_test=30, d=50, num_classes=3, seed=4)
    np.testing.assert_array_equal(same.x_train, data.gaussian_mixture(n_train=60, n_test=30, d=50, num_classes=3, seed=4).x_train)
    with pytest.raises(ValueError, match="n_train must be a multiple of num_classes=3"):
        data.gaussian_mixture(n_train=61, n_test=30, num_classes=3)
    with pytest.raises(ValueError, match="separation must be a finite number"):
        data.gaussian_mixture(separation=float("inf"))


def test_validation_errors():
    with pytest.raises(ValueError, match="name must be one of"):
        data.load("cifar")
    with pytest.raises(ValueError, match="normalize must be one of"):
        data.load("digits", normalize="zscore")
    with pytest.raises(ValueError, match="n_train must be a multiple of num_classes=10"):
        data.load("digits", n_train=55)
    with pytest.raises(ValueError, match="needs 150 examples of class"):
        data.load("digits", n_train=1500)
    with pytest.raises(ValueError, match="unexpected options"):
        data.load("digits", d=5)
    x, y = np.zeros((4, 3), np.float32), np.array([0, 1, 0, 1])
    with pytest.raises(ValueError, match="y_train has 3 labels but x_train has 4 rows"):
        data.Dataset(x, y[:3], x, y, 2, "t")
    with pytest.raises(ValueError, match=r"y_test must lie in \[0, 2\)"):
        data.Dataset(x, y, x, y + 1, 2, "t")
    bad = x.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="x_train contains NaN or inf"):
        data.Dataset(bad, y, x, y, 2, "t")
    with pytest.raises(ValueError, match="x_train has 3 features but x_test has 2"):
        data.Dataset(x, y, x[:, :2], y, 2, "t")
    with pytest.raises(TypeError, match="y_train must have an integer dtype"):
        data.Dataset(x, y.astype(float), x, y, 2, "t")


@pytest.mark.parametrize("name", data.names())
def test_available_answers_for_every_registered_name(name, tmp_path, monkeypatch):
    # regression: available("gaussian_mixture") raised instead of answering
    monkeypatch.delenv("NWCORRUPT_KMNIST_DIR", raising=False)
    answer = data.available(name)
    assert isinstance(answer, bool)
    if answer:
        ds = data.load(name, n_train=20, seed=0)
        assert ds.n_train == 20 and ds.x_train.shape[0] == 20
    else:
        with pytest.raises((data.DatasetNotFoundError, ValueError), match="data_dir|not|install"):
            data.load(name, n_train=20, seed=0)
    if name in ("gaussian_mixture", "digits"):
        assert answer is True
    if name in ("idx", "npz"):  # these read only the directory they are given
        assert answer is False
    # an empty directory: a clean False for every file-backed data set
    assert data.available(name, data_dir=str(tmp_path)) is (name in ("digits", "gaussian_mixture"))
