"""SNR sweep: how the fluctuations of a fixed noise realisation shrink with N and d.

Theory: docs/science.md#fluctuations-and-snr-at-finite-d; recipe: docs/science.md#snr-sweep.

For each noise model, training-set size N and image side s (d = s² features,
images bilinearly resized, then normalised per example), at one corruption
level p, K noisy training sets (noise seeds ``seed .. seed + K − 1``) are drawn;
on each:

- a finite-width ensemble of M initialisations is trained; its logits are
  averaged over the M initialisations;
- the exact infinite-width NTK predictor (gradient flow, t = ∞, float64) is
  computed on the same noisy set (it is already the infinite-init average).

For every clean test point the true-class logit z_k (k = 1..K) of each predictor
gives a per-point signal-to-noise ratio ``SNR = mean_k(z)² / var_k(z)``
(:func:`nwcorrupt.metrics.snr`, unbiased variance). A record stores, per
predictor, the mean and median of the per-point SNR over the test points, the
mean signal mean_k(z)² and mean variance var_k(z), and the accuracy on each of
the K sets.

The theory predicts SNR ∝ ε² N d at fixed ε = 1 − p. :func:`fit_slopes` fits
log SNR against log(N·d) (and against log N at each fixed d, log d at each fixed
N) by least squares (:func:`nwcorrupt.metrics.loglog_slope`), per noise model,
predictor and statistic (mean or median over test points), from the records
alone.

With ``networks`` the record also holds the networks' training-set fit (training
loss and accuracy on their noisy sets, mean over the K·M networks, and the lowest
accuracy); the table ``training_fit`` flags points whose networks did not fit their
noisy training sets (:mod:`~nwcorrupt.experiments.studies.training_fit`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt import data, metrics, precision
from nwcorrupt._checks import check_choice, check_positive_int, check_real
from nwcorrupt.arch import PARAMETERIZATIONS
from nwcorrupt.experiments.studies import common, nested_predictors, training_fit

__all__ = [
    "DESCRIPTION",
    "PREDICTORS",
    "STATISTICS",
    "SLOPES_HEADER",
    "POINTS_HEADER",
    "Params",
    "preflight",
    "points",
    "estimate",
    "logit_statistics",
    "run_point",
    "fit_slopes",
    "tables",
    "figures",
]

DESCRIPTION = "per-test-point SNR of the true-class logit over noisy training sets vs N·d: networks and the exact NTK"

PREDICTORS = ("network", "ntk")
STATISTICS = ("median", "mean")
SLOPES_HEADER = ["noise", "predictor", "statistic", "fit", "fixed", "slope", "stderr", "intercept", "n_points"]
POINTS_HEADER = ["noise", "n_train", "d", "nd", "predictor", "snr_median", "snr_mean", "signal", "variance",
                 "acc_mean", "acc_std", "k"]


@dataclasses.dataclass(frozen=True)
class Params:
    """Parameters of the SNR sweep.

    Attributes:
      dataset: an image data set (not ``gaussian_mixture``: images are resized).
      noises: noise specs (``"replacement[:law]"``, ``"additive[:law]"``).
      p: corruption level in (0, 1] (at p = 0 the K sets coincide and the SNR is infinite).
      n_trains: training-set sizes N (balanced subsets, multiples of the class count).
      sizes: image sides s; the networks see d = s² features.
      n_test: number of clean test points (the first ones; 0: the full test set).
      activation, depth, W_std, b_std: the MLP.
      parameterization: the networks' (``"standard"``, the study's); the NTK predictor uses ``"ntk"``.
      width, epochs, batch_size, learning_rate: the finite networks (Adam, MSE on one-hot targets).
      k: noisy training sets K (≥ 2; an SNR estimate needs K ≳ 5 to be useful).
      m: initialisations M per noisy set.
      networks: train the finite networks (False: the NTK predictor only).
      diag_reg: relative ridge of the NTK solve: r = diag_reg · trace(Θ)/N is added to the train-train
        diagonal (``predict.ntk_predict``).
      seed: seed of the balanced subsets, the first noise seed and the networks' initialisations.
    """

    dataset: str = "mnist"
    noises: tuple[str, ...] = ("additive", "replacement")
    p: float = 0.97
    n_trains: tuple[int, ...] = (1000, 2000, 4000)
    sizes: tuple[int, ...] = (28, 43, 55, 64)
    n_test: int = 0
    activation: str = "erf"
    depth: int = 3
    W_std: float = 1.0
    b_std: float = 0.0
    parameterization: str = "standard"
    width: int = 512
    epochs: int = 10
    batch_size: int = 100
    learning_rate: float = 1e-3
    k: int = 8
    m: int = 2
    networks: bool = True
    diag_reg: float = 1e-6
    seed: int = 0

    def __post_init__(self) -> None:
        from nwcorrupt import activations

        common.check_dataset(self.dataset)
        if self.dataset == "gaussian_mixture":
            raise ValueError("dataset must be an image data set for snr_sweep (images are resized), "
                             "got 'gaussian_mixture'")
        common.check_noises(self.noises)
        check_real("p", self.p, lo=0.0, hi=1.0, lo_open=True, note="at p = 0 every noisy set is the clean set")
        for name in ("n_trains", "sizes"):
            vals = getattr(self, name)
            if not vals or any(v < 1 for v in vals) or len(set(vals)) != len(vals):
                raise ValueError(f"{name} must be a non-empty list of distinct integers >= 1, got {list(vals)}")
        activations.get(self.activation)
        check_choice("parameterization", self.parameterization, PARAMETERIZATIONS)
        for name in ("depth", "width", "epochs", "batch_size", "m"):
            check_positive_int(name, getattr(self, name))
        if check_positive_int("k", self.k) < 2:
            raise ValueError(f"k must be >= 2 noisy training sets for an SNR (a variance across sets), got {self.k}")
        common.check_recipe_numbers(self)
        if self.batch_size > min(self.n_trains):
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed the smallest n_trains "
                             f"({min(self.n_trains)})")


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"noise": noise, "n_train": n, "size": s}
            for noise in params.noises for n in params.n_trains for s in params.sizes]


def estimate(params: Params, point: dict) -> float:
    n, d = point["n_train"], point["size"] ** 2
    t = params.n_test or 10000
    w = params.width
    n_params = d * w + (params.depth - 2) * w * w + w * 10
    flops_train = 6 * params.k * params.m * params.epochs * n * n_params if params.networks else 0
    flops_kernel = 2 * params.k * (n + t) * n * d + params.k * n**3 / 3
    return 2.0 + flops_train / 2e10 + flops_kernel / 1e10


def _dataset(params: Params, point: dict) -> data.Dataset:
    s = int(point["size"])
    ds = data.load(params.dataset, n_train=int(point["n_train"]), seed=params.seed, size=(s, s))
    if params.n_test and params.n_test < ds.n_test:
        ds = ds.replace(x_test=ds.x_test[: params.n_test], y_test=ds.y_test[: params.n_test])
    return ds


def logit_statistics(logits, y_test) -> dict:
    """SNR statistics of K predictors' true-class logits over the same test points.

    Args:
      logits: (K, T, C) logits on T test points of predictors fitted on K noisy training sets
        (for finite networks: already averaged over initialisations).
      y_test: (T,) true labels.

    Returns:
      dict with ``snr_mean``, ``snr_median`` (mean and median over the T points of the per-point
      SNR mean_k(z)²/var_k(z) of the true-class logit z), ``signal`` (mean over points of
      mean_k(z)²), ``variance`` (mean over points of var_k(z), ddof = 1) and ``accuracy`` (list of K
      accuracies). The squared sample mean is not bias-corrected: E[mean_k(z)²] = mean² + var/K, so a
      per-point SNR reads about 1/K high.
    """
    lg = np.asarray(logits, dtype=np.float64)
    y = np.asarray(y_test)
    if lg.ndim != 3 or lg.shape[1] != y.shape[0]:
        raise ValueError(f"logits must have shape (K, T, C) with T = len(y_test) = {y.shape[0]}, got {lg.shape}")
    z = np.take_along_axis(lg, y[None, :, None].astype(np.int64), axis=2)[..., 0]  # (K, T)
    snr = metrics.snr(z, axis=0)
    return {
        "snr_mean": float(np.mean(snr)),
        "snr_median": float(np.median(snr)),
        "signal": float(np.mean(z.mean(axis=0) ** 2)),
        "variance": float(np.mean(z.var(axis=0, ddof=1))),
        "accuracy": [metrics.accuracy(row, y) for row in lg],
    }


def _network_logits(
    params: Params, arch, noisy: np.ndarray, ds: data.Dataset
) -> tuple[np.ndarray, float, dict[str, float]]:
    """(K, T, C) test logits of the K × M networks (float32 training) averaged over the M inits; training
    seconds; the networks' training-set fit (:func:`training_fit.summarize`)."""
    from nwcorrupt import train

    cfg = nested_predictors.network_config(params, arch, ds.num_classes)
    ens = train.train_ensemble(cfg, noisy, ds.y_train, ds.x_test, ds.y_test, num_inits=params.m, quiet=True)
    fit = training_fit.summarize(ens.train_loss, ens.train_accuracy)
    return np.asarray(ens.test_logits, dtype=np.float64).mean(axis=1), float(ens.train_seconds), fit


