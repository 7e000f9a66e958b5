"""The ptrain_ptest study: fixed test noise, accuracy matrix, AUC over p_test, heat map."""

from __future__ import annotations

import math

import numpy as np
import pytest

from nwcorrupt import corruption, data, train
from nwcorrupt.experiments.schema import ConfigError, build_params
from nwcorrupt.experiments.studies import online_training as ot
from nwcorrupt.experiments.studies import ptrain_ptest as pp

SMALL = dict(dataset="digits", n_train=100, n_test=40, depth=2, width=16, epochs=2, batch_size=25, repeats=2)
U01 = corruption.Replacement("uniform", low=0.0, high=1.0)


def _digits():
    ds = data.load("digits", n_train=100, seed=0, normalize="none")
    return ds.replace(x_test=ds.x_test[:40], y_test=ds.y_test[:40])


def test_corrupted_test_sets_use_the_test_stream_with_one_fixed_seed_and_nested_masks():
    params = pp.Params(**SMALL, p_train=(0.0, 0.5), p_test=(0.0, 0.3, 0.7, 1.0), test_seed=7)
    x = _digits().x_test
    stacked = pp.corrupted_test_sets(params, x)
    blocks = stacked.reshape(4, *x.shape)
    for j, q in enumerate(params.p_test):
        np.testing.assert_array_equal(blocks[j], np.asarray(U01.apply(x, q, 7, stream=corruption.TEST_STREAM)))
    np.testing.assert_array_equal(blocks[0], x)  # p_test = 0: the clean test set
    assert not np.array_equal(blocks[2], np.asarray(U01.apply(x, 0.7, 7, stream=corruption.TRAIN_STREAM)))
    # one seed for all levels: a pixel replaced at 0.3 is replaced at 0.7 by the same value
    changed = blocks[1] != x
    np.testing.assert_array_equal(blocks[2][changed], blocks[1][changed])
    assert abs(np.mean(blocks[3] != x) - 1.0) < 0.02  # (a replaced pixel may equal its old value only by chance)
    # the same array whichever p_train asks for it (a pure function of noise, p_test, test_seed, x)
    other = pp.Params(**{**SMALL, "repeats": 3, "seed": 4}, p_train=(0.9,), p_test=(0.0, 0.3, 0.7, 1.0), test_seed=7)
    np.testing.assert_array_equal(pp.corrupted_test_sets(other, x), stacked)


def test_record_equals_a_recomputation_with_the_library_on_the_same_seeds(x64):
    params = pp.Params(**SMALL, p_train=(0.5,), p_test=(0.0, 0.5, 0.9), test_seed=3)
    rec = pp.run_point(params, {"p_train": 0.5})
    ds = _digits()
    cfg = ot.train_config(params, 10)
    acc = np.asarray(rec["accuracy"])
    assert acc.shape == (2, 3)
    for r in range(2):
        z = train.train_member(cfg, ds.x_train, ds.y_train, ds.x_test, k=r, m=0,
                               corrupt=corruption.Online(U01, 0.5, params.seed))
        for j, q in enumerate(params.p_test):
            xq = np.asarray(U01.apply(ds.x_test, q, 3, stream=corruption.TEST_STREAM))
            logits = np.asarray(_forward(cfg, z.params, xq))
            assert acc[r, j] == pytest.approx(np.mean(logits.argmax(-1) == ds.y_test), abs=1e-12)
        a = acc[r]
        assert rec["auc"][r] == pytest.approx(0.5 * (a[0] + a[1]) / 2 + 0.4 * (a[1] + a[2]) / 2, abs=1e-12)
    assert rec["p_test"] == [0.0, 0.5, 0.9] and rec["test_seed"] == 3 and rec["noise_seeds"] == [0, 1]


def _forward(cfg, params, x):
    from nwcorrupt import mlp

    return mlp.apply(cfg.arch, params, x, width_scale=cfg.width_scale)


def test_auc_of_known_curves():
    grid = [0.0, 0.25, 0.5, 0.75, 1.0]
    lin = [1.0 - q for q in grid]
    const = [0.1] * 5
    assert pp.auc_per_network(grid, [lin, const]) == pytest.approx([0.5, 0.1])
    # a convex curve: the trapezoid over-estimates ∫(1 − p)² = 1/3 by h²/6 = 1/96
    assert pp.auc_per_network(grid, [[(1 - q) ** 2 for q in grid]])[0] == pytest.approx(1 / 3 + 1 / 96)


