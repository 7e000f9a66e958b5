"""Architectures: does the prototype mechanism of heavy corruption hold beyond MLPs, and with which prototype?

Three networks of the same depth (``depth`` − 1 hidden layers and a dense readout, ``activation``
after every hidden layer, weights N(0, W_std²/fan_in), biases b_std), on images of side ``size``:

- ``mlp``: Flatten, then dense hidden layers of ``width`` units;
- ``cnn_flatten``: ``filter_size`` × ``filter_size`` convolutions of ``channels`` channels (stride 1,
  ``padding``), then Flatten: the readout sees every position on its own;
- ``cnn_pool``: the same convolutions, then global average pooling: the readout sees the spatial
  average (a translation-averaged representation).

For each (data set, noise model, architecture) and each corruption level p of ``ps`` (training set
corrupted, clean test set), on K noisy training sets (noise seeds seed, …, seed + K − 1):

- ``network``: M networks trained with the Part I recipe (standard parameterisation, MSE on one-hot
  targets, Adam ``learning_rate``, batch ``batch_size`` with the last partial batch kept, ``epochs``
  epochs); the prediction is the argmax of the init-averaged logits;
- ``ntk``: the exact NTK predictor (gradient flow, t = ∞) of the same architecture in the NTK
  parameterisation on the same noisy set (float64, relative ridge ``diag_reg``);

and once per p, without noise draws:

- ``meanfield``: the exact mean-field predictor (the first-layer pixel-pair overlaps replaced by
  their noise average, :func:`nwcorrupt.theory.conv_meanfield_kernels`; the same relative ridge);

and once per (data set, noise, architecture), independent of p:

- ``leading``: the leading order of the mean-field predictor around pure noise, argmax_c f_j(x*)_c
  with f_j the first Taylor coefficient in ε = 1 − p (j = 1 or 2) that separates the classes
  (:func:`nwcorrupt.theory.conv_taylor`): j = 1 unless f₁'s class spread is below
  :data:`FIRST_ORDER_THRESHOLD` times f₂'s (rounding), as for global average pooling with circular
  padding on zero-mean images, where f₁ is class-blind (docs/science.md);
- ``prototype``: the MLP's leading-order rule argmax_c ⟨x*, μ_c⟩ with the clean class means.

Reported: accuracies (mean ± std over K), agreements of decisions (network vs NTK, NTK vs
mean-field, mean-field vs leading order, network vs leading order, leading order vs prototype),
the order j and f₁'s relative class signal per architecture, and the networks' training-set fit.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from nwcorrupt import data, precision, prototype
from nwcorrupt._checks import check_choice, check_nonneg_float, check_positive_float, check_positive_int, check_seed
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import common, nested_predictors, training_fit

__all__ = [
    "AGREEMENTS",
    "ARCHS",
    "DESCRIPTION",
    "FIRST_ORDER_THRESHOLD",
    "PADDINGS",
    "PREDICTORS",
    "SWEEPS",
    "Params",
    "estimate",
    "figures",
    "layers",
    "leading_order",
    "points",
    "preflight",
    "run_point",
    "tables",
    "train_config",
]

DESCRIPTION = "MLP vs CNN-Flatten vs CNN-global-pooling at heavy input corruption: networks, exact NTK, mean-field, leading order"

SWEEPS = {"datasets": "dataset", "noises": "noise", "archs": "arch"}

ARCHS = ("mlp", "cnn_flatten", "cnn_pool")
PADDINGS = ("SAME", "CIRCULAR", "VALID")
PREDICTORS = ("network", "ntk", "meanfield", "leading", "prototype")
AGREEMENTS = (("network", "ntk"), ("ntk", "meanfield"), ("meanfield", "leading"), ("network", "leading"),
              ("leading", "prototype"))  # fmt: skip
#: a Taylor coefficient separates the classes when its relative class signal reaches this (rounding: ~1e-10)
FIRST_ORDER_THRESHOLD = 1e-6


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the architectures study (module docstring).

    Attributes:
      datasets, noises, archs: the sweep (every point is one (data set, noise, architecture)).
      ps: corruption levels of the training set (every point runs all of them).
      n_train: balanced training images; n_test: first clean test images (0: all).
      size: image side after resizing (0: native, 28 for MNIST).
      activation, depth, W_std, b_std: the networks (depth counts the readout).
      width: the MLP's hidden units; channels, filter_size, padding: the convolutions.
      parameterization: of the trained networks ("standard", the studies'); the kernels use "ntk".
      epochs, batch_size, learning_rate: the training recipe; k × m: noisy sets × initialisations.
      diag_reg: relative ridge of the kernel solves.
      block: images per block of the mean-field kernels; seed: data subset, noise, networks.
    """

    datasets: tuple[str, ...] = ("mnist", "fashion_mnist")
    noises: tuple[str, ...] = ("additive", "replacement")
    archs: tuple[str, ...] = ARCHS
    ps: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99, 1.0)
    n_train: int = 1000
    n_test: int = 0
    size: int = 0
    activation: str = "relu"
    depth: int = 3
    W_std: float = 1.4142135623730951
    b_std: float = 0.0
    width: int = 2048
    channels: int = 256
    filter_size: int = 3
    padding: str = "CIRCULAR"
    parameterization: str = "standard"
    epochs: int = 30
    batch_size: int = 250
    learning_rate: float = 1e-4
    k: int = 2
    m: int = 2
    diag_reg: float = 1e-6
    block: int = 8
    seed: int = 0

    def __post_init__(self) -> None:
        from nwcorrupt import activations

        for name in ("datasets", "noises", "archs", "ps"):
            values = getattr(self, name)
            if not values:
                raise ValueError(f"{name} must list at least one value")
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value, got {list(values)}")
        for d in self.datasets:
            common.check_dataset(d)
        common.check_noises(self.noises)
        for a in self.archs:
            check_choice("archs", a, ARCHS)
        common.check_ps("ps", self.ps)
        activations.get(self.activation)
        check_choice("padding", self.padding, PADDINGS)
        check_choice("parameterization", self.parameterization, ("ntk", "standard"))
        for name in ("n_train", "depth", "width", "channels", "filter_size", "epochs", "batch_size", "k", "m",
                     "block"):  # fmt: skip
            check_positive_int(name, getattr(self, name))
        if self.depth < 2:
            raise ValueError(f"depth must be >= 2 (a hidden layer and the readout), got {self.depth}")
        check_positive_int("size", self.size, allow_zero=True)
        check_positive_int("n_test", self.n_test, allow_zero=True)
        check_positive_float("learning_rate", self.learning_rate)
        check_positive_float("W_std", self.W_std)
        check_nonneg_float("b_std", self.b_std)
        check_nonneg_float("diag_reg", self.diag_reg)
        check_seed("seed", self.seed)
        if self.batch_size > self.n_train:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed n_train ({self.n_train})")
        side = self.size or 28
        if self.padding == "VALID" and side - (self.depth - 1) * (self.filter_size - 1) < 1:
            raise ValueError(f"filter_size={self.filter_size} with VALID padding leaves no pixel of a {side} x {side} "
                             f"image after {self.depth - 1} convolutions")


