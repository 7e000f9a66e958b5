"""Shared pieces of every figure: the label table, bands, captions, legends, saving (see :mod:`nwcorrupt.plots`)."""

from __future__ import annotations

import io
import math
import os
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from nwcorrupt._io import atomic_write_bytes

__all__ = [
    "ACCURACY_LABEL",
    "AGREEMENT_LABEL",
    "LABELS",
    "P_LABEL",
    "fill_band",
    "band_note",
    "caption",
    "label",
    "legend_below",
    "points",
    "pyplot",
    "save_figure",
    "series_counts",
    "spread",
]

LABELS: dict[str, str] = {
    # predictors (studies heavy_corruption, centroid_comparison, activations, finite_vs_infinite, snr_sweep)
    "network": "network",
    "ntk": "NTK",
    "nngp": "NNGP",
    "meanfield": "mean-field",
    "rule_noisy": "centroid rule (noisy means)",
    "rule_leading": "leading-order rule (clean means)",
    # architectures: the networks and the theory's predictors
    "mlp": "MLP",
    "cnn_flatten": "CNN + Flatten",
    "cnn_pool": "CNN + global average pooling",
    "stage1_end": "end of Stage I",
    "final": "last step",
    "leading": "leading order of the mean-field predictor",
    "prototype": "prototype rule (clean class means)",
    # label noise (labels_and_inputs): clean inputs, observed / label-averaged / true labels
    "rule_observed": "leading-order rule (observed labels)",
    "rule_expected": "leading-order rule (label-averaged means)",
    "rule_clean": "leading-order rule (true labels)",
    "ntk_label_mean": "NTK averaged over label draws",
    "ntk_predicted": "NTK predicted accuracy",
    # prototype rules (centroid_rules)
    "overlap": "overlap rule",
    "centered": "centred overlap rule",
    "euclidean": "Euclidean nearest-centroid rule",
    # evaluation sets (accuracy_vs_corruption)
    "test_clean": "clean test set",
    "train_clean": "clean training set",
    "train_corrupted": "corrupted training set",
    # noise specs (common.NOISE_SPECS)
    "replacement": "replacement (uniform)",
    "replacement:uniform": "replacement (uniform)",
    "replacement:gaussian": "replacement (Gaussian)",
    "replacement:salt_pepper": "replacement (salt and pepper)",
    "replacement:marginal": "replacement (pixel marginal)",
    "additive": "additive (Gaussian)",
    "additive:gaussian": "additive (Gaussian)",
    "additive:uniform": "additive (uniform)",
    "additive:laplace": "additive (Laplace)",
    # losses and feature maps (principal_subspace)
    "mse": "MSE",
    "cross_entropy": "cross-entropy",
    "random": "random-init",
    # data sets
    "mnist": "MNIST",
    "fashion_mnist": "Fashion-MNIST",
    "kmnist": "KMNIST",
    "digits": "digits",
    "gaussian_mixture": "Gaussian mixture",
    # activations whose registry name is not how they are written
    "relu": "ReLU",
    "leaky_relu": "leaky ReLU",
    "gelu": "GELU",
    "silu": "SiLU",
}
"""Internal key -> the text shown in figures. Keys not listed are shown with ``_`` as a space."""


def label(key) -> str:
    """The human-readable text of an internal series/panel key.

    ``"a~b"`` (an agreement pair) reads ``"agreement: A vs B"``; a key in :data:`LABELS` reads
    as listed there; any other key is shown as is, with underscores as spaces
    (e.g. ``"width 512"``, ``"erf"``). Non-string keys are formatted with ``str``.
    """
    key = str(key)
    if "~" in key:
        a, _, b = key.partition("~")
        return f"agreement: {label(a)} vs {label(b)}"
    return LABELS.get(key, key.replace("_", " "))


def spread(cell) -> float:
    """A std table cell as a float: NaN for the empty cell of a one-sample statistic."""
    if cell is None or (isinstance(cell, str) and not cell.strip()):
        return math.nan
    return float(cell)


