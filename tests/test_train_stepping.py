"""Host-driven stepping (convolutional networks on CPUs) trains the same members as one scan per epoch."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from nwcorrupt import stax, train
from nwcorrupt.arch import MLP


def _cnn() -> stax.Network:
    return stax.Network(
        stax.serial(
            stax.Conv(4, (3, 3), padding="CIRCULAR", parameterization="standard", b_std=0.0), stax.Relu(),
            stax.Flatten(), stax.Dense(3, parameterization="standard", b_std=0.0),
        ),
        (5, 5, 1),
    )  # fmt: skip


def _data(n: int = 70):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, n)
    protos = rng.standard_normal((3, 25))
    x = (protos[y] + 0.8 * rng.standard_normal((n, 25))).astype(np.float32)
    return x, y


def _config(**kw) -> train.TrainConfig:
    base = dict(arch=_cnn(), width=None, num_classes=3, optimizer=train.Optimizer("adam", 3e-3), batch_size=16,
                epochs=3, init="torch_default", drop_last=False)  # fmt: skip
    return train.TrainConfig(**{**base, **kw})


# 50 training rows in batches of 16: 4 steps per epoch, the last one partial (2 rows); with
# HOST_STEPS = 4 (asserted) an epoch is one piece; batch 8 gives 7 steps: one full piece and a
# remainder of 3; the step budget 10 ends mid-epoch; early stopping holds rows out and masks steps.
CASES = {
    "partial_batch": {},
    "remainder_piece": {"batch_size": 8},
    "budget_mid_epoch": {"batch_size": 8, "steps": 10, "epochs": None},
    "early_stopping": {"batch_size": 8, "epochs": 6, "early_stopping": train.EarlyStopping(patience=1,
                                                                                           validation_fraction=0.2)},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_host_stepping_matches_scan_for_one_member(case):
    assert train.HOST_STEPS == 4
    x, y = _data()
    cfg = _config(**CASES[case])
    clean = np.arange(50) % 5 != 0
    runs = {mode: train.train_member(cfg, x[:50], y[:50], x[50:], k=1, m=2, clean_mask=clean, stepping=mode)
            for mode in ("scan", "host")}  # fmt: skip
    a, b = runs["scan"], runs["host"]
    np.testing.assert_allclose(b.test_logits, a.test_logits, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(b.step_losses, a.step_losses, rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(np.isnan(b.step_losses), np.isnan(a.step_losses))
    np.testing.assert_array_equal(b.step_counts, a.step_counts)
    assert b.train_accuracy == a.train_accuracy and b.train_accuracy_clean == a.train_accuracy_clean
    np.testing.assert_allclose(b.train_loss, a.train_loss, rtol=2e-5)
    for pa, pb in zip(jax.tree_util.tree_leaves(a.params), jax.tree_util.tree_leaves(b.params)):
        np.testing.assert_allclose(np.asarray(pb), np.asarray(pa), rtol=2e-5, atol=2e-6)
    if case == "early_stopping":
        np.testing.assert_allclose(b.val_losses, a.val_losses, rtol=2e-5)
    assert a.train_accuracy > 0.5  # it trained


@pytest.mark.parametrize("batching", ["map", "vmap"])
def test_host_stepping_matches_scan_for_nested_ensembles(batching):
    x, y = _data()
    cfg = _config(batch_size=8)
    sets = np.stack([x[:50], x[:50] + 0.1])
    runs = {mode: train.train_ensemble(cfg, sets, y[:50], x[50:], y[50:], num_inits=2, quiet=True,
                                       member_batching=batching, stepping=mode, chunk_size=3)
            for mode in ("scan", "host")}  # fmt: skip
    a, b = runs["scan"], runs["host"]
    np.testing.assert_allclose(b.test_logits, a.test_logits, rtol=2e-5, atol=2e-5)
    np.testing.assert_allclose(b.step_losses, a.step_losses, rtol=2e-5, atol=2e-6)
    np.testing.assert_array_equal(b.train_accuracy, a.train_accuracy)
    one = train.train_member(cfg, sets[1], y[:50], x[50:], k=1, m=0, stepping="host")
    np.testing.assert_allclose(b.test_logits[1, 0], one.test_logits, rtol=2e-5, atol=2e-5)


def test_auto_stepping_is_host_only_for_convolutions_on_cpu():
    cpu = jax.devices("cpu")
    assert train.resolve_stepping("auto", _config(), cpu) == "host"
    dense = train.TrainConfig(arch=MLP(2, "relu"), width=8, num_classes=3, epochs=1)
    assert train.resolve_stepping("auto", dense, cpu) == "scan"
    pooled_dense = stax.Network(stax.serial(stax.AvgPool((2, 2)), stax.Flatten(), stax.Dense(3)), (4, 4, 1))
    assert not pooled_dense.has_convolution and _cnn().has_convolution
    assert train.resolve_stepping("scan", _config(), cpu) == "scan"
    with pytest.raises(ValueError, match="stepping"):
        train.resolve_stepping("unrolled", _config(), cpu)
    x, y = _data()
    with pytest.raises(ValueError, match="stepping"):
        train.train_member(_config(), x[:50], y[:50], x[50:], stepping="loop")
