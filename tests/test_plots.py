"""Figures of every study, rendered from small fake record sets: readable labels, axis quantities,
what each band is (with its actual count), and tables without a std for one-sample statistics."""

from __future__ import annotations

import csv
import io
import math
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.text import Text  # noqa: E402

from nwcorrupt import plots, prototype  # noqa: E402
from nwcorrupt._io import atomic_write_csv  # noqa: E402
from nwcorrupt.experiments import runner, studies  # noqa: E402
from nwcorrupt.experiments.studies import centroid_comparison, common, heavy_corruption  # noqa: E402

K = 3  # noisy training sets of the fake records
R = 4  # trained networks of the fake online-training records


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# --------------------------------------------------------------------------- fake records, one set per study


def _spread(base: float, n: int) -> list[float]:
    return [base + 0.01 * i for i in range(n)]


def _nested_metrics(acc: float, agreements) -> dict:
    single = ("meanfield", "rule_leading")  # noise-free: one value per point
    return {
        "accuracy": {name: _spread(acc, 1 if name in single else K) for name in heavy_corruption.PREDICTORS},
        "agreement": {f"{a}~{b}": _spread(0.8, 1 if {a, b} <= set(single) else K) for a, b in agreements},
    }


def _heavy_corruption():
    params = heavy_corruption.Params(noises=("replacement:salt_pepper", "additive"), ps=(0.9, 0.97), k=K)
    recs = [{"point": {"noise": n, "p": p}, "metrics": _nested_metrics(0.5 - p / 4, heavy_corruption.AGREEMENTS)}
            for n in params.noises for p in params.ps]
    return params, recs


def _activations():
    mod = studies.get("activations")
    params = mod.Params(noise="replacement:salt_pepper", activations=("leaky_relu", "gelu"), ps=(0.9, 0.95), k=K)
    signs = {"depth": 3, "W_std": 1.0, "b_std": 0.0, "mu": 0.0, "mu2": 1.0, "T_star": 0.5, "Delta": 1.0, "ok": True}
    recs = [{"point": {"activation": a, "p": p},
             "metrics": {**_nested_metrics(0.5, heavy_corruption.AGREEMENTS), "signs": {"activation": a, **signs}}}
            for a in params.activations for p in params.ps]
    return params, recs


def _centroid_comparison():
    params = centroid_comparison.Params(datasets=("fashion_mnist",), noises=("replacement:salt_pepper", "additive"),
                                        ps=(0.9, 0.97), p_ref=0.97, k=K, m=2)
    rng = np.random.default_rng(0)
    recs = []
    for noise in params.noises:
        for p in params.ps:
            metrics = _nested_metrics(0.4, centroid_comparison.AGREEMENTS)
            if p == params.p_ref:
                n, c = 60, 10
                s = rng.normal(0, 0.2, (n, c))
                y = rng.integers(0, c, n)
                logits = 3 * s[None] + 0.1 + 0.2 * rng.standard_normal((K, n, c))
                fit = prototype.fit_centroid_model(logits, s, p)
                metrics["centroid_model"] = {
                    "fit": fit, "n_points": n,
                    "model_accuracy": centroid_comparison.model_curves(fit, s, y, params.ps, n_draws=5, seed=0),
                    "sample": {"index": list(range(n)), "y": y.tolist(), "s": s.tolist(), "logits": logits.tolist()},
                }
            recs.append({"point": {"dataset": "fashion_mnist", "noise": noise, "p": p}, "metrics": metrics})
    return params, recs


def _finite_vs_infinite():
    mod = studies.get("finite_vs_infinite")
    params = mod.Params(noises=("replacement:salt_pepper",), ps=(0.9, 0.97), widths=(64, 256), k=K)
    per_width = [[_spread(0.5, K) for _ in params.widths]]
    recs = [{"point": {"noise": n, "p": p},
             "metrics": {"widths": list(params.widths), "accuracy": per_width[0], "agreement_ntk": per_width[0],
                         "agreement_nngp": per_width[0], "rel_distance_ntk": per_width[0],
                         "ntk_accuracy": _spread(0.6, K), "nngp_accuracy": _spread(0.55, K), "ntk~nngp": _spread(0.9, K),
                         "noise_seeds": list(range(K))}}
            for n in params.noises for p in params.ps]
    return params, recs


