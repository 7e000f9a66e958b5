"""The principal-subspace study: its heads against direct computations, LIP at full rank, the fit records."""

from __future__ import annotations

import numpy as np
import pytest

from nwcorrupt.experiments.errors import ConfigError
from nwcorrupt.experiments.studies import principal_subspace as S

SMALL = S.Params(dataset="digits", n_train=300, n_test=200, ps=(0.0, 0.4), ridges=(1e-2, 1.0), width=32, epochs=3,
                 batch_size=50, repeats=2, features=("nngp", "random", "trained"))


def test_ridge_heads_are_the_direct_ridge_solution_and_agree_at_p_zero():
    m = S.run_point(SMALL, {"part": "ridge", "features": "random", "p": 0.4})
    phi, phit, _ = S.feature_map(SMALL, "random")
    ds = S.dataset(SMALL)
    noisy = S.noisy_labels(SMALL, ds, 0.4)
    assert np.sum(noisy != ds.y_train) == 120 and m["flip_fraction"] == 0.4  # exactly ⌊pN⌋, all to another class
    lam = 1.0 * np.mean(np.sum(phi**2, 1))  # relative ridge 1 · trace(ΦΦᵀ)/N
    w = np.linalg.solve(phi.T @ phi + lam * np.eye(phi.shape[1]), phi.T @ np.eye(10)[noisy])
    h = m["heads"][1]
    assert h["noisy_head_accuracy"] == pytest.approx(np.mean((phit @ w).argmax(1) == ds.y_test))
    np.testing.assert_allclose(h["singular_values"][1], np.linalg.svd(w, compute_uv=False), rtol=1e-8)
    assert h["lip_accuracy"][-1] == h["noisy_head_accuracy"] == h["lip_clean_accuracy"][-1]  # k = C keeps the head
    # the clean refit at k = 0 is the diagonal least-squares refit of all singular values on 10 clean rows per class
    from nwcorrupt import probe

    rows = probe.clean_subsets(ds.y_train, 10, num_classes=10, seed=SMALL.seed)[0]
    u, sv, vt = np.linalg.svd(w, full_matrices=False)
    xu = phi[rows] @ u
    s_new = np.einsum("mj,mc,jc->j", xu, np.eye(10)[ds.y_train[rows]], vt) / np.sum(xu**2, 0)
    assert h["lip_clean_accuracy"][0] == pytest.approx(np.mean((phit @ (u * s_new) @ vt).argmax(1) == ds.y_test))
    clean = S.run_point(SMALL, {"part": "ridge", "features": "random", "p": 0.0})["heads"][0]
    assert clean["sin_theta"] == pytest.approx([0.0] * 9, abs=1e-7)
    assert np.allclose(np.diag(clean["similarity"]), 1.0)


def test_kernel_features_give_kernel_ridge_regression():
    from nwcorrupt import kernels, precision

    m = S.run_point(SMALL, {"part": "ridge", "features": "nngp", "p": 0.0})
    ds = S.dataset(SMALL)
    with precision.x64():
        k = np.asarray(kernels.kernel(S.kernel_arch(SMALL), ds.x_train.astype(np.float64), get="nngp").nngp)
        kt = np.asarray(kernels.kernel(S.kernel_arch(SMALL), ds.x_test.astype(np.float64),
                                       ds.x_train.astype(np.float64), get="nngp").nngp)
    lam = 1e-2 * np.trace(k) / k.shape[0]
    pred = kt @ np.linalg.solve(k + lam * np.eye(k.shape[0]), np.eye(10)[ds.y_train])
    assert m["heads"][0]["clean_head_accuracy"] == pytest.approx(np.mean(pred.argmax(1) == ds.y_test))


def test_trained_points_record_the_fit_and_lip_of_every_network():
    m = S.run_point(SMALL, {"part": "trained", "loss": "mse", "p": 0.4})
    assert {"train_loss_mean", "train_accuracy_mean", "train_accuracy_min"} <= set(m)
    assert len(m["test_accuracy"]) == 2
    for scale in ("one_hot", "match", "clean"):
        acc = np.asarray(m["lip_accuracy"][scale])
        assert acc.shape == (2, 11)
        np.testing.assert_allclose(acc[:, -1], m["test_accuracy"])  # k = C: the network's own readout
    info = S.feature_map(SMALL, "trained")[2]
    assert {"train_loss_mean", "train_accuracy_min", "test_accuracy"} <= set(info)


def test_sin_theta_slope_fit_and_bad_parameters():
    b, a, r2 = S._slope([0.0, 0.25, 0.64], [0.1, 0.5 + 0.1, 0.8 + 0.1])
    assert (b, a, r2) == pytest.approx((1.0, 0.1, 1.0))
    b, a, _ = S._slope([0.0, 0.04, 0.25, 0.64], [0.0, 0.4, 1.0, 1.0], max_p=0.1)  # saturation left out
    assert (b, a) == pytest.approx((2.0, 0.0))
    with pytest.raises(ValueError, match="features must be one of"):
        S.Params(features=("rbf",))
    with pytest.raises(ValueError, match="ridges"):
        S.Params(ridges=(0.0,))
    with pytest.raises(ConfigError, match="angle_ks must be < C = 10"):
        S.preflight(S.Params(dataset="digits", angle_ks=(1, 10)))
