"""Two stages of feature learning under label noise (Han et al.), on signal–noise data and on real images.

Parts (``parts``):

- ``trajectory``: the two-layer CNN of :mod:`nwcorrupt.two_stage` on signal–noise data at
  n·SNR² = ``n_snr2``, for each flip rate in ``taus`` (0 = no label noise), ``seeds`` runs;
  the seed-averaged trajectory (fits of clean and flipped rows, both test laws, γ and the
  noise coefficients, the small-loss rule at log 2), the stages of every run, the early-stopped
  accuracy, and the same for the lazy (NTK) counterpart on the same data and steps.
- ``sweep``: for each τ in ``sweep_taus`` and n·SNR² in ``sweep_n_snr2`` (‖μ‖ set from it), how
  many runs have a Stage I window, with the early-stopped and final accuracies; the tables fit the
  constant C of "window ⇔ (1 − 2τ)·n·SNR² > C".
- ``real``: a binary pair of ``real_dataset`` classes with a fraction ``real_flip`` of flipped
  labels (exactly, per class), a ReLU MLP trained with each optimiser of ``real_optimizers``; per
  epoch: clean and flipped training fit and loss, test accuracy, the small-loss rule.

Recipe: the source's synthetic hyperparameters were not recoverable; the values in the config are
ours (documented on the study page) and make the three regimes visible on a CPU in minutes. The
real-data analogue follows the house recipe of the label-noise studies (standard parameterisation
with PyTorch's default initialisation, softmax cross-entropy, batch 128 with the last partial batch
kept) with Adam at 1e-3 and plain SGD.
"""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np

from nwcorrupt import data
from nwcorrupt import labels as _labels
from nwcorrupt._checks import (
    check_choice,
    check_int,
    check_positive_float,
    check_positive_int,
    check_real,
    check_seed,
)
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import common

__all__ = [
    "DESCRIPTION",
    "OPTIMIZERS",
    "PARTS",
    "POINTS_ARE_PRODUCT",
    "SWEEPS",
    "Params",
    "estimate",
    "fit_constant",
    "figures",
    "pair_dataset",
    "points",
    "preflight",
    "run_point",
    "tables",
    "train_logged",
]

DESCRIPTION = "two stages of learning with noisy labels: signal first, then memorisation (two-layer CNN, lazy NTK, MLP on a digit pair)"

PARTS = ("trajectory", "sweep", "real")
OPTIMIZERS = ("adam", "sgd")