def _snr_sweep():
    mod = studies.get("snr_sweep")
    params = mod.Params(noises=("replacement:salt_pepper",), n_trains=(100, 200), sizes=(28, 43), batch_size=50, k=K)
    recs = []
    for n in params.n_trains:
        for side in params.sizes:
            d = side * side
            stats = {pred: {"snr_median": 1e-3 * n * d, "snr_mean": 2e-3 * n * d, "signal": 1.0, "variance": 1.0,
                            "accuracy": _spread(0.5, K)} for pred in mod.PREDICTORS}
            recs.append({"point": {"noise": "replacement:salt_pepper", "n_train": n, "size": side},
                         "metrics": {"n_train": n, "d": d, "nd": n * d, "predictors": stats}})
    return params, recs


def _accuracy_vs_corruption():
    mod = studies.get("accuracy_vs_corruption")
    params = mod.Params(datasets=("fashion_mnist", "mnist"), ps=(0.0, 0.5), noise="replacement:salt_pepper",
                        repeats=R, n_train=100, batch_size=50)
    recs = [{"point": {"dataset": d, "p": p},
             "metrics": {"accuracy": {s: _spread(0.8 - p, R) for s in mod.SPLITS}, "chance": 0.1}}
            for d in params.datasets for p in params.ps]
    return params, recs


def _ptrain_ptest():
    mod = studies.get("ptrain_ptest")
    params = mod.Params(dataset="fashion_mnist", p_train=(0.0, 0.5), p_test=(0.0, 0.5, 1.0), repeats=R,
                        n_train=100, batch_size=50)
    recs = []
    for pt in params.p_train:
        acc = [[0.9 - 0.1 * r, 0.5, 0.1] for r in range(R)]
        recs.append({"point": {"p_train": pt},
                     "metrics": {"p_test": list(params.p_test), "accuracy": acc,
                                 "auc": mod.auc_per_network(params.p_test, acc), "chance": 0.1}})
    return params, recs


def _centroid_rules():
    mod = studies.get("centroid_rules")
    params = mod.Params(dataset="fashion_mnist", noises=("replacement:salt_pepper", "additive"), ps=(0.5, 0.9),
                        rules=("overlap", "centered", "euclidean"), k=K)
    recs = [{"point": {"noise": n, "p": p}, "metrics": {"accuracy": {r: _spread(0.6, K) for r in params.rules}}}
            for n in params.noises for p in params.ps]
    return params, recs


def _noise_illustration():
    mod = studies.get("noise_illustration")
    params = mod.Params(dataset="fashion_mnist", noises=("replacement:salt_pepper", "additive:laplace"),
                        ps=(0.0, 0.5), n_examples=1)
    img = np.linspace(0, 1, 16).tolist()
    recs = [{"point": {"noise": n}, "metrics": {"images": [[img, img]], "image_shape": [4, 4], "labels": [3]}}
            for n in params.noises]
    return params, recs


def _dilution():
    mod = studies.get("dilution")
    params = mod.Params(n_clean=100, depths=(0, 2), alphas=(0.0, 5.0), n_cleans=(50, 100), size_alphas=(1.0, 5.0),
                        accuracy_targets=(0.5,), batch_sizes=(32, 0), learning_rates=(0.1, 1.0),
                        orders=("confusing", "random"), deltas=(0.0, 1.0), sources=("pool", "white"), repeats=R)
    recs = []
    for i, pt in enumerate(mod.points(params)):
        s = mod.setting(params, pt)
        acc = 0.8 / (1 + s.alpha) + 0.0005 * s.n_clean
        theory = ({"skipped": "400 training rows > theory_max_rows = 300"} if pt.get("alpha") == 5.0 and pt["part"] == "alpha"
                  else {g: {"mean_accuracy": acc + 0.1, "predicted_accuracy": acc - 0.05} for g in ("ntk", "nngp")})
        recs.append({"point": pt, "metrics": {
            "setting": {**mod.dataclasses.asdict(s), "noise": None if s.noise is None else list(s.noise)},
            "test_accuracy": _spread(acc, R), "train_accuracy_clean": _spread(0.9, R),
            "train_accuracy_noisy": [None] * R if s.alpha == 0 else _spread(0.5, R),
            "train_loss_mean": 0.5, "train_accuracy_mean": 0.8, "train_accuracy_min": 0.7, "theory": theory}})
    return params, recs


