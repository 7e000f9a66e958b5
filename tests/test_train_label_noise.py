"""Training on noisy labels: Adadelta, soft (expected) targets, clean/noisy accuracy tracking."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from nwcorrupt import data, mlp, predict, train
from nwcorrupt import labels as L
from nwcorrupt.arch import MLP

ARCH = MLP(2, "relu", parameterization="standard")


def _set(n=60, c=3, d=8, seed=0):
    return data.gaussian_mixture(n_train=n, n_test=c, d=d, num_classes=c, separation=2.0, seed=seed)


def test_adadelta_steps_match_a_numpy_implementation(x64):
    """Two steps of optax's Adadelta against Zeiler's update written out (PyTorch's form)."""
    lr, rho, eps = 1.0, 0.9, 1e-6
    opt = train.Optimizer("adadelta", lr, rho=rho, eps=eps).build()
    x = jnp.array([1.0, -2.0, 0.5])
    grad = lambda v: 2 * v * jnp.array([1.0, 3.0, 0.2])  # noqa: E731 - a quadratic bowl
    state = opt.init(x)
    sq_g, sq_dx, xn = np.zeros(3), np.zeros(3), np.asarray(x)
    for _ in range(2):
        upd, state = opt.update(grad(x), state, x)
        x = x + upd
        g = np.asarray(grad(jnp.asarray(xn)))
        sq_g = rho * sq_g + (1 - rho) * g**2
        dx = -np.sqrt(sq_dx + eps) / np.sqrt(sq_g + eps) * g
        sq_dx = rho * sq_dx + (1 - rho) * dx**2
        xn = xn + lr * dx
    np.testing.assert_allclose(np.asarray(x), xn, rtol=1e-12)
    assert "rho" in train.TrainConfig(arch=ARCH, width=4, num_classes=2, epochs=1,
                                      optimizer=train.Optimizer("adadelta", 1.0)).describe()["optimizer"]
    assert "rho" not in train.TrainConfig(arch=ARCH, width=4, num_classes=2, epochs=1).describe()["optimizer"]


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_expected_label_loss_has_the_gradient_of_the_average_over_label_draws(x64, loss):
    """Both losses are affine in the one-hot target, so the soft-target loss at E[e_y~] has the
    gradient of the loss averaged over every labelling, weighted by its probability."""
    rng = np.random.default_rng(0)
    c = 3
    logits = jnp.asarray(rng.normal(size=(4, c)))
    t = L.Symmetric(0.6).transition(c)
    y = np.array([0, 1, 2, 1])
    soft = t[y]
    hard = train.loss_fn(loss)
    g_soft = jax.grad(lambda z: train.target_loss_fn(loss)(z, jnp.asarray(soft)))(logits)
    g_avg = 0.0
    for combo in np.ndindex(*(c,) * 4):  # all 81 labellings of the 4 rows
        w = np.prod([soft[i, combo[i]] for i in range(4)])
        g_avg = g_avg + w * jax.grad(lambda z: hard(z, jnp.asarray(combo), c))(logits)
    np.testing.assert_allclose(np.asarray(g_soft), np.asarray(g_avg), rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy"])
def test_one_hot_targets_reproduce_label_training(x64, loss):
    ds = _set()
    cfg = train.TrainConfig(arch=ARCH, width=16, num_classes=3, optimizer=train.Optimizer("adam", 1e-2),
                            loss=loss, batch_size=16, epochs=3, drop_last=False, seed=2)
    a = train.train_member(cfg, ds.x_train, ds.y_train, ds.x_test)
    b = train.train_member(cfg, ds.x_train, ds.y_train, ds.x_test, targets=np.eye(3)[ds.y_train])
    np.testing.assert_allclose(b.step_losses, a.step_losses, rtol=1e-10)
    np.testing.assert_allclose(b.test_logits, a.test_logits, rtol=1e-9, atol=1e-12)


def test_expected_loss_training_of_copies_equals_smoothed_target_training(x64):
    """Section 10's infinite-batch H_alpha: full-batch training with the expected loss on the copies
    dilution is training on the N clean rows with the smoothed targets (same gradient every step)."""
    ds = _set(n=30)
    alpha = 2.0
    out = L.Dilution(alpha, "copies").apply(ds, 0)
    common = dict(arch=ARCH, width=32, num_classes=3, optimizer=train.Optimizer("sgd", 0.05), loss="mse",
                  epochs=20, seed=4)
    big = train.train_member(train.TrainConfig(batch_size=out.dataset.n_train, **common), out.dataset.x_train,
                             out.dataset.y_train, ds.x_test, targets=out.law.mean_targets())
    small = train.train_member(train.TrainConfig(batch_size=ds.n_train, **common), ds.x_train, ds.y_train,
                               ds.x_test, targets=L.smoothed_targets(ds.y_train, alpha, 3))
    np.testing.assert_allclose(big.test_logits, small.test_logits, rtol=1e-8, atol=1e-10)


def test_smoothed_target_kernel_predictor_is_the_mean_predictor_of_copies(x64):
    ds = _set(n=30)
    alpha, lam = 3.0, 1e-2
    out = L.Dilution(alpha, "copies").apply(ds, 0)
    mean, _ = L.predictor_moments(MLP(2, "relu"), out.dataset.x_train, out.dataset.y_train, ds.x_test, out.law, num_classes=3,
                                  diag_reg=lam, diag_reg_absolute_scale=True)
    smooth = predict.ntk_predict(MLP(2, "relu"), ds.x_train, L.smoothed_targets(ds.y_train, alpha, 3), ds.x_test,
                                 diag_reg=lam / (1 + alpha), diag_reg_absolute_scale=True)
    np.testing.assert_allclose(mean, np.asarray(smooth), rtol=1e-7, atol=1e-10)


def test_clean_and_noisy_rows_are_tracked_per_step_and_at_the_end(x64):
    ds = _set(n=90)
    noisy, clean = L.corrupt(ds, L.Symmetric(0.5, include_true=False), 3)
    cfg = train.TrainConfig(arch=ARCH, width=64, num_classes=3, optimizer=train.Optimizer("adam", 1e-2),
                            loss="cross_entropy", batch_size=32, epochs=30, drop_last=False, seed=0)
    res = train.train_member(cfg, noisy.x_train, noisy.y_train, ds.x_test, clean_mask=clean)
    counts = res.step_counts
    assert counts.shape == (30 * 3, 4)
    # every epoch visits each clean and each noisy row once
    per_epoch = counts.reshape(30, 3, 4).sum(axis=1)
    np.testing.assert_array_equal(per_epoch[:, 1], clean.sum())
    np.testing.assert_array_equal(per_epoch[:, 3], (~clean).sum())
    # the final fit against an independent forward pass of the returned parameters
    logits = np.asarray(mlp.forward(cfg.arch, res.params, jnp.asarray(noisy.x_train), cfg.width_scale,
                                    jax.lax.Precision.HIGHEST, cfg.arch.depth))
    hit = logits.argmax(axis=1) == noisy.y_train
    assert res.train_accuracy_clean == pytest.approx(hit[clean].mean())
    assert res.train_accuracy_noisy == pytest.approx(hit[~clean].mean())
    # the ensemble records the same members, and reloads them from disk
    ens = train.train_ensemble(cfg, noisy.x_train, noisy.y_train, ds.x_test, clean_mask=clean, quiet=True)
    np.testing.assert_array_equal(ens.step_counts[0, 0], counts)
    assert ens.train_accuracy_clean[0, 0] == pytest.approx(res.train_accuracy_clean)
    acc_clean, acc_noisy = ens.step_accuracy(3)
    assert acc_clean.shape == (1, 1, 30)
    assert acc_clean[0, 0, -1] > acc_noisy[0, 0, 0]


def test_tracked_runs_resume_from_disk(tmp_path):
    ds = _set(n=30)
    clean = np.arange(30) < 20
    cfg = train.TrainConfig(arch=ARCH, width=8, num_classes=3, batch_size=10, epochs=2, seed=0)
    a = train.train_ensemble(cfg, ds.x_train, ds.y_train, ds.x_test, num_inits=2, clean_mask=clean,
                             out_dir=tmp_path, quiet=True)
    b = train.train_ensemble(cfg, ds.x_train, ds.y_train, ds.x_test, num_inits=2, clean_mask=clean,
                             out_dir=tmp_path, quiet=True)
    assert b.num_loaded == 2 and b.num_trained == 0
    np.testing.assert_array_equal(a.step_counts, b.step_counts)
    np.testing.assert_array_equal(a.train_accuracy_noisy, b.train_accuracy_noisy)
    other = train.train_ensemble(cfg, ds.x_train, ds.y_train, ds.x_test, num_inits=2, clean_mask=~clean,
                                 out_dir=tmp_path, quiet=True)
    assert other.num_trained == 2  # another mask is another run


def test_bad_targets_and_masks_raise():
    ds = _set(n=30)
    cfg = train.TrainConfig(arch=ARCH, width=8, num_classes=3, batch_size=10, epochs=1)
    with pytest.raises(ValueError, match="targets must have shape \\(30, 3\\)"):
        train.train_member(cfg, ds.x_train, ds.y_train, ds.x_test, targets=np.zeros((30, 2)))
    with pytest.raises(ValueError, match="clean_mask must be a \\(30,\\) bool array"):
        train.train_member(cfg, ds.x_train, ds.y_train, ds.x_test, clean_mask=np.ones(30))
    with pytest.raises(ValueError, match="optimizer name must be one of"):
        train.Optimizer("adagrad")
