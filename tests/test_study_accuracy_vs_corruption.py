"""The accuracy_vs_corruption study and the online-training helpers it shares with ptrain_ptest."""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import corruption, data, train
from nwcorrupt.experiments import runner
from nwcorrupt.experiments.schema import ConfigError, build_params, load_config
from nwcorrupt.experiments.studies import accuracy_vs_corruption as avc
from nwcorrupt.experiments.studies import online_training as ot

CONFIG = Path(__file__).resolve().parents[1] / "nwcorrupt" / "experiments" / "configs" / "accuracy_vs_corruption.toml"
SMALL = dict(datasets=("digits",), n_train=100, n_test=60, depth=2, width=16, epochs=2, batch_size=25, repeats=2)
U01 = corruption.Replacement("uniform", low=0.0, high=1.0)


def _digits(n_train=100, n_test=60):
    ds = data.load("digits", n_train=n_train, seed=0, normalize="none")
    return ds.replace(x_test=ds.x_test[:n_test], y_test=ds.y_test[:n_test])


def test_record_equals_a_recomputation_with_the_library_on_the_same_seeds(x64):
    params = avc.Params(**SMALL, ps=(0.6,))
    rec = avc.run_point(params, {"dataset": "digits", "p": 0.6})
    ds = _digits()
    noisy = np.asarray(U01.apply(ds.x_train, 0.6, params.seed, epoch=0))
    x_eval = np.concatenate([ds.x_test, ds.x_train, noisy])
    cfg = ot.train_config(params, 10)
    for r in range(params.repeats):
        z = train.train_member(cfg, ds.x_train, ds.y_train, x_eval, k=r, m=0,
                               corrupt=corruption.Online(U01, 0.6, params.seed)).test_logits
        t, n = ds.n_test, ds.n_train
        assert rec["accuracy"]["test_clean"][r] == pytest.approx(np.mean(z[:t].argmax(-1) == ds.y_test), abs=1e-12)
        assert rec["accuracy"]["train_clean"][r] == pytest.approx(np.mean(z[t:t + n].argmax(-1) == ds.y_train), abs=1e-12)
        assert rec["accuracy"]["train_corrupted"][r] == pytest.approx(np.mean(z[t + n:].argmax(-1) == ds.y_train), abs=1e-12)
    assert rec["noise_seeds"] == [0, 1] and rec["chance"] == 0.1
    assert (rec["n_train"], rec["n_test"]) == (100, 60)


def test_limits_clean_training_learns_and_pure_noise_stays_at_chance():
    params = avc.Params(**{**SMALL, "n_train": 200, "batch_size": 20, "epochs": 8, "learning_rate": 1e-2, "n_test": 200},
                        ps=(0.0, 1.0))
    clean = avc.run_point(params, {"dataset": "digits", "p": 0.0})
    noise = avc.run_point(params, {"dataset": "digits", "p": 1.0})
    assert min(clean["accuracy"]["test_clean"]) > 0.6  # 8 epochs of Adam on clean 8x8 digits
    # at p = 0 the "corrupted" copy is the clean set: both training accuracies coincide exactly
    assert clean["accuracy"]["train_corrupted"] == clean["accuracy"]["train_clean"]
    # at p = 1 the inputs carry no label information: chance 0.1 ± 4 binomial std (n = 200 test, 200 train)
    for split, n in (("test_clean", 200), ("train_clean", 200), ("train_corrupted", 200)):
        assert max(abs(a - 0.1) for a in noise["accuracy"][split]) < 4 * math.sqrt(0.09 / n) + 0.02


def _record(dataset, p, test, train_clean, train_noisy, chance=0.1):
    return {"point": {"dataset": dataset, "p": p},
            "metrics": {"accuracy": {"test_clean": test, "train_clean": train_clean, "train_corrupted": train_noisy},
                        "chance": chance}}


def test_table_rows_are_mean_and_sample_std_per_split():
    params = avc.Params(**SMALL, ps=(0.0, 0.5))
    recs = [_record("digits", 0.0, [0.9, 0.8, 0.7], [1.0, 1.0, 0.97], [1.0, 1.0, 0.97]),
            _record("digits", 0.5, [0.5, 0.3], [0.6, 0.6], [0.4, 0.2], chance=0.2)]
    header, rows = avc.tables(params, recs)["accuracy"]
    assert header == ["dataset", "p", "split", "mean", "std", "n", "chance"]
    assert [r[:3] for r in rows] == [["digits", 0.0, s] for s in avc.SPLITS] + [["digits", 0.5, s] for s in avc.SPLITS]
    assert rows[0][3:] == pytest.approx([0.8, 0.1, 3, 0.1])
    assert rows[5][3:] == pytest.approx([0.3, math.sqrt(0.02), 2, 0.2])