def _labels_and_inputs():
    mod = studies.get("labels_and_inputs")
    params = mod.Params(noises=("additive",), ps=(0.9, 0.97), rs=(0.0, 0.5), k=K)
    single = {"meanfield", "rule_observed", "rule_expected", "rule_clean", "ntk_label_mean"}
    recs = []
    for p in params.ps:
        for r in params.rs:
            recs.append({"point": {"noise": "additive", "p": p, "r": r}, "metrics": {
                "accuracy": {n: _spread(0.7 - r / 2, 1 if n in single else K) for n in mod.PREDICTORS},
                "agreement": {f"{a}~{b}": _spread(0.8, 1 if {a, b} <= single else K) for a, b in mod.AGREEMENTS},
                "ntk_predicted": {"accuracy": 0.6 - r / 2, "stderr": 0.003}, "flip_fraction": 0.9 * r,
                "train_loss_mean": 0.0, "train_accuracy_mean": 1.0, "train_accuracy_min": 1.0}})
    return params, recs


def _predictive_power():
    mod = studies.get("predictive_power")
    params = mod.Params(datasets=("mnist",), label_noises=("symmetric:0", "symmetric:0.5", "pair:0.4"),
                        inputs=("clean", "replacement@0.9"), ms=(1, 10, 100), repeats=R, subsets=1)
    recs = []
    for pt in mod.points(params):
        r = mod.parse_label_noise(pt["label_noise"])[1]
        probes = [{"model": model, "layer": layer, "m": m, "accuracy": _spread(0.9 - r / 3 - 0.1 / m, R)}
                  for model, layers in (("trained", (1, 2, 3)), ("random", (1, 2, 3)), ("raw", (0,)),
                                        ("nngp", (1, 2)), ("ntk", (1, 2)))
                  for layer in layers for m in params.ms]
        recs.append({"point": pt, "metrics": {
            "flip_fraction": 0.9 * r, "test_accuracy": _spread(0.95 - r, R), "train_accuracy_clean": _spread(1.0, R),
            "train_accuracy_noisy": [None] * R if r == 0 else _spread(0.8, R), "probes": probes,
            "train_loss_mean": 0.1, "train_accuracy_mean": 0.95, "train_accuracy_min": 0.9}})
    return params, recs


def _alignment():
    mod = studies.get("alignment")
    params = mod.Params(datasets=("mnist",), noise_rates=(0.0, 0.8), ms=(1, 10, 100), repeats=R, subsets=1,
                        random_inits=1)
    recs = []
    for pt in mod.points(params):
        r = pt["r"]
        probes = [{"model": model, "m": m, "accuracy": _spread(0.9 - r / 3 - 0.1 / m, R if model == "trained" else 1)}
                  for model in mod.MODELS for m in params.ms]
        recs.append({"point": pt, "metrics": {
            "flip_fraction": 0.9 * r, "test_accuracy": _spread(0.95 - r, R), "follows_noise": _spread(r / 2, R),
            "train_accuracy_clean": _spread(1.0, R), "train_accuracy_noisy": [None] * R if r == 0 else _spread(0.8, R),
            "probes": probes, "train_loss_mean": 0.1, "train_accuracy_mean": 0.95, "train_accuracy_min": 0.9}})
    return params, recs


def _architectures():
    mod = studies.get("architectures")
    params = mod.Params(datasets=("mnist",), noises=("additive", "replacement"), ps=(0.9, 0.99), k=K)
    recs = []
    for pt in mod.points(params):
        pooled = pt["arch"] == "cnn_pool"
        per_p = []
        for p in params.ps:
            acc = {"network": _spread(0.5 - p / 4, K), "ntk": _spread(0.52 - p / 4, K), "meanfield": [0.7],
                   "prototype": [0.75], **({} if pooled and p > 0.95 else {"leading": [0.74]})}
            agree = {f"{a}~{b}": _spread(0.8, K if a == "network" or b == "ntk" or a == "ntk" else 1)
                     for a, b in mod.AGREEMENTS if a in acc and b in acc}
            per_p.append({"p": p, "accuracy": acc, "agreement": agree, "train_seconds": 1.0,
                          "train_loss_mean": 0.01, "train_accuracy_mean": 1.0, "train_accuracy_min": 1.0})
        recs.append({"point": pt, "metrics": {"per_p": per_p, "leading_order": 2 if pooled else 1,
                                              "class_signals": [1e-11 if pooled else 0.5, 0.7], "theory_seconds": 3.0,
                                              "n_train": 100, "n_test": 250, "image_shape": [8, 8],
                                              "train_loss_mean": 0.01, "train_accuracy_mean": 1.0,
                                              "train_accuracy_min": 1.0}})
    return params, recs


