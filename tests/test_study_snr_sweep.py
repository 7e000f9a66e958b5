"""The SNR sweep study: per-point SNR statistics, log-log slope fits, records vs library recomputation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nwcorrupt import corruption, data, metrics, precision, predict
from nwcorrupt.experiments.schema import ConfigError, parse_config
from nwcorrupt.experiments.studies import snr_sweep
from nwcorrupt.kernels import MLP


def test_logit_statistics_two_sets_closed_form():
    # K = 2 sets with true-class logits a ∓ b: mean a, unbiased variance 2b², SNR a²/(2b²).
    rng = np.random.default_rng(0)
    t, c = 7, 3
    y = rng.integers(0, c, size=t)
    a = rng.uniform(0.5, 2.0, size=t)
    b = rng.uniform(0.1, 1.0, size=t)
    logits = np.full((2, t, c), -5.0)
    logits[0, np.arange(t), y] = a - b
    logits[1, np.arange(t), y] = a + b
    logits[1, 0, (y[0] + 1) % c] = 10.0  # set 1 misclassifies test point 0
    st = snr_sweep.logit_statistics(logits, y)
    expected = a**2 / (2 * b**2)
    assert st["snr_median"] == pytest.approx(float(np.median(expected)), rel=1e-12)
    assert st["snr_mean"] == pytest.approx(float(np.mean(expected)), rel=1e-12)
    assert st["signal"] == pytest.approx(float(np.mean(a**2)), rel=1e-12)
    assert st["variance"] == pytest.approx(float(np.mean(2 * b**2)), rel=1e-12)
    assert st["accuracy"] == [1.0, pytest.approx(1 - 1 / t)]


def test_logit_statistics_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"logits must have shape \(K, T, C\) with T = len\(y_test\) = 4"):
        snr_sweep.logit_statistics(np.zeros((3, 5, 2)), np.zeros(4, dtype=int))
    with pytest.raises(ValueError, match="more than 1 repeats"):
        snr_sweep.logit_statistics(np.ones((1, 4, 2)), np.zeros(4, dtype=int))


def _record(noise, n, d, stats):
    return {"point": {"noise": noise, "n_train": n, "size": int(math.isqrt(d))},
            "metrics": {"n_train": n, "d": d, "nd": n * d, "predictors": stats}}


def _stats(snr, acc=(0.5, 0.7)):
    return {"snr_median": snr, "snr_mean": 2 * snr, "signal": 1.0, "variance": 1 / snr, "accuracy": list(acc)}


def test_fit_slopes_recovers_power_laws_from_records():
    # network: SNR = 3 N^0.8 d^1.2; ntk: SNR = 0.5 (N d)^1 exactly.
    ns, ds = (250, 500, 1000), (784, 1296, 1849)
    recs = [_record("additive", n, d, {"network": _stats(3 * n**0.8 * d**1.2), "ntk": _stats(0.5 * n * d)})
            for n in ns for d in ds]
    rows = snr_sweep.fit_slopes(recs)
    by = {(r["predictor"], r["statistic"], r["fit"], r["fixed"]): r for r in rows}
    ntk = by[("ntk", "median", "N*d", "-")]
    assert ntk["slope"] == pytest.approx(1.0, abs=1e-10) and ntk["stderr"] < 1e-8
    assert ntk["intercept"] == pytest.approx(math.log(0.5), abs=1e-8) and ntk["n_points"] == 9
    # the mean statistic is 2× the median here: same slope, intercept shifted by log 2
    assert by[("ntk", "mean", "N*d", "-")]["intercept"] == pytest.approx(math.log(1.0), abs=1e-8)
    for d in ds:
        r = by[("network", "median", "N", f"d={d}")]
        assert r["slope"] == pytest.approx(0.8, abs=1e-10) and r["n_points"] == 3
    for n in ns:
        assert by[("network", "median", "d", f"N={n}")]["slope"] == pytest.approx(1.2, abs=1e-10)
    # the pooled N·d fit of a law that is not a power of N·d: compare with a direct least-squares fit
    x = np.array([n * d for n in ns for d in ds], dtype=float)
    y = np.array([3 * n**0.8 * d**1.2 for n in ns for d in ds])
    slope, intercept, stderr = metrics.loglog_slope(x, y)
    r = by[("network", "median", "N*d", "-")]
    assert (r["slope"], r["intercept"], r["stderr"]) == pytest.approx((slope, intercept, stderr), rel=1e-12)
    assert 0.8 < slope < 1.2 and stderr > 0.01
    assert len(rows) == 2 * 2 * (1 + 3 + 3)


def test_slopes_table_is_rebuilt_from_records_and_skips_degenerate_fits():
    recs = [_record("replacement", n, 784, {"ntk": _stats(1e-3 * n)}) for n in (100, 200)]
    recs.append(_record("additive", 100, 784, {"ntk": _stats(1.0)}))  # a single point: no fit
    params = snr_sweep.Params(n_trains=(100, 200), sizes=(28,), batch_size=50)
    header, rows = snr_sweep.tables(params, recs)["slopes"]
    assert header == snr_sweep.SLOPES_HEADER
    assert {(r[0], r[3], r[4]) for r in rows} == {("replacement", "N*d", "-"), ("replacement", "N", "d=784")}
    assert all(r[5] == pytest.approx(1.0, abs=1e-12) and math.isnan(r[6]) and r[8] == 2 for r in rows)
    header, pts = snr_sweep.tables(params, recs)["points"]
    assert header == snr_sweep.POINTS_HEADER and len(pts) == 3
    assert pts[0][:5] == ["replacement", 100, 784, 78400, "ntk"]
    assert pts[0][9:] == [pytest.approx(0.6), pytest.approx(math.sqrt(0.02)), 2]


def test_figure_has_one_panel_per_noise_and_slopes_in_legend():
    recs = [_record(noise, n, d, {"network": _stats(2e-4 * n * d), "ntk": _stats(1e-4 * (n * d) ** 0.9)})
            for noise in ("additive", "replacement") for n in (250, 500) for d in (784, 1849)]
    params = snr_sweep.Params(n_trains=(250, 500), sizes=(28, 43), batch_size=50)
    figs = snr_sweep.figures(params, recs)
    fig = figs["snr_vs_nd"]
    assert [ax.get_title() for ax in fig.axes] == ["additive (Gaussian)", "replacement (uniform)"]
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == ["network: slope 1.00 ± 0.00", "NTK: slope 0.90 ± 0.00"]
    xs, ys = fig.axes[0].lines[1].get_data()  # the ntk fitted line
    assert np.allclose(ys, 1e-4 * xs**0.9, rtol=1e-9)
    per_n = figs["snr_vs_n"]
    assert [ax.get_title() for ax in per_n.axes] == ["additive (Gaussian), network", "additive (Gaussian), NTK",
                                                     "replacement (uniform), network", "replacement (uniform), NTK"]
    assert per_n.axes[2].get_position().y0 < per_n.axes[0].get_position().y0  # a 2 × 2 grid: one row per noise
    # two N values per d: a slope without a standard error
    assert [t.get_text() for t in per_n.axes[0].get_legend().get_texts()] == ["d = 784: slope 1.00", "d = 1849: slope 1.00"]
    import matplotlib.pyplot as plt

    plt.close("all")


def test_record_matches_library_recomputation_on_the_same_seeds():
    params = snr_sweep.Params(dataset="digits", noises=("replacement",), p=0.8, n_trains=(100,), sizes=(6,),
                              n_test=40, width=16, epochs=1, batch_size=50, k=3, m=1, networks=False)
    pt = snr_sweep.points(params)[0]
    rec = snr_sweep.run_point(params, pt)
    assert set(rec["predictors"]) == {"ntk"} and rec["d"] == 36 and rec["nd"] == 3600
    assert rec["noise_seeds"] == [0, 1, 2]
    ds = data.load("digits", n_train=100, seed=0, size=(6, 6))
    xt, yt = ds.x_test[:40], ds.y_test[:40]
    arch = MLP(3, "erf")
    z, accs = [], []
    with precision.x64():
        for seed in range(3):
            x = np.asarray(corruption.Replacement("uniform").apply(ds.x_train, 0.8, seed), dtype=np.float64)
            out = np.asarray(predict.ntk_predict(arch, x, np.eye(10)[ds.y_train], xt.astype(np.float64), diag_reg=1e-6))
            z.append(out[np.arange(40), yt])
            accs.append(float(np.mean(out.argmax(1) == yt)))
    z = np.array(z)
    snr = z.mean(0) ** 2 / z.var(0, ddof=1)
    st = rec["predictors"]["ntk"]
    assert st["snr_median"] == pytest.approx(float(np.median(snr)), rel=1e-6)
    assert st["snr_mean"] == pytest.approx(float(np.mean(snr)), rel=1e-6)
    assert st["accuracy"] == pytest.approx(accs, abs=1e-12)


def _doc(**quick):
    return {"study": "snr_sweep", "quick": {"dataset": "digits", "n_trains": [100, 200], "sizes": [8], "batch_size": 50,
                                             **quick}, "full": {}}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"p": 0.0}, r"p must be in \(0, 1\]"),
        ({"k": 1}, r"k must be >= 2 noisy training sets"),
        ({"sizes": [8, 8]}, r"sizes must be a non-empty list of distinct integers >= 1, got \[8, 8\]"),
        ({"n_trains": []}, r"n_trains must be a non-empty list"),
        ({"batch_size": 150}, r"batch_size \(150\) must not exceed the smallest n_trains \(100\)"),
        ({"dataset": "gaussian_mixture"}, "dataset must be an image data set"),
        ({"noises": ["gaussian"]}, "noises must be a non-empty list from"),
        ({"activation": "nope"}, "nope"),
        ({"width": 0}, "width must be >= 1"),
        ({"networks": "yes"}, r"networks: expected true or false"),
    ],
)
def test_bad_params_are_refused_naming_the_key(bad, message):
    with pytest.raises(ConfigError, match=message):
        parse_config(_doc(**bad), "quick")