SWEEPS = {"parts": "part", "taus": "tau", "sweep_taus": "tau", "sweep_n_snr2": "n_snr2", "real_optimizers": "optimizer"}
POINTS_ARE_PRODUCT = False


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the two_stage study (see the module doc; synthetic fields follow
    :func:`nwcorrupt.two_stage.simulate`)."""

    parts: tuple[str, ...] = PARTS
    n: int = 100
    d: int = 5000
    m: int = 20
    sigma_xi: float = 1.0
    sigma0: float = 1e-3
    lr: float = 0.05
    steps: int = 600
    log_every: int = 2
    n_test: int = 1000
    study_noise: float = 0.1
    seeds: int = 6
    n_snr2: float = 4.0
    taus: tuple[float, ...] = (0.0, 0.15)
    sweep_taus: tuple[float, ...] = (0.15,)
    sweep_n_snr2: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0)
    real_dataset: str = "mnist"
    real_classes: tuple[int, ...] = (3, 5)
    real_flip: float = 0.2
    real_n_train: int = 2000
    real_n_test: int = 0
    real_optimizers: tuple[str, ...] = OPTIMIZERS
    real_hidden: int = 2
    real_width: int = 512
    real_adam_lr: float = 1e-3
    real_sgd_lr: float = 0.05
    real_epochs: int = 60
    real_batch_size: int = 128
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.parts or any(p not in PARTS for p in self.parts) or len(set(self.parts)) != len(self.parts):
            raise ValueError(f"parts must be distinct names from {list(PARTS)}, got {list(self.parts)}")
        for name in ("n", "d", "m", "steps", "log_every", "n_test", "seeds", "real_hidden", "real_width",
                     "real_epochs", "real_batch_size"):  # fmt: skip
            check_positive_int(name, getattr(self, name))
        if self.d < self.n + 1:
            raise ValueError(f"d must be at least n + 1 = {self.n + 1} (exact signal-noise decomposition), got {self.d}")
        if self.steps % self.log_every:
            raise ValueError(f"steps ({self.steps}) must be a multiple of log_every ({self.log_every})")
        for name in ("sigma_xi", "lr", "n_snr2", "real_adam_lr", "real_sgd_lr"):
            check_positive_float(name, getattr(self, name))
        check_real("sigma0", self.sigma0, lo=0.0)
        check_real("study_noise", self.study_noise, lo=0.0)
        for name in ("taus", "sweep_taus", "sweep_n_snr2", "real_optimizers"):
            vals = getattr(self, name)
            if not vals or len(set(vals)) != len(vals):
                raise ValueError(f"{name} must be a non-empty list of distinct values, got {list(vals)}")
        for tau in (*self.taus, *self.sweep_taus):
            check_real("taus", tau, lo=0.0, hi=0.5, hi_open=True)
        for c in self.sweep_n_snr2:
            check_positive_float("sweep_n_snr2", c)
        for o in self.real_optimizers:
            check_choice("real_optimizers", o, OPTIMIZERS)
        common.check_dataset(self.real_dataset)
        if len(self.real_classes) != 2 or self.real_classes[0] == self.real_classes[1]:
            raise ValueError(f"real_classes must be two distinct class indices, got {list(self.real_classes)}")
        for c in self.real_classes:
            check_int("real_classes", c, lo=0)
        check_real("real_flip", self.real_flip, lo=0.0, hi=0.5, hi_open=True)
        check_positive_int("real_n_train", self.real_n_train)
        if self.real_n_train % 2:
            raise ValueError(f"real_n_train must be even (balanced over the two classes), got {self.real_n_train}")
        check_int("real_n_test", self.real_n_test, lo=0)
        check_seed("seed", self.seed)


def preflight(params: Params) -> None:
    if "real" not in params.parts:
        return
    common.preflight_dataset(params.real_dataset)
    raw = data.load_raw(params.real_dataset)
    if max(params.real_classes) >= raw.num_classes:
        raise ConfigError(f"real_classes {list(params.real_classes)} must be below the {raw.num_classes} classes "
                          f"of {params.real_dataset}")  # fmt: skip
    per_class = min(int(np.sum(raw.y_train == c)) for c in params.real_classes)
    if params.real_n_train // 2 > per_class:
        raise ConfigError(f"real_n_train = {params.real_n_train} needs {params.real_n_train // 2} images per class; "
                          f"{params.real_dataset} has {per_class} (expected real_n_train <= {2 * per_class})")  # fmt: skip


def points(params: Params) -> list[dict]:
    out: list[dict] = []
    for part in params.parts:
        if part == "trajectory":
            out += [{"part": part, "tau": float(t)} for t in params.taus]
        elif part == "sweep":
            out += [{"part": part, "tau": float(t), "n_snr2": float(c)} for t in params.sweep_taus
                    for c in params.sweep_n_snr2]  # fmt: skip
        else:
            out += [{"part": part, "optimizer": o} for o in params.real_optimizers]
    return out


def estimate(params: Params, point: dict) -> float:
    if point["part"] == "real":
        flops = 6 * params.real_n_train * params.real_epochs * (784 * params.real_width + params.real_width**2)
        return 5.0 + flops / 4e10  # measured: 10-14 s for 2000 images x 60 epochs
    per_step = 6 * 2 * params.m * params.d * params.n * 2 * params.seeds
    return 3.0 + params.steps * per_step / 1.3e10  # measured: 62-71 s per quick point (lazy runs included)


# --------------------------------------------------------------------------- synthetic parts


def _simulate(params: Params, tau: float, n_snr2: float):
    from nwcorrupt import two_stage

    mu = two_stage.mu_norm_for(n_snr2, params.n, params.d, params.sigma_xi)
    seeds = [params.seed + s for s in range(params.seeds)]
    traj = two_stage.simulate_seeds(params.n, params.d, params.m, mu, tau, seeds=seeds, sigma_xi=params.sigma_xi,
                                    sigma0=params.sigma0, lr=params.lr, steps=params.steps,
                                    log_every=params.log_every, n_test=params.n_test,
                                    study_noise=params.study_noise)  # fmt: skip
    lazies = [two_stage.lazy(ds, params.m, lr=params.lr, steps=params.steps, log_every=params.log_every,
                             n_test=params.n_test, study_noise=params.study_noise) for ds in traj.data]  # fmt: skip
    return traj, lazies


def _stage_summary(t, fit_clean, fit_flipped, test_study, test_iid, loss, flipped) -> dict:
    from nwcorrupt import two_stage

    st = two_stage.stages(t, fit_clean, fit_flipped)
    es = two_stage.early_stopping(t, test_study, st)
    precision, recall = two_stage.small_loss(loss, flipped)
    i_end = None if st.window_end is None else int(np.flatnonzero(t == st.window_end)[0])
    return {
        "window_start": st.window_start,
        "window_end": st.window_end,
        "memorised": st.memorised,
        "study_at_stage1_end": es["at_stage1_end"],
        "study_best": es["best"],
        "study_best_step": es["best_step"],
        "study_final": es["final"],
        "iid_at_stage1_end": None if i_end is None else float(test_iid[i_end]),
        "iid_final": float(test_iid[-1]),
        "precision_at_stage1_end": None if i_end is None else float(precision[i_end]),
        "recall_at_stage1_end": None if i_end is None else float(recall[i_end]),
        "flip_fraction": float(np.mean(flipped)),
    }


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the last axis of ``values`` (S, n) restricted to ``mask`` (n,); 0 for an empty mask."""
    return values[:, mask].mean(axis=1) if mask.any() else np.zeros(values.shape[0])