def _ntk_logits(params: Params, arch, noisy: np.ndarray, ds: data.Dataset) -> np.ndarray:
    """(K, T, C) exact NTK predictor (gradient flow, t = ∞) on each noisy set, in float64."""
    from nwcorrupt import predict

    onehot = np.eye(ds.num_classes)[ds.y_train]
    with precision.x64():
        xt = ds.x_test.astype(np.float64)
        return np.stack([
            np.asarray(predict.ntk_predict(arch, x.astype(np.float64), onehot, xt, diag_reg=params.diag_reg),
                       dtype=np.float64)
            for x in noisy
        ])


def run_point(params: Params, point: dict) -> dict:
    ds = _dataset(params, point)
    model = common.noise_model(point["noise"], "example", ds.x_train)
    seeds = [params.seed + k for k in range(params.k)]
    noisy = np.stack([np.asarray(model.apply(ds.x_train, params.p, s)) for s in seeds])  # (K, N, d)
    out = {"n_train": ds.n_train, "d": ds.d, "nd": ds.n_train * ds.d, "noise_seeds": seeds, "predictors": {}}
    if params.networks:
        net, seconds, fit = _network_logits(params, nested_predictors.network_arch(params), noisy, ds)
        out["predictors"]["network"] = logit_statistics(net, ds.y_test)
        out["train_seconds"] = seconds
        out.update(fit)
    out["predictors"]["ntk"] = logit_statistics(_ntk_logits(params, nested_predictors.kernel_arch(params), noisy, ds), ds.y_test)
    return out


