"""Predictive power (Li et al.): what a network trained on noisy labels still holds in its features.

For each data set and label-noise model, ``repeats`` MLPs are trained on ``n_train`` images whose
labels are noisy (one realisation, seed ``seed``). Then, for every layer l of each network, a
linear probe (:func:`nwcorrupt.probe.fit`, relative ridge ``probe_ridge``, no bias) is fitted on the
representations of m clean examples per class and scored on the clean test set. The clean examples
are drawn (``subsets`` random class-balanced subsets per m) from the network's own training images,
with their true labels. Beside the trained networks, on the same clean subsets:

- ``raw``: the probe on the raw inputs (layer 0);
- ``random``: the probe on layer l of ``random_inits`` networks of the same recipe at initialisation;
- ``nngp``: the infinite-width limit of the ``random`` probe, kernel regression with the
  post-activation NNGP kernel of layer l and the same relative ridge
  (:func:`nwcorrupt.probe.kernel_scores`);
- ``ntk``: the NTK of the MLP truncated after layer l, the infinite-width network with l hidden
  layers trained on the m clean examples (same ridge).

Predictive power minus the ``nngp`` baseline is what training on the noisy labels added to
layer l's features. The networks' own test accuracy and their training fit (loss, accuracy on the
clean and on the relabelled rows) are recorded with every point.

Label noise (``label_noises``, ``"kind:r"``): ``symmetric`` (a fraction r relabelled uniformly over
all C classes), ``pair`` (i → i + 1 mod C) and ``instance`` (ỹ = g(x) on a fraction r, with g the
image's ink decile: the class whose bin, among C equal-count bins of the training images' mean
pixel intensity, holds the image). Inputs (``inputs``): ``"clean"`` for every data set and label
noise, and corrupted inputs ``"kind[:law]@p"`` (Part I's models) for the first data set with each of
``composed_label_noises``: label noise and input corruption on the same training set.

Recipe (a reconstruction, docs/studies/predictive_power.md): raw pixels in [0, 1]; MLPs with
``hidden`` ReLU layers of ``width`` units, standard parameterisation with PyTorch's default
initialisation; softmax cross-entropy; Adam (lr ``learning_rate``, PyTorch's defaults otherwise);
batch ``batch_size``, the last partial batch kept; ``epochs`` passes.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from nwcorrupt import data, precision, probe
from nwcorrupt import labels as _labels
from nwcorrupt._checks import check_choice, check_nonneg_float, check_positive_float, check_positive_int, check_seed
from nwcorrupt.arch import MLP, PARAMETERIZATIONS
from nwcorrupt.mlp import check_init_law
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import common, training_fit

__all__ = [
    "DESCRIPTION",
    "SWEEPS",
    "POINTS_ARE_PRODUCT",
    "LABEL_NOISE_KINDS",
    "MODELS",
    "Params",
    "preflight",
    "points",
    "estimate",
    "parse_label_noise",
    "parse_inputs",
    "ink_classes",
    "label_model",
    "train_config",
    "kernel_arch",
    "training_set",
    "run_point",
    "tables",
    "figures",
]

DESCRIPTION = "linear probes of every layer of MLPs trained on noisy labels, beside raw, random-init and NNGP/NTK baselines"

SWEEPS = {
    "datasets": "dataset",
    "label_noises": "label_noise",
    "composed_label_noises": "label_noise",
    "inputs": "inputs",
}
POINTS_ARE_PRODUCT = False

LABEL_NOISE_KINDS = ("symmetric", "pair", "instance")
#: the probed models of a record, in table order
MODELS = ("trained", "random", "raw", "nngp", "ntk")


def parse_label_noise(spec: str) -> tuple[str, float]:
    """``"kind:r"`` → (kind, r), kind one of :data:`LABEL_NOISE_KINDS`, r in [0, 1]."""
    kind, sep, rate = str(spec).partition(":")
    if not sep:
        raise ValueError(f"a label noise must read 'kind:r' with kind one of {list(LABEL_NOISE_KINDS)}, got {spec!r}")
    check_choice("label noise kind", kind, LABEL_NOISE_KINDS)
    try:
        r = float(rate)
    except ValueError:
        raise ValueError(f"the rate of label noise {spec!r} must be a number in [0, 1]") from None
    if not 0.0 <= r <= 1.0:
        raise ValueError(f"the rate of label noise {spec!r} must lie in [0, 1], got {r}")
    return kind, r


def parse_inputs(spec: str) -> tuple[str, float] | None:
    """``"clean"`` → None; ``"kind[:law]@p"`` → (corruption spec, p)."""
    if spec == "clean":
        return None
    noise, sep, p = str(spec).partition("@")
    if not sep:
        raise ValueError(f"inputs must be 'clean' or 'kind[:law]@p' (e.g. 'replacement@0.9'), got {spec!r}")
    common.check_noises((noise,))
    p_val = float(p)
    common.check_ps("inputs", (p_val,))
    return noise, p_val


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the predictive-power study (module docstring).

    Attributes:
      datasets: image data sets; n_train: training images (balanced; 0: the whole training split).
      n_test: first n_test test images (0: all).
      label_noises: ``"kind:r"`` label-noise models of every data set.
      inputs: ``"clean"`` and corrupted-input conditions ``"kind[:law]@p"``.
      composed_label_noises: label noises combined with each corrupted input condition (first data set).
      hidden, width: hidden layers and units.
      parameterization, init: of the networks: ``"standard"`` with ``"torch_default"`` (PyTorch's layers, the
        recipe) or ``"gaussian"`` (He scale, zero biases); ``"ntk"`` only with ``"gaussian"``.
      learning_rate, epochs, batch_size: Adam's recipe.
      repeats: trained networks (initialisations) per point.
      random_inits: networks at initialisation of the ``random`` baseline.
      ms: clean examples per class of the probes. subsets: clean subsets per m.
      probe_ridge: the probes' ridge, relative to the mean squared feature norm (and to the mean kernel
        diagonal for the kernel baselines); 0 is minimum-norm least squares.
      seed: seed of the training subset, the label noise, the input noise, the networks and the subsets.
    """

    datasets: tuple[str, ...] = ("mnist", "fashion_mnist")
    n_train: int = 0
    n_test: int = 0
    label_noises: tuple[str, ...] = ("symmetric:0", "symmetric:0.2", "symmetric:0.5", "symmetric:0.8",
                                     "pair:0.4", "instance:0.5")
    inputs: tuple[str, ...] = ("clean", "replacement@0.9")
    composed_label_noises: tuple[str, ...] = ("symmetric:0.5",)
    hidden: int = 2
    width: int = 512
    parameterization: str = "standard"
    init: str = "torch_default"
    learning_rate: float = 1e-3
    epochs: int = 50
    batch_size: int = 128
    repeats: int = 3
    random_inits: int = 3
    ms: tuple[int, ...] = (1, 3, 10, 30, 100, 300, 1000)
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
        for spec in (*self.label_noises, *self.composed_label_noises):
            parse_label_noise(spec)
        if "clean" not in self.inputs:
            raise ValueError(f"inputs must contain 'clean' (the condition of every label noise), got {list(self.inputs)}")
        for spec in self.inputs:
            parse_inputs(spec)
        for name in ("width", "epochs", "batch_size", "repeats", "random_inits", "subsets"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("hidden", self.hidden)
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        check_init_law(MLP(2, "relu", parameterization=self.parameterization), self.init)
        check_positive_float("learning_rate", self.learning_rate)
        check_nonneg_float("probe_ridge", self.probe_ridge)
        check_seed("seed", self.seed)
        if not self.ms:
            raise ValueError("ms must list at least one number of clean examples per class")
        for m in self.ms:
            check_positive_int("ms", m)
        for name in ("datasets", "label_noises", "inputs", "composed_label_noises", "ms"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value, got {list(values)}")


def preflight(params: Params) -> None:
    for d in params.datasets:
        common.preflight_dataset(d)
        ds = data.load_raw(d)
        if params.n_train and params.n_train > ds.x_train.shape[0]:
            raise ConfigError(f"n_train={params.n_train} exceeds the {ds.x_train.shape[0]} training images of {d}")
        smallest = int(np.bincount(ds.y_train).min()) if not params.n_train else params.n_train // ds.num_classes
        if max(params.ms) > smallest:
            raise ConfigError(f"ms up to {max(params.ms)} exceeds the clean pool of {d}: {smallest} training "
                                     "images per class (expected max(ms) <= n_train / C)")


def points(params: Params) -> list[dict]:
    out = [{"dataset": d, "label_noise": ln, "inputs": "clean"} for d in params.datasets for ln in params.label_noises]
    out += [{"dataset": params.datasets[0], "label_noise": ln, "inputs": inp}
            for inp in params.inputs if inp != "clean" for ln in params.composed_label_noises]
    return out


def estimate(params: Params, point: dict) -> float:
    n = params.n_train or 60000
    w = params.width
    weights = 784 * w + (params.hidden - 1) * w * w + 10 * w
    flops = 6 * params.repeats * params.epochs * n * weights
    rows = 10 * max(params.ms)
    kernel = 2 * params.hidden * len(params.ms) * params.subsets * (rows**3 / 3 + rows * (params.n_test or 10000) * 800)
    return 5.0 + flops / 2e10 + kernel / 5e9


# --------------------------------------------------------------------------- data and models


def ink_classes(x_reference, x, num_classes: int) -> np.ndarray:
    """(N,) int: the bin of each image's mean pixel intensity among ``num_classes`` equal-count bins
    of ``x_reference``'s (the instance-dependent labelling g of the module docstring)."""
    ref = np.asarray(x_reference, np.float64).mean(1)
    edges = np.quantile(ref, np.arange(1, num_classes) / num_classes)
    return np.searchsorted(edges, np.asarray(x, np.float64).mean(1), side="right").astype(np.int32)


def label_model(spec: str, x_train, num_classes: int):
    """The label-noise model of ``spec`` (its ``instance`` g reads ``x_train``'s ink deciles)."""
    kind, r = parse_label_noise(spec)
    if kind == "symmetric":
        return _labels.Symmetric(r)
    if kind == "pair":
        return _labels.Pair(r)
    return _labels.InstanceDependent(r, ink_classes(x_train, x_train, num_classes))


def training_set(params: Params, point: dict) -> tuple[data.Dataset, data.Dataset, np.ndarray]:
    """(clean data set, noisy data set, clean_mask) of a point: raw pixels, balanced n_train, first n_test."""
    ds = data.load(point["dataset"], n_train=params.n_train or None, seed=params.seed, normalize="none")
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    model = label_model(point["label_noise"], ds.x_train, ds.num_classes)
    inp = parse_inputs(point["inputs"])
    inputs = None if inp is None else (common.noise_model(inp[0], "none", ds.x_train), inp[1])
    noisy, clean_mask = _labels.corrupt(ds, model, params.seed, inputs=inputs)
    return ds, noisy, clean_mask


def train_config(params: Params, num_classes: int):
    """The networks' :class:`~nwcorrupt.train.TrainConfig` (module docstring)."""
    return common.torch_relu_config(params, num_classes)


def kernel_arch(params: Params) -> MLP:
    """The infinite-width counterpart of the networks at initialisation: ReLU, weight variance 1/(3 fan_in)
    as PyTorch's init, no bias (PyTorch's bias variance 1/(3 fan_in) vanishes at infinite width; in the first
    layer it is 1/(3d), a relative 1/d = 0.13% of the input term, dropped). For ReLU without bias the
    kernel regressions do not depend on the weight scale."""
    return MLP(params.hidden + 1, "relu", W_std=1 / math.sqrt(3), b_std=0.0, parameterization="ntk")


# --------------------------------------------------------------------------- one point


def _probe_accuracy(phi, phit, y, y_test, rows, ridge, c) -> float:
    return probe.fit(phi[rows], y[rows], num_classes=c, ridge=ridge, ridge_relative=True).accuracy(phit, y_test)


def _finite(v) -> float | None:
    return float(v) if v is not None and np.isfinite(v) else None  # a group without rows has no accuracy


def run_point(params: Params, point: dict) -> dict:
    from nwcorrupt import mlp, train

    ds, noisy, clean_mask = training_set(params, point)
    c = ds.num_classes
    cfg = train_config(params, c)
    x, y_noisy, xt = noisy.x_train, noisy.y_train, ds.x_test
    x_clean, y_true = ds.x_train, ds.y_train  # the probes' examples: clean images, true labels
    subsets = {m: probe.clean_subsets(y_true, m, num_classes=c, num_subsets=params.subsets, seed=params.seed)
               for m in params.ms}
    layers = list(range(1, params.hidden + 2))
    results: dict[tuple[str, int, int], list[float]] = {}

    def add(model: str, layer: int, phi, phit) -> None:
        for m, rows in subsets.items():
            results.setdefault((model, layer, m), []).extend(
                _probe_accuracy(phi, phit, y_true, ds.y_test, r, params.probe_ridge, c) for r in rows)

    t0 = time.perf_counter()
    nets = []
    for i in range(params.repeats):
        res = train.train_member(cfg, x, y_noisy, xt, m=i, clean_mask=clean_mask)
        nets.append(res)
        for l in layers:
            add("trained", l, *(np.asarray(mlp.layer_features(cfg.arch, res.params, z, l)) for z in (x_clean, xt)))
    train_seconds = time.perf_counter() - t0
    for i in range(params.random_inits):
        p0 = train.member_init(cfg, x.shape[1], k=1, m=i)  # k = 1: never a trained member's init
        for l in layers:
            add("random", l, *(np.asarray(mlp.layer_features(cfg.arch, p0, z, l)) for z in (x_clean, xt)))
    add("raw", 0, np.asarray(x_clean, np.float64), np.asarray(xt, np.float64))
    karch = kernel_arch(params)
    t1 = time.perf_counter()
    with precision.x64():
        x64, xt64 = np.asarray(x_clean, np.float64), np.asarray(xt, np.float64)
        for m, rows in subsets.items():
            for r in rows:
                for get in ("nngp", "ntk"):  # every hidden layer's kernel from one pass of the recursion
                    k_tr = probe.layer_kernels(karch, x64[r], get=get)
                    k_te = probe.layer_kernels(karch, xt64, x64[r], get=get)
                    for l in layers[:-1]:
                        scores = probe.kernel_regression(k_tr[l], k_te[l], y_true[r], num_classes=c,
                                                         ridge=params.probe_ridge)
                        results.setdefault((get, l, m), []).append(float(np.mean(scores.argmax(1) == ds.y_test)))
    kernel_seconds = time.perf_counter() - t1
    test_acc = [float(np.mean(n.test_logits.argmax(1) == ds.y_test)) for n in nets]
    return {
        "flip_fraction": _labels.flip_fraction(y_true, y_noisy),
        "n_train": int(x.shape[0]),
        "test_accuracy": test_acc,
        "train_accuracy_clean": [_finite(n.train_accuracy_clean) for n in nets],
        "train_accuracy_noisy": [_finite(n.train_accuracy_noisy) for n in nets],
        **training_fit.summarize([n.train_loss for n in nets], [n.train_accuracy for n in nets]),
        "probes": [{"model": k[0], "layer": k[1], "m": k[2], "accuracy": v} for k, v in results.items()],
        "chance": 1.0 / c,
        "train_seconds": train_seconds,
        "kernel_seconds": kernel_seconds,
    }


# --------------------------------------------------------------------------- reports


def _key(rec: dict) -> list:
    pt = rec["point"]
    return [pt["dataset"], pt["label_noise"], pt["inputs"]]


def _mean(values) -> float | str:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else ""


def tables(params: Params, records: list[dict]) -> dict:
    net_rows, fit_rows, probe_rows, gain_rows = [], [], [], []
    for rec in records:
        m, key = rec["metrics"], _key(rec)
        net_rows.append([*key, m["flip_fraction"], *common.mean_std(m["test_accuracy"]), len(m["test_accuracy"]),
                         _mean(m["train_accuracy_clean"]), _mean(m["train_accuracy_noisy"])])
        fit_rows.append([*key, m["flip_fraction"], *training_fit.columns(m, training_fit.FIXED_SET_THRESHOLD)])
        by = {(p["model"], p["layer"], p["m"]): p["accuracy"] for p in m["probes"]}
        order = sorted(by, key=lambda k: (MODELS.index(k[0]), k[1], k[2]))
        for k in order:
            probe_rows.append([*key, k[0], k[1], k[2], *common.mean_std(by[k]), len(by[k])])
        for (model, layer, mm) in order:
            if model != "trained":
                continue
            trained = float(np.mean(by[(model, layer, mm)]))
            base = {b: (trained - float(np.mean(by[(b, layer, mm)])) if (b, layer, mm) in by else "")
                    for b in ("nngp", "random")}
            gain_rows.append([*key, layer, mm, trained, base["nngp"], base["random"]])
    return {
        "network": (["dataset", "label_noise", "inputs", "flip_fraction", "test_mean", "test_std", "n",
                     "train_acc_clean_rows", "train_acc_relabelled_rows"], net_rows),
        "training_fit": (["dataset", "label_noise", "inputs", "flip_fraction", *training_fit.HEADER], fit_rows),
        "probe": (["dataset", "label_noise", "inputs", "model", "layer", "m_per_class", "mean", "std", "n"],
                  probe_rows),
        "gain": (["dataset", "label_noise", "inputs", "layer", "m_per_class", "trained", "trained_minus_nngp",
                  "trained_minus_random"], gain_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    return plots.predictive_power_figures(tables(params, records), hidden=params.hidden)
