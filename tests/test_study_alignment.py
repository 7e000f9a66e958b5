"""The alignment study: its marked data, its networks' invariance, its probes against direct computations."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nwcorrupt import data, probe
from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import alignment as S

SMALL = S.Params(datasets=("digits",), n_train=300, n_test=150, noise_rates=(0.0,), border=3, marker=2, width=32,
                 channels=(4, 8), epochs=2, batch_size=50, repeats=1, random_inits=1, ms=(2, 8), subsets=2)


def test_marker_positions_lie_in_the_border_and_do_not_overlap():
    pos = S.marker_positions(36, 36, 4, 3, 10)
    assert pos.shape == (10, 2) and len({tuple(p) for p in pos}) == 10
    for r, c in pos:
        assert (r + 3 <= 4 or r >= 36 - 4) and 0 <= c <= 33  # inside the top or bottom border
    cols_top = sorted(c for r, c in pos if r == 0)
    assert len(cols_top) == 5 and all(b - a >= 3 for a, b in zip(cols_top, cols_top[1:]))
    with pytest.raises(ValueError, match="marker=5 must fit in the border"):
        S.marker_positions(36, 36, 4, 5, 10)


def test_marked_dataset_plants_one_marker_at_the_recorded_position():
    ds, extra = S.marked_dataset(SMALL, "digits")
    raw = data.load("digits", n_train=300, seed=SMALL.seed, normalize="none")
    h, w = extra["shape"]
    assert (h, w) == (14, 14) and ds.x_train.shape == (300, 196)
    imgs = ds.x_train.reshape(-1, h, w)
    np.testing.assert_array_equal(imgs[:, 3:11, 3:11].reshape(300, -1), raw.x_train)  # the image, untouched
    pos = S.marker_positions(h, w, 3, 2, 10)
    border = imgs.copy()
    border[:, 3:11, 3:11] = 0
    for i in range(0, 300, 37):
        r, c = pos[extra["position_train"][i]]
        assert np.all(border[i, r : r + 2, c : c + 2] == 1.0) and border[i].sum() == 4.0  # one 2x2 marker, nothing else
    assert np.bincount(extra["position_train"], minlength=10).min() > 10  # uniform positions
    np.testing.assert_array_equal(ds.y_train, raw.y_train)


def test_pooled_network_is_translation_invariant_and_blind_to_the_marker_position():
    """Circular shifts of a whole image leave the pooled network's outputs unchanged (to rounding); moving only
    the marker changes the MLP's outputs but not the pooled network's beyond rounding, when the marker is far
    from the image (MNIST-like margins)."""
    params = S.Params(border=6, marker=2, channels=(4, 8), width=16)
    rng = np.random.default_rng(0)
    img = np.zeros((20, 20), np.float32)
    img[8:12, 6:14] = rng.uniform(0.5, 1.0, (4, 8))  # content in the middle, ≥ 6 pixels from the marker rows
    pos = S.marker_positions(20, 20, 6, 2, 10)
    a = S.plant_markers(img[None], pos, np.array([0]), 2)
    b = S.plant_markers(img[None], pos, np.array([3]), 2)  # same row, another column
    shifted = np.roll(a, (3, -5), axis=(1, 2))
    outs = {}
    for arch in ("pooled", "mlp"):
        net = S.network(params, arch, (20, 20), 10)
        p = net.init(jax.random.PRNGKey(1), law="torch_default")
        outs[arch] = [np.asarray(net.apply(p, z.reshape(1, -1)), np.float64) for z in (a, b, shifted)]
    pa, pb, ps = outs["pooled"]
    np.testing.assert_allclose(ps, pa, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(pb, pa, rtol=1e-5, atol=1e-6)
    ma, mb, _ = outs["mlp"]
    assert np.abs(ma - mb).max() > 1e-3


@pytest.fixture(scope="module")
def position_point():
    return S.run_point(SMALL, {"dataset": "digits", "task": "position", "arch": "mlp", "r": 0.0})


def _probe(metrics, model, m):
    (hit,) = [p for p in metrics["probes"] if (p["model"], p["m"]) == (model, m)]
    return hit["accuracy"]


def test_raw_probe_equals_a_direct_ridge_solve_and_the_records_are_complete(position_point):
    ds, extra = S.marked_dataset(SMALL, "digits")
    y, yt = extra["position_train"], extra["position_test"]
    rows = probe.clean_subsets(y, 8, num_classes=10, num_subsets=2, seed=SMALL.seed)
    x = ds.x_train.astype(np.float64)
    for s, r in enumerate(rows):
        lam = SMALL.probe_ridge * np.mean(np.sum(x[r] ** 2, 1))
        w = np.linalg.solve(x[r].T @ x[r] + lam * np.eye(x.shape[1]), x[r].T @ np.eye(10)[y[r]])
        assert _probe(position_point, "raw", 8)[s] == pytest.approx(np.mean((ds.x_test @ w).argmax(1) == yt))
    # the marker is a clean linear feature: the raw probe finds the position from 8 examples per class
    assert np.mean(_probe(position_point, "raw", 8)) > 0.9
    m = position_point
    assert m["flip_fraction"] == 0.0 and 0.0 <= m["labels_agree"] <= 0.3
    assert {(p["model"], p["m"]) for p in m["probes"]} == {(k, mm) for k in S.MODELS for mm in SMALL.ms}
    assert {"train_loss_mean", "train_accuracy_mean", "train_accuracy_min"} <= set(m)


def test_noise_is_the_other_label():
    ds, extra = S.marked_dataset(SMALL, "digits")
    from nwcorrupt import labels as L

    task = ds.replace(y_train=extra["position_train"], y_test=extra["position_test"])
    noisy, clean = L.corrupt(task, L.InstanceDependent(0.5, ds.y_train), SMALL.seed)
    relabelled = ~clean
    np.testing.assert_array_equal(noisy.y_train[relabelled], ds.y_train[relabelled])
    np.testing.assert_array_equal(noisy.y_train[clean], extra["position_train"][clean])


def test_bad_parameters_are_named():
    with pytest.raises(ValueError, match="marker=4 must fit in the border"):
        S.Params(border=3, marker=4)
    with pytest.raises(ValueError, match="tasks"):
        S.Params(tasks=("colour",))
    with pytest.raises(ValueError, match="noise_rates must lie in"):
        S.Params(noise_rates=(1.0,))
    with pytest.raises(ValueError, match="channels"):
        S.Params(channels=(4,))
    with pytest.raises(ConfigError, match="not an image data set"):
        S.preflight(S.Params(datasets=("gaussian_mixture",)))
    with pytest.raises(ConfigError, match="ms up to 1000 exceeds the clean pool"):
        S.preflight(S.Params(datasets=("digits",), n_train=500, ms=(1, 1000)))