def band_note(counts: Mapping[str, Iterable[int]], symbol: str, what: str, *, prefix: str = "band") -> str:
    """The caption line that says what the shaded bands of a figure are, with the actual counts.

    Args:
      counts: series key -> the sample counts n of its plotted points (the tables' ``n`` column),
        for every series that gets a band where n > 1 (leave out series never drawn with one,
        e.g. the dashed lines of :func:`group_curves`).
      symbol: the name of the count, e.g. ``"K"`` or ``"R"``.
      what: what the samples are, e.g. ``"noisy training sets"``.
      prefix: how the text starts (e.g. ``"band (solid lines)"``).

    Returns:
      e.g. ``"band: ±1 std over K = 20 noisy training sets (ddof = 1)"``; a range ``K = 2–20`` when
      the counts differ; series whose points are single values (n = 1, no band) are named after
      ``"no band (one value, n = 1):"``; if no series has n > 1, ``"no band: every point is a single
      value (n = 1)"``.
    """
    by = {name: sorted({int(n) for n in ns}) for name, ns in counts.items()}
    many = sorted({n for ns in by.values() for n in ns if n > 1})
    single = [label(name) for name, ns in by.items() if ns == [1]]
    if not many:
        return "no band: every point is a single value (n = 1)"
    count = f"{many[0]}" if len(many) == 1 else f"{many[0]}–{many[-1]}"
    text = f"{prefix}: ±1 std over {symbol} = {count} {what} (ddof = 1)"
    if single:
        text += "; no band (one value, n = 1): " + ", ".join(single)
    return text


def series_counts(rows: Sequence[Sequence], key_col: int, n_col: int) -> dict[str, list[int]]:
    """Series key -> the sample counts n of its rows (column ``n_col``), for :func:`band_note`."""
    out: dict[str, list[int]] = {}
    for r in rows:
        out.setdefault(r[key_col], []).append(int(r[n_col]))
    return out


def caption(fig, text: str | None) -> None:
    """Put ``text`` as a caption line under the axes of ``fig`` (nothing for None or "").

    The text is wrapped to the figure's width and sits just below the figure's lower edge;
    :func:`save_figure` (``bbox_inches="tight"``) grows the saved image to hold it.
    """
    if text:
        width = max(40, int(fig.get_size_inches()[0] * 16))  # characters of 8-point text per line
        fig.text(0.5, -0.005, textwrap.fill(text, width), ha="center", va="top", fontsize=8, color="0.25")


def pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def fill_band(ax, x, m, s, **kw) -> None:
    """Shade m ± s over x where s is finite (no band where a point has no std)."""
    ok = np.isfinite(s)
    if ok.any():
        ax.fill_between(x, m - np.where(ok, s, 0.0), m + np.where(ok, s, 0.0), where=ok, interpolate=False, **kw)


def legend_below(fig, ax) -> None:
    """One figure legend of the entries of ``ax`` under the panels (it never hides curves), then the layout.

    The legend is anchored in figure coordinates (not to the figure box, which a tight save crops
    to hold the caption); it gets as many columns (at most 4) as the figure's width holds, and the
    figure grows by its height so that the panels keep theirs.
    """
    handles, labels = ax.get_legend_handles_labels()
    if not labels:
        fig.tight_layout()
        return
    renderer = fig.canvas.get_renderer()
    for ncol in range(min(4, len(labels)), 0, -1):
        leg = fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False,
                         bbox_to_anchor=(0.5, 0.0), bbox_transform=fig.transFigure)
        box = leg.get_window_extent(renderer).transformed(fig.transFigure.inverted())
        if box.width <= 1.0 or ncol == 1:
            break
        leg.remove()
    width, height = fig.get_size_inches()
    extra = box.height * height + 0.05  # inches of legend: the figure grows by them, the panels keep their size
    fig.set_size_inches(width, height + extra)
    fig.tight_layout(rect=(0, extra / (height + extra), 1, 1))


def points(rows, key_col: int, x_col: int, mean_col: int, std_col: int, key):
    """(x, mean, std) arrays of the rows whose ``key_col`` is ``key``, sorted by x (std NaN where empty)."""
    pts = sorted((float(r[x_col]), float(r[mean_col]), spread(r[std_col])) for r in rows if r[key_col] == key)
    return tuple(np.asarray(v, dtype=float) for v in zip(*pts))


ACCURACY_LABEL = "clean test accuracy (fraction correct)"
AGREEMENT_LABEL = "decision agreement (fraction of test points)"
P_LABEL = "training-set corruption level p"
"""Axis labels shared by the studies: accuracy and agreement on the clean test set, the training corruption level."""


def save_figure(fig, path: str | os.PathLike, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save ``fig`` atomically as ``path`` with each suffix in ``formats``; returns the paths."""
    path = Path(path)
    out = []
    for fmt in formats:
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=130, bbox_inches="tight")
        out.append(atomic_write_bytes(path.with_suffix("." + fmt), buf.getvalue()))
    return out