def _principal_subspace():
    mod = studies.get("principal_subspace")
    params = mod.Params(ps=(0.0, 0.2, 0.5), ridges=(1e-2, 1e-1), repeats=R)
    recs = []
    for pt in mod.points(params):
        p = pt["p"]
        if pt["part"] == "ridge":
            heads = [{"ridge": lam, "singular_values": [list(np.linspace(3, 1, 10)), list(np.linspace(3 + p, 1, 10))],
                      "similarity": (np.full((10, 10), 1 - p)).tolist(), "sin_theta": [0.5 * np.sqrt(p)] * 9,
                      "bound": [None] * 9, "clean_head_accuracy": 0.9, "noisy_head_accuracy": 0.9 - p / 2,
                      "lip_accuracy": list(np.linspace(0.85 - p / 2, 0.9 - p / 2, 11))} for lam in params.ridges]
            info = ({"test_accuracy": 0.95, "train_loss_mean": 0.01, "train_accuracy_mean": 1.0, "train_accuracy_min": 1.0}
                    if pt["features"] == "trained" else {})
            recs.append({"point": pt, "metrics": {"flip_fraction": p, "feature_dim": 512, "features_info": info,
                                                  "heads": heads}})
        else:
            acc = [list(np.linspace(0.8 - p / 2, 0.9 - p / 2 + 0.01 * i, 11)) for i in range(R)]
            recs.append({"point": pt, "metrics": {
                "flip_fraction": p, "test_accuracy": [a[-1] for a in acc], "lip_accuracy": {"one_hot": acc, "match": acc},
                "head_singular_values": [list(np.linspace(3, 1, 10))] * R,
                "train_loss_mean": 0.1, "train_accuracy_mean": 0.95, "train_accuracy_min": 0.9}})
    return params, recs


def _two_stage():
    mod = studies.get("two_stage")
    params = mod.Params(taus=(0.0, 0.2), sweep_taus=(0.2,), sweep_n_snr2=(0.5, 4.0), real_optimizers=("adam", "sgd"),
                        seeds=3, steps=4, log_every=2, real_epochs=2)
    t = [0, 2, 4]

    def stage(window: bool) -> dict:
        return {"window_start": 2 if window else None, "window_end": 2 if window else None, "memorised": 4,
                "study_at_stage1_end": 0.99 if window else None, "study_best": 0.99, "study_best_step": 2,
                "study_final": 0.8, "iid_at_stage1_end": 1.0 if window else None, "iid_final": 1.0,
                "precision_at_stage1_end": 1.0 if window else None, "recall_at_stage1_end": 1.0 if window else None,
                "flip_fraction": 0.2}

    keys = ("fit_clean", "fit_flipped", "test_iid", "test_study", "loss_clean", "loss_flipped", "precision", "recall")
    recs = []
    for pt in mod.points(params):
        if pt["part"] == "real":
            log = {k: [0.5, 0.9, 0.95] for k in ("fit_clean", "fit_flipped", "loss_clean", "loss_flipped", "train_loss",
                                                   "train_accuracy", "test_accuracy", "precision", "recall")}
            recs.append({"point": pt, "metrics": {"epochs": [0, 1, 2], "log": log, "flip_fraction": 0.2}})
            continue
        window = pt["part"] == "trajectory" or pt["n_snr2"] > 1
        met = {"stages": {m: [stage(window)] * 3 for m in ("network", "lazy")}, "train_accuracy_final": [1.0] * 3,
               "train_loss_final": [0.01] * 3}
        if pt["part"] == "trajectory":
            net = {k: [0.5, 1.0, 1.0] for k in (*keys, "gamma_max", "rho_clean", "rho_flipped")}
            met.update(t=t, series={"network": net, "lazy": {k: [0.5, 0.9, 1.0] for k in keys}})
            if pt["tau"] > 0:
                met["selection_curves"] = {"stage1_end": {"step": 2, "threshold": [0.1, 0.2], "precision": [1.0, 0.9],
                                                          "recall": [0.5, 1.0]}}
        recs.append({"point": pt, "metrics": met})
    return params, recs


