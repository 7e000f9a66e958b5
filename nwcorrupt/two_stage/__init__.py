"""Two stages of feature learning under label noise (Han et al.): signal–noise data, a two-layer CNN
trained by gradient descent, the signal/noise decomposition of its filters, stage detection,
small-loss selection and the lazy (NTK) counterpart.

Modules: :mod:`~nwcorrupt.two_stage.data` (the data and its two test laws),
:mod:`~nwcorrupt.two_stage.dynamics` (model, training, decomposition),
:mod:`~nwcorrupt.two_stage.analysis` (stages, small-loss rule, early stopping, lazy NTK dynamics).
"""

from nwcorrupt.two_stage.analysis import (
    LOG2,
    LazyTrajectory,
    Stages,
    early_stopping,
    lazy,
    ntk,
    selection_curve,
    small_loss,
    stages,
)
from nwcorrupt.two_stage.data import SignalNoiseData, TestSet, make_data, mu_norm_for, snr, test_set
from nwcorrupt.two_stage.dynamics import Trajectory, decompose, forward, init, logistic_loss, simulate, simulate_seeds

__all__ = [
    "LOG2",
    "LazyTrajectory",
    "Stages",
    "early_stopping",
    "lazy",
    "ntk",
    "selection_curve",
    "small_loss",
    "stages",
    "SignalNoiseData",
    "TestSet",
    "Trajectory",
    "decompose",
    "forward",
    "init",
    "logistic_loss",
    "make_data",
    "mu_norm_for",
    "simulate",
    "simulate_seeds",
    "snr",
    "test_set",
]
