"""Principal subspaces (LIP, Si et al.): noisy labels move the tail of a classifier, not its principal part.

Two parts (``parts``):

``ridge``  (points: feature map × p)
    On fixed features Φ of the ``n_train`` training images — ``nngp`` / ``ntk`` (the finite-sample
    feature maps of the kernels of a ReLU MLP with ``hidden`` hidden layers,
    :func:`nwcorrupt.subspace.kernel_feature_map`: a ridge head on them is kernel ridge regression),
    ``random`` (the penultimate layer of the study's network at initialisation) and ``trained`` (the
    penultimate layer of the study's network trained on the clean labels) — the ridge head W of the
    clean one-hot labels and W′ of labels with a fraction p flipped to another class uniformly
    (symmetric noise excluding the true class, exactly ⌊pN⌋ rows), for every relative ridge λ of
    ``ridges`` (λ · trace(ΦΦᵀ)/N). Recorded per λ: both spectra, φ(U, U′, i, j), sin θ between the
    top-k feature subspaces and its perturbation bound (:func:`nwcorrupt.subspace.sin_theta_bound`),
    the test accuracy of W, W′ and of the LIP plug-in on W′ for every k = 0..C (refit on the noisy
    labels, the only ones a user has).
``trained``  (points: loss × p)
    ``repeats`` networks trained on the noisy labels with ``loss`` (``"mse"`` or ``"cross_entropy"``);
    the LIP plug-in on each network's own readout (its penultimate features with a ones column, the
    bias as a last row), for every k, with the one-hot refit targets and with the scale-matched
    targets (``target_scale="match"``), beside the network's own accuracy (k = C).

Both parts also refit the tail on ``refit_clean_per_class`` clean training examples per class (their true
labels; scale-matched for the trained readouts): a refit on the noisy training labels cannot undo what a
least-squares fit of those same labels did.

Networks: ReLU, ``hidden`` layers of ``width`` units, standard parameterisation with PyTorch's
default initialisation, Adam 1e-3, batch 128, ``epochs`` passes, raw pixels (a reconstruction, as in
``predictive_power``; docs/studies/principal_subspace.md).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from nwcorrupt import data, precision, probe, subspace
from nwcorrupt import labels as _labels
from nwcorrupt._checks import check_choice, check_positive_float, check_positive_int, check_real, check_seed
from nwcorrupt.arch import MLP, PARAMETERIZATIONS
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import common, training_fit
from nwcorrupt.mlp import check_init_law

__all__ = [
    "DESCRIPTION",
    "PARTS",
    "FEATURES",
    "LOSSES",
    "SWEEPS",
    "POINTS_ARE_PRODUCT",
    "REPORT_FIELDS",
    "Params",
    "preflight",
    "points",
    "estimate",
    "dataset",
    "noisy_labels",
    "train_config",
    "kernel_arch",
    "feature_map",
    "run_point",
    "tables",
    "figures",
]

DESCRIPTION = "spectra, subspace similarity, sin theta and the LIP plug-in of heads trained on clean vs noisy labels"

PARTS = ("ridge", "trained")
FEATURES = ("nngp", "ntk", "random", "trained")
LOSSES = ("mse", "cross_entropy")
SWEEPS = {"parts": "part", "features": "features", "losses": "loss", "ps": "p"}
POINTS_ARE_PRODUCT = False
#: Fields read only by the reports: changing them recomputes no point.
REPORT_FIELDS = ("angle_ks", "slope_max_p")


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the principal-subspace study (module docstring).

    Attributes:
      dataset, n_train (balanced), n_test (first n_test; 0: all).
      parts: ``"ridge"`` and/or ``"trained"``. features: the feature maps of the ridge part.
      losses: the losses of the trained part. ps: flipped fractions p.
      ridges: relative ridges λ of the ridge heads. angle_ks: the k whose sin θ the tables list.
      slope_max_p: the fit of sin θ against √p uses the points with p <= slope_max_p (the small-p regime of
        the bound; sin θ saturates at 1 beyond it).
      hidden, width, parameterization, init, learning_rate, epochs, batch_size: the networks.
      repeats: networks per trained point. seed: of the subset, the labels and the networks.
      refit_clean_per_class: also refit LIP's tail on this many clean training examples per class (true
        labels; 0: not done), beside the refit on all training rows with their noisy labels.
    """

    dataset: str = "mnist"
    n_train: int = 10000
    n_test: int = 0
    parts: tuple[str, ...] = PARTS
    features: tuple[str, ...] = FEATURES
    losses: tuple[str, ...] = LOSSES
    ps: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
    ridges: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1)
    angle_ks: tuple[int, ...] = (1, 3, 5)
    slope_max_p: float = 0.1
    hidden: int = 2
    width: int = 512
    parameterization: str = "standard"
    init: str = "torch_default"
    learning_rate: float = 1e-3
    epochs: int = 50
    batch_size: int = 128
    repeats: int = 3
    refit_clean_per_class: int = 10
    seed: int = 0

    def __post_init__(self) -> None:
        common.check_dataset(self.dataset)
        check_positive_int("n_train", self.n_train)
        check_positive_int("n_test", self.n_test, allow_zero=True)
        for name, values, choices in (("parts", self.parts, PARTS), ("features", self.features, FEATURES),
                                      ("losses", self.losses, LOSSES)):
            for v in values:
                check_choice(name, v, choices)
        if not self.parts:
            raise ValueError(f"parts must list at least one of {list(PARTS)}")
        common.check_ps("ps", self.ps)
        if not self.ps or not self.ridges:
            raise ValueError("ps and ridges must not be empty")
        for lam in self.ridges:
            check_positive_float("ridges", lam)
        for k in self.angle_ks:
            check_positive_int("angle_ks", k)
        check_real("slope_max_p", self.slope_max_p, lo=0.0, hi=1.0, lo_open=True)
        check_positive_int("refit_clean_per_class", self.refit_clean_per_class, allow_zero=True)
        for name in ("hidden", "width", "epochs", "batch_size", "repeats"):
            check_positive_int(name, getattr(self, name))
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        check_init_law(MLP(2, "relu", parameterization=self.parameterization), self.init)
        check_positive_float("learning_rate", self.learning_rate)
        check_seed("seed", self.seed)
        for name in ("parts", "features", "losses", "ps", "ridges", "angle_ks"):
            values = getattr(self, name)
            if len(set(values)) != len(values):
                raise ValueError(f"{name} must not repeat a value, got {list(values)}")
        if "ridge" in self.parts and not self.features:
            raise ValueError("part 'ridge' needs a non-empty features")
        if "trained" in self.parts and not self.losses:
            raise ValueError("part 'trained' needs a non-empty losses")


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)
    raw = data.load_raw(params.dataset)
    if max(params.angle_ks) >= raw.num_classes:
        raise ConfigError(f"angle_ks must be < C = {raw.num_classes} (sin θ of the top-k subspace needs a "
                                  f"(k+1)-th direction), got {max(params.angle_ks)}")