def preflight(params: Params) -> None:
    for d in params.datasets:
        if d == "gaussian_mixture":
            raise ConfigError("gaussian_mixture has no images; the architectures study needs an image data set")
        common.preflight_dataset(d)


def points(params: Params) -> list[dict]:
    return [{"dataset": d, "noise": n, "arch": a} for d in params.datasets for n in params.noises for a in params.archs]


def _side(params: Params, dataset: str) -> int:
    return params.size or (8 if dataset == "digits" else 28)


def estimate(params: Params, point: dict) -> float:
    side = _side(params, point["dataset"])
    hw = side * side
    n, t = params.n_train, params.n_test or 10000
    fs, c = params.filter_size**2, params.channels
    if point["arch"] == "mlp":
        per_row = hw * params.width + (params.depth - 2) * params.width**2
        pair = 1e-7
    else:
        per_row = hw * fs * (c + (params.depth - 2) * c * c)
        pair = 4e-8 * hw * (hw if point["arch"] == "cnn_pool" else 1)
    train = 6 * params.k * params.m * params.epochs * n * per_row / 3e10
    kernels = pair * (n * n / 2 + t * n) * (len(params.ps) * (params.k + 1) + 3)
    return 5.0 + len(params.ps) * train + kernels


# --------------------------------------------------------------------------- networks


def layers(params: Params, arch: str, num_classes: int, parameterization: str):
    """The stax layer of ``arch`` (module docstring) in ``parameterization``."""
    from nwcorrupt import stax

    act = stax.Nonlinearity(params.activation)
    kw = {"W_std": params.W_std, "b_std": params.b_std, "parameterization": parameterization}
    hidden = params.depth - 1
    if arch == "mlp":
        body = [stax.Flatten()]
        for _ in range(hidden):
            body += [stax.Dense(params.width, **kw), act]
    else:
        body = []
        for _ in range(hidden):
            body += [stax.Conv(params.channels, (params.filter_size,) * 2, padding=params.padding, **kw), act]
        body.append(stax.Flatten() if arch == "cnn_flatten" else stax.GlobalAvgPool())
    return stax.serial(*body, stax.Dense(num_classes, **kw))