FAKES = {
    "alignment": _alignment,
    "two_stage": _two_stage,
    "architectures": _architectures,
    "dilution": _dilution,
    "principal_subspace": _principal_subspace,
    "predictive_power": _predictive_power,
    "labels_and_inputs": _labels_and_inputs,
    "heavy_corruption": _heavy_corruption,
    "centroid_comparison": _centroid_comparison,
    "finite_vs_infinite": _finite_vs_infinite,
    "snr_sweep": _snr_sweep,
    "activations": _activations,
    "accuracy_vs_corruption": _accuracy_vs_corruption,
    "ptrain_ptest": _ptrain_ptest,
    "centroid_rules": _centroid_rules,
    "noise_illustration": _noise_illustration,
}


def test_every_registered_study_has_a_fake_record_set():
    assert set(FAKES) == set(studies.names())


def _figures(name):
    params, recs = FAKES[name]()
    return studies.get(name).figures(params, recs)


# --------------------------------------------------------------------------- what the texts of a figure say

INTERNAL = re.compile(r"[A-Za-z0-9]+[_~][A-Za-z0-9]+")
RAW_KEYS = re.compile(r"\b(ntk|nngp|meanfield)\b")  # lower-case predictor keys


def _outside_math(text: str) -> str:
    """The text with its $...$ (mathtext) parts removed: subscripts there are typeset, not shown."""
    return re.sub(r"\$[^$]*\$", "", text)


def _reader_texts(fig) -> list[str]:
    """Axis labels, titles, legend entries, colour-bar labels and captions of ``fig`` (not tick labels)."""
    out = [t.get_text() for t in fig.texts]  # captions and the suptitle
    for leg in fig.legends:
        out += [t.get_text() for t in leg.get_texts()]
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        out += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
        if ax.get_legend() is not None:
            out += [t.get_text() for t in ax.get_legend().get_texts()]
    return [t for t in out if t]


def test_reader_texts_catch_an_internal_key():
    # the check itself: a legend entry with a raw key is found, a subscript in math mode is not
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1], label="rule_noisy")
    ax.set_xlabel(r"$p_{\mathrm{train}}$")
    ax.legend()
    bad = [t for t in _reader_texts(fig) if INTERNAL.search(_outside_math(t))]
    assert bad == ["rule_noisy"]


@pytest.mark.parametrize("name", sorted(FAKES))
def test_no_legend_axis_label_or_title_shows_an_internal_key(name):
    for fig_name, fig in _figures(name).items():
        texts = _reader_texts(fig)
        assert texts, fig_name
        for text in texts:
            plain = _outside_math(text)
            assert not INTERNAL.search(plain), (name, fig_name, text)
            assert not RAW_KEYS.search(plain), (name, fig_name, text)


def _flat(text: str) -> str:
    """A wrapped caption as one line."""
    return " ".join(text.split())


def _bands(ax) -> list:
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


@pytest.mark.parametrize("name", sorted(FAKES))
def test_every_band_is_explained_in_the_figure_with_its_count(name):
    symbol = {"accuracy_vs_corruption": f"R = {R} trained networks", "ptrain_ptest": f"R = {R} trained networks",
              "dilution": f"R = {R} networks (initialisations) per point",
              "predictive_power": f"n = {R} networks × clean subsets",
              "alignment": f"n = {R} networks × clean subsets",
              "principal_subspace": f"R = {R} networks per point"}
    expected = "±1 std over " + symbol.get(name, f"K = {K} noisy training sets")
    for fig_name, fig in _figures(name).items():
        if any(_bands(ax) for ax in fig.axes):
            assert any(expected in _flat(t.get_text()) for t in fig.texts), (name, fig_name, [t.get_text() for t in fig.texts])