def points(params: Params) -> list[dict]:
    out: list[dict] = []
    for part in params.parts:
        if part == "ridge":
            out += [{"part": part, "features": f, "p": p} for f in params.features for p in params.ps]
        else:
            out += [{"part": part, "loss": loss, "p": p} for loss in params.losses for p in params.ps]
    return out


def estimate(params: Params, point: dict) -> float:
    w = params.width
    weights = 784 * w + (params.hidden - 1) * w * w + 10 * w
    train = 6 * params.epochs * params.n_train * weights / 2e10
    if point["part"] == "trained":
        return 5.0 + params.repeats * train
    if point["features"] in ("nngp", "ntk"):
        return 5.0 + 3 * params.n_train**3 / 5e9
    return 5.0 + (train if point["features"] == "trained" else 0.0)


# --------------------------------------------------------------------------- data, networks, features


def dataset(params: Params) -> data.Dataset:
    ds = data.load(params.dataset, n_train=params.n_train, seed=params.seed, normalize="none")
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    return ds


def noisy_labels(params: Params, ds: data.Dataset, p: float) -> np.ndarray:
    """Exactly ⌊pN⌋ rows relabelled uniformly to another class (seed ``seed``)."""
    model = _labels.Symmetric(p, include_true=False, exact=True)
    return model.apply(ds.y_train, params.seed, num_classes=ds.num_classes)