def _record(pt, acc, p_test=(0.0, 0.5, 1.0)):
    acc = np.asarray(acc, dtype=float)
    return {"point": {"p_train": pt},
            "metrics": {"p_test": list(p_test), "accuracy": acc.tolist(), "auc": pp.auc_per_network(p_test, acc),
                        "chance": 0.1}}


RECS = [_record(0.0, [[0.9, 0.5, 0.1], [0.7, 0.3, 0.1]]), _record(0.5, [[0.8, 0.7, 0.1], [0.8, 0.5, 0.1]])]


def test_tables_hold_the_matrix_and_the_auc_with_sample_std():
    params = pp.Params(**SMALL, p_train=(0.0, 0.5), p_test=(0.0, 0.5, 1.0))
    t = pp.tables(params, RECS)
    header, rows = t["accuracy"]
    assert header == ["p_train", "p_test", "mean", "std", "n"]
    assert [r[:2] for r in rows] == [[a, b] for a in (0.0, 0.5) for b in (0.0, 0.5, 1.0)]
    assert rows[0][2:] == pytest.approx([0.8, math.sqrt(0.02), 2])
    assert rows[4][2:] == pytest.approx([0.6, math.sqrt(0.02), 2])
    header, auc = t["auc"]
    assert header == ["p_train", "auc_mean", "auc_std", "n", "auc_chance"]
    # AUCs of the two networks at p_train = 0: 0.5, 0.35 (trapezoids of width 0.5)
    assert auc[0] == pytest.approx([0.0, 0.425, math.sqrt(0.01125), 2, 0.1])


def test_one_network_per_level_gives_empty_std_cells_and_two_give_a_std():
    params = pp.Params(**SMALL, p_train=(0.0, 0.5), p_test=(0.0, 0.5, 1.0))
    one = [_record(0.0, [[0.9, 0.5, 0.1]]), _record(0.5, [[0.8, 0.7, 0.1]])]
    t = pp.tables(params, one)
    assert all(r[3] == "" and r[4] == 1 for r in t["accuracy"][1])
    assert all(r[2] == "" and r[3] == 1 for r in t["auc"][1])
    figs = pp.figures(params, one)
    assert not figs["auc_vs_ptrain"].axes[0].collections  # no band
    assert "mean over R = 1 networks" in figs["accuracy_heatmap"].axes[1].get_ylabel()
    t = pp.tables(params, RECS)
    assert t["auc"][1][0][2] == pytest.approx(math.sqrt(0.01125)) and t["auc"][1][0][3] == 2
    fig = pp.figures(params, RECS)["auc_vs_ptrain"]
    assert len(fig.axes[0].collections) == 1
    assert any("±1 std over R = 2 trained networks" in t.get_text() for t in fig.texts)
    import matplotlib.pyplot as plt

    plt.close("all")

def test_heat_map_cells_are_the_table_means_and_it_has_a_colour_bar():
    params = pp.Params(**SMALL, p_train=(0.0, 0.5), p_test=(0.0, 0.5, 1.0))
    figs = pp.figures(params, RECS)
    heat = figs["accuracy_heatmap"]
    assert len(heat.axes) == 2  # the map and its colour bar
    mesh = heat.axes[0].collections[0]
    np.testing.assert_allclose(np.asarray(mesh.get_array()).reshape(2, 3), [[0.8, 0.4, 0.1], [0.8, 0.6, 0.1]])
    line = figs["auc_vs_ptrain"].axes[0].get_lines()[0]
    np.testing.assert_allclose(line.get_xdata(), [0.0, 0.5])
    np.testing.assert_allclose(line.get_ydata(), [0.425, 0.525])


def test_default_grids_are_the_study_recipe():
    params = pp.Params()
    assert len(params.p_train) == 21 and params.p_train[1] == 0.05 and params.p_train[-1] == 1.0
    assert len(params.p_test) == 81 and params.p_test[1] == 0.0125 and params.p_test[-1] == 1.0
    assert params.repeats == 20 and params.n_train == 0 and params.epochs == 20 and params.width == 128


@pytest.mark.parametrize(
    "table, key",
    [
        ({"p_train": [0.0, 1.2]}, "p_train"),
        ({"p_test": [0.0, 0.5, 0.5]}, "p_test"),
        ({"p_test": [0.5]}, "p_test"),
        ({"p_test": [-0.1, 0.5]}, "p_test"),
        ({"test_seed": -1}, "test_seed"),
        ({"dataset": "gaussian_mixture"}, "dataset"),
        ({"repeats": 0}, "repeats"),
        ({"width": 0}, "width"),
    ],
)
def test_bad_parameters_are_refused_naming_the_key(table, key):
    with pytest.raises(ConfigError, match=key):
        build_params(pp.Params, table, "[quick]")