def test_figure_has_one_panel_per_dataset_with_the_table_means_and_the_chance_line():
    params = avc.Params(**{**SMALL, "datasets": ("digits", "mnist")}, ps=(0.0, 0.5))
    recs = [_record(d, p, [a, a + 0.02], [a + 0.1, a + 0.1], [a, a]) for d in ("digits", "mnist")
            for p, a in ((0.0, 0.9), (0.5, 0.4))]
    fig = avc.figures(params, recs)["accuracy_vs_p"]
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["digits", "MNIST"]
    lines = {ln.get_label(): ln for ln in axes[1].get_lines()}
    np.testing.assert_allclose(lines["clean test set"].get_ydata(), [0.91, 0.41])
    np.testing.assert_allclose(lines["clean training set"].get_ydata(), [1.0, 0.5])
    np.testing.assert_allclose(lines["chance"].get_ydata(), [0.1, 0.1])


def test_one_network_gives_no_std_and_no_band_two_networks_give_both():
    # n = 1: no sample std (an empty cell, not 0.0000) and no band; n = 2: std, band, and R in the caption
    params = avc.Params(**SMALL, ps=(0.0, 0.5))
    recs = [_record("digits", 0.0, [0.9], [1.0], [1.0]), _record("digits", 0.5, [0.5], [0.6], [0.4])]
    header, rows = avc.tables(params, recs)["accuracy"]
    assert all(r[4] == "" and r[5] == 1 for r in rows)
    fig = avc.figures(params, recs)["accuracy_vs_p"]
    assert not fig.axes[0].collections
    assert [t.get_text() for t in fig.texts if t is not fig._suptitle] == ["no band: every point is a single value (n = 1)"]
    recs = [_record("digits", 0.0, [0.9, 0.7], [1.0, 1.0], [1.0, 0.9]), _record("digits", 0.5, [0.5, 0.3], [0.6, 0.6], [0.4, 0.2])]
    header, rows = avc.tables(params, recs)["accuracy"]
    assert rows[0][4] == pytest.approx(math.sqrt(0.02)) and rows[0][5] == 2
    fig = avc.figures(params, recs)["accuracy_vs_p"]
    assert len(fig.axes[0].collections) == len(avc.SPLITS)
    (note,) = [t.get_text() for t in fig.texts if t is not fig._suptitle]
    assert " ".join(note.split()) == "band: ±1 std over R = 2 trained networks (ddof = 1)"
    assert fig.axes[0].get_ylabel() == "accuracy (fraction correct)"
    assert fig.axes[0].get_xlabel() == "training-set corruption level p"
    import matplotlib.pyplot as plt

    plt.close("all")

@pytest.mark.parametrize(
    "table, key",
    [
        ({"ps": [0.0, 1.5]}, "ps"),
        ({"datasets": ["mnist", "nope"]}, "datasets"),
        ({"datasets": ["gaussian_mixture"]}, "datasets"),
        ({"datasets": ["mnist", "mnist"]}, "datasets"),
        ({"datasets": []}, "datasets"),
        ({"repeats": 0}, "repeats"),
        ({"n_train": 100, "batch_size": 200}, "batch_size"),
        ({"noise": "salt"}, "noises"),
        ({"noise": "replacement:marginal"}, "marginal"),
        ({"parameterization": "mup"}, "parameterization"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"epochs": "3"}, "epochs"),
        ({"rep": 3}, "rep"),
    ],
)
def test_bad_parameters_are_refused_naming_the_key(table, key):
    with pytest.raises(ConfigError, match=key):
        build_params(avc.Params, table, "[quick]")


def test_full_config_lists_kmnist_and_fails_before_any_work_when_it_is_missing(tmp_path, monkeypatch):
    monkeypatch.delenv("NWCORRUPT_KMNIST_DIR", raising=False)
    cfg = load_config(CONFIG, "full")
    assert cfg.params.datasets == ("mnist", "fashion_mnist", "kmnist")
    assert cfg.params.repeats == 100 and cfg.params.n_train == 0 and len(cfg.params.ps) == 11
    with pytest.raises(ConfigError, match="NWCORRUPT_KMNIST_DIR"):
        runner.run(cfg, tmp_path / "out", quiet=True)
    assert not (tmp_path / "out" / "config.json").exists()