def _records_by(records: list[dict]):
    """(noise, predictor) -> list of (n_train, d, stats) from stored records, in record order."""
    groups: dict[tuple[str, str], list] = {}
    for rec in records:
        m = rec["metrics"]
        for pred, stats in m["predictors"].items():
            groups.setdefault((rec["point"]["noise"], pred), []).append((int(m["n_train"]), int(m["d"]), stats))
    return groups


def fit_slopes(records: list[dict]) -> list[dict]:
    """Log–log slopes of SNR against N·d, against N at each fixed d, and against d at each fixed N.

    Built from stored records alone. For each (noise, predictor, statistic ∈ {median, mean}) the
    fit ``log SNR = slope · log x + intercept`` is :func:`nwcorrupt.metrics.loglog_slope` over the
    records' points; a fit needs two distinct x values (stderr needs three; NaN otherwise).

    Returns:
      one dict per fit with keys noise, predictor, statistic, fit ("N*d", "N" or "d"), fixed
      ("-", "d=<d>" or "N=<N>"), slope, stderr, intercept, n_points.
    """
    rows = []
    for (noise, pred), pts in _records_by(records).items():
        for stat in STATISTICS:
            key = f"snr_{stat}"
            subsets = [("N*d", "-", [(n * d, s[key]) for n, d, s in pts])]
            for d in sorted({d for _, d, _ in pts}):
                subsets.append(("N", f"d={d}", [(n, s[key]) for n, dd, s in pts if dd == d]))
            for n in sorted({n for n, _, _ in pts}):
                subsets.append(("d", f"N={n}", [(d, s[key]) for nn, d, s in pts if nn == n]))
            for fit, fixed, xy in subsets:
                x = np.array([v[0] for v in xy], dtype=np.float64)
                y = np.array([v[1] for v in xy], dtype=np.float64)
                if np.unique(x).size < 2 or not np.all(np.isfinite(y) & (y > 0)):
                    continue
                slope, intercept, stderr = metrics.loglog_slope(x, y)
                rows.append(dict(noise=noise, predictor=pred, statistic=stat, fit=fit, fixed=fixed, slope=slope,
                                 stderr=stderr, intercept=intercept, n_points=int(x.size)))
    return rows


