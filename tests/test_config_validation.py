"""What a run will need is checked before any work: the registry's preflight (reliability audit)."""

from __future__ import annotations

import pytest

from nwcorrupt import data
from nwcorrupt.experiments import catalog, runner, studies
from nwcorrupt.experiments.errors import ConfigError


def _cfg(name, **overrides):
    return catalog.load(name, "tiny", overrides=overrides or None)


def test_n_train_that_is_not_a_multiple_of_the_classes_fails_before_work(tmp_path):
    cfg = _cfg("centroid_rules", n_train=103)
    with pytest.raises(ConfigError, match="n_train must be a multiple of num_classes=10"):
        studies.preflight(cfg.study, cfg.params)
    with pytest.raises(ConfigError, match="n_train"):
        runner.run(cfg, tmp_path, quiet=True)
    assert not (tmp_path / "records").exists()  # nothing ran


def test_n_train_beyond_a_class_fails_before_work():
    per_class = min(int((data.load_raw("digits").y_train == c).sum()) for c in range(10))
    cfg = _cfg("centroid_rules", n_train=10 * (per_class + 1))
    with pytest.raises(ConfigError, match="needs .* examples of class"):
        studies.preflight(cfg.study, cfg.params)


def test_n_test_larger_than_the_test_set_fails_instead_of_being_truncated():
    n = data.load_raw("digits").x_test.shape[0]
    cfg = _cfg("heavy_corruption", n_test=n + 1)
    with pytest.raises(ConfigError, match=f"n_test = {n + 1} exceeds the {n} test images of digits"):
        studies.preflight(cfg.study, cfg.params)
    studies.preflight(cfg.study, _cfg("heavy_corruption", n_test=n).params)  # the whole test set is fine


def test_duplicate_sweep_values_are_refused():
    with pytest.raises(ValueError, match="more than once"):
        _cfg("centroid_rules", ps=[0.5, 0.5])
    cfg = _cfg("two_stage")
    params = cfg.params.__class__(**{**cfg.params.__dict__, "sweep_taus": (0.2,), "taus": (0.0, 0.2)})
    studies.preflight("two_stage", params)  # the same value in two different lists is fine
