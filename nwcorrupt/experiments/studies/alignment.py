"""Alignment (Li et al.): predictive power survives label noise in the architecture aligned with the target.

Every image is padded with a blank border of ``border`` pixels and a ``marker`` × ``marker`` bright
square is planted at the outer edge of that border at one of C positions (C = the number of classes:
⌈C/2⌉ evenly spaced along the top edge, the rest along the bottom edge), drawn uniformly per image. Each image thus
carries two labels: its **digit** class and its marker **position**. Two tasks swap their roles:

- task ``position``: the target is the marker position; the instance-dependent noise relabels a
  fraction r of the training rows with their digit class (ỹ = g(x) = digit);
- task ``digit``: the target is the digit class; the noise relabels a fraction r with the marker
  position (ỹ = g(x) = position).

Two architectures, trained with the same recipe on each task:

- ``mlp``: ``hidden`` ReLU layers of ``width`` units on the flattened image — it sees where every
  pixel is, so it can read the marker's position (position-aligned);
- ``pooled``: two 3 × 3 convolutions (``channels``) with circular padding and ReLU, global average
  pooling, a ReLU layer of ``width`` units and the readout. Circular padding and the global pool make
  it exactly invariant to (circular) translations of the whole image, so it can only see where the
  marker is relative to the image content, through a 5 × 5 patch that holds both: for MNIST (digits
  inside the central 20 × 20) and the default border of 4 no patch does, so the position is invisible
  to it and it represents what the image contains (class-aligned). Fashion-MNIST items can reach the
  image's edge, where a patch may see a marker and the item together.

For each (data set, task, architecture, r), ``repeats`` networks are trained; a linear probe
(:func:`nwcorrupt.probe.fit`, relative ridge ``probe_ridge``) is fitted on the penultimate
representation (the input of the readout) of m clean examples per class of the *target* (true
target labels, drawn from the training images) and scored on the marked test set. Baselines on the
same subsets: ``random`` (the same architecture at initialisation, ``random_inits`` draws) and ``raw``
(the pixels). Recorded with every point: the networks' test accuracy on the target, how often their
test predictions follow the noise rule g instead (``follows_noise``), and their training fit.

Expected (Li et al.): on each task the aligned architecture keeps its predictive power as r grows
and the other does not — the pooled network cannot represent the position at all, and on the digit
task the MLP can fit the noisy labels through the marker.

Recipe (as ``predictive_power``): raw pixels in [0, 1], marker value 1; standard parameterisation
with PyTorch's default initialisation (``init``), softmax cross-entropy, Adam (``learning_rate``),
batch ``batch_size`` with the last partial batch kept, ``epochs`` passes.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from nwcorrupt import data, probe
from nwcorrupt import labels as _labels
from nwcorrupt._checks import check_choice, check_nonneg_float, check_positive_float, check_positive_int, check_seed
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import common, training_fit

__all__ = [
    "ARCHS",
    "DESCRIPTION",
    "MODELS",
    "POINTS_ARE_PRODUCT",
    "SWEEPS",
    "TASKS",
    "Params",
    "estimate",
    "figures",
    "marked_dataset",
    "marker_positions",
    "network",
    "plant_markers",
    "points",
    "preflight",
    "run_point",
    "tables",
    "train_config",
]

DESCRIPTION = "probes of an MLP and a translation-invariant pooled CNN on a planted-marker task and on digits, with noise aligned to the other label"

SWEEPS = {"datasets": "dataset", "tasks": "task", "archs": "arch", "noise_rates": "r"}
POINTS_ARE_PRODUCT = True

TASKS = ("position", "digit")
ARCHS = ("mlp", "pooled")
#: the probed models of a record, in table order
MODELS = ("trained", "random", "raw")


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the alignment study (module docstring).

    Attributes:
      datasets: image data sets; n_train: training images (balanced; 0: all); n_test: first test images (0: all).
      tasks: ``"position"`` and/or ``"digit"``; archs: ``"mlp"`` and/or ``"pooled"``.
      noise_rates: fractions r of training rows relabelled by the other label.
      size: side of the images before padding, resized from the data set's (0: native, 28 for MNIST).
      border: blank pixels added on each side; marker: side of the planted square (<= border).
      hidden, width: the MLP's hidden layers and units (``width`` is also the pooled network's hidden layer).
      channels: the pooled network's two convolutions.
      parameterization, init, learning_rate, epochs, batch_size: the recipe (``init`` "torch_default" needs
        the standard parameterisation).
      repeats, random_inits: trained networks and networks at initialisation per point.
      ms, subsets, probe_ridge: the probes (m clean examples per class, subsets per m, relative ridge).
      seed: seed of the training subset, markers, label noise, networks and subsets.
    """

    datasets: tuple[str, ...] = ("mnist", "fashion_mnist")
    n_train: int = 0
    n_test: int = 0
    tasks: tuple[str, ...] = TASKS
    archs: tuple[str, ...] = ARCHS
    noise_rates: tuple[float, ...] = (0.0, 0.5, 0.8)
    size: int = 0
    border: int = 4
    marker: int = 3
    hidden: int = 2
    width: int = 512
    channels: tuple[int, int] = (32, 64)
    parameterization: str = "standard"
    init: str = "torch_default"
    learning_rate: float = 1e-3
    epochs: int = 50
    batch_size: int = 128
    repeats: int = 3
    random_inits: int = 3
    ms: tuple[int, ...] = (1, 10, 100, 1000)
    subsets: int = 5
    probe_ridge: float = 1e-2
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.datasets:
            raise ValueError("datasets must list at least one data set")
        for d in self.datasets:
            common.check_dataset(d)
        check_positive_int("n_train", self.n_train, allow_zero=True)
        check_positive_int("n_test", self.n_test, allow_zero=True)
        if not self.tasks or not self.archs or not self.noise_rates:
            raise ValueError("tasks, archs and noise_rates must each list at least one value")
        for t in self.tasks:
            check_choice("tasks", t, TASKS)
        for a in self.archs:
            check_choice("archs", a, ARCHS)
        for r in self.noise_rates:
            if not isinstance(r, (int, float)) or not 0.0 <= r < 1.0:
                raise ValueError(f"noise_rates must lie in [0, 1), got {r!r}")
        check_positive_int("size", self.size, allow_zero=True)
        check_positive_int("marker", self.marker)
        check_positive_int("border", self.border)
        if self.marker > self.border:
            raise ValueError(f"marker={self.marker} must fit in the border: expected marker <= border={self.border}")
        if len(self.channels) != 2:
            raise ValueError(f"channels must give the two convolutions' channels, got {list(self.channels)}")
        for c in self.channels:
            check_positive_int("channels", c)
        for name in ("hidden", "width", "epochs", "batch_size", "repeats", "random_inits", "subsets"):
            check_positive_int(name, getattr(self, name))
        check_choice("parameterization", self.parameterization, ("ntk", "standard"))
        check_choice("init", self.init, ("gaussian", "torch_default"))
        if self.init == "torch_default" and self.parameterization != "standard":
            raise ValueError("init='torch_default' needs parameterization='standard'")
        check_positive_float("learning_rate", self.learning_rate)
        check_nonneg_float("probe_ridge", self.probe_ridge)
        check_seed("seed", self.seed)
        if not self.ms:
            raise ValueError("ms must list at least one number of clean examples per class")
        for m in self.ms:
            check_positive_int("ms", m)
        for name in ("datasets", "tasks", "archs", "noise_rates", "ms"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value, got {list(values)}")


def preflight(params: Params) -> None:
    for d in params.datasets:
        if d == "gaussian_mixture":
            raise ConfigError("gaussian_mixture is not an image data set; the alignment study plants markers in images")
        common.preflight_dataset(d)
        ds = data.load_raw(d)
        if params.n_train and params.n_train > ds.x_train.shape[0]:
            raise ConfigError(f"n_train={params.n_train} exceeds the {ds.x_train.shape[0]} training images of {d}")
        per_class = int(np.bincount(ds.y_train).min()) if not params.n_train else params.n_train // ds.num_classes
        # the position labels are uniform, so a class of the position task has about N / C rows too
        if max(params.ms) > 0.8 * per_class:
            raise ConfigError(f"ms up to {max(params.ms)} exceeds the clean pool of {d}: about {per_class} training "
                              "images per class (expected max(ms) <= 0.8 n_train / C)")


def points(params: Params) -> list[dict]:
    return [{"dataset": d, "task": t, "arch": a, "r": float(r)}
            for d in params.datasets for t in params.tasks for a in params.archs for r in params.noise_rates]


def estimate(params: Params, point: dict) -> float:
    n = params.n_train or 60000
    side = (params.size or 28) + 2 * params.border
    if point["arch"] == "mlp":
        w = params.width
        flops = 6 * (side * side * w + (params.hidden - 1) * w * w + 10 * w)
    else:
        c1, c2 = params.channels
        flops = 6 * side * side * 9 * (c1 + c1 * c2) + 6 * (c2 * params.width + 10 * params.width)
    return 5.0 + (params.repeats * params.epochs * n * flops) / 1.5e10


# --------------------------------------------------------------------------- data


def marker_positions(height: int, width: int, border: int, marker: int, count: int) -> np.ndarray:
    """(count, 2) top-left (row, column) of the marker positions in a padded (height, width) image:
    ⌈count/2⌉ evenly spaced along the top edge, the rest along the bottom edge (as far from the image
    as the border allows)."""
    if marker > border:
        raise ValueError(f"marker={marker} must fit in the border: expected marker <= border={border}")
    top = -(-count // 2)
    row_top = 0
    row_bottom = height - marker
    out = []
    for n_row, row in ((top, row_top), (count - top, row_bottom)):
        cols = np.linspace(0, width - marker, n_row + 2)[1:-1] if n_row else []
        out += [(row, int(round(c))) for c in cols]
    return np.asarray(out, np.int32)


def plant_markers(images: np.ndarray, positions: np.ndarray, which: np.ndarray, marker: int) -> np.ndarray:
    """Images (N, H, W) with a square of ones at ``positions[which[i]]`` in image i."""
    out = images.copy()
    for k, (r, c) in enumerate(positions):
        rows = np.flatnonzero(which == k)
        out[rows, r : r + marker, c : c + marker] = 1.0
    return out


def marked_dataset(params: Params, dataset: str) -> tuple[data.Dataset, dict]:
    """The padded, marked images with both labellings.

    Returns (Dataset with the digit labels, {"position_train", "position_test": (N,) int, "shape": (H, W)}).
    """
    ds = data.load(dataset, n_train=params.n_train or None, seed=params.seed, normalize="none",
                   size=(params.size, params.size) if params.size else None)
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    h, w = ds.image_shape
    b = params.border
    height, width = h + 2 * b, w + 2 * b
    c = ds.num_classes
    positions = marker_positions(height, width, b, params.marker, c)
    rng = np.random.default_rng([params.seed, 7])
    out = {"shape": (height, width)}
    xs = {}
    for split, x in (("train", ds.x_train), ("test", ds.x_test)):
        which = rng.integers(0, c, x.shape[0]).astype(np.int32)
        padded = np.pad(np.asarray(x, np.float32).reshape(-1, h, w), ((0, 0), (b, b), (b, b)))
        xs[split] = plant_markers(padded, positions, which, params.marker).reshape(x.shape[0], -1)
        out[f"position_{split}"] = which
    marked = data.Dataset(xs["train"], ds.y_train, xs["test"], ds.y_test, c, f"{ds.name}+markers", (height, width))
    return marked, out


# --------------------------------------------------------------------------- networks


def network(params: Params, arch: str, shape: tuple[int, int], num_classes: int):
    """The :class:`~nwcorrupt.stax.Network` of ``arch`` for (H, W) single-channel images."""
    from nwcorrupt import stax

    pz = params.parameterization
    w_std = 1 / math.sqrt(3) if params.init == "torch_default" else math.sqrt(2.0)

    def dense(n: int) -> stax.Layer:
        return stax.Dense(n, W_std=w_std, b_std=0.0, parameterization=pz)

    if arch == "mlp":
        layers = [stax.Flatten()]
        for _ in range(params.hidden):
            layers += [dense(params.width), stax.Relu()]
    else:
        c1, c2 = params.channels
        layers = [
            stax.Conv(c1, (3, 3), padding="CIRCULAR", W_std=w_std, b_std=0.0, parameterization=pz), stax.Relu(),
            stax.Conv(c2, (3, 3), padding="CIRCULAR", W_std=w_std, b_std=0.0, parameterization=pz), stax.Relu(),
            stax.GlobalAvgPool(), dense(params.width), stax.Relu(),
        ]  # fmt: skip
    layers.append(dense(num_classes))
    return stax.Network(stax.serial(*layers), (*shape, 1))


def train_config(params: Params, arch: str, shape: tuple[int, int], num_classes: int):
    """The :class:`~nwcorrupt.train.TrainConfig` of ``arch`` (module docstring's recipe)."""
    from nwcorrupt import train

    return train.TrainConfig(
        arch=network(params, arch, shape, num_classes),
        width=None,
        num_classes=num_classes,
        optimizer=train.Optimizer("adam", params.learning_rate),
        loss="cross_entropy",
        batch_size=params.batch_size,
        epochs=params.epochs,
        init=params.init,
        drop_last=False,
        seed=params.seed,
    )


# --------------------------------------------------------------------------- one point


def _probe_accuracy(phi, phit, y, y_test, rows, ridge, c) -> float:
    return probe.fit(phi[rows], y[rows], num_classes=c, ridge=ridge, ridge_relative=True).accuracy(phit, y_test)


def _finite(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None


def run_point(params: Params, point: dict) -> dict:
    from nwcorrupt import train

    ds, extra = marked_dataset(params, point["dataset"])
    c = ds.num_classes
    if point["task"] == "position":
        y, y_test, g, g_test = extra["position_train"], extra["position_test"], ds.y_train, ds.y_test
    else:
        y, y_test, g, g_test = ds.y_train, ds.y_test, extra["position_train"], extra["position_test"]
    task_ds = ds.replace(y_train=y, y_test=y_test)
    noisy, clean_mask = _labels.corrupt(task_ds, _labels.InstanceDependent(point["r"], g), params.seed)
    cfg = train_config(params, point["arch"], extra["shape"], c)
    net = cfg.arch
    penultimate = len(net.top_layers()) - 1
    x, xt = np.asarray(noisy.x_train), np.asarray(ds.x_test)
    subsets = {m: probe.clean_subsets(y, m, num_classes=c, num_subsets=params.subsets, seed=params.seed)
               for m in params.ms}
    results: dict[tuple[str, int], list[float]] = {}

    def add(model: str, phi, phit) -> None:
        phi, phit = (np.asarray(v, np.float64).reshape(v.shape[0], -1) for v in (phi, phit))
        for m, rows in subsets.items():
            results.setdefault((model, m), []).extend(
                _probe_accuracy(phi, phit, y, y_test, r, params.probe_ridge, c) for r in rows)

    t0 = time.perf_counter()
    nets = []
    for i in range(params.repeats):
        res = train.train_member(cfg, x, noisy.y_train, xt, m=i, clean_mask=clean_mask)
        nets.append(res)
        add("trained", *(net.features(res.params, z, penultimate) for z in (x, xt)))
    train_seconds = time.perf_counter() - t0
    for i in range(params.random_inits):
        p0 = train.member_init(cfg, x.shape[1], k=1, m=i)  # k = 1: never a trained member's init
        add("random", *(net.features(p0, z, penultimate) for z in (x, xt)))
    add("raw", x, xt)
    preds = [n.test_logits.argmax(1) for n in nets]
    return {
        "flip_fraction": _labels.flip_fraction(y, noisy.y_train),
        "n_train": int(x.shape[0]),
        "test_accuracy": [float(np.mean(p == y_test)) for p in preds],
        "follows_noise": [float(np.mean(p == g_test)) for p in preds],
        "labels_agree": float(np.mean(y_test == g_test)),
        "train_accuracy_clean": [_finite(n.train_accuracy_clean) for n in nets],
        "train_accuracy_noisy": [_finite(n.train_accuracy_noisy) for n in nets],
        **training_fit.summarize([n.train_loss for n in nets], [n.train_accuracy for n in nets]),
        "probes": [{"model": k[0], "m": k[1], "accuracy": v} for k, v in results.items()],
        "chance": 1.0 / c,
        "train_seconds": train_seconds,
    }


# --------------------------------------------------------------------------- reports


def _key(rec: dict) -> list:
    pt = rec["point"]
    return [pt["dataset"], pt["task"], pt["arch"], pt["r"]]


def _mean(values) -> float | str:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else ""


def tables(params: Params, records: list[dict]) -> dict:
    net_rows, fit_rows, probe_rows = [], [], []
    for rec in sorted(records, key=lambda r: (r["point"]["dataset"], TASKS.index(r["point"]["task"]),
                                               ARCHS.index(r["point"]["arch"]), r["point"]["r"])):
        m, key = rec["metrics"], _key(rec)
        net_rows.append([*key, m["flip_fraction"], *common.mean_std(m["test_accuracy"]), len(m["test_accuracy"]),
                         float(np.mean(m["follows_noise"])), _mean(m["train_accuracy_clean"]),
                         _mean(m["train_accuracy_noisy"])])
        fit_rows.append([*key, m["flip_fraction"], *training_fit.columns(m, training_fit.FIXED_SET_THRESHOLD)])
        by = {(p["model"], p["m"]): p["accuracy"] for p in m["probes"]}
        for k in sorted(by, key=lambda k: (MODELS.index(k[0]), k[1])):
            probe_rows.append([*key, k[0], k[1], *common.mean_std(by[k]), len(by[k])])
    return {
        "network": (["dataset", "task", "arch", "r", "flip_fraction", "test_mean", "test_std", "n", "follows_noise",
                     "train_acc_clean_rows", "train_acc_relabelled_rows"], net_rows),
        "training_fit": (["dataset", "task", "arch", "r", "flip_fraction", *training_fit.HEADER], fit_rows),
        "probe": (["dataset", "task", "arch", "r", "model", "m_per_class", "mean", "std", "n"], probe_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    return plots.alignment_figures(tables(params, records))
