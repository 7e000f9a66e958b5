"""Did a study's networks fit their training sets? Record fields, table columns and the flag.

Every study that trains networks stores, per sweep point (per point and width where a
point trains several widths), the training-set fit of its trained networks
(:attr:`nwcorrupt.train.EnsembleResult.train_loss` and ``train_accuracy``: the
recipe's loss and the accuracy of each network's final parameters over its whole
training set):

- ``train_loss_mean``: the training loss, mean over the networks;
- ``train_accuracy_mean``: the training accuracy, mean over the networks;
- ``train_accuracy_min``: the lowest training accuracy of any network.

Its report gets a table ``training_fit`` with these columns, the threshold and a
``fit`` column: ``"ok"``, or ``"UNDERFIT"`` with the offending value when
``train_accuracy_min`` is below the threshold, so that a network that did not learn
its training set is not read as a finding about corrupted data. Records written
before these fields existed show ``"not recorded"``.

Threshold on fixed training sets: :data:`FIXED_SET_THRESHOLD` = 0.99. The studies'
networks have far more parameters than training targets (N·C) and are trained to
interpolation; the infinite-width NTK predictor they are compared with (t = ∞)
fits its training set exactly. Under heavy corruption the noisy inputs are close
to pure noise in d ≈ 784 dimensions, nearly orthogonal to one another, so a trained
network memorises them and a training accuracy of 1 is expected at the study
recipes. A network that misclassifies more than 1 % of its own training rows has
therefore stopped short of the regime the comparison assumes (too few epochs, too
small a learning rate); the 1 % slack only allows for a few rows that are hard to
separate (near-duplicate inputs with different labels). A quick or tiny scale that
trains for a few epochs on purpose is flagged all the same: the flag reports what
was trained, not what was intended.

Online corruption (inputs redrawn every epoch): the fit is measured on the inputs of
the last epoch trained, fresh noise the network saw once, so at p > 0 it is bounded
by how separable data corrupted at level p are, and no fixed threshold applies: the
values are recorded and the flag reads ``"not checked (online, p > 0)"``. At p = 0
the corruption is the identity, the training set is fixed, and the 0.99 threshold
applies.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["FIELDS", "FIXED_SET_THRESHOLD", "HEADER", "columns", "flag", "online_threshold", "summarize"]

#: Minimum training accuracy of every network trained on a fixed training set (module docstring).
FIXED_SET_THRESHOLD = 0.99

#: The record fields, in table order.
FIELDS = ("train_loss_mean", "train_accuracy_mean", "train_accuracy_min")

#: Columns of the ``training_fit`` tables after the point's own columns.
HEADER = (*FIELDS, "fit_threshold", "fit")


def summarize(train_loss: Any, train_accuracy: Any) -> dict[str, float]:
    """The record fields of a set of trained networks.

    Args:
      train_loss: training loss of each network, any shape ((K, M), (R,), ...).
      train_accuracy: training accuracy of each network, the same shape.

    Returns:
      dict with ``train_loss_mean``, ``train_accuracy_mean`` (means over all networks) and
      ``train_accuracy_min``.
    """
    loss = np.asarray(train_loss, dtype=np.float64)
    acc = np.asarray(train_accuracy, dtype=np.float64)
    if loss.shape != acc.shape or loss.size == 0:
        raise ValueError(
            f"train_loss and train_accuracy must have the same non-empty shape, got {loss.shape} and {acc.shape}"
        )
    return {
        "train_loss_mean": float(loss.mean()),
        "train_accuracy_mean": float(acc.mean()),
        "train_accuracy_min": float(acc.min()),
    }


def online_threshold(p: float) -> float | None:
    """Threshold of a network trained with per-epoch corruption at level p: the fixed-set one at
    p = 0 (the corruption is the identity), None (not checked) at p > 0."""
    return FIXED_SET_THRESHOLD if float(p) == 0.0 else None


def flag(train_accuracy_min: float | None, threshold: float | None) -> str:
    """``"ok"``, ``"UNDERFIT (min train accuracy <v> < <threshold>)"``, ``"not checked (online, p > 0)"``
    (no threshold) or ``"not recorded"`` (no value: a record from before the field existed)."""
    if train_accuracy_min is None or (isinstance(train_accuracy_min, float) and math.isnan(train_accuracy_min)):
        return "not recorded"
    if threshold is None:
        return "not checked (online, p > 0)"
    if train_accuracy_min < threshold:
        return f"UNDERFIT (min train accuracy {train_accuracy_min:.4f} < {threshold:g})"
    return "ok"


def columns(values: dict, threshold: float | None) -> list:
    """The :data:`HEADER` columns of one point: its :data:`FIELDS` from ``values`` (a record's metrics,
    NaN where absent), the threshold (``"-"`` when none applies) and the :func:`flag`."""
    got = [values.get(name) for name in FIELDS]
    nums = [math.nan if v is None else float(v) for v in got]
    return [*nums, "-" if threshold is None else threshold, flag(got[2], threshold)]