def _network_series(traj, s: int) -> dict:
    from nwcorrupt import two_stage

    flipped = traj.flipped[s]
    y_noisy = traj.data[s].y_noisy
    j_of_row = np.where(y_noisy > 0, 0, 1)  # filters of the row's observed label
    rho_own = traj.rho[s][:, j_of_row, :, np.arange(flipped.size)]  # (n, S, m)
    rho_own = rho_own.max(axis=2).T  # (S, n): max over r of rho_{y~_i, r, i}
    precision, recall = two_stage.small_loss(traj.loss[s], flipped)
    return {
        "fit_clean": traj.fit_clean[s],
        "fit_flipped": traj.fit_flipped[s],
        "test_iid": traj.test_iid[s],
        "test_study": traj.test_study[s],
        "loss_clean": _masked_mean(traj.loss[s], ~flipped),
        "loss_flipped": _masked_mean(traj.loss[s], flipped),
        "gamma_max": traj.gamma[s].max(axis=2).mean(axis=1),
        "rho_clean": _masked_mean(rho_own, ~flipped),
        "rho_flipped": _masked_mean(rho_own, flipped),
        "precision": precision,
        "recall": recall,
    }


def _lazy_series(lz, flipped) -> dict:
    from nwcorrupt import two_stage

    precision, recall = two_stage.small_loss(lz.loss, flipped)
    return {
        "fit_clean": lz.fit_clean,
        "fit_flipped": lz.fit_flipped,
        "test_iid": lz.test_iid,
        "test_study": lz.test_study,
        "loss_clean": _masked_mean(lz.loss, ~flipped),
        "loss_flipped": _masked_mean(lz.loss, flipped),
        "precision": precision,
        "recall": recall,
    }


def _mean_series(per_seed: list[dict]) -> dict:
    return {k: np.mean([s[k] for s in per_seed], axis=0).tolist() for k in per_seed[0]}


def _run_synthetic(params: Params, point: dict) -> dict:
    from nwcorrupt import two_stage

    n_snr2 = params.n_snr2 if point["part"] == "trajectory" else point["n_snr2"]
    t0 = time.perf_counter()
    traj, lazies = _simulate(params, point["tau"], n_snr2)
    out: dict = {"seconds": 0.0, "mu_norm": two_stage.mu_norm_for(n_snr2, params.n, params.d, params.sigma_xi)}
    net, lazy = [], []
    for s, lz in enumerate(lazies):
        fl = traj.flipped[s]
        net.append(_stage_summary(traj.t, traj.fit_clean[s], traj.fit_flipped[s], traj.test_study[s], traj.test_iid[s],
                                  traj.loss[s], fl))  # fmt: skip
        lazy.append(_stage_summary(lz.t, lz.fit_clean, lz.fit_flipped, lz.test_study, lz.test_iid, lz.loss, fl))
    out["stages"] = {"network": net, "lazy": lazy}
    # training fit of every run at its last step (the network must fit its noisy set)
    out["train_loss_final"] = [float(v) for v in traj.train_loss[:, -1]]
    out["train_accuracy_final"] = [float(v) for v in traj.train_accuracy[:, -1]]
    if point["part"] == "trajectory":
        out["t"] = traj.t.tolist()
        out["series"] = {
            "network": _mean_series([_network_series(traj, s) for s in range(len(lazies))]),
            "lazy": _mean_series([_lazy_series(lz, traj.flipped[s]) for s, lz in enumerate(lazies)]),
        }
        if traj.flipped[0].any():
            st = two_stage.stages(traj.t, traj.fit_clean[0], traj.fit_flipped[0])
            curves = {}
            for when, step in (("stage1_end", st.window_end), ("final", int(traj.t[-1]))):
                if step is None:
                    continue
                i = int(np.flatnonzero(traj.t == step)[0])
                thr, prec, rec = two_stage.selection_curve(traj.loss[0, i], traj.flipped[0])
                curves[when] = {"step": step, "threshold": thr.tolist(), "precision": prec.tolist(), "recall": rec.tolist()}
            out["selection_curves"] = curves
    out["seconds"] = time.perf_counter() - t0
    return out