def train_config(params: Params, num_classes: int, loss: str = "cross_entropy"):
    """The networks' :class:`~nwcorrupt.train.TrainConfig` (module docstring), with ``loss``."""
    return common.torch_relu_config(params, num_classes, loss=loss)


def kernel_arch(params: Params) -> MLP:
    """ReLU MLP with ``hidden`` hidden layers, no bias, NTK parameterisation (the regressions do not depend on
    the weight scale)."""
    return MLP(params.hidden + 1, "relu", W_std=math.sqrt(2.0), b_std=0.0, parameterization="ntk")


@functools.lru_cache(maxsize=2)
def feature_map(params: Params, name: str) -> tuple[np.ndarray, np.ndarray, dict]:
    """(Φ (N, F), Φ* (T, F), info) of feature map ``name`` on the study's data (cached per process)."""
    from nwcorrupt import kernels, mlp, train

    ds = dataset(params)
    info: dict = {}
    if name in ("nngp", "ntk"):
        with precision.x64():
            x, xt = ds.x_train.astype(np.float64), ds.x_test.astype(np.float64)
            k = np.asarray(getattr(kernels.kernel(kernel_arch(params), x, get=name), name))
            kt = np.asarray(getattr(kernels.kernel(kernel_arch(params), xt, x, get=name), name))
        phi, phit = subspace.kernel_feature_map(k, kt)
        return phi, phit, info
    cfg = train_config(params, ds.num_classes)
    if name == "random":
        weights = train.member_init(cfg, ds.x_train.shape[1], k=1, m=0)
    else:
        res = train.train_member(cfg, ds.x_train, ds.y_train, ds.x_test)
        weights = res.params
        info = {"test_accuracy": float(np.mean(res.test_logits.argmax(1) == ds.y_test)),
                **training_fit.summarize([res.train_loss], [res.train_accuracy])}
    layer = params.hidden  # the penultimate layer
    phi, phit = (np.asarray(mlp.layer_features(cfg.arch, weights, z, layer), np.float64) for z in (ds.x_train, ds.x_test))
    return phi, phit, info


# --------------------------------------------------------------------------- one point


