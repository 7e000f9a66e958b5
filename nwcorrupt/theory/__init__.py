"""Theory of heavily corrupted data: the mean-field (noise-averaged) first layer and its ε-expansion.

For large d the first-layer overlaps of corrupted points concentrate on their
average over the noise; the mean-field predictor propagates these averages
through the infinite-width recursion of :mod:`nwcorrupt.kernels` (the only
NNGP/NTK recursion of the package). Around pure noise (ε = 1 − p → 0) the
predictor has a Taylor series whose first order is the overlap rule
argmax_i ⟨x*, μ_i⟩ when T_*/Δ > 0 (docs/theory.md).

Submodules, one concept each (every public name is re-exported here):

* :mod:`~nwcorrupt.theory.overlaps` — noise-averaged overlaps (:func:`meanfield_overlaps`,
  :func:`overlap_poly`) and :func:`noise_kind`;
* :mod:`~nwcorrupt.theory.recursion` — output kernels as functions of the overlaps
  (:func:`pair_kernel`, :func:`diag_kernel`, :func:`pair_kernel_partials`,
  :func:`kernels_from_overlaps`) on :func:`nwcorrupt.kernels.kernel_layers`;
* :mod:`~nwcorrupt.theory.meanfield` — the exact mean-field predictor and its ridge
  (:func:`meanfield_predict`, :func:`meanfield_ridge`);
* :mod:`~nwcorrupt.theory.transfer` — transfer coefficients (:func:`transfer`,
  :func:`transfer_signs`);
* :mod:`~nwcorrupt.theory.first_order` — the closed-form first order (:func:`first_order`,
  :func:`assemble_first_order`);
* :mod:`~nwcorrupt.theory.series` — Taylor series by autodiff (:func:`taylor`);
* :mod:`~nwcorrupt.theory.conv` — the same for any :mod:`nwcorrupt.stax` network (convolutional
  networks): pixel-pair overlaps, :func:`conv_meanfield_predict`, :func:`conv_taylor`, and the
  leading-order rule :func:`conv_leading_rule` with its pixel weights :func:`pixel_weights`.

Conventions: ``get`` picks the kernel (``"ntk"``: gradient flow at t = ∞, ``"nngp"``: the
NNGP posterior mean), as in :mod:`nwcorrupt.kernels`; ``ridge`` is an **absolute** ridge
added to the train-train kernel diagonal (unlike the relative ``diag_reg`` of
:mod:`nwcorrupt.predict`; see :func:`meanfield_ridge`). Only the NTK parameterisation
is covered (for MLPs; stax networks in either).
"""

from __future__ import annotations

from nwcorrupt.theory.conv import (
    conv_leading_rule,
    conv_meanfield_kernels,
    conv_meanfield_predict,
    conv_taylor,
    pixel_weights,
    pure_noise_state,
)
from nwcorrupt.theory.first_order import (
    SENSITIVITY_METHODS,
    FirstOrder,
    FirstOrderInputs,
    PureNoise,
    Sensitivities,
    assemble_first_order,
    first_order,
    first_order_inputs,
)
from nwcorrupt.theory.meanfield import (
    as_targets,
    check_ridge,
    meanfield_predict,
    meanfield_ridge,
    meanfield_train_diag,
)
from nwcorrupt.theory.overlaps import (
    KINDS,
    OverlapPoly,
    Overlaps,
    empirical_overlaps,
    meanfield_overlaps,
    meanfield_self_overlaps,
    noise_kind,
    overlap_poly,
)
from nwcorrupt.theory.recursion import (
    QUAD_ORDER,
    SERIES_QUAD_ORDER,
    check_arch_get,
    check_quad_order,
    diag_kernel,
    kernels_from_overlaps,
    pair_kernel,
    pair_kernel_partials,
    split_hyper,
)
from nwcorrupt.theory.series import (
    TAYLOR_MAX_ORDER,
    KernelSeries,
    kernel_series,
    leading_decision,
    series_coefficients,
    series_sum,
    taylor,
    taylor_predict,
)
from nwcorrupt.theory.transfer import Transfer, transfer, transfer_diag, transfer_signs

__all__ = [
    # overlaps
    "KINDS",
    "OverlapPoly",
    "Overlaps",
    "empirical_overlaps",
    "meanfield_overlaps",
    "meanfield_self_overlaps",
    "noise_kind",
    "overlap_poly",
    # kernels of overlaps
    "QUAD_ORDER",
    "SERIES_QUAD_ORDER",
    "check_arch_get",
    "check_quad_order",
    "diag_kernel",
    "kernels_from_overlaps",
    "pair_kernel",
    "pair_kernel_partials",
    "split_hyper",
    # mean-field predictor
    "as_targets",
    "check_ridge",
    "meanfield_predict",
    "meanfield_ridge",
    "meanfield_train_diag",
    # transfer coefficients
    "Transfer",
    "transfer",
    "transfer_diag",
    "transfer_signs",
    # first order
    "SENSITIVITY_METHODS",
    "FirstOrder",
    "FirstOrderInputs",
    "PureNoise",
    "Sensitivities",
    "assemble_first_order",
    "first_order",
    "first_order_inputs",
    # convolutional (stax) networks
    "conv_leading_rule",
    "conv_meanfield_kernels",
    "conv_meanfield_predict",
    "conv_taylor",
    "pixel_weights",
    "pure_noise_state",
    # Taylor series
    "KernelSeries",
    "kernel_series",
    "leading_decision",
    "series_coefficients",
    "series_sum",
    "taylor",
    "TAYLOR_MAX_ORDER",
    "taylor_predict",
]