# --------------------------------------------------------------------------- real-data analogue


def pair_dataset(params: Params) -> tuple[data.Dataset, np.ndarray]:
    """The binary pair (labels 0/1 for real_classes[0]/[1], pixels in [0, 1]) and its noisy labels.

    ``real_n_train`` training images balanced over the two classes (seed ``seed``), all test images
    of the two classes (the first ``real_n_test`` if > 0); exactly ⌊real_flip·N_class⌋ flips per class.
    """
    raw = data.load(params.real_dataset, normalize="none")
    a, b = params.real_classes

    def pick(x, y):
        keep = (y == a) | (y == b)
        return x[keep], (y[keep] == b).astype(np.int32)

    x_tr, y_tr = pick(raw.x_train, raw.y_train)
    x_te, y_te = pick(raw.x_test, raw.y_test)
    idx = data.balanced_indices(y_tr, params.real_n_train, 2, params.seed)
    x_tr, y_tr = x_tr[idx], y_tr[idx]
    if params.real_n_test:
        x_te, y_te = x_te[: params.real_n_test], y_te[: params.real_n_test]
    ds = data.Dataset(x_tr, y_tr, x_te, y_te, 2, f"{params.real_dataset}[{a} vs {b}]", raw.image_shape)
    noisy = _labels.Binary(params.real_flip, params.real_flip, exact=True).apply(y_tr, params.seed)
    return ds, noisy


def train_logged(params: Params, optimizer: str, ds: data.Dataset, y_noisy: np.ndarray) -> dict:
    """Train the real-data MLP on (ds.x_train, y_noisy); log every epoch (epoch 0 = initialisation).

    Returns per-epoch lists: fit_clean, fit_flipped (fractions of rows predicted as their observed
    label), loss_clean, loss_flipped (mean cross-entropy), train_loss, train_accuracy (observed
    labels), test_accuracy (true test labels), precision, recall (the small-loss rule at log 2).
    """
    import jax
    import jax.numpy as jnp
    import optax

    from nwcorrupt import mlp
    from nwcorrupt.arch import MLP

    arch = MLP(params.real_hidden + 1, "relu", W_std=1 / math.sqrt(3), b_std=0.0, parameterization="standard")
    key = jax.random.key(params.seed)
    w = mlp.init(jax.random.fold_in(key, 0), arch, params.real_width, ds.x_train.shape[1], 2, law="torch_default")
    tx = optax.adam(params.real_adam_lr) if optimizer == "adam" else optax.sgd(params.real_sgd_lr)
    opt = tx.init(w)
    x = jnp.asarray(ds.x_train)
    y = jnp.asarray(y_noisy)
    flipped = np.asarray(y_noisy) != ds.y_train

    def losses(w, xb, yb):
        logits = mlp.apply(arch, w, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb), logits

    @jax.jit
    def step(w, opt, xb, yb):
        g = jax.grad(lambda v: losses(v, xb, yb)[0].mean())(w)
        upd, opt = tx.update(g, opt, w)
        return optax.apply_updates(w, upd), opt

    @jax.jit
    def evaluate(w):
        ell, logits = losses(w, x, y)
        test_pred = jnp.argmax(mlp.apply(arch, w, jnp.asarray(ds.x_test)), axis=1)
        return ell, jnp.argmax(logits, axis=1) == y, jnp.mean(test_pred == jnp.asarray(ds.y_test))

    from nwcorrupt import two_stage

    log: dict[str, list] = {k: [] for k in ("fit_clean", "fit_flipped", "loss_clean", "loss_flipped", "train_loss",
                                            "train_accuracy", "test_accuracy", "precision", "recall")}  # fmt: skip

    def record(w):
        ell, fitted, test_acc = (np.asarray(v) for v in evaluate(w))
        if not np.all(np.isfinite(ell)):
            from nwcorrupt.train import TrainingDivergedError

            raise TrainingDivergedError(f"{optimizer}: non-finite training loss at epoch {len(log['train_loss'])}")
        prec, rec = two_stage.small_loss(ell[None, :], flipped)
        log["fit_clean"].append(float(fitted[~flipped].mean()))
        log["fit_flipped"].append(float(fitted[flipped].mean()) if flipped.any() else 0.0)
        log["loss_clean"].append(float(ell[~flipped].mean()))
        log["loss_flipped"].append(float(ell[flipped].mean()) if flipped.any() else 0.0)
        log["train_loss"].append(float(ell.mean()))
        log["train_accuracy"].append(float(fitted.mean()))
        log["test_accuracy"].append(float(test_acc))
        log["precision"].append(float(prec[0]))
        log["recall"].append(float(rec[0]))

    record(w)
    n, bs = x.shape[0], params.real_batch_size
    for epoch in range(params.real_epochs):
        perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, 1 + epoch), n))
        for start in range(0, n, bs):  # the last partial batch is kept
            rows = perm[start : start + bs]
            w, opt = step(w, opt, x[rows], y[rows])
        record(w)
    return log


