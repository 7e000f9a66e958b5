"""The finite_vs_infinite study: records against library recomputations, tables and figures from records."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nwcorrupt.arch import MLP
from nwcorrupt import metrics, precision, predict, train
from nwcorrupt.experiments.schema import ConfigError, parse_config
from nwcorrupt.experiments.studies import common
from nwcorrupt.experiments.studies import finite_vs_infinite as fi

TINY = dict(dataset="digits", n_train=200, n_test=150, noises=("replacement",), ps=(0.8,), widths=(8, 32),
            epochs=2, batch_size=50, learning_rate=1e-3, k=2, m=2)


@pytest.fixture(scope="module")
def run():
    params = fi.Params(**TINY)
    point = {"noise": "replacement", "p": 0.8}
    return params, point, fi.run_point(params, point)


def test_record_equals_library_recomputation(run):
    params, point, rec = run
    assert rec["widths"] == [8, 32] and rec["noise_seeds"] == [0, 1]
    for q in fi.PER_WIDTH:
        assert np.asarray(rec[q]).shape == (2, 2), q  # (W, K)
    ds = fi._dataset(params)
    model = common.noise_model("replacement", "example", ds.x_train)
    noisy = np.stack([np.asarray(model.apply(ds.x_train, 0.8, s), dtype=np.float32) for s in (0, 1)])
    onehot = np.eye(10)[ds.y_train]
    arch = MLP(3, "erf", W_std=1.0, b_std=0.0)  # the kernels: NTK parameterisation
    with precision.x64():
        ntk = [np.asarray(predict.ntk_predict(arch, noisy[k].astype(np.float64), onehot, ds.x_test.astype(np.float64),
                                              diag_reg=1e-6)) for k in range(2)]
        nngp = [np.asarray(predict.nngp_predict(arch, noisy[k].astype(np.float64), onehot,
                                                ds.x_test.astype(np.float64), diag_reg=1e-6)) for k in range(2)]
    assert rec["ntk_accuracy"] == pytest.approx([metrics.accuracy(f, ds.y_test) for f in ntk], abs=1e-12)
    assert rec["nngp_accuracy"] == pytest.approx([metrics.accuracy(f, ds.y_test) for f in nngp], abs=1e-12)
    assert rec["ntk~nngp"] == pytest.approx([metrics.agreement(a, b) for a, b in zip(ntk, nngp)], abs=1e-12)
    # width 32, retrained with the same recipe and seeds
    net_arch = MLP(3, "erf", W_std=1.0, b_std=0.0, parameterization="standard")  # the networks: the study's
    cfg = train.TrainConfig(arch=net_arch, width=32, num_classes=10, optimizer=train.Optimizer("adam", 1e-3),
                            loss="mse", batch_size=50, epochs=2, drop_last=False, seed=0)
    net = np.asarray(train.train_ensemble(cfg, noisy, ds.y_train, ds.x_test, num_inits=2, quiet=True).test_logits).mean(1)
    assert rec["accuracy"][1] == pytest.approx([float(np.mean(net[k].argmax(-1) == ds.y_test)) for k in range(2)])
    assert rec["agreement_ntk"][1] == pytest.approx([float(np.mean(net[k].argmax(-1) == ntk[k].argmax(-1))) for k in range(2)])
    dist = [np.linalg.norm(net[k] - ntk[k]) / np.linalg.norm(ntk[k]) for k in range(2)]
    assert rec["rel_distance_ntk"][1] == pytest.approx(dist, rel=1e-5)


def _record(noise, p, acc, ag_ntk, ag_nngp, dist, widths=(64, 256)):
    return {"point": {"noise": noise, "p": p}, "metrics": {
        "widths": list(widths), "accuracy": acc, "agreement_ntk": ag_ntk, "agreement_nngp": ag_nngp,
        "rel_distance_ntk": dist, "ntk_accuracy": [0.8, 0.9], "nngp_accuracy": [0.7, 0.7], "ntk~nngp": [0.95, 0.85],
        "noise_seeds": [0, 1]}}


def test_tables_and_figures_from_records_alone():
    params = fi.Params(widths=(64, 256), ps=(0.9, 0.97), k=2)
    records = [
        _record("additive", 0.9, [[0.5, 0.7], [0.6, 0.6]], [[0.6, 0.8], [0.9, 0.95]], [[0.5, 0.5], [0.7, 0.9]],
                [[1.2, 1.0], [0.5, 0.3]]),
        _record("additive", 0.97, [[0.2, 0.2], [0.3, 0.1]], [[0.4, 0.4], [0.6, 0.8]], [[0.3, 0.5], [0.6, 0.6]],
                [[2.0, 2.2], [1.0, 0.8]]),
    ]
    t = fi.tables(params, records)
    header, rows = t["width_comparison"]
    col = {h: i for i, h in enumerate(header)}
    first = rows[0]
    assert first[:3] == ["additive", 0.9, 64]
    assert first[col["accuracy_mean"]] == pytest.approx(0.6) and first[col["accuracy_std"]] == pytest.approx(math.sqrt(0.02))
    assert rows[1][col["agreement_ntk_mean"]] == pytest.approx(0.925)
    assert rows[1][col["rel_distance_ntk_std"]] == pytest.approx(math.sqrt(0.02))
    acc = t["accuracy"][1]
    assert [r[2] for r in acc[:4]] == ["width 64", "width 256", "ntk", "nngp"]
    assert acc[2][3:5] == [pytest.approx(0.85), pytest.approx(math.sqrt(0.005))]
    assert t["kernels"][1][0][6] == pytest.approx(0.9)  # ntk~nngp mean

    figs = fi.figures(params, records)
    axes = figs["agreement_vs_width"].axes
    assert len(axes) == 3 and axes[0].get_xscale() == "log"
    lines = [ln for ln in axes[0].lines if ln.get_label() == "p = 0.97"]
    np.testing.assert_allclose(lines[0].get_xdata(), [64, 256])
    np.testing.assert_allclose(lines[0].get_ydata(), [0.4, 0.7])  # agreement with the NTK, mean over K
    dist_line = [ln for ln in axes[2].lines if ln.get_label() == "p = 0.9"][0]
    np.testing.assert_allclose(dist_line.get_ydata(), [1.1, 0.4])
    acc_lines = {ln.get_label(): ln for ln in figs["accuracy_vs_p"].axes[0].lines}
    np.testing.assert_allclose(acc_lines["NTK"].get_ydata(), [0.85, 0.85])
    np.testing.assert_allclose(acc_lines["width 256"].get_ydata(), [0.6, 0.2])


def test_one_noisy_set_gives_empty_std_cells_and_no_bands():
    params = fi.Params(widths=(64, 256), ps=(0.9,), k=1)
    rec = {"point": {"noise": "additive", "p": 0.9}, "metrics": {
        "widths": [64, 256], "accuracy": [[0.5], [0.6]], "agreement_ntk": [[0.7], [0.8]],
        "agreement_nngp": [[0.6], [0.7]], "rel_distance_ntk": [[1.0], [0.5]], "ntk_accuracy": [0.8],
        "nngp_accuracy": [0.7], "ntk~nngp": [0.9], "noise_seeds": [0]}}
    t = fi.tables(params, [rec])
    t.pop("training_fit", None)  # the fit table reports a mean and a minimum, no std
    for header, rows in t.values():
        stds = [i for i, h in enumerate(header) if h == "std" or h.endswith("_std")]
        assert stds and all(r[i] == "" for r in rows for i in stds) and all(r[-1] == 1 for r in rows)
    figs = fi.figures(params, [rec])
    assert not any(ax.collections for fig in figs.values() for ax in fig.axes)
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(
    "change,match",
    [
        (dict(widths=()), "widths must be a non-empty list"),
        (dict(widths=(0, 8)), "widths must be a non-empty list of positive"),
        (dict(widths=(8, 8)), "widths must be distinct"),
        (dict(k=0), "k must be >= 1"),
        (dict(batch_size=300), r"batch_size \(300\) must not exceed n_train"),
        (dict(noises=("gaussian",)), "noises must be a non-empty list"),
        (dict(n_test=-1), "n_test must be >= 0, got -1"),
    ],
)
def test_bad_params_name_the_key(change, match):
    with pytest.raises(ValueError, match=match):
        fi.Params(**{**TINY, **change})
    table = {k: list(v) if isinstance(v, tuple) else v for k, v in {**TINY, **change}.items()}
    with pytest.raises(ConfigError, match=match):
        parse_config({"study": "finite_vs_infinite", "quick": table, "full": {}}, "quick")
