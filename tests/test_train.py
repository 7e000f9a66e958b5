"""Tests of nwcorrupt.train: losses, optimisers, nested ensembles, resume, NTK regime, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import optax
import pytest
import scipy.special

from nwcorrupt import mlp, precision, train
from nwcorrupt.kernels import MLP


def _data(k=2, n=32, d=6, t=10, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(k, n, d))
    y = rng.integers(0, c, n).astype(np.int32)
    xt = rng.normal(size=(t, d))
    yt = rng.integers(0, c, t).astype(np.int32)
    return x, y, xt, yt


def _config(**kw):
    base = dict(
        arch=MLP(2, "erf"),
        width=16,
        num_classes=3,
        optimizer=train.Optimizer("adam", 1e-2),
        batch_size=8,
        epochs=2,
        seed=3,
    )
    base.update(kw)
    return train.TrainConfig(**base)


# ----------------------------------------------------------------------------- losses and optimisers


def test_losses_closed_form(x64):
    rng = np.random.default_rng(0)
    logits, labels = rng.normal(size=(7, 4)), rng.integers(0, 4, 7)
    onehot = np.eye(4)[labels]
    assert float(train.mse_loss(logits, labels, 4)) == pytest.approx(((logits - onehot) ** 2).mean(), rel=1e-12)
    ce = (scipy.special.logsumexp(logits, axis=1) - logits[np.arange(7), labels]).mean()
    assert float(train.cross_entropy_loss(logits, labels, 4)) == pytest.approx(ce, rel=1e-12)


def test_optimizer_first_steps(x64):
    p = {"w": np.array([1.0, -2.0, 0.5])}
    g = {"w": np.array([0.3, -0.1, 2.0])}
    lr = 0.1

    def first_update(opt):
        tx = opt.build()
        updates, _ = tx.update(g, tx.init(p), p)
        return np.asarray(updates["w"])

    np.testing.assert_allclose(first_update(train.Optimizer("sgd", lr)), -lr * g["w"], rtol=1e-12)
    np.testing.assert_allclose(first_update(train.Optimizer("momentum", lr, momentum=0.5)), -lr * g["w"], rtol=1e-12)
    # Adam's bias-corrected first step is lr * g / (|g| + eps)
    np.testing.assert_allclose(first_update(train.Optimizer("adam", lr)), -lr * np.sign(g["w"]), rtol=1e-6)
    np.testing.assert_allclose(
        first_update(train.Optimizer("adamw", lr, weight_decay=0.2)), -lr * (np.sign(g["w"]) + 0.2 * p["w"]), rtol=1e-6
    )
    with pytest.raises(ValueError, match="optimizer name must be one of"):
        train.Optimizer("rmsprop")
    with pytest.raises(ValueError, match="learning_rate must be a finite number > 0"):
        train.Optimizer("sgd", 0.0)
    with pytest.raises(ValueError, match=r"b2 must be in \[0, 1\)"):
        train.Optimizer("adam", b2=1.0)


# ----------------------------------------------------------------------------- ensembles


@pytest.mark.parametrize("batching", ["vmap", "map"])
def test_vmapped_ensemble_equals_members_trained_one_by_one(x64, batching):
    """Each member of the K×M ensemble (vmapped or lax.map-ped) equals the same member trained alone (float64, < 1e-6)."""
    x, y, xt, yt = _data()
    cfg = _config(arch=MLP(3, "relu", b_std=0.1), optimizer=train.Optimizer("adam", 1e-2))
    res = train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, quiet=True, member_batching=batching)
    assert res.member_batching == batching
    assert res.test_logits.shape == (2, 2, 10, 3) and res.step_losses.shape == (2, 2, 8)
    for k in range(2):
        for m in range(2):
            one = train.train_member(cfg, x[k], y, xt, k=k, m=m)
            np.testing.assert_allclose(res.test_logits[k, m], one.test_logits, rtol=0, atol=1e-6)
            np.testing.assert_allclose(res.step_losses[k, m], one.step_losses, rtol=0, atol=1e-6)
    assert res.step_losses[..., -1].mean() < res.step_losses[..., 0].mean()  # it learns
    # members differ: different inits and different data sets
    assert not np.allclose(res.test_logits[0, 0], res.test_logits[0, 1])
    assert not np.allclose(res.test_logits[0, 0], res.test_logits[1, 0])


def test_float32_ensemble_matches_sequential_closely(capfd):
    x, y, xt, _ = _data()
    cfg = _config()
    res = train.train_ensemble(cfg, x.astype(np.float32), y, xt.astype(np.float32), num_inits=2, quiet=False)
    captured = capfd.readouterr()  # the progress bar stays silent when stderr is not a terminal
    assert captured.err == "" and captured.out == ""
    one = train.train_member(cfg, x[1].astype(np.float32), y, xt.astype(np.float32), k=1, m=0)
    assert res.test_logits.dtype == np.float32
    np.testing.assert_allclose(res.test_logits[1, 0], one.test_logits, rtol=0, atol=1e-5)


def test_resume_after_interruption_gives_same_logits(x64, tmp_path):
    x, y, xt, yt = _data(k=2)
    cfg = _config()
    # uninterrupted reference, chunked differently: results do not depend on chunking
    full = train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, chunk_size=1, out_dir=tmp_path / "full", quiet=True)
    assert full.chunk_size == 1

    class Killed(Exception):
        pass

    def kill_after_first(chunk_index, members):
        assert members == [(0, 0), (0, 1)]
        raise Killed

    run = tmp_path / "run"
    with pytest.raises(Killed):
        train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, chunk_size=2, out_dir=run, quiet=True, callback=kill_after_first)
    assert len(list(run.glob("chunk-*.npz"))) == 1 and not (run / "ensemble.npz").exists()
    # the rerun sizes its chunks from a memory budget that fits two members
    per = train.estimate_member_bytes(cfg, 6, 32, eval_block=10)
    resumed = train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, out_dir=run, quiet=True, memory_budget_bytes=int(2.5 * per))
    assert (resumed.num_loaded, resumed.num_trained, resumed.chunk_size) == (2, 2, 2)
    np.testing.assert_allclose(resumed.test_logits, full.test_logits, rtol=0, atol=1e-10)
    np.testing.assert_allclose(resumed.step_losses, full.step_losses, rtol=0, atol=1e-10)
    assert not list(run.glob("*.tmp"))
    with np.load(run / "ensemble.npz") as z:
        np.testing.assert_array_equal(z["test_logits"], resumed.test_logits)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["fingerprint"] == full.fingerprint and summary["accuracy"] == full.accuracy
    again = train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, out_dir=run, quiet=True)
    assert (again.num_loaded, again.num_trained) == (4, 0)
    other = train.train_ensemble(_config(seed=4), x, y, xt, yt, num_inits=2, chunk_size=2, out_dir=run, quiet=True)
    assert (other.num_loaded, other.num_trained) == (0, 4)  # different fingerprint: nothing reused


def test_online_corruption_per_epoch(x64):
    x, y, xt, _ = _data(k=1)
    clean = x[0]
    cfg = _config()

    def scale_by_k(xc, k, epoch):
        return xc * (1.0 + k)

    online = train.train_ensemble(cfg, clean, y, xt, num_inits=1, corrupt=scale_by_k, num_datasets=2, quiet=True)
    offline = train.train_ensemble(cfg, np.stack([clean, 2 * clean]), y, xt, num_inits=1, quiet=True)
    np.testing.assert_allclose(online.test_logits, offline.test_logits, rtol=0, atol=1e-10)

    def noisy(xc, k, epoch):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(11), k), epoch)
        return xc + 0.5 * jax.random.normal(key, xc.shape, xc.dtype)

    redraw = train.train_ensemble(cfg, clean, y, xt, num_inits=1, corrupt=noisy, num_datasets=2, quiet=True)
    # a noise realisation fixed at epoch 0 is not what was trained on in epoch 1
    frozen = np.stack([np.asarray(noisy(clean, k, 0)) for k in range(2)])
    fixed = train.train_ensemble(cfg, frozen, y, xt, num_inits=1, quiet=True)
    assert np.abs(fixed.test_logits - redraw.test_logits).max() > 1e-3
    with pytest.raises(ValueError, match=r"corrupt\(x_clean, k, epoch\) must return shape"):
        train.train_ensemble(cfg, clean, y, xt, corrupt=lambda xc, k, e: xc[:-1], num_datasets=1, quiet=True)


def test_step_budget_ends_mid_epoch(x64):
    x, y, xt, _ = _data(k=1)
    one = train.train_ensemble(_config(epochs=1), x, y, xt, quiet=True)
    two = train.train_ensemble(_config(epochs=2), x, y, xt, quiet=True)
    five = train.train_ensemble(_config(epochs=None, steps=5), x, y, xt, quiet=True)
    assert five.step_losses.shape == (1, 1, 5) and np.isfinite(five.step_losses).all()
    np.testing.assert_allclose(five.step_losses[..., :5], two.step_losses[..., :5], rtol=0, atol=1e-12)
    np.testing.assert_allclose(one.step_losses, two.step_losses[..., :4], rtol=0, atol=1e-12)
    np.testing.assert_allclose(five.epoch_losses(4)[0, 0], [two.step_losses[0, 0, :4].mean(), two.step_losses[0, 0, 4]])
    assert np.abs(five.test_logits - one.test_logits).max() > 1e-6
    assert np.abs(five.test_logits - two.test_logits).max() > 1e-6


def test_early_stopping_restores_best_epoch(x64):
    x, y, xt, _ = _data(k=1, n=48, seed=5)  # random labels: validation loss soon rises
    es = train.EarlyStopping(patience=2, validation_fraction=0.25)
    cfg = _config(width=64, epochs=40, batch_size=12, early_stopping=es, optimizer=train.Optimizer("adam", 3e-2))
    res = train.train_ensemble(cfg, x, y, xt, num_inits=1, quiet=True)
    val = res.val_losses[0, 0]
    ran = np.isfinite(val)
    stop = int(ran.sum())
    assert stop < 40, "early stopping never triggered"
    best = int(np.nanargmin(val))
    assert stop == best + 1 + es.patience
    assert np.isnan(res.step_losses[0, 0, stop * 3 :]).all() and np.isfinite(res.step_losses[0, 0, : stop * 3]).all()
    # restore_best: identical to training exactly best + 1 epochs (same split, never stopping)
    ref_cfg = _config(
        width=64, epochs=best + 1, batch_size=12, optimizer=train.Optimizer("adam", 3e-2),
        early_stopping=train.EarlyStopping(patience=100, validation_fraction=0.25),
    )
    ref = train.train_ensemble(ref_cfg, x, y, xt, num_inits=1, quiet=True)
    np.testing.assert_allclose(res.test_logits, ref.test_logits, rtol=0, atol=1e-12)


def test_cross_entropy_learns_separable_classes():
    rng = np.random.default_rng(1)
    means = 3 * rng.normal(size=(3, 8))
    y = np.repeat(np.arange(3), 20).astype(np.int32)
    x = means[y] + rng.normal(size=(60, 8))
    yt = np.repeat(np.arange(3), 10).astype(np.int32)
    xt = means[yt] + rng.normal(size=(30, 8))
    cfg = _config(arch=MLP(3, "relu"), width=32, loss="cross_entropy", batch_size=20, epochs=15,
                  optimizer=optax.adam(1e-2), tag="optax-adam-1e-2")
    res = train.train_ensemble(cfg, x.astype(np.float32), y, xt.astype(np.float32), yt, num_inits=2, quiet=True)
    assert res.step_losses[0, :, -3:].mean() < 0.3 * res.step_losses[0, :, 0].mean()
    assert res.accuracy["full_ensemble"] > 0.9 and res.accuracy["member_mean"] > 0.9


def test_ensemble_accuracy_definitions():
    # K=2, M=2, T=3, C=2
    z = np.zeros((2, 2, 3, 2))
    z[0, 0] = [[1, 0], [0, 1], [2, 0]]  # predictions 0 1 0 -> 2/3
    z[0, 1] = [[1, 0], [2, 0], [0, 1]]  # 0 0 1 -> 2/3
    z[1, 0] = [[0, 2], [0, 1], [0, 1]]  # 1 1 1 -> 2/3
    z[1, 1] = [[1, 0], [0, 1], [0, 1]]  # 0 1 1 -> 1
    y = np.array([0, 1, 1])
    acc = train.ensemble_accuracy(z, y)
    member = np.array([2, 2, 2, 3]) / 3
    assert acc["member_mean"] == pytest.approx(0.75) and acc["member_std"] == pytest.approx(member.std())
    # k=0 mean logits [[1,0],[1,.5],[1,.5]] -> 0 0 0 -> 1/3; k=1 [[.5,1],[0,1],[0,1]] -> 1 1 1 -> 2/3
    assert acc["init_averaged"] == pytest.approx([1 / 3, 2 / 3])
    assert acc["init_averaged_mean"] == pytest.approx(0.5) and acc["init_averaged_std"] == pytest.approx(1 / 6)
    # all four [[.75,.5],[.5,.75],[.5,.75]] -> 0 1 1 -> 1: the ensemble beats every member
    assert acc["full_ensemble"] == pytest.approx(1.0)


def test_memory_budget_chunking():
    cfg = _config()
    small, wide = train.estimate_member_bytes(cfg, 6, 32), train.estimate_member_bytes(_config(width=64), 6, 32)
    assert wide > small > 0
    # regression: online corruption's per-epoch working set (about four (N, d) arrays) was not counted
    offline, online = train.estimate_member_bytes(cfg, 784, 60000), train.estimate_member_bytes(cfg, 784, 60000, online=True)
    itemsize = np.dtype(precision.default_float()).itemsize
    assert online - offline == 3 * 60000 * 784 * itemsize
    assert train.choose_chunk_size(10, 100, 450) == 4  # 4 fit -> 3 chunks of <= 4
    assert train.choose_chunk_size(10, 100, 450, num_devices=2) == 4
    assert train.choose_chunk_size(9, 100, 10**9, num_devices=4) == 12  # one chunk, padded to the devices
    assert train.choose_chunk_size(10, 100, 50) == 1
    assert train.choose_chunk_size(200, 1, 64) == 50  # 4 balanced chunks


# ----------------------------------------------------------------------------- training-set fit


def _numpy_fit(arch, params, x, y, loss, num_classes):
    """Training loss and accuracy written out in numpy (no nwcorrupt loss code)."""
    z = np.asarray(mlp.apply(arch, params, x), dtype=np.float64)
    if loss == "mse":
        value = ((z - np.eye(num_classes)[y]) ** 2).mean()  # mean over N·C
    else:
        value = (scipy.special.logsumexp(z, axis=1) - z[np.arange(len(y)), y]).mean()  # mean over N
    return float(value), float((z.argmax(axis=1) == y).mean())


@pytest.mark.parametrize("loss, early", [("mse", False), ("cross_entropy", True)])
def test_train_member_fit_is_the_loss_of_the_final_params_on_all_training_rows(x64, loss, early):
    # N = 30 with batch 8: 6 rows never form a minibatch, the fit still covers them
    x, y, xt, _ = _data(k=1, n=30)
    es = train.EarlyStopping(patience=2, validation_fraction=0.2) if early else None
    cfg = _config(loss=loss, epochs=6, early_stopping=es)
    res = train.train_member(cfg, x[0], y, xt)
    rows = train.validation_split(cfg.seed, 30, 0.2)[0] if early else np.arange(30)
    want_loss, want_acc = _numpy_fit(cfg.arch, res.params, x[0][rows], y[rows], loss, 3)
    assert res.train_loss == pytest.approx(want_loss, rel=1e-10)
    assert res.train_accuracy == pytest.approx(want_acc, abs=1e-12)
    assert res.train_accuracy * len(rows) == pytest.approx(round(res.train_accuracy * len(rows)), abs=1e-9)


def test_online_fit_uses_the_inputs_of_the_last_epoch(x64):
    x, y, xt, _ = _data(k=1)
    clean = x[0]

    def noisy(xc, k, epoch):
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(5), k), epoch)
        return xc + 0.7 * jax.random.normal(key, xc.shape, xc.dtype)

    cfg = _config(epochs=3)
    res = train.train_member(cfg, clean, y, xt, k=1, corrupt=noisy)
    last = np.asarray(noisy(clean, 1, 2))
    want_loss, want_acc = _numpy_fit(cfg.arch, res.params, last, y, "mse", 3)
    assert res.train_loss == pytest.approx(want_loss, rel=1e-10) and res.train_accuracy == pytest.approx(want_acc)
    other, _ = _numpy_fit(cfg.arch, res.params, np.asarray(noisy(clean, 1, 0)), y, "mse", 3)
    assert abs(other - res.train_loss) > 1e-6  # another epoch's inputs give another value
    ens = train.train_ensemble(cfg, clean, y, xt, num_inits=1, corrupt=noisy, num_datasets=2, quiet=True)
    assert ens.train_loss[1, 0] == pytest.approx(res.train_loss, rel=1e-8)


def test_ensemble_fit_matches_numpy_and_survives_resume(x64, tmp_path):
    x, y, xt, yt = _data(k=2, n=30)
    cfg = _config()
    run = tmp_path / "run"

    class Killed(Exception):
        pass

    def kill_after_first(chunk_index, members):
        raise Killed

    with pytest.raises(Killed):
        train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, chunk_size=2, out_dir=run, quiet=True, callback=kill_after_first)
    resumed = train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, chunk_size=2, out_dir=run, quiet=True)
    assert (resumed.num_loaded, resumed.num_trained) == (2, 2)
    assert resumed.train_loss.shape == resumed.train_accuracy.shape == (2, 2)
    for k in range(2):
        for m in range(2):
            params = train.train_member(cfg, x[k], y, xt, k=k, m=m).params
            want_loss, want_acc = _numpy_fit(cfg.arch, params, x[k], y, "mse", 3)
            assert resumed.train_loss[k, m] == pytest.approx(want_loss, rel=1e-8)
            assert resumed.train_accuracy[k, m] == pytest.approx(want_acc, abs=1e-12)
    with np.load(run / "ensemble.npz") as z:
        np.testing.assert_array_equal(z["train_loss"], resumed.train_loss)
        np.testing.assert_array_equal(z["train_accuracy"], resumed.train_accuracy)
    summary = json.loads((run / "summary.json").read_text())
    assert summary["train_accuracy_min"] == pytest.approx(resumed.train_accuracy.min())
    again = train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, out_dir=run, quiet=True)
    assert (again.num_loaded, again.num_trained) == (4, 0)
    np.testing.assert_array_equal(again.train_loss, resumed.train_loss)
    np.testing.assert_array_equal(again.train_accuracy, resumed.train_accuracy)
    # the fit evaluated in blocks of 7 rows (the last one padded) gives the same values
    blocked = train.train_ensemble(cfg, x, y, xt, num_inits=2, eval_block=7, quiet=True)
    np.testing.assert_allclose(blocked.train_loss, resumed.train_loss, rtol=1e-10)
    np.testing.assert_array_equal(blocked.train_accuracy, resumed.train_accuracy)

    # a chunk of the old layout (no training-set fit) is retrained, not trusted
    first = sorted(run.glob("chunk-*.npz"))[0]
    with np.load(first) as z:
        old = {name: z[name] for name in z.files if name not in ("train_loss", "train_accuracy")}
    np.savez(first, **old)
    redo = train.train_ensemble(cfg, x, y, xt, yt, num_inits=2, out_dir=run, quiet=True)
    assert (redo.num_loaded, redo.num_trained) == (2, 2)
    np.testing.assert_allclose(redo.train_loss, resumed.train_loss, rtol=1e-10)


def test_chunk_format_is_part_of_the_fingerprint(monkeypatch):
    from nwcorrupt.train import checkpoints

    x, y, xt, _ = _data(k=1)
    fp = train.fingerprint(_config(), x, y, xt, num_inits=1, num_datasets=1, corrupt=None)
    monkeypatch.setattr(checkpoints, "CHUNK_FORMAT", checkpoints.CHUNK_FORMAT - 1)
    assert train.fingerprint(_config(), x, y, xt, num_inits=1, num_datasets=1, corrupt=None) != fp


def test_fitting_a_separable_set_reaches_training_accuracy_one():
    rng = np.random.default_rng(3)
    means = 4 * rng.normal(size=(3, 5))
    y = np.repeat(np.arange(3), 10).astype(np.int32)
    x = (means[y] + 0.3 * rng.normal(size=(30, 5))).astype(np.float32)
    xt = x[:4]
    fitted = train.train_ensemble(_config(width=32, epochs=150, batch_size=10, optimizer=train.Optimizer("adam", 1e-2)),
                                  x, y, xt, num_inits=2, quiet=True)
    np.testing.assert_array_equal(fitted.train_accuracy, 1.0)
    assert fitted.train_loss.max() < 0.05
    one_step = train.train_ensemble(_config(width=32, epochs=None, steps=1, batch_size=10), x, y, xt, num_inits=2,
                                    quiet=True)
    assert (one_step.train_accuracy < 1.0).all()
    assert (one_step.train_loss > 5 * fitted.train_loss).all()
    member = train.train_member(_config(width=32, epochs=None, steps=1, batch_size=10), x, y, xt)
    assert member.train_accuracy < 1.0


# ----------------------------------------------------------------------------- NTK regime


def _erf_ntk(x1, x2, w_std):
    """Analytic depth-2 erf NTK (NTK parameterisation, b_std = 0)."""
    d = x1.shape[1]
    k11 = w_std**2 * (x1**2).sum(1) / d
    k22 = w_std**2 * (x2**2).sum(1) / d
    k12 = w_std**2 * x1 @ x2.T / d
    a = np.sqrt(np.outer(1 + 2 * k11, 1 + 2 * k22))
    ee = 2 / np.pi * np.arcsin(2 * k12 / a)
    dd = 4 / np.pi / np.sqrt(a**2 - 4 * k12**2)
    return w_std**2 * ee + w_std**2 * dd * k12


def test_wide_network_follows_ntk_gradient_descent(x64):
    """Full-batch GD on MSE: logits approach the linearised-NTK prediction as width grows.

    Discrete-time NTK predictor for loss mean((f - Y)²) over N·C with step η:
    f_t(x*) = f_0(x*) - Θ(x*, X) Θ⁻¹ (I - (I - η' Θ)^t)(f_0(X) - Y), η' = 2η/(N C).
    The relative error ||f_net - f_ntk|| / ||f_ntk - f_0|| on test points shrinks ~ width^-1/2.
    """
    rng = np.random.default_rng(0)
    n, d, c, steps, lr = 8, 6, 2, 60, 1.0
    x = rng.normal(size=(n, d))
    y = rng.integers(0, c, n).astype(np.int32)
    xt = rng.normal(size=(5, d))
    arch = MLP(2, "erf", W_std=1.5)
    theta = _erf_ntk(x, x, 1.5)
    theta_t = _erf_ntk(xt, x, 1.5)
    evals, evecs = np.linalg.eigh(theta)
    eta = 2 * lr / (n * c)
    assert eta * evals.max() < 1  # stable, small-step regime
    decay = evecs @ np.diag((1 - (1 - eta * evals) ** steps) / evals) @ evecs.T
    widths = (64, 256, 1024)
    errors = []
    for width in widths:
        cfg = train.TrainConfig(arch, width, c, optimizer=train.Optimizer("sgd", lr), batch_size=n, steps=steps, seed=1)
        res = train.train_ensemble(cfg, x, y, xt, num_inits=3, quiet=True)
        errs = []
        for m in range(3):
            p0 = train.member_init(cfg, d, m=m)
            f0x, f0t = np.asarray(mlp.apply(arch, p0, x)), np.asarray(mlp.apply(arch, p0, xt))
            pred = f0t - theta_t @ decay @ (f0x - np.eye(c)[y])
            errs.append(np.linalg.norm(res.test_logits[0, m] - pred) / np.linalg.norm(pred - f0t))
        errors.append(np.mean(errs))
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 0.1, errors
    slope = np.polyfit(np.log(widths), np.log(errors), 1)[0]
    assert -0.9 < slope < -0.3, errors


# ----------------------------------------------------------------------------- errors


def test_member_batching_choice_and_errors():
    cpu = jax.devices("cpu")[:1]
    assert train.resolve_member_batching("auto", cpu) == "map"
    assert train.resolve_member_batching("vmap", cpu) == "vmap"
    assert train.resolve_member_batching("auto", cpu * 2) == "vmap"
    with pytest.raises(ValueError, match="member_batching"):
        train.resolve_member_batching("pmap", cpu)
    x, y, xt, _ = _data()
    with pytest.raises(ValueError, match="one device"):
        train.train_ensemble(_config(), x, y, xt, member_batching="map", devices=cpu * 2, quiet=True)


def test_configuration_errors():
    with pytest.raises(ValueError, match="width must be >= 1"):
        _config(width=0)
    with pytest.raises(ValueError, match="give exactly one of epochs or steps"):
        _config(steps=3)
    with pytest.raises(ValueError, match="give exactly one of epochs or steps"):
        _config(epochs=None)
    with pytest.raises(ValueError, match="loss must be one of"):
        _config(loss="hinge")
    with pytest.raises(TypeError, match="optimizer must be"):
        _config(optimizer="adam")
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        _config(batch_size=0)
    with pytest.raises(ValueError, match="validation_fraction must be in"):
        train.EarlyStopping(validation_fraction=1.0)
    with pytest.raises(ValueError, match="patience must be >= 1"):
        train.EarlyStopping(patience=0)
    # seed 2**32 would train exactly the members of seed 0 (32-bit keys): refused, like a negative seed
    for seed in (-1, 2**32):
        with pytest.raises(ValueError, match=r"seed must be in \[0, 2\*\*32\)"):
            _config(seed=seed)
    with pytest.raises(ValueError, match=r"momentum must be in \[0, 1\), got 1.0"):
        train.Optimizer("momentum", momentum=1.0)
    with pytest.raises(TypeError, match="eps must be a finite number >= 0"):
        train.Optimizer(eps="1e-8")


def test_data_errors():
    x, y, xt, yt = _data()
    cfg = _config()
    with pytest.raises(ValueError, match="batch_size=40 is larger than the number of training examples: N=32"):
        train.train_ensemble(_config(batch_size=40), x, y, xt, quiet=True)
    es = train.EarlyStopping(validation_fraction=0.5)
    with pytest.raises(ValueError, match="larger than the number of training examples left after holding out 16"):
        train.train_ensemble(_config(batch_size=20, early_stopping=es), x, y, xt, quiet=True)
    with pytest.raises(ValueError, match=r"y_train must lie in \[0, 3\)"):
        train.train_ensemble(cfg, x, y + 1, xt, quiet=True)
    with pytest.raises(ValueError, match="y_train has 31 labels but x_train has 32 rows"):
        train.train_ensemble(cfg, x, y[:-1], xt, quiet=True)
    with pytest.raises(ValueError, match="x_test has 5 features but x_train has 6; they must match"):
        train.train_ensemble(cfg, x, y, xt[:, :5], quiet=True)
    with pytest.raises(ValueError, match=r"x_train must have shape \(K, N, d\)"):
        train.train_ensemble(cfg, x[None], y, xt, quiet=True)
    with pytest.raises(ValueError, match="x_train contains NaN"):
        train.train_ensemble(cfg, np.where(x > 2, np.nan, x), y, xt, quiet=True)
    with pytest.raises(ValueError, match="num_datasets .K. is required"):
        train.train_ensemble(cfg, x[0], y, xt, corrupt=lambda a, k, e: a, quiet=True)
    with pytest.raises(ValueError, match="num_datasets=3 but x_train holds K=2"):
        train.train_ensemble(cfg, x, y, xt, num_datasets=3, quiet=True)
    with pytest.raises(ValueError, match="y_test has 9 labels but x_test has 10 rows"):
        train.train_ensemble(cfg, x, y, xt, yt[:-1], quiet=True)
    with pytest.raises(ValueError, match="num_inits must be >= 1"):
        train.train_ensemble(cfg, x, y, xt, num_inits=0, quiet=True)


def test_diverging_run_names_step_and_loss():
    x, y, xt, _ = _data(k=1)
    cfg = _config(arch=MLP(3, "identity"), optimizer=train.Optimizer("sgd", 1e4), epochs=5)
    with pytest.raises(train.TrainingDivergedError, match=r"diverged at epoch \d+, step \d+ .*member k=0, m=0: loss = "):
        train.train_ensemble(cfg, x.astype(np.float32), y, xt.astype(np.float32), quiet=True)
    # without a threshold only non-finite losses count
    cfg = _config(arch=MLP(3, "identity"), optimizer=train.Optimizer("sgd", 1e4), epochs=20, divergence_threshold=None)
    with pytest.raises(train.TrainingDivergedError, match=r"loss = (nan|inf) \(non-finite\)"):
        train.train_member(cfg, x[0].astype(np.float32), y, xt.astype(np.float32))


# ----------------------------------------------------------------------------- sharding over devices


def test_member_axis_sharded_over_two_devices(tmp_path):
    """Two forced host devices: sharded ensemble equals the single-device one."""
    code = textwrap.dedent(
        """
        import numpy as np, jax
        from nwcorrupt import train
        from nwcorrupt.kernels import MLP
        assert len(jax.devices()) == 2
        rng = np.random.default_rng(0)
        x = rng.normal(size=(3, 16, 4)).astype(np.float32); y = rng.integers(0, 2, 16).astype(np.int32)
        xt = rng.normal(size=(5, 4)).astype(np.float32)
        cfg = train.TrainConfig(MLP(2, "erf"), 8, 2, optimizer=train.Optimizer("adam", 1e-2), batch_size=4, epochs=2)
        two = train.train_ensemble(cfg, x, y, xt, num_inits=1, quiet=True)
        one = train.train_ensemble(cfg, x, y, xt, num_inits=1, quiet=True, devices=jax.devices()[:1])
        print(two.chunk_size, one.chunk_size, float(np.abs(two.test_logits - one.test_logits).max()),
              two.member_batching, one.member_batching)
        """
    )
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    size_two, size_one, diff, mode_two, mode_one = out.stdout.split()
    assert int(size_two) % 2 == 0 and int(size_one) >= 1
    assert float(diff) < 1e-5
    assert (mode_two, mode_one) == ("vmap", "map")  # "auto": batched when sharded, a loop on one CPU device