def tables(params: Params, records: list[dict]) -> dict:
    point_rows = []
    for rec in records:
        m = rec["metrics"]
        for pred, s in m["predictors"].items():
            mean, std = common.mean_std(s["accuracy"])
            point_rows.append([rec["point"]["noise"], m["n_train"], m["d"], m["nd"], pred, s["snr_median"], s["snr_mean"],
                               s["signal"], s["variance"], mean, std, len(s["accuracy"])])
    slope_rows = [[r[h] for h in SLOPES_HEADER] for r in fit_slopes(records)]
    fit_rows = [[rec["point"]["noise"], rec["metrics"]["n_train"], rec["metrics"]["d"],
                 *training_fit.columns(rec["metrics"], training_fit.FIXED_SET_THRESHOLD)]
                for rec in records if "network" in rec["metrics"]["predictors"]]
    return {
        "points": (POINTS_HEADER, point_rows),
        "slopes": (SLOPES_HEADER, slope_rows),
        "training_fit": (["noise", "n_train", "d", *training_fit.HEADER], fit_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    fitted = [r for r in fit_slopes(records) if r["statistic"] == "median"]
    fits = {(r["noise"], r["predictor"]): r for r in fitted if r["fit"] == "N*d"}
    panels = []
    for noise in dict.fromkeys(rec["point"]["noise"] for rec in records):
        series = []
        for (nz, pred), pts in _records_by(records).items():
            if nz != noise:
                continue
            fit = fits.get((noise, pred), {})
            series.append({"label": pred, "x": [n * d for n, d, _ in pts], "y": [s["snr_median"] for _, _, s in pts],
                           "slope": fit.get("slope"), "stderr": fit.get("stderr"), "intercept": fit.get("intercept")})
        panels.append((plots.label(noise), series))
    per_d = {(r["noise"], r["predictor"], r["fixed"]): r for r in fitted if r["fit"] == "N"}
    panels_n = []
    for (noise, pred), pts in _records_by(records).items():
        series = []
        for d in sorted({d for _, d, _ in pts}):
            fit = per_d.get((noise, pred, f"d={d}"), {})
            sel = [(n, s["snr_median"]) for n, dd, s in pts if dd == d]
            series.append({"label": f"d = {d}", "x": [v[0] for v in sel], "y": [v[1] for v in sel],
                           "slope": fit.get("slope"), "stderr": fit.get("stderr"), "intercept": fit.get("intercept")})
        panels_n.append((f"{plots.label(noise)}, {plots.label(pred)}", series))
    title = (f"{plots.label(params.dataset)}, p = {params.p:g}, {params.activation} L = {params.depth}, "
             f"width {params.width}, K×M = {params.k}×{params.m}")
    ylabel = "median per-point SNR of the\ntrue-class logit (dimensionless)"
    ks = sorted({len(s["accuracy"]) for rec in records for s in rec["metrics"]["predictors"].values()})
    note = ("points: median over the test points of SNR = mean²/variance of the true-class logit over "
            f"K = {'/'.join(map(str, ks))} noisy training sets; lines: least-squares power laws, "
            "slope ± its standard error")
    return {
        "snr_vs_nd": plots.loglog_fits(panels, xlabel="N · d (training points × input features)", ylabel=ylabel,
                                       title=title, note=note),
        "snr_vs_n": plots.loglog_fits(panels_n, xlabel="training-set size N", ylabel=ylabel, title=title,
                                      ncols=len(PREDICTORS), note=note),
    }
