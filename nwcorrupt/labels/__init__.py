"""Label noise: models, dilution, and the exact infinite-width theory of kernel predictors under it.

* :mod:`nwcorrupt.labels.models` -- class-conditional models (:class:`Symmetric`,
  :class:`Pair`, :class:`Transition`, :class:`Binary`, :class:`Structured`), instance-dependent
  noise, the per-row :class:`LabelLaw`, reproducible realisations and :func:`corrupt`;
* :mod:`nwcorrupt.labels.regression` -- additive noise on real-valued targets;
* :mod:`nwcorrupt.labels.dilution` -- :func:`dilute` by α noisy examples per clean one
  (sources ``pool``, ``copies``, ``external``, ``white``) and its exact law;
* :mod:`nwcorrupt.labels.moments` -- :func:`predictor_moments` (exact mean and covariance
  of NTK/NNGP predictions over label draws), :func:`predicted_accuracy`,
  :func:`noisy_class_means`, :func:`clean_size_for_accuracy`.

All public names of these submodules are importable from ``nwcorrupt.labels``. The theory
is in ``docs/science.md#part-ii-label-noise``.
"""

from __future__ import annotations

from nwcorrupt.labels.dilution import (
    DILUTION_STREAM,
    SOURCES,
    Diluted,
    Dilution,
    dilute,
    dilution_law,
    smoothed_targets,
)
from nwcorrupt.labels.models import (
    LABEL_STREAM,
    ORDERS,
    Binary,
    InstanceDependent,
    LabelLaw,
    LabelNoise,
    Pair,
    Structured,
    Symmetric,
    Transition,
    check_stochastic_rows,
    check_transition,
    class_mean_confusion,
    corrupt,
    flip_fraction,
    row_uniforms,
    structured_transition,
    with_confusion,
)
from nwcorrupt.labels.moments import (
    AccuracyPrediction,
    clean_size_for_accuracy,
    noisy_class_means,
    predicted_accuracy,
    predictor_moments,
)
from nwcorrupt.labels.regression import REGRESSION_DISTS, RegressionNoise

__all__ = [
    "LABEL_STREAM",
    "DILUTION_STREAM",
    "ORDERS",
    "SOURCES",
    "REGRESSION_DISTS",
    "LabelNoise",
    "LabelLaw",
    "Symmetric",
    "Pair",
    "Transition",
    "Binary",
    "Structured",
    "InstanceDependent",
    "RegressionNoise",
    "Dilution",
    "Diluted",
    "AccuracyPrediction",
    "check_stochastic_rows",
    "check_transition",
    "class_mean_confusion",
    "clean_size_for_accuracy",
    "corrupt",
    "dilute",
    "dilution_law",
    "flip_fraction",
    "noisy_class_means",
    "predicted_accuracy",
    "predictor_moments",
    "row_uniforms",
    "smoothed_targets",
    "structured_transition",
    "with_confusion",
]