def train_config(params: Params, arch: str, side: int, num_classes: int):
    """The :class:`~nwcorrupt.train.TrainConfig` of the trained networks (Part I recipe, module docstring)."""
    from nwcorrupt import stax

    net = stax.Network(layers(params, arch, num_classes, params.parameterization), (side, side, 1))
    return nested_predictors.network_config(params, net, num_classes)


# --------------------------------------------------------------------------- predictors


def _ridge_solve(k: np.ndarray, rhs: np.ndarray, diag_reg: float) -> np.ndarray:
    """Solve (K + r I) a = rhs with r = diag_reg · mean diag K (the relative ridge of nwcorrupt.predict)."""
    reg = diag_reg * float(np.mean(np.diag(k)))
    out = np.linalg.solve(k + reg * np.eye(k.shape[0]), rhs)
    if not np.all(np.isfinite(out)):
        raise FloatingPointError("the kernel solve returned non-finite weights; raise diag_reg")
    return out


def leading_order(coeffs: np.ndarray) -> tuple[int | None, np.ndarray | None, list[float]]:
    """(j, f_j, signals): the leading Taylor coefficient that separates the classes.

    ``coeffs`` (J, M, C) are f₀, f₁, … of the mean-field predictor around pure noise. The class
    signal of f_j is its class spread (mean over test points of max_c − min_c) relative to the
    scale of the pure-noise prediction (mean |f₀|); ``signals`` lists it for j = 1, …, J − 1.
    j is the first order whose signal reaches :data:`FIRST_ORDER_THRESHOLD` (rounding is ~1e-10);
    (None, None, signals) when none does, e.g. for an odd activation (erf) with global pooling,
    where every order up to 2 is class-blind (docs/studies/architectures.md).
    """
    scale = float(np.mean(np.abs(coeffs[0]))) or 1.0
    signals = [float(np.mean(f.max(-1) - f.min(-1))) / scale for f in coeffs[1:]]
    for j, sig in enumerate(signals, start=1):
        if sig >= FIRST_ORDER_THRESHOLD:
            return j, coeffs[j], signals
    return None, None, signals


def _dataset(params: Params, name: str) -> data.Dataset:
    side = params.size or None
    ds = data.load(name, n_train=params.n_train, seed=params.seed, size=(side, side) if side else None)
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    return ds


def run_point(params: Params, point: dict) -> dict:
    from nwcorrupt import predict, stax, theory, train

    ds = _dataset(params, point["dataset"])
    h, w = ds.image_shape
    c = ds.num_classes
    model = common.noise_model(point["noise"], "example", ds.x_train)
    cfg = train_config(params, point["arch"], h, c)
    kernel_layer = layers(params, point["arch"], c, "ntk")
    kernel_net = stax.Network(kernel_layer, (h, w, 1))
    onehot = np.eye(c)[ds.y_train]
    xtr, xte = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)

    t0 = time.perf_counter()
    with precision.x64():
        ridge = params.diag_reg * _pure_noise_diagonal(kernel_layer, model, xtr, (h, w))
        coeffs = theory.conv_taylor(kernel_layer, model, xtr, ds.y_train, xte, (h, w), order=2, get="ntk",
                                    ridge=ridge, num_classes=c, block=params.block)
    j, f_lead, signals = leading_order(coeffs)
    leading = None if f_lead is None else f_lead.argmax(-1)
    proto = prototype.predict(ds.x_test, ds.x_train, ds.y_train, num_classes=c)
    theory_seconds = time.perf_counter() - t0

    per_p = []
    train_losses, train_accs = [], []
    for p in params.ps:
        seeds = [params.seed + i for i in range(params.k)]
        noisy = np.stack([np.asarray(model.apply(ds.x_train, p, s)) for s in seeds])
        t1 = time.perf_counter()
        ens = train.train_ensemble(cfg, noisy, ds.y_train, ds.x_test, ds.y_test, num_inits=params.m, quiet=True)
        train_seconds = time.perf_counter() - t1
        net = np.asarray(ens.test_logits).mean(axis=1).argmax(-1)  # (K, T)
        train_losses.append(np.asarray(ens.train_loss))
        train_accs.append(np.asarray(ens.train_accuracy))
        with precision.x64():
            ntk = np.stack([
                np.asarray(predict.gradient_descent_mse_ensemble(
                    kernel_net.kernel_fn, x.astype(np.float64), onehot, diag_reg=params.diag_reg)(x_test=xte, get="ntk"))
                for x in noisy
            ]).argmax(-1)  # fmt: skip
            (k_mf,), (ks_mf,) = theory.conv_meanfield_kernels(kernel_layer, model, p, xtr, xte, (h, w), get="ntk",
                                                               block=params.block)
            mf = (np.asarray(ks_mf) @ _ridge_solve(np.asarray(k_mf), onehot, params.diag_reg)).argmax(-1)
        preds = {"network": net, "ntk": ntk, "meanfield": mf[None], "prototype": proto[None]}
        if leading is not None:
            preds["leading"] = leading[None]
        per_p.append({
            "p": float(p),
            "accuracy": nested_predictors.accuracies(preds, ds.y_test),
            "agreement": nested_predictors.agreements(preds, [q for q in AGREEMENTS if q[0] in preds and q[1] in preds]),
            "train_seconds": train_seconds,
            **training_fit.summarize(np.asarray(ens.train_loss), np.asarray(ens.train_accuracy)),
        })  # fmt: skip
    return {
        "per_p": per_p,
        "leading_order": j,
        "class_signals": signals,
        "theory_seconds": theory_seconds,
        "n_train": int(ds.n_train),
        "n_test": int(ds.n_test),
        "image_shape": [int(h), int(w)],
        **training_fit.summarize(np.concatenate(train_losses), np.concatenate(train_accs)),
    }


