"""The activations study: sign check vs kernels, records vs library recomputation, tables, figure, validation."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import corruption, data, kernels, precision, predict, prototype, theory
from nwcorrupt.experiments.schema import ConfigError, parse_config
from nwcorrupt.experiments.studies import activations as study
from nwcorrupt.experiments.studies import heavy_corruption


def _ntk_pair(arch, g11, g12, g22, d=4):
    """Θ(x₁, x₂) of two inputs with overlaps ⟨x_i, x_j⟩ = (1/d) x_i·x_j given by g (float64)."""
    e = np.eye(d) * np.sqrt(d)
    x1 = np.sqrt(g11) * e[0]
    c = g12 / np.sqrt(g11)
    x2 = c * e[0] + np.sqrt(g22 - c * c) * e[1]
    return float(kernels.kernel(arch, np.stack([x1, x2]), get="ntk").ntk[0, 1])


def _ntk_diag(arch, g, d=4):
    x = np.sqrt(g * d) * np.eye(d)[:1]
    return float(kernels.kernel(arch, x, get="ntk").ntk[0, 0])


@pytest.mark.parametrize("act", ["erf", "tanh", "gelu", "swish"])
def test_sign_check_matches_finite_differences_of_the_ntk(act, x64):
    # additive Gaussian noise at ε = 0: train points have ⟨x̃, x̃⟩ = 1 and mutual overlap 0;
    # T_* = ∂Θ(x*, x̃)/∂⟨x*, x̃⟩ at overlap 0 with unit norms, Δ = Θ(x̃, x̃) − Θ(x̃, x̃').
    params = study.Params(activations=(act,), noise="additive")
    row = study.sign_check(params, act)
    arch = kernels.MLP(3, act)
    h = 1e-4
    t_fd = (_ntk_pair(arch, 1.0, h, 1.0) - _ntk_pair(arch, 1.0, -h, 1.0)) / (2 * h)
    delta = _ntk_diag(arch, 1.0) - _ntk_pair(arch, 1.0, 0.0, 1.0)
    assert (row["mu"], row["mu2"], row["depth"], row["activation"]) == (0.0, 1.0, 3, act)
    assert row["T_star"] == pytest.approx(t_fd, rel=1e-5)
    assert row["Delta"] == pytest.approx(delta, rel=1e-6)
    assert row["ok"] is True and row["T_star"] > 0 and row["Delta"] > 0


def test_sign_check_uses_the_replacement_moments(x64):
    # salt-and-pepper ±1 on normalised data: μ = 0, μ₂ = 1; Gaussian additive gives the same point,
    # a uniform replacement U[−√3, √3] too (μ₂ = 1): the check must match transfer_signs at (0, 1).
    params = study.Params(noise="replacement:salt_pepper", activations=("tanh",), depth=4, W_std=1.5, b_std=0.5)
    row = study.sign_check(params, "tanh")
    (ref,) = theory.transfer_signs(("tanh",), (4,), (1.5,), (0.5,), ((0.0, 1.0),))
    assert row == pytest.approx(ref)


def test_record_matches_library_recomputation_on_the_same_seeds():
    params = study.Params(dataset="digits", n_train=100, n_test=60, ps=(0.8,), activations=("tanh",), width=16,
                          epochs=1, batch_size=50, k=2, m=1)
    rec = study.run_point(params, {"activation": "tanh", "p": 0.8})
    ds = data.load("digits", n_train=100, seed=0)
    xt, yt = ds.x_test[:60], ds.y_test[:60]
    arch = kernels.MLP(3, "tanh")
    with precision.x64():
        ntk_acc = []
        for seed in (0, 1):
            x = np.asarray(corruption.Additive("gaussian").apply(ds.x_train, 0.8, seed), dtype=np.float64)
            out = predict.ntk_predict(arch, x, np.eye(10)[ds.y_train], xt.astype(np.float64), diag_reg=1e-6)
            ntk_acc.append(float(np.mean(np.asarray(out).argmax(1) == yt)))
        noise, xtr = corruption.Additive("gaussian"), ds.x_train.astype(np.float64)
        ridge = theory.meanfield_ridge(arch, noise, 0.8, xtr, 1e-6)  # the relative diag_reg, made absolute
        mf = theory.meanfield_predict(arch, noise, 0.8, xtr, ds.y_train, xt.astype(np.float64), ridge=ridge,
                                      num_classes=10)
    rule = prototype.predict(xt, ds.x_train, ds.y_train, num_classes=10)
    acc = rec["accuracy"]
    assert acc["ntk"] == pytest.approx(ntk_acc, abs=1e-12)
    assert acc["meanfield"] == [pytest.approx(float(np.mean(mf.argmax(1) == yt)))]
    assert acc["rule_leading"] == [pytest.approx(float(np.mean(rule == yt)))]
    assert rec["agreement"]["meanfield~rule_leading"] == [pytest.approx(float(np.mean(mf.argmax(1) == rule)))]
    assert len(acc["network"]) == 2 and all(0.0 <= a <= 1.0 for a in acc["network"])
    assert rec["signs"]["activation"] == "tanh" and rec["signs"]["ok"] is True


def _fake_record(act, p, acc):
    names = heavy_corruption.PREDICTORS
    return {"point": {"activation": act, "p": p},
            "metrics": {"accuracy": {n: [acc + 0.01 * i, acc + 0.03 * i] for i, n in enumerate(names)},
                        "agreement": {"meanfield~rule_leading": [acc], "network~ntk": [0.5, 0.7]},
                        "signs": {"activation": act, "depth": 3, "W_std": 1.0, "b_std": 0.0, "mu": 0.0, "mu2": 1.0,
                                  "T_star": 0.5 if act == "erf" else 0.2, "Delta": 1.0, "ok": True}}}


def test_tables_and_figure_from_records():
    recs = [_fake_record(a, p, acc) for a, acc0 in (("erf", 0.6), ("gelu", 0.4)) for p, acc in ((0.9, acc0), (1.0, 0.1))]
    params = study.Params(activations=("erf", "gelu"), ps=(0.9, 1.0))
    t = study.tables(params, recs)
    header, rows = t["accuracy"]
    assert header == study.ACCURACY_HEADER and len(rows) == 4 * len(heavy_corruption.PREDICTORS)
    ntk = [r for r in rows if r[0] == "erf" and r[1] == 0.9 and r[2] == "ntk"][0]
    assert ntk[3:] == [pytest.approx(0.62), pytest.approx(np.std([0.61, 0.63], ddof=1)), 2]
    assert t["signs"][0] == study.SIGNS_HEADER
    assert t["signs"][1] == [["erf", 3, 1.0, 0.0, 0.0, 1.0, 0.5, 1.0, True], ["gelu", 3, 1.0, 0.0, 0.0, 1.0, 0.2, 1.0, True]]
    agree = [r for r in t["agreement"][1] if r[2] == "meanfield~rule_leading"]
    assert [(r[0], r[1], r[3]) for r in agree] == [("erf", 0.9, 0.6), ("erf", 1.0, 0.1), ("gelu", 0.9, 0.4), ("gelu", 1.0, 0.1)]
    figs = study.figures(params, recs)
    ax = figs["accuracy_vs_p"].axes[0]
    styles = {line.get_label(): line.get_linestyle() for line in ax.lines}
    assert styles == {"erf (network)": "-", "erf (NTK)": "--", "GELU (network)": "-", "GELU (NTK)": "--",
                      "leading-order rule (clean means)": ":", "chance": "--"}
    p, m = ax.lines[1].get_data()  # erf (ntk)
    assert list(p) == [0.9, 1.0] and list(m) == pytest.approx([0.62, 0.12])
    agree_lines = figs["meanfield_rule_agreement"].axes[0].lines
    assert len(agree_lines) == 2 and [list(line.get_xdata()) for line in agree_lines] == [[0.9], [0.9]]  # p = 1 left out
    import matplotlib.pyplot as plt

    plt.close("all")


def test_single_valued_agreement_has_an_empty_std_and_no_band():
    # mean-field and the leading-order rule are noise-free: their agreement is one number per point
    recs = [_fake_record(a, p, acc) for a, acc0 in (("erf", 0.6), ("gelu", 0.4)) for p, acc in ((0.9, acc0), (0.95, 0.3))]
    params = study.Params(activations=("erf", "gelu"), ps=(0.9, 0.95))
    t = study.tables(params, recs)
    agree = [r for r in t["agreement"][1] if r[2] == "meanfield~rule_leading"]
    assert agree and all(r[4] == "" and r[5] == 1 for r in agree)
    pair = [r for r in t["agreement"][1] if r[2] == "network~ntk"]
    assert all(r[4] == pytest.approx(np.std([0.5, 0.7], ddof=1)) and r[5] == 2 for r in pair)
    figs = study.figures(params, recs)
    fig = figs["meanfield_rule_agreement"]
    assert not fig.axes[0].collections
    assert "agreement" in fig.axes[0].get_ylabel() and "accuracy" not in fig.axes[0].get_ylabel()
    assert [t.get_text() for t in fig.texts] == ["no band: every point is a single value (n = 1)"]
    note = " ".join(figs["accuracy_vs_p"].texts[0].get_text().split())
    assert note == "band around the solid (network) lines: ±1 std over K = 2 noisy training sets (ddof = 1)"
    import matplotlib.pyplot as plt

    plt.close("all")

def _doc(**quick):
    return {"study": "activations", "quick": {"dataset": "digits", "n_train": 200, "batch_size": 50, **quick}, "full": {}}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"activations": ["erf", "nope"]}, r"activations: unknown activation 'nope'"),
        ({"activations": ["erf", "erf"]}, r"activations must be a non-empty list of distinct names"),
        ({"activations": []}, r"activations must be a non-empty list"),
        ({"noise": "pepper"}, r"noise must be one of"),
        ({"ps": [0.9, 1.2]}, r"ps must lie in \[0, 1\]"),
        ({"k": 0}, r"k must be >= 1"),
        ({"dataset": "cifar"}, r"dataset must be one of"),
        ({"n_test": -1}, r"n_test must be >= 0, got -1"),
        ({"epochs": 0}, r"epochs must be >= 1, got 0"),
        ({"learning_rate": 0.0}, r"learning_rate must be a finite number > 0, got 0.0"),
        ({"batch_size": 500}, r"batch_size \(500\) must not exceed n_train \(200\)"),
        ({"width": 1.5}, r"width: expected an integer"),
    ],
)
def test_bad_params_are_refused_naming_the_key(bad, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_doc(**bad), "quick")
