"""The predictive-power study: its baselines against direct computations, its label noise, its errors."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt import labels as L
from nwcorrupt import precision, predict
from nwcorrupt.arch import MLP
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import predictive_power as S

SMALL = S.Params(datasets=("digits",), n_train=300, n_test=200, label_noises=("symmetric:0", "instance:0.6"),
                 inputs=("clean",), hidden=2, width=48, epochs=3, batch_size=50, repeats=1, random_inits=1,
                 ms=(2, 10), subsets=2)


@pytest.fixture(scope="module")
def clean_point():
    return S.run_point(SMALL, {"dataset": "digits", "label_noise": "symmetric:0", "inputs": "clean"})


def _probe(metrics, model, layer, m):
    (hit,) = [p for p in metrics["probes"] if (p["model"], p["layer"], p["m"]) == (model, layer, m)]
    return hit["accuracy"]


def test_baselines_equal_direct_computations(clean_point):
    ds, _, _ = S.training_set(SMALL, {"dataset": "digits", "label_noise": "symmetric:0", "inputs": "clean"})
    from nwcorrupt import probe

    rows = probe.clean_subsets(ds.y_train, 10, num_classes=10, num_subsets=2, seed=SMALL.seed)
    x = ds.x_train.astype(np.float64)
    for s, r in enumerate(rows):
        # raw inputs: ridge regression solved here in the primal, λ relative to the mean squared norm
        lam = SMALL.probe_ridge * np.mean(np.sum(x[r] ** 2, 1))
        w = np.linalg.solve(x[r].T @ x[r] + lam * np.eye(x.shape[1]), x[r].T @ np.eye(10)[ds.y_train[r]])
        direct = np.mean((ds.x_test @ w).argmax(1) == ds.y_test)
        assert _probe(clean_point, "raw", 0, 10)[s] == pytest.approx(direct)
        # NNGP of hidden layer 1: the NNGP posterior mean of the depth-2 network (no bias: the same regression)
        with precision.x64():
            pred = predict.nngp_predict(MLP(2, "relu", W_std=1.0, b_std=0.0), x[r], np.eye(10)[ds.y_train[r]],
                                        ds.x_test.astype(np.float64), diag_reg=SMALL.probe_ridge)
        assert _probe(clean_point, "nngp", 1, 10)[s] == pytest.approx(np.mean(np.asarray(pred).argmax(1) == ds.y_test))


def test_a_clean_point_records_every_model_layer_and_m(clean_point):
    m = clean_point
    assert m["flip_fraction"] == 0.0 and m["train_accuracy_noisy"] == [None]
    keys = {(p["model"], p["layer"], p["m"]) for p in m["probes"]}
    for mm in SMALL.ms:
        assert {("trained", l, mm) for l in (1, 2, 3)} <= keys and {("random", l, mm) for l in (1, 2, 3)} <= keys
        assert ("raw", 0, mm) in keys and {(g, l, mm) for g in ("nngp", "ntk") for l in (1, 2)} <= keys
    assert all(len(p["accuracy"]) == SMALL.subsets * (SMALL.random_inits if p["model"] == "random" else 1)
               for p in m["probes"])
    assert all(0.0 <= a <= 1.0 for p in m["probes"] for a in p["accuracy"])
    # the probes see clean labels: with 10 examples per class the raw-input probe is far above chance
    assert np.mean(_probe(m, "raw", 0, 10)) > 0.6


def test_instance_noise_relabels_by_ink_decile():
    ds, noisy, clean = S.training_set(SMALL, {"dataset": "digits", "label_noise": "instance:0.6", "inputs": "clean"})
    g = S.ink_classes(ds.x_train, ds.x_train, 10)
    assert np.all(np.bincount(g, minlength=10) >= 25)  # equal-count bins of 300 images
    relabelled = ~clean
    assert np.all(noisy.y_train[relabelled] == g[relabelled])
    assert 0.4 < L.flip_fraction(ds.y_train, noisy.y_train) < 0.65
    means = ds.x_train.mean(1)
    assert np.all(np.diff([means[g == k].mean() for k in range(10)]) > 0)  # bins ordered by intensity


def test_composed_point_corrupts_the_inputs_and_the_labels():
    params = S.Params(datasets=("digits",), n_train=300, n_test=200, label_noises=("symmetric:0",),
                      inputs=("clean", "additive@0.5"), composed_label_noises=("symmetric:0.5",), ms=(2,))
    pts = S.points(params)
    assert pts[-1] == {"dataset": "digits", "label_noise": "symmetric:0.5", "inputs": "additive@0.5"}
    ds, noisy, _ = S.training_set(params, pts[-1])
    assert not np.allclose(noisy.x_train, ds.x_train) and np.array_equal(noisy.x_test, ds.x_test)
    assert L.flip_fraction(ds.y_train, noisy.y_train) > 0.3


def test_bad_parameters_raise_before_any_work():
    with pytest.raises(ValueError, match="must read 'kind:r'"):
        S.Params(label_noises=("symmetric",))
    with pytest.raises(ValueError, match="label noise kind must be one of"):
        S.Params(label_noises=("asymmetric:0.2",))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        S.Params(label_noises=("pair:1.5",))
    with pytest.raises(ValueError, match="inputs must contain 'clean'"):
        S.Params(inputs=("replacement@0.9",))
    with pytest.raises(ValueError, match="inputs must be 'clean' or"):
        S.Params(inputs=("clean", "replacement"))
    with pytest.raises(ConfigError, match="exceeds the clean pool of digits"):
        S.preflight(S.Params(datasets=("digits",), n_train=300, ms=(1, 40)))