def _pure_noise_diagonal(layer, model, xtr: np.ndarray, shape: tuple[int, int]) -> float:
    """Θ(x̃, x̃) at pure noise (the same for every training image): the scale of the Taylor series' ridge,
    which is diag_reg times it (the relative ridge of the kernel predictors at p = 1)."""
    from nwcorrupt import theory

    (k0,), _ = theory.conv_meanfield_kernels(layer, model, 1.0, xtr[:1], xtr[:1], shape, get="ntk", block=1)
    return float(np.asarray(k0)[0, 0])


# --------------------------------------------------------------------------- reports


def _sorted(records: list[dict]) -> list[dict]:
    return sorted(records, key=lambda r: (r["point"]["dataset"], r["point"]["noise"], ARCHS.index(r["point"]["arch"])))


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, agree_rows, fit_rows, order_rows = [], [], [], []
    for rec in _sorted(records):
        pt, m = rec["point"], rec["metrics"]
        key = [pt["dataset"], pt["noise"], pt["arch"]]
        order_rows.append([*key, "" if m["leading_order"] is None else m["leading_order"], *m["class_signals"],
                           m["theory_seconds"]])
        for row in m["per_p"]:
            p = row["p"]
            fit_rows.append([*key, p, *training_fit.columns(row, training_fit.FIXED_SET_THRESHOLD)])
            for name in (q for q in PREDICTORS if q in row["accuracy"]):
                vals = row["accuracy"][name]
                acc_rows.append([*key, p, name, *common.mean_std(vals), len(vals)])
            for name, vals in row["agreement"].items():
                agree_rows.append([*key, p, name, *common.mean_std(vals), len(vals)])
    return {
        "accuracy": (["dataset", "noise", "arch", "p", "predictor", "mean", "std", "n"], acc_rows),
        "agreement": (["dataset", "noise", "arch", "p", "pair", "mean", "std", "n"], agree_rows),
        "leading_order": (["dataset", "noise", "arch", "order", "class_signal_f1", "class_signal_f2", "theory_seconds"],
                          order_rows),
        "training_fit": (["dataset", "noise", "arch", "p", *training_fit.HEADER], fit_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    out = {}
    for dataset in params.datasets:
        for noise in params.noises:
            acc = [[r[2], *r[3:]] for r in t["accuracy"][1] if r[0] == dataset and r[1] == noise]
            agree = [[r[2], *r[3:]] for r in t["agreement"][1] if r[0] == dataset and r[1] == noise]
            if not acc:
                continue
            title = (f"{plots.label(dataset)}, {plots.label(noise)}, N = {params.n_train}, {params.activation} "
                     f"depth {params.depth}, K×M = {params.k}×{params.m}")
            band = plots.band_note(plots.series_counts(acc, 2, 5), "K", "noisy training sets")
            out[f"accuracy_{dataset}_{noise.replace(':', '_')}"] = plots.accuracy_curves(acc, title=title, band=band)
            out[f"agreement_{dataset}_{noise.replace(':', '_')}"] = plots.accuracy_curves(
                agree, title=f"agreement of decisions; {title}", chance=None, ylabel=plots.AGREEMENT_LABEL,
                band=plots.band_note(plots.series_counts(agree, 2, 5), "K", "noisy training sets"))
    return out