def _run_real(params: Params, point: dict) -> dict:
    t0 = time.perf_counter()
    ds, noisy = pair_dataset(params)
    log = train_logged(params, point["optimizer"], ds, noisy)
    return {"epochs": list(range(params.real_epochs + 1)), "log": log, "flip_fraction": float(np.mean(noisy != ds.y_train)),
            "n_train": int(ds.x_train.shape[0]), "n_test": int(ds.x_test.shape[0]), "seconds": time.perf_counter() - t0}


def run_point(params: Params, point: dict) -> dict:
    if point["part"] == "real":
        return _run_real(params, point)
    return _run_synthetic(params, point)


# --------------------------------------------------------------------------- reports


def fit_constant(values: list[float], fractions: list[float]) -> dict:
    """The constant C of "Stage I window ⇔ (1 − 2τ)·n·SNR² > C" bracketed by a sweep.

    Args:
      values: (1 − 2τ)·n·SNR² of each sweep point; fractions: share of its runs with a window.

    Returns:
      ``{"lower", "upper", "estimate"}``: the largest value below which no point has a majority of
      windows, the smallest value from which every point has one, and their geometric mean
      (None where the sweep does not bracket the change).
    """
    pairs = sorted(zip(values, fractions))
    yes = [v for v, f in pairs if f >= 0.5]
    no = [v for v, f in pairs if f < 0.5]
    upper = min((v for v in yes if all(f >= 0.5 for u, f in pairs if u >= v)), default=None)
    lower = max((v for v in no if upper is None or v < upper), default=None)
    est = math.sqrt(lower * upper) if lower is not None and upper is not None else None
    return {"lower": lower, "upper": upper, "estimate": est}


def _mean(vals) -> float | str:
    vals = [v for v in vals if v is not None]
    return float(np.mean(vals)) if vals else ""


