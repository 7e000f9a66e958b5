"""Figures (matplotlib, Agg backend). The core modules never import this one.

Conventions shared by every figure of the studies:

- Series, panel and noise names are the studies' internal keys (``"rule_noisy"``,
  ``"ntk~meanfield"``, ``"fashion_mnist"``, ...); :func:`label` turns each into the text a
  reader sees (legends, panel titles, axis labels), from the one table :data:`LABELS`.
- Axis labels say the plotted quantity and its unit (accuracies and agreements are
  fractions of test points in [0, 1]; corruption levels p are probabilities in [0, 1]).
- A shaded band is always ±1 sample std (ddof = 1) of the plotted mean, and the figure
  says over what in a caption line under the axes (:func:`band_note`, :func:`caption`).
  A point whose value comes from one sample has no std: its table cell is empty and it
  gets no band.

The package is split by concern: :mod:`nwcorrupt.plots.base` (the label table, bands,
captions, legends, saving), :mod:`nwcorrupt.plots.curves` (the generic figures of the
studies) and :mod:`nwcorrupt.plots.label_noise` (the figures of the label-noise studies);
every public name is importable as ``nwcorrupt.plots.<name>``.
"""

from __future__ import annotations

from nwcorrupt.plots.base import (
    ACCURACY_LABEL,
    AGREEMENT_LABEL,
    LABELS,
    P_LABEL,
    band_note,
    caption,
    fill_band,
    label,
    legend_below,
    points,
    pyplot,
    save_figure,
    series_counts,
    spread,
)
from nwcorrupt.plots.curves import (
    accuracy_curves,
    accuracy_grid,
    accuracy_heatmap,
    accuracy_panels,
    corrupted_strip,
    curve_with_band,
    group_curves,
    log_tick_label,
    logit_scatter,
    loglog_fits,
    width_curves,
)
from nwcorrupt.plots.label_noise import alignment_figures, dilution_figures, predictive_power_figures, principal_subspace_figures
from nwcorrupt.plots.two_stage import two_stage_figures

__all__ = [
    "alignment_figures",
    "ACCURACY_LABEL",
    "AGREEMENT_LABEL",
    "LABELS",
    "P_LABEL",
    "accuracy_curves",
    "accuracy_grid",
    "accuracy_heatmap",
    "accuracy_panels",
    "fill_band",
    "band_note",
    "caption",
    "corrupted_strip",
    "curve_with_band",
    "dilution_figures",
    "group_curves",
    "label",
    "legend_below",
    "log_tick_label",
    "logit_scatter",
    "loglog_fits",
    "points",
    "predictive_power_figures",
    "principal_subspace_figures",
    "pyplot",
    "save_figure",
    "series_counts",
    "spread",
    "two_stage_figures",
    "width_curves",
]
