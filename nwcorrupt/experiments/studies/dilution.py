"""Massive label noise by dilution (Rolnick et al.), networks beside the exact kernel theory.

N clean MNIST images are diluted by α noisy images per clean one (labels uniform over the C
classes unless the part says otherwise; docs/science.md#label-noise-models). The study has
six *parts*, each a family of points:

=================  ===========================================  ==================================
part               point keys                                    what varies
=================  ===========================================  ==================================
``alpha``          depth, alpha                                  α, for each network depth
``clean_size``     n_clean, alpha                                N and α (depth ``size_depth``)
``batch``          batch_size                                    batch size at ``fixed_alpha``; 0 is
                                                                 the infinite-batch H_α training
``learning_rate``  learning_rate                                 Adadelta's step at ``fixed_alpha``
``structured``     order, delta                                  structured δ at ``structured_alpha``
``source``         source                                        noisy inputs at ``fixed_alpha``
=================  ===========================================  ==================================

Every point trains ``repeats`` networks (initialisations) on one diluted training set (seed
``seed``) and records their clean test accuracy, their final training accuracy on the clean and on
the noisy rows, the per-epoch training accuracy of both groups, and training loss. Beside them,
on the *same* diluted set, the exact theory (``theory = true``, when the diluted set has at most
``theory_max_rows`` rows): the accuracy of the NTK and NNGP mean predictors (an MLP of the same
depth, ReLU, NTK parameterisation) and their predicted accuracy from the exact mean and
covariance over label draws (:func:`nwcorrupt.labels.predictor_moments`,
:func:`nwcorrupt.labels.predicted_accuracy`).

Recipe (docs/studies/dilution.md says which parts are reconstructions): raw pixels in [0, 1];
MLPs with 0, 1, 2 or 4 hidden layers of ``width`` ReLU units in the standard parameterisation
with PyTorch's default initialisation; softmax cross-entropy; Adadelta (lr 1.0, ρ 0.9, ε 1e-6,
PyTorch's defaults); batch 128 (or the whole set when it has fewer rows); ``epochs`` passes over
the diluted set but at least ``min_steps`` steps; the last partial batch kept. The ``pool`` source draws the noisy images from the MNIST training images that are not
among the N clean ones, without replacement while there are enough and with replacement beyond.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
import time
import warnings

import numpy as np

from nwcorrupt import data
from nwcorrupt import labels as _labels
from nwcorrupt._checks import check_choice, check_nonneg_float, check_positive_float, check_positive_int, check_seed
from nwcorrupt.arch import MLP, PARAMETERIZATIONS
from nwcorrupt.mlp import check_init_law
from nwcorrupt.experiments.studies import common, training_fit

__all__ = [
    "DESCRIPTION",
    "PARTS",
    "SWEEPS",
    "POINTS_ARE_PRODUCT",
    "REPORT_FIELDS",
    "HEADER",
    "OPTIMIZERS",
    "Params",
    "Setting",
    "preflight",
    "points",
    "setting",
    "estimate",
    "diluted_set",
    "train_steps",
    "train_config",
    "kernel_arch",
    "theory_setting",
    "run_point",
    "required_sizes",
    "size_slopes",
    "tables",
    "json_point",
    "figures",
]

DESCRIPTION = "MLPs trained on MNIST diluted by alpha random labels per clean one, beside the exact NTK/NNGP theory"

PARTS = ("alpha", "clean_size", "batch", "learning_rate", "structured", "source")

#: Params field -> point key. The parts are not one product of lists (POINTS_ARE_PRODUCT = False):
#: each point holds the keys of the lists its part uses.
SWEEPS = {
    "parts": "part",
    "depths": "depth",
    "alphas": "alpha",
    "n_cleans": "n_clean",
    "size_alphas": "alpha",
    "batch_sizes": "batch_size",
    "learning_rates": "learning_rate",
    "orders": "order",
    "deltas": "delta",
    "sources": "source",
}
POINTS_ARE_PRODUCT = False
#: Fields read only by the reports: changing them recomputes no point.
REPORT_FIELDS = ("accuracy_targets",)

OPTIMIZERS = ("adadelta", "adam", "sgd")


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the dilution study.

    Attributes:
      dataset: the image data set (MNIST in the source).
      n_clean: clean training images N (balanced; a multiple of C) of every part but ``clean_size``.
      n_test: first n_test test images (0: all).
      source: noisy-input source of every part but ``source``: ``"pool"``, ``"copies"``,
        ``"external"`` or ``"white"``.
      external: the data set the ``external`` source draws from.
      width: hidden width. depths: hidden-layer counts of the ``alpha`` part (0 = perceptron).
      parameterization, init: of the networks: ``"standard"`` with ``"torch_default"`` (the source's
        PyTorch layers) or ``"gaussian"`` (He scale, zero biases); ``"ntk"`` only with ``"gaussian"``.
      size_depth: hidden layers of the network of the other parts.
      optimizer: ``"adadelta"`` (the source's), ``"adam"`` or ``"sgd"``; learning_rate its step.
      epochs: passes over the diluted training set. batch_size: minibatch rows.
      min_steps: at least this many optimisation steps (small diluted sets: 10 passes over 200 rows
        are 20 steps, far from a trained network); 0 = exactly ``epochs`` passes.
      repeats: networks (initialisations) per point, all on the same diluted set.
      seed: seed of the clean subset, the dilution and the networks.
      parts: the parts to run (module docstring).
      alphas: α of the ``alpha`` part. n_cleans, size_alphas: the grid of the ``clean_size`` part.
      accuracy_targets: test accuracies whose required N is read off the ``clean_size`` part.
      fixed_alpha: α of the ``batch``, ``learning_rate`` and ``source`` parts.
      batch_sizes: of the ``batch`` part; 0 means the infinite-batch H_α training (the loss at the
        expected labels, batch ``batch_size``).
      learning_rates: of the ``learning_rate`` part.
      structured_alpha, orders, deltas: the ``structured`` part.
      sources: of the ``source`` part.
      theory: compute the exact NTK/NNGP theory beside the networks.
      theory_max_rows: skip the theory on diluted sets with more rows (its cost is O(rows³)).
      diag_reg: relative ridge of the kernel predictors.
      mc_samples: normal draws per test point of the predicted accuracy.
    """

    dataset: str = "mnist"
    n_clean: int = 5000
    n_test: int = 0
    source: str = "pool"
    external: str = "fashion_mnist"
    width: int = 256
    parameterization: str = "standard"
    init: str = "torch_default"
    depths: tuple[int, ...] = (0, 1, 2, 4)
    size_depth: int = 2
    optimizer: str = "adadelta"
    learning_rate: float = 1.0
    epochs: int = 10
    min_steps: int = 2000
    batch_size: int = 128
    repeats: int = 5
    seed: int = 0
    parts: tuple[str, ...] = PARTS
    alphas: tuple[float, ...] = (0, 1, 2, 5, 10, 20, 50, 100)
    n_cleans: tuple[int, ...] = (1000, 2000, 5000, 10000)
    size_alphas: tuple[float, ...] = (0, 10, 20, 50)
    accuracy_targets: tuple[float, ...] = (0.8, 0.9)
    fixed_alpha: float = 20
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256, 0)
    learning_rates: tuple[float, ...] = (0.1, 0.3, 1.0)
    structured_alpha: float = 20
    orders: tuple[str, ...] = ("confusing", "reverse", "random")
    deltas: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    sources: tuple[str, ...] = ("pool", "copies", "external", "white")
    theory: bool = True
    theory_max_rows: int = 20000
    diag_reg: float = 1e-4
    mc_samples: int = 2000

    def __post_init__(self) -> None:
        common.check_dataset(self.dataset)
        common.check_dataset(self.external)
        check_positive_int("n_clean", self.n_clean)
        check_positive_int("n_test", self.n_test, allow_zero=True)
        check_choice("source", self.source, _labels.SOURCES)
        for name in ("width", "epochs", "batch_size", "repeats", "theory_max_rows", "mc_samples"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("size_depth", self.size_depth, allow_zero=True)
        check_positive_int("min_steps", self.min_steps, allow_zero=True)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        check_init_law(MLP(2, "relu", parameterization=self.parameterization), self.init)
        check_positive_float("learning_rate", self.learning_rate)
        check_seed("seed", self.seed)
        check_nonneg_float("diag_reg", self.diag_reg)
        for name in ("parts", "depths", "alphas", "n_cleans", "size_alphas", "batch_sizes", "learning_rates",
                     "orders", "deltas", "sources", "accuracy_targets"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value, got {list(values)}")
        if not self.parts:
            raise ValueError(f"parts must list at least one of {list(PARTS)}")
        for p in self.parts:
            check_choice("parts", p, PARTS)
        for h in (*self.depths, self.size_depth):
            check_positive_int("depths", h, allow_zero=True)
        for a in (*self.alphas, *self.size_alphas, self.fixed_alpha, self.structured_alpha):
            check_nonneg_float("alphas", a)
        for n in self.n_cleans:
            check_positive_int("n_cleans", n)
        for b in self.batch_sizes:
            check_positive_int("batch_sizes", b, allow_zero=True)
        for lr in self.learning_rates:
            check_positive_float("learning_rates", lr)
        for o in self.orders:
            check_choice("orders", o, _labels.ORDERS)
        for d in self.deltas:
            if not 0.0 <= d <= 1.0:
                raise ValueError(f"deltas must lie in [0, 1], got {d}")
        for s in self.sources:
            check_choice("sources", s, _labels.SOURCES)
        for t in self.accuracy_targets:
            if not 0.0 < t < 1.0:
                raise ValueError(f"accuracy_targets must lie in (0, 1), got {t}")
        _need("alpha", self, depths=self.depths, alphas=self.alphas)
        _need("clean_size", self, n_cleans=self.n_cleans, size_alphas=self.size_alphas)
        _need("batch", self, batch_sizes=self.batch_sizes)
        _need("learning_rate", self, learning_rates=self.learning_rates)
        _need("structured", self, orders=self.orders, deltas=self.deltas)
        _need("source", self, sources=self.sources)


def _need(part: str, params: Params, **lists: tuple) -> None:
    if part in params.parts:
        for name, values in lists.items():
            if not values:
                raise ValueError(f"part {part!r} needs a non-empty {name}")


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)
    if params.source == "external" or ("source" in params.parts and "external" in params.sources):
        common.preflight_dataset(params.external)


def points(params: Params) -> list[dict]:
    out: list[dict] = []
    for part in params.parts:
        if part == "alpha":
            out += [{"part": part, "depth": h, "alpha": a} for h in params.depths for a in params.alphas]
        elif part == "clean_size":
            out += [{"part": part, "n_clean": n, "alpha": a} for n in params.n_cleans for a in params.size_alphas]
        elif part == "batch":
            out += [{"part": part, "batch_size": b} for b in params.batch_sizes]
        elif part == "learning_rate":
            out += [{"part": part, "learning_rate": lr} for lr in params.learning_rates]
        elif part == "structured":
            out += [{"part": part, "order": o, "delta": d} for o in params.orders for d in params.deltas]
        else:
            out += [{"part": part, "source": s} for s in params.sources]
    return out


@dataclasses.dataclass(frozen=True)
class Setting:
    """Everything one point trains with (resolved from the point and the shared fields)."""

    n_clean: int
    alpha: float
    hidden: int
    batch_size: int
    h_alpha: bool
    learning_rate: float
    source: str
    noise: object


def setting(params: Params, point: dict) -> Setting:
    part = point["part"]
    base = dict(n_clean=params.n_clean, alpha=float(params.fixed_alpha), hidden=params.size_depth,
                batch_size=params.batch_size, h_alpha=False, learning_rate=params.learning_rate,
                source=params.source, noise=None)
    if part == "alpha":
        base.update(hidden=int(point["depth"]), alpha=float(point["alpha"]))
    elif part == "clean_size":
        base.update(n_clean=int(point["n_clean"]), alpha=float(point["alpha"]))
    elif part == "batch":
        b = int(point["batch_size"])
        base.update(batch_size=b or params.batch_size, h_alpha=b == 0)
    elif part == "learning_rate":
        base.update(learning_rate=float(point["learning_rate"]))
    elif part == "structured":
        base.update(alpha=float(params.structured_alpha),
                    noise=("structured", point["order"], float(point["delta"])))
    else:
        base.update(source=point["source"])
    return Setting(**base)


def estimate(params: Params, point: dict) -> float:
    s = setting(params, point)
    rows = s.n_clean * (1 + s.alpha)
    w = params.width
    weights = 784 * w + max(s.hidden - 1, 0) * w * w + w * 10 if s.hidden else 7840
    steps = train_steps(params, int(rows), s.batch_size or params.batch_size)
    flops = 6 * params.repeats * steps * min(s.batch_size, rows) * weights
    theory = 2 * (rows**3) / 3 * 2 if params.theory and rows <= params.theory_max_rows else 0.0
    return 2.0 + flops / 2e10 + theory / 5e9


# --------------------------------------------------------------------------- data


def _clean_and_pool(params: Params, n_clean: int) -> tuple[data.Dataset, tuple[np.ndarray, np.ndarray]]:
    """The balanced clean subset (raw pixels) and the rest of the training images (the pool)."""
    full = data.load(params.dataset, normalize="none")
    idx = data.balanced_indices(full.y_train, n_clean, full.num_classes, params.seed)
    rest = np.setdiff1d(np.arange(full.n_train), idx)
    ds = full.replace(x_train=full.x_train[idx], y_train=full.y_train[idx])
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    return ds, (full.x_train[rest], full.y_train[rest])


def _noise_model(s: Setting, ds: data.Dataset):
    if s.noise is None:
        return None
    _, order, delta = s.noise
    # the "confusing" ranking comes from the class-mean rule on the clean training images
    return _labels.Structured.from_class_means(delta, ds.x_train, ds.y_train, ds.num_classes, order=order)


def diluted_set(params: Params, s: Setting) -> tuple[data.Dataset, _labels.Diluted]:
    """The clean data set and its dilution for setting ``s`` (a pure function of params and s)."""
    ds, pool = _clean_and_pool(params, s.n_clean)
    kwargs: dict = {}
    if s.source == "pool":
        kwargs["pool"] = pool
    elif s.source == "external":
        kwargs["external"] = data.load(params.external, normalize="none").x_train
    dil = _labels.Dilution(s.alpha, s.source, noise=_noise_model(s, ds)).apply(ds, params.seed, **kwargs)
    return ds, dil


# --------------------------------------------------------------------------- networks and theory


def train_steps(params: Params, rows: int, batch_size: int) -> int:
    """Optimisation steps: ``epochs`` passes over ``rows`` (the last batch kept), at least ``min_steps``."""
    return max(params.epochs * math.ceil(rows / batch_size), params.min_steps)


def train_config(params: Params, s: Setting, num_classes: int, rows: int):
    """The study network's :class:`~nwcorrupt.train.TrainConfig` (module docstring) for ``rows`` training rows."""
    from nwcorrupt import train

    extra = {"rho": 0.9, "eps": 1e-6} if params.optimizer == "adadelta" else {}
    w_std = 1 / math.sqrt(3) if params.init == "torch_default" else math.sqrt(2.0)  # the init's fan-in std
    return train.TrainConfig(
        arch=MLP(s.hidden + 1, "relu", W_std=w_std, b_std=0.0, parameterization=params.parameterization),
        width=params.width,
        num_classes=num_classes,
        optimizer=train.Optimizer(params.optimizer, s.learning_rate, **extra),
        loss="cross_entropy",
        batch_size=s.batch_size,
        steps=train_steps(params, rows, s.batch_size),
        init=params.init,
        drop_last=False,
        seed=params.seed,
    )


def kernel_arch(hidden: int) -> MLP:
    """The infinite-width counterpart: an MLP of the same depth, ReLU, NTK parameterisation (He scale)."""
    return MLP(hidden + 1, "relu", W_std=math.sqrt(2.0), b_std=0.0, parameterization="ntk")


def theory_setting(s: Setting) -> Setting:
    """The part of a setting the theory depends on (not the networks' batch, step or H_alpha training)."""
    return dataclasses.replace(s, batch_size=0, h_alpha=False, learning_rate=0.0)


@functools.lru_cache(maxsize=4)
def _theory(params: Params, s: Setting) -> dict:
    """The exact theory on the diluted set of ``s`` (a pure function of its arguments, so points that share a
    diluted set, e.g. the batch and learning-rate parts, compute it once per process)."""
    if not params.theory:
        return {"skipped": "theory = false"}
    ds, dil = diluted_set(params, s)
    rows = dil.dataset.n_train
    if rows > params.theory_max_rows:
        return {"skipped": f"{rows} training rows > theory_max_rows = {params.theory_max_rows}"}
    from nwcorrupt import precision

    out: dict = {"rows": rows}
    with precision.x64():
        x = dil.dataset.x_train.astype(np.float64)
        xt = ds.x_test.astype(np.float64)
        for get in ("ntk", "nngp"):
            t0 = time.perf_counter()
            mean, cov = _labels.predictor_moments(kernel_arch(s.hidden), x, dil.dataset.y_train, xt, dil.law,
                                                  num_classes=ds.num_classes, get=get, diag_reg=params.diag_reg)
            pred = _labels.predicted_accuracy(mean, cov, ds.y_test, n_samples=params.mc_samples, seed=params.seed)
            out[get] = {
                "mean_accuracy": float(np.mean(mean.argmax(1) == ds.y_test)),
                "predicted_accuracy": pred.accuracy,
                "predicted_stderr": pred.stderr,
                "seconds": time.perf_counter() - t0,
            }
    return out


def _finite_or_none(values) -> list:
    return [float(v) if np.isfinite(v) else None for v in np.asarray(values, dtype=float)]


def _mean_cell(values: list):
    """Mean of the non-null values of a record list, or "" when there are none."""
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else ""


def run_point(params: Params, point: dict) -> dict:
    from nwcorrupt import train

    s = setting(params, point)
    ds, dil = diluted_set(params, s)
    x, y = dil.dataset.x_train, dil.dataset.y_train
    # a batch never exceeds the training set: with fewer rows than batch_size, one full batch per step
    s = dataclasses.replace(s, batch_size=min(s.batch_size, x.shape[0]))
    cfg = train_config(params, s, ds.num_classes, x.shape[0])
    targets = dil.law.mean_targets() if s.h_alpha else None
    ens = train.train_ensemble(cfg, x, y, ds.x_test, ds.y_test, num_inits=params.repeats, clean_mask=dil.clean_mask,
                               targets=targets, quiet=True)
    acc = (np.asarray(ens.test_logits)[0].argmax(-1) == ds.y_test[None]).mean(-1)
    spe = math.ceil(x.shape[0] / s.batch_size)
    clean_curve, noisy_curve = ens.step_accuracy(spe)
    with warnings.catch_warnings():  # a group without rows (no noisy rows at alpha = 0) has no accuracy: null
        warnings.simplefilter("ignore", RuntimeWarning)
        curves = {name: np.nanmean(c[0], axis=0) for name, c in (("clean", clean_curve), ("noisy", noisy_curve))}
    return {
        "setting": dataclasses.asdict(s) | {"noise": None if s.noise is None else list(s.noise)},
        "n_rows": int(x.shape[0]),
        "steps": int(cfg.steps),
        "n_noisy": dil.n_noisy,
        "with_replacement": bool(dil.with_replacement),
        "test_accuracy": [float(v) for v in acc],
        "train_accuracy_clean": _finite_or_none(ens.train_accuracy_clean[0]),
        "train_accuracy_noisy": _finite_or_none(ens.train_accuracy_noisy[0]),
        "epoch_accuracy_clean": _finite_or_none(curves["clean"]),
        "epoch_accuracy_noisy": _finite_or_none(curves["noisy"]),
        "train_seconds": float(ens.train_seconds),
        "chance": 1.0 / ds.num_classes,
        **training_fit.summarize(ens.train_loss, ens.train_accuracy),
        "theory": copy.deepcopy(_theory(params, theory_setting(s))),
    }


# --------------------------------------------------------------------------- reports


HEADER = ["part", "depth", "n_clean", "alpha", "batch_size", "learning_rate", "source", "order", "delta",
          "net_mean", "net_std", "n", "train_acc_clean", "train_acc_noisy", "train_loss",
          "ntk_mean_acc", "ntk_predicted", "nngp_mean_acc", "nngp_predicted"]


def _theory_cell(rec: dict, get: str, key: str):
    th = rec["metrics"]["theory"].get(get)
    return "" if th is None else th[key]


def _row(rec: dict) -> list:
    m, pt = rec["metrics"], rec["point"]
    s = m["setting"]
    noise = s["noise"] or [None, "", ""]
    batch = 0 if s["h_alpha"] else s["batch_size"]
    return [pt["part"], s["hidden"], s["n_clean"], s["alpha"], batch, s["learning_rate"], s["source"],
            noise[1], noise[2], *common.mean_std(m["test_accuracy"]), len(m["test_accuracy"]),
            _mean_cell(m["train_accuracy_clean"]), _mean_cell(m["train_accuracy_noisy"]),
            m["train_loss_mean"], _theory_cell(rec, "ntk", "mean_accuracy"),
            _theory_cell(rec, "ntk", "predicted_accuracy"), _theory_cell(rec, "nngp", "mean_accuracy"),
            _theory_cell(rec, "nngp", "predicted_accuracy")]


def required_sizes(params: Params, records: list[dict]) -> list[list]:
    """Rows (alpha, target, measured N, NTK-predicted N, note): the clean-set size at which the ``clean_size``
    part's accuracy curve (networks: mean over repeats; theory: predicted accuracy) first reaches each target,
    interpolated in log N. N is NaN where the curve does not cross inside the grid: already above the target at
    the smallest N (the note says "<= N_min") or never reaching it ("not reached")."""
    by_alpha: dict[float, list[tuple[int, float, float]]] = {}
    for rec in records:
        if rec["point"]["part"] != "clean_size":
            continue
        m = rec["metrics"]
        th = m["theory"].get("ntk")
        by_alpha.setdefault(float(rec["point"]["alpha"]), []).append(
            (int(rec["point"]["n_clean"]), float(np.mean(m["test_accuracy"])),
             float("nan") if th is None else th["predicted_accuracy"]))
    rows = []
    for alpha in sorted(by_alpha):
        pts = sorted(by_alpha[alpha])
        ns = [p[0] for p in pts]
        for target in params.accuracy_targets:
            values, notes = [], []
            for who, acc in (("networks", [p[1] for p in pts]), ("NTK", [p[2] for p in pts])):
                if any(math.isnan(v) for v in acc):
                    values.append(float("nan"))
                    notes.append(f"{who}: theory skipped")
                elif acc[0] >= target:
                    values.append(float("nan"))
                    notes.append(f"{who}: <= {ns[0]}")
                else:
                    n = _labels.clean_size_for_accuracy(ns, acc, target)
                    values.append(n)
                    if math.isnan(n):
                        notes.append(f"{who}: not reached")
            rows.append([alpha, target, *values, "; ".join(notes)])
    return rows


def size_slopes(rows: list[list]) -> list[list]:
    """Per target and source of N (measured, predicted): slope of log N against log(1 + α) (1 = linear)."""
    out = []
    targets = sorted({r[1] for r in rows})
    for target in targets:
        for col, name in ((2, "networks"), (3, "ntk_predicted")):
            pts = [(r[0], r[col]) for r in rows if r[1] == target and np.isfinite(r[col])]
            if len(pts) >= 2:
                a = np.log1p([p[0] for p in pts])
                n = np.log([p[1] for p in pts])
                slope = float(np.polyfit(a, n, 1)[0])
                out.append([target, name, slope, len(pts)])
    return out


def tables(params: Params, records: list[dict]) -> dict:
    rows = [_row(rec) for rec in records]
    # no fit threshold: a network need not memorise random labels; the clean/noisy columns say what it fitted
    fit_rows = [[r["point"]["part"], json_point(r["point"]), r["metrics"]["train_loss_mean"],
                 r["metrics"]["train_accuracy_mean"], _mean_cell(r["metrics"]["train_accuracy_clean"]),
                 _mean_cell(r["metrics"]["train_accuracy_noisy"])] for r in records]
    sizes = required_sizes(params, records)
    out = {
        "accuracy": (list(HEADER), rows),
        "training_fit": (["part", "point", "train_loss_mean", "train_accuracy_mean", "train_accuracy_clean",
                          "train_accuracy_noisy"], fit_rows),
    }
    if sizes:
        out["required_clean_size"] = (["alpha", "target_accuracy", "n_networks", "n_ntk_predicted", "note"], sizes)
        slopes = size_slopes(sizes)
        if slopes:
            out["required_size_slope"] = (["target_accuracy", "from", "slope_logN_vs_log1p_alpha", "points"], slopes)
    return out


def json_point(point: dict) -> str:
    return ";".join(f"{k}={v}" for k, v in sorted(point.items()) if k != "part")


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    return plots.dilution_figures(tables(params, records), params.accuracy_targets)