@functools.lru_cache(maxsize=2)
def _feature_svd(params: Params, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD (A, s, Bᵀ) of the feature map's Φ (cached: every p and λ of a feature map reuses it)."""
    phi = feature_map(params, name)[0]
    return np.linalg.svd(phi, full_matrices=False)


def _accuracy(phit: np.ndarray, w: np.ndarray, y_test: np.ndarray) -> float:
    return float(np.mean((phit @ w).argmax(1) == y_test))


def _finite(v: float) -> float | None:
    return float(v) if np.isfinite(v) else None


def _clean_rows(params: Params, ds: data.Dataset) -> np.ndarray | None:
    """The clean training rows of LIP's clean refit (true labels), or None."""
    if not params.refit_clean_per_class:
        return None
    return probe.clean_subsets(ds.y_train, params.refit_clean_per_class, num_classes=ds.num_classes,
                               seed=params.seed)[0]


def _ridge_point(params: Params, point: dict) -> dict:
    ds = dataset(params)
    c = ds.num_classes
    phi, phit, info = feature_map(params, point["features"])
    noisy = noisy_labels(params, ds, float(point["p"]))
    y, y2 = np.eye(c)[ds.y_train], np.eye(c)[noisy]
    a, sv, bt = _feature_svd(params, point["features"])
    scale = float(np.sum(sv**2)) / phi.shape[0]  # trace(ΦΦᵀ)/N
    lam_min = float(sv[-1] ** 2) if phi.shape[1] <= phi.shape[0] else 0.0
    dy = float(np.linalg.norm(y2 - y))
    ay = a.T @ np.concatenate([y, y2], 1)  # the ridge heads of subspace.ridge_path, from the cached SVD
    heads = [bt.T @ ((sv / (sv**2 + lam * scale))[:, None] * ay) for lam in params.ridges]
    clean = _clean_rows(params, ds)
    per = []
    for lam, both in zip(params.ridges, heads):
        w, w2 = both[:, :c], both[:, c:]
        cmp = subspace.compare_heads(w, w2)
        s_clean, s_noisy = cmp.singular_values
        bounds = [subspace.perturbation_bound(sv[0], lam_min, dy, lam * scale, s_noisy[k - 1] - s_clean[k])
                  for k in range(1, c)]
        per.append({
            "ridge": lam,
            "singular_values": cmp.singular_values.tolist(),
            "similarity": cmp.similarity.tolist(),
            "sin_theta": cmp.sin_theta.tolist(),
            "bound": [_finite(b) for b in bounds],
            "clean_head_accuracy": _accuracy(phit, w, ds.y_test),
            "noisy_head_accuracy": _accuracy(phit, w2, ds.y_test),
            "lip_accuracy": [_accuracy(phit, subspace.lip(w2, phi, noisy, k), ds.y_test) for k in range(c + 1)],
            **({"lip_clean_accuracy": [_accuracy(phit, subspace.lip(w2, phi[clean], ds.y_train[clean], k), ds.y_test)
                                       for k in range(c + 1)]} if clean is not None else {}),
        })
    return {"flip_fraction": _labels.flip_fraction(ds.y_train, noisy), "feature_dim": int(phi.shape[1]),
            "features_info": info, "heads": per}


def _trained_point(params: Params, point: dict) -> dict:
    from nwcorrupt import mlp, train

    ds = dataset(params)
    c = ds.num_classes
    noisy = noisy_labels(params, ds, float(point["p"]))
    cfg = train_config(params, c, point["loss"])
    clean = _clean_rows(params, ds)
    own, lip_acc, fits, svals = [], {"one_hot": [], "match": [], **({"clean": []} if clean is not None else {})}, [], []
    for i in range(params.repeats):
        res = train.train_member(cfg, ds.x_train, noisy, ds.x_test, m=i)
        fits.append((res.train_loss, res.train_accuracy))
        feats = [probe.with_bias(np.asarray(mlp.layer_features(cfg.arch, res.params, z, params.hidden), np.float64))
                 for z in (ds.x_train, ds.x_test)]
        head = np.concatenate([np.asarray(res.params[-1]["W"], np.float64),
                               np.asarray(res.params[-1]["b"], np.float64)[None]], 0)
        own.append(float(np.mean(res.test_logits.argmax(1) == ds.y_test)))
        svals.append(np.linalg.svd(head, compute_uv=False).tolist())
        for scale in ("one_hot", "match"):
            lip_acc[scale].append([_accuracy(feats[1], subspace.lip(head, feats[0], noisy, k, target_scale=scale),
                                             ds.y_test) for k in range(c + 1)])
        if clean is not None:  # the tail refit on a few clean examples, logit scale matched on them
            lip_acc["clean"].append([_accuracy(feats[1], subspace.lip(head, feats[0][clean], ds.y_train[clean], k,
                                                                      target_scale="match"), ds.y_test)
                                     for k in range(c + 1)])
    return {"flip_fraction": _labels.flip_fraction(ds.y_train, noisy), "test_accuracy": own,
            "lip_accuracy": lip_acc, "head_singular_values": svals,
            **training_fit.summarize([f[0] for f in fits], [f[1] for f in fits])}


def run_point(params: Params, point: dict) -> dict:
    return _ridge_point(params, point) if point["part"] == "ridge" else _trained_point(params, point)


# --------------------------------------------------------------------------- reports


def _slope(ps: list[float], sines: list[float], max_p: float = 1.0) -> tuple[float, float, float]:
    """Least-squares fit sin θ = a + b √p over the points with p <= max_p: (b, a, R²)."""
    x = np.sqrt(np.asarray(ps, float))
    s = np.asarray(sines, float)
    ok = (x <= np.sqrt(max_p) + 1e-12) & np.isfinite(s)
    if ok.sum() < 2:
        return math.nan, math.nan, math.nan
    b, a = np.polyfit(x[ok], s[ok], 1)
    resid = s[ok] - (a + b * x[ok])
    tot = np.sum((s[ok] - s[ok].mean()) ** 2)
    return float(b), float(a), float(1 - np.sum(resid**2) / tot) if tot > 0 else math.nan


def tables(params: Params, records: list[dict]) -> dict:
    spectra, sim, angles, lip_r, lip_t, fit_rows, feat_fit = [], [], [], [], [], [], []
    ridge = [r for r in records if r["point"]["part"] == "ridge"]
    for rec in ridge:
        pt, m = rec["point"], rec["metrics"]
        info = m.get("features_info") or {}
        if info and pt["p"] == min(r["point"]["p"] for r in ridge if r["point"]["features"] == pt["features"]):
            feat_fit.append([pt["features"], "clean labels", info.get("test_accuracy", ""),
                             *training_fit.columns(info, training_fit.FIXED_SET_THRESHOLD)])
        for h in m["heads"]:
            key = [pt["features"], pt["p"], h["ridge"]]
            for name, sv in zip(("clean", "noisy"), h["singular_values"]):
                spectra.append([*key, name, *sv])
            sim.append([*key, *[h["similarity"][i][i] for i in range(len(h["similarity"]))]])
            for k in params.angle_ks:
                if k - 1 < len(h["sin_theta"]):
                    bound = h["bound"][k - 1]
                    angles.append([pt["features"], h["ridge"], k, pt["p"], math.sqrt(pt["p"]), h["sin_theta"][k - 1],
                                   "" if bound is None else bound])
            for refit in ("noisy", "clean"):
                lip = h["lip_accuracy"] if refit == "noisy" else h.get("lip_clean_accuracy")
                if lip is not None:
                    lip_r.append([*key, refit, m["flip_fraction"], h["clean_head_accuracy"], h["noisy_head_accuracy"],
                                  *lip, int(np.argmax(lip)), max(lip) - h["noisy_head_accuracy"]])
    slopes = []
    groups = dict.fromkeys((r[0], r[1], r[2]) for r in angles)
    for f, lam, k in groups:
        rows = [r for r in angles if (r[0], r[1], r[2]) == (f, lam, k)]
        slopes.append([f, lam, k, *_slope([r[3] for r in rows], [r[5] for r in rows], params.slope_max_p),
                       sum(r[3] <= params.slope_max_p for r in rows)])
    for rec in records:
        pt, m = rec["point"], rec["metrics"]
        if pt["part"] != "trained":
            continue
        fit_rows.append([pt["loss"], pt["p"], m["flip_fraction"], *common.mean_std(m["test_accuracy"]),
                         len(m["test_accuracy"]), *training_fit.columns(m, training_fit.FIXED_SET_THRESHOLD)])
        for scale, accs in m["lip_accuracy"].items():
            a = np.asarray(accs, float)
            for k in range(a.shape[1]):
                lip_t.append([pt["loss"], pt["p"], scale, k, *common.mean_std(a[:, k].tolist()), a.shape[0]])
    c = len(ridge[0]["metrics"]["heads"][0]["lip_accuracy"]) - 1 if ridge else 10
    out = {
        "spectra": (["features", "p", "ridge", "head", *[f"s{i}" for i in range(1, c + 1)]], spectra),
        "similarity": (["features", "p", "ridge", *[f"phi_{i}{i}" for i in range(1, c + 1)]], sim),
        "sin_theta": (["features", "ridge", "top_k", "p", "sqrt_p", "sin_theta", "bound"], angles),
        "sin_theta_slope": (["features", "ridge", "top_k", "slope_vs_sqrt_p", "intercept", "r2", "points"], slopes),
        "lip_ridge": (["features", "p", "ridge", "refit", "flip_fraction", "clean_head", "noisy_head",
                       *[f"lip_k{k}" for k in range(c + 1)], "best_k", "best_gain"], lip_r),
        "lip_trained": (["loss", "p", "target_scale", "rank_k", "mean", "std", "n"], lip_t),
        "training_fit": (["loss", "p", "flip_fraction", "test_mean", "test_std", "n", *training_fit.HEADER], fit_rows),
    }
    if feat_fit:
        out["feature_network_fit"] = (["features", "labels", "test_accuracy", *training_fit.HEADER], feat_fit)
    return out


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    return plots.principal_subspace_figures(tables(params, records), angle_ks=params.angle_ks)