def tables(params: Params, records: list[dict]) -> dict:
    out: dict = {}
    traj_rows, stage_rows, sweep_rows, sel_rows, real_rows, real_sum = [], [], [], [], [], []
    keys = ("fit_clean", "fit_flipped", "test_iid", "test_study", "loss_clean", "loss_flipped", "gamma_max", "rho_clean",
            "rho_flipped", "precision", "recall")  # fmt: skip
    for rec in records:
        pt, mt = rec["point"], rec["metrics"]
        if pt["part"] in ("trajectory", "sweep"):
            for model in ("network", "lazy"):
                runs = mt["stages"][model]
                row = [pt["part"], pt["tau"], pt.get("n_snr2", params.n_snr2), model,
                       float(np.mean([r["window_end"] is not None for r in runs])),
                       *(_mean(r[k] for r in runs) for k in ("window_start", "window_end", "memorised",
                         "study_at_stage1_end", "study_best", "study_final", "iid_final", "precision_at_stage1_end",
                         "recall_at_stage1_end", "flip_fraction")), len(runs)]  # fmt: skip
                stage_rows.append(row)
        if pt["part"] == "trajectory":
            for model, series in mt["series"].items():
                for i, t in enumerate(mt["t"]):
                    traj_rows.append([pt["tau"], model, t, *(series[k][i] if k in series else "" for k in keys)])
            for when, c in mt.get("selection_curves", {}).items():
                for thr, p, r in zip(c["threshold"], c["precision"], c["recall"]):
                    sel_rows.append([pt["tau"], when, c["step"], thr, p, r])
        elif pt["part"] == "sweep":
            runs = mt["stages"]["network"]
            lazy_runs = mt["stages"]["lazy"]
            v = (1 - 2 * pt["tau"]) * pt["n_snr2"]
            sweep_rows.append([pt["tau"], pt["n_snr2"], v, float(np.mean([r["window_end"] is not None for r in runs])),
                               float(np.mean([r["window_end"] is not None for r in lazy_runs])),
                               _mean((r["window_end"] - r["window_start"]) if r["window_end"] is not None else None
                                     for r in runs),
                               _mean(r["study_at_stage1_end"] for r in runs), _mean(r["study_final"] for r in runs),
                               _mean(r["iid_final"] for r in runs), float(np.mean(mt["train_accuracy_final"])),
                               len(runs)])  # fmt: skip
        elif pt["part"] == "real":
            log = mt["log"]
            for e in mt["epochs"]:
                real_rows.append([pt["optimizer"], e, *(log[k][e] for k in ("fit_clean", "fit_flipped", "loss_clean",
                                  "loss_flipped", "train_loss", "train_accuracy", "test_accuracy", "precision",
                                  "recall"))])  # fmt: skip
            test = np.asarray(log["test_accuracy"])
            fc, ff = np.asarray(log["fit_clean"]), np.asarray(log["fit_flipped"])

            def first(mask):
                return int(np.argmax(mask)) if mask.any() else ""

            best = int(np.argmax(test))
            clean_95 = first(fc >= 0.95)
            # flipped rows counted as memorised only once the clean rows are fitted (at initialisation a
            # network that predicts one class "fits" half of them by chance)
            after = np.arange(fc.size) >= (clean_95 if clean_95 != "" else fc.size)
            real_sum.append([pt["optimizer"], mt["flip_fraction"], float(test[best]), best, float(test[-1]),
                             clean_95, first(after & (ff >= 0.5)), first(after & (ff >= 0.95)), float(log["precision"][best]),
                             float(log["recall"][best]), log["train_loss"][-1], log["train_accuracy"][-1]])  # fmt: skip
    if stage_rows:
        out["stages"] = (["part", "tau", "n_snr2", "model", "window_fraction", "window_start", "window_end", "memorised",
                          "study_at_stage1_end", "study_best", "study_final", "iid_final", "precision_at_stage1_end",
                          "recall_at_stage1_end", "flip_fraction", "runs"], stage_rows)  # fmt: skip
    if traj_rows:
        out["trajectory"] = (["tau", "model", "t", *keys], traj_rows)
    if sel_rows:
        out["selection"] = (["tau", "when", "step", "threshold", "precision", "recall"], sel_rows)
    if sweep_rows:
        out["sweep"] = (["tau", "n_snr2", "one_minus_2tau_n_snr2", "window_fraction", "lazy_window_fraction",
                         "window_length", "study_at_stage1_end", "study_final", "iid_final", "train_accuracy_final",
                         "runs"], sweep_rows)  # fmt: skip
        const_rows = []
        for tau in [None, *dict.fromkeys(r[0] for r in sweep_rows)]:
            sub = [r for r in sweep_rows if tau is None or r[0] == tau]
            c = fit_constant([r[2] for r in sub], [r[3] for r in sub])
            const_rows.append(["all" if tau is None else tau, *(("" if c[k] is None else c[k]) for k in ("lower", "upper",
                               "estimate")), len(sub)])  # fmt: skip
        out["constant"] = (["tau", "lower", "upper", "estimate", "points"], const_rows)
    if real_rows:
        out["real"] = (["optimizer", "epoch", "fit_clean", "fit_flipped", "loss_clean", "loss_flipped", "train_loss",
                        "train_accuracy", "test_accuracy", "precision", "recall"], real_rows)  # fmt: skip
        out["real_summary"] = (["optimizer", "flip_fraction", "test_peak", "peak_epoch", "test_final",
                                "epoch_clean_95", "epoch_flipped_50", "epoch_flipped_95", "precision_at_peak",
                                "recall_at_peak", "train_loss_final", "train_accuracy_final"], real_sum)  # fmt: skip
    return out


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    return plots.two_stage_figures(tables(params, records), params)