def test_heavy_corruption_agreement_axis_says_agreement_and_accuracy_axis_says_accuracy():
    figs = _figures("heavy_corruption")
    agree = figs["agreement_vs_p"].axes[0]
    assert "agreement" in agree.get_ylabel() and "accuracy" not in agree.get_ylabel()
    assert "fraction of test points" in agree.get_ylabel()
    assert "accuracy" in figs["accuracy_vs_p"].axes[0].get_ylabel()
    assert "training" in agree.get_xlabel() and "p" in agree.get_xlabel()
    (legend,) = figs["agreement_vs_p"].legends
    assert "agreement: NTK vs mean-field" in [t.get_text() for t in legend.get_texts()]
    (legend,) = figs["accuracy_vs_p"].legends
    texts = [t.get_text() for t in legend.get_texts()]
    assert "centroid rule (noisy means)" in texts and "mean-field" in texts


def test_single_value_series_get_no_band_and_the_caption_names_them():
    fig = _figures("heavy_corruption")["accuracy_vs_p"]
    for ax in fig.axes:  # network, NTK and noisy-means rule have K values; mean-field and clean rule one
        assert len(_bands(ax)) == 3
    (note,) = [_flat(t.get_text()) for t in fig.texts if t is not fig._suptitle]
    assert note == (f"band: ±1 std over K = {K} noisy training sets (ddof = 1); "
                    "no band (one value, n = 1): mean-field, leading-order rule (clean means)")


def test_every_axis_label_names_a_quantity():
    # each data axis of each figure has labels on its outer panels, and accuracy/agreement labels carry units
    for name in sorted(FAKES):
        for fig_name, fig in _figures(name).items():
            ylabels = [ax.get_ylabel() for ax in fig.axes if ax.get_visible()]
            assert any(ylabels), (name, fig_name)
            for text in ylabels:
                if ("accuracy" in text or "agreement" in text) and not text.startswith("area under"):
                    assert "fraction" in text or "mean over" in text, (name, fig_name, text)


# --------------------------------------------------------------------------- labels and band notes


def test_label_maps_keys_and_pairs():
    assert plots.label("rule_noisy") == "centroid rule (noisy means)"
    assert plots.label("ntk~meanfield") == "agreement: NTK vs mean-field"
    assert plots.label("network~rule_leading") == "agreement: network vs leading-order rule (clean means)"
    assert plots.label("width 512") == "width 512"
    assert plots.label("some_new_key") == "some new key"
    assert all("_" not in v and "~" not in v for v in plots.LABELS.values())
    for spec in common.NOISE_SPECS:
        assert spec in plots.LABELS


def test_band_note_counts():
    assert plots.band_note({"a": [20, 20]}, "K", "noisy training sets") == \
        "band: ±1 std over K = 20 noisy training sets (ddof = 1)"
    assert plots.band_note({"a": [2, 20]}, "R", "networks") == "band: ±1 std over R = 2–20 networks (ddof = 1)"
    assert plots.band_note({"ntk": [5], "meanfield": [1, 1]}, "K", "sets") == \
        "band: ±1 std over K = 5 sets (ddof = 1); no band (one value, n = 1): mean-field"
    assert plots.band_note({"a": [1]}, "K", "sets") == "no band: every point is a single value (n = 1)"


def test_curve_with_band_leaves_out_the_band_of_a_one_sample_point():
    fig = plots.curve_with_band([0.0, 0.5, 1.0], [0.5, 0.4, 0.3], [0.1, 0.1, ""], xlabel="x", ylabel="y",
                                band="band: test")
    (poly,) = _bands(fig.axes[0])
    ys = np.concatenate([p.vertices[:, 1] for p in poly.get_paths()])
    assert ys.min() == pytest.approx(0.3) and ys.max() == pytest.approx(0.6)  # the band spans x ∈ [0, 0.5] only
    xs = np.concatenate([p.vertices[:, 0] for p in poly.get_paths()])
    assert xs.max() == pytest.approx(0.5)
    assert [t.get_text() for t in fig.texts] == ["band: test"]


def test_saved_figure_holds_the_caption(tmp_path):
    fig = _figures("centroid_rules")["accuracy_vs_p"]
    h0 = fig.get_size_inches()[1] * 130
    (path,) = plots.save_figure(fig, tmp_path / "f", formats=("png",))
    height = plt.imread(path).shape[0]
    assert height > h0 - 40  # tight bbox kept the caption line below the axes


# --------------------------------------------------------------------------- std of one sample: no std cell


def test_mean_std_of_one_and_two_values():
    assert common.mean_std([0.3]) == (0.3, common.NO_STD) and common.NO_STD == ""
    mean, std = common.mean_std([0.1, 0.3])
    assert mean == pytest.approx(0.2) and std == pytest.approx(math.sqrt(0.02))
    with pytest.raises(ValueError, match="at least one value"):
        common.mean_std([])


def test_studies_and_compare_share_one_mean_std():
    from nwcorrupt import compare, metrics

    assert common.mean_std is metrics.mean_std and common.NO_STD is metrics.NO_STD
    assert "mean_std" in vars(compare) and compare.mean_std is metrics.mean_std


def test_demo_summary_table_has_readable_headers_and_the_record_values():
    params, recs = FAKES["heavy_corruption"]()
    recs[0]["metrics"]["train_accuracy_min"] = 0.5  # networks that did not fit their noisy sets
    text = heavy_corruption.summary_table(recs)
    lines = text.splitlines()
    header = "\n".join(lines[: lines.index(next(ln for ln in lines if set(ln) == {"-"}))])
    for shown in ("accuracy", "agreement of decisions", "network", "NTK", "mean-field", "leading-order",
                  "network vs", "NTK vs", "mean-field vs"):
        assert shown in header, shown
    assert not any(key in text for key in ("meanfield", "rule_leading", "~", "salt_pepper"))
    body = lines[len(header.splitlines()) + 1:]
    assert len(body) == len(recs) and body[0].startswith("replacement (salt and pepper)")
    assert "UNDERFIT" in body[0] and not any("UNDERFIT" in ln for ln in body[1:])
    m = recs[1]["metrics"]
    cells = body[1].split("|")
    assert cells[1].split() == [f"{np.mean(m['accuracy'][c]):.4f}" for c in ("network", "ntk", "meanfield", "rule_leading")]
    assert cells[2].split() == [f"{np.mean(m['agreement'][q]):.4f}" for q in heavy_corruption.SUMMARY_PAIRS]


def _rows_of(name):
    params, recs = FAKES[name]()
    return studies.get(name).tables(params, recs)


def test_one_sample_rows_have_an_empty_std_in_csv_and_printed_tables(tmp_path):
    tables = _rows_of("heavy_corruption")
    header, rows = tables["accuracy"]
    col = {h: i for i, h in enumerate(header)}
    mf = [r for r in rows if r[col["predictor"]] == "meanfield"]
    net = [r for r in rows if r[col["predictor"]] == "network"]
    assert mf and all(r[col["std"]] == "" and r[col["n"]] == 1 for r in mf)
    assert all(r[col["std"]] == pytest.approx(np.std(_spread(0, K), ddof=1)) and r[col["n"]] == K for r in net)
    path = atomic_write_csv(tmp_path / "accuracy.csv", header, rows)
    back = list(csv.DictReader(io.StringIO(path.read_text())))
    assert {r["std"] for r in back if r["predictor"] == "meanfield"} == {""}
    assert all(float(r["std"]) > 0 and r["n"] == str(K) for r in back if r["predictor"] == "network")
    printed = runner.format_tables({"accuracy": [header, *rows]}).splitlines()
    mf_lines = [ln for ln in printed if " meanfield " in ln]
    assert mf_lines and all("0.0000" not in ln.split("meanfield")[1] for ln in mf_lines)
    assert all(ln.split()[-1] == "1" and len(ln.split()) == 5 for ln in mf_lines)  # noise p name mean n: no std


@pytest.mark.parametrize("name", sorted(n for n in FAKES if n != "noise_illustration"))
def test_no_table_prints_a_zero_std_for_a_single_value(name):
    for header, rows in _rows_of(name).values():
        std_cols = [i for i, h in enumerate(header) if h == "std" or (h.endswith("_std") and h not in ("W_std", "b_std"))]
        n_cols = [i for i, h in enumerate(header) if h in ("n", "k")]
        if not std_cols:
            continue
        assert n_cols, (name, header)  # a count is reported wherever a std is
        for r in rows:
            if r[n_cols[0]] == 1:
                assert all(r[i] == "" for i in std_cols), (name, header, r)
            else:
                assert all(isinstance(r[i], float) for i in std_cols), (name, header, r)
