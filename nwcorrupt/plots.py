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
"""

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
    "accuracy_curves",
    "accuracy_grid",
    "accuracy_heatmap",
    "accuracy_panels",
    "band_note",
    "caption",
    "corrupted_strip",
    "curve_with_band",
    "dilution_figures",
    "group_curves",
    "label",
    "logit_scatter",
    "loglog_fits",
    "save_figure",
    "series_counts",
    "spread",
    "width_curves",
]

LABELS: dict[str, str] = {
    # predictors (studies heavy_corruption, centroid_comparison, activations, finite_vs_infinite, snr_sweep)
    "network": "network",
    "ntk": "NTK",
    "nngp": "NNGP",
    "meanfield": "mean-field",
    "rule_noisy": "centroid rule (noisy means)",
    "rule_leading": "leading-order rule (clean means)",
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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _band(ax, x, m, s, **kw) -> None:
    """Shade m ± s over x where s is finite (no band where a point has no std)."""
    ok = np.isfinite(s)
    if ok.any():
        ax.fill_between(x, m - np.where(ok, s, 0.0), m + np.where(ok, s, 0.0), where=ok, interpolate=False, **kw)


def _legend_below(fig, ax) -> None:
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


def _points(rows, key_col: int, x_col: int, mean_col: int, std_col: int, key):
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


def corrupted_strip(
    rows: Sequence[tuple[str, Sequence[np.ndarray]]],
    ps: Sequence[float],
    image_shape: tuple[int, int],
    *,
    title: str | None = None,
):
    """A grid of corrupted copies of one image: one row per noise model, one column per p.

    Args:
      rows: (noise key, images) pairs; images is a sequence of len(ps) flattened (d,) arrays.
        The row is labelled with :func:`label` of the key.
      ps: the corruption levels of the columns.
      image_shape: (h, w) with h·w = d.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), len(ps), figsize=(1.3 * len(ps), 1.45 * len(rows) + 0.3), squeeze=False)
    for r, (key, images) in enumerate(rows):
        for c, (p, img) in enumerate(zip(ps, images)):
            ax = axes[r, c]
            ax.imshow(np.asarray(img).reshape(image_shape), cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"p = {p:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(label(key).replace(" (", "\n("), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_curves(
    rows: Sequence[Sequence],
    *,
    title: str | None = None,
    chance: float | Mapping[str, float] | None = 0.1,
    ylabel: str = ACCURACY_LABEL,
    xlabel: str = P_LABEL,
    band: str | None = None,
):
    """Mean vs p with ±1 std bands, one panel per noise model, one line per predictor.

    Args:
      rows: table rows (noise, p, predictor, mean, std, ...); an empty std cell (one sample)
        draws no band at that point.
      chance: a dashed reference line at this level, or panel key -> level (None: none).
      ylabel, xlabel: axis labels (the quantity plotted and its unit).
      band: the caption line that says what the bands are (:func:`band_note`).
    """
    plt = _pyplot()
    noises = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(1, len(noises), figsize=(4.2 * len(noises), 3.4), squeeze=False, sharey=True)
    for ax, noise in zip(axes[0], noises):
        sub = [r for r in rows if r[0] == noise]
        for name in dict.fromkeys(r[2] for r in sub):
            p, m, s = _points(sub, 2, 1, 3, 4, name)
            (line,) = ax.plot(p, m, marker="o", ms=3, label=label(name))
            _band(ax, p, m, s, color=line.get_color(), alpha=0.25)
        level = chance.get(noise) if isinstance(chance, Mapping) else chance
        if level is not None:
            ax.axhline(level, color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel(xlabel)
        ax.set_title(label(noise), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    _legend_below(fig, axes[0, -1])
    caption(fig, band)
    return fig


# --------------------------------------------------------------------------- studies accuracy_vs_corruption, ptrain_ptest


def accuracy_panels(
    rows: Sequence[Sequence],
    *,
    title: str | None = None,
    ylabel: str = "accuracy (fraction correct)",
    xlabel: str = P_LABEL,
    band: str | None = None,
):
    """Accuracy vs p with ±1 std bands: one panel per data set, one line per evaluation split.

    Args:
      rows: table rows (dataset, p, split, mean, std, n, chance); the panel of a
        data set draws its chance level (last column) as a dashed line.
      band: the caption line that says what the bands are.
    """
    chance = {r[0]: float(r[6]) for r in rows}
    return accuracy_curves(rows, title=title, chance=chance, ylabel=ylabel, xlabel=xlabel, band=band)


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres: midpoints inside, half a spacing beyond the ends."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def accuracy_heatmap(
    p_train: Sequence[float],
    p_test: Sequence[float],
    acc,
    *,
    title: str | None = None,
    colorbar_label: str = "test accuracy (fraction correct)",
):
    """Heat map of accuracy over (p_train, p_test) with a colour bar.

    Args:
      p_train: (A,) sorted training levels (vertical axis).
      p_test: (B,) sorted test levels (horizontal axis).
      acc: (A, B) accuracies; cell (i, j) is (p_train[i], p_test[j]).
      colorbar_label: what a cell's colour is (say what it is averaged over).
    """
    plt = _pyplot()
    a = np.asarray(acc, dtype=float)
    if a.shape != (len(p_train), len(p_test)):
        raise ValueError(f"acc must have shape ({len(p_train)}, {len(p_test)}), got {a.shape}")
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    mesh = ax.pcolormesh(_edges(p_test), _edges(p_train), a, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label=colorbar_label)
    ax.set_xlabel(r"test corruption level $p_{\mathrm{test}}$")
    ax.set_ylabel(r"training corruption level $p_{\mathrm{train}}$")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- centroid_comparison, finite_vs_infinite


def accuracy_grid(
    rows: Sequence[Sequence],
    *,
    curves: dict | None = None,
    title: str | None = None,
    chance: float | None = 0.1,
    ylabel: str = ACCURACY_LABEL,
    xlabel: str = P_LABEL,
    band: str | None = None,
):
    """Mean vs p with ±1 std bands on a grid of panels (one row per first key, one column per second).

    Args:
      rows: table rows (row_key, col_key, p, predictor, mean, std, ...), e.g. (data set, noise, ...).
      curves: optional {(row_key, col_key): [(label, ps, values), ...]} drawn as dashed lines
        without bands (model predictions); their labels are shown as given.
      title: figure title; chance: a horizontal reference line (None: none).
      ylabel, xlabel: axis labels; band: the caption line that says what the bands are.
    """
    plt = _pyplot()
    row_keys = list(dict.fromkeys(r[0] for r in rows))
    col_keys = list(dict.fromkeys(r[1] for r in rows))
    fig, axes = plt.subplots(len(row_keys), len(col_keys), figsize=(4.4 * len(col_keys), 3.4 * len(row_keys)),
                             squeeze=False, sharey=True)
    styles = ("--", ":", "-.")
    for i, rk in enumerate(row_keys):
        for j, ck in enumerate(col_keys):
            ax = axes[i, j]
            sub = [r for r in rows if r[0] == rk and r[1] == ck]
            for name in dict.fromkeys(r[3] for r in sub):
                p, m, s = _points(sub, 3, 2, 4, 5, name)
                (line,) = ax.plot(p, m, marker="o", ms=3, label=label(name))
                _band(ax, p, m, s, color=line.get_color(), alpha=0.2)
            for n, (name, ps, vals) in enumerate((curves or {}).get((rk, ck), [])):
                order = np.argsort(np.asarray(ps, dtype=float))
                ax.plot(np.asarray(ps, dtype=float)[order], np.asarray(vals, dtype=float)[order], color="k",
                        ls=styles[n % len(styles)], lw=1.2, label=name)
            if chance is not None:
                ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
            ax.set_title(f"{label(rk)}, {label(ck)}", fontsize=10)
            ax.grid(alpha=0.3)
            if i == len(row_keys) - 1:
                ax.set_xlabel(xlabel)
            if j == 0:
                ax.set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    _legend_below(fig, axes[0, 0])
    caption(fig, band)
    return fig


def logit_scatter(panels: Sequence[tuple[str, dict]], *, title: str | None = None, note: str | None = None):
    """Centroid-model fit: predicted a·s_i + b against the actual mean logits, one panel per fit.

    Args:
      panels: (panel title, fit) pairs; fit holds ``predicted`` and ``actual`` (n,) arrays,
        ``is_true`` (n,) bool (entry of the true class), and the numbers a, b, c, r2.
      note: a caption line (e.g. what the logits are averaged over).
    """
    plt = _pyplot()
    cols = min(3, len(panels))
    nrows = -(-len(panels) // cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.0 * cols, 3.8 * nrows), squeeze=False)
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (name, fit) in zip(axes.ravel(), panels):
        pred, act = np.asarray(fit["predicted"], dtype=float), np.asarray(fit["actual"], dtype=float)
        true = np.asarray(fit["is_true"], dtype=bool)
        ax.scatter(pred[~true], act[~true], s=2, alpha=0.3, color="tab:blue", rasterized=True, label="other classes")
        ax.scatter(pred[true], act[true], s=2, alpha=0.5, color="tab:red", rasterized=True, label="true class")
        lo, hi = float(min(pred.min(), act.min())), float(max(pred.max(), act.max()))
        ax.plot([lo, hi], [lo, hi], color="k", lw=0.8)
        ax.plot([], [], " ", label=f"a = {fit['a']:.4g}, b = {fit['b']:.3g}, c = {fit['c']:.3g}")
        ax.text(0.04, 0.96, f"R² = {fit['r2']:.3f}", transform=ax.transAxes, va="top", fontsize=9,
                bbox=dict(boxstyle="round", fc="white", alpha=0.8))
        ax.set_title(name, fontsize=9)
        ax.set_xlabel(r"centroid model $a\,s_i + b$ (logit units)")
        ax.set_ylabel(r"network logit $\bar f_i$ (mean over sets and inits)")
        ax.legend(fontsize=7, loc="lower right", markerscale=4)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    caption(fig, note)
    return fig


def curve_with_band(
    x: Sequence[float],
    mean: Sequence[float],
    std: Sequence,
    *,
    xlabel: str,
    ylabel: str,
    reference: float | None = None,
    reference_label: str = "reference",
    title: str | None = None,
    band: str | None = None,
):
    """One curve with a ±1 std band (none where a std cell is empty), and an optional horizontal reference line.

    Args:
      band: the caption line that says what the band is (:func:`band_note`).
    """
    plt = _pyplot()
    xs, m = (np.asarray(v, dtype=float) for v in (x, mean))
    s = np.asarray([spread(v) for v in std], dtype=float)
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    (line,) = ax.plot(xs, m, marker="o", ms=3)
    _band(ax, xs, m, s, color=line.get_color(), alpha=0.25)
    if reference is not None:
        ax.axhline(reference, color="grey", lw=0.8, ls="--", label=reference_label)
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    caption(fig, band)
    return fig


def width_curves(
    header: Sequence[str],
    rows: Sequence[Sequence],
    *,
    quantities: Sequence[tuple[str, str]],
    title: str | None = None,
    band: str | None = None,
):
    """Quantities vs width (log x) with ±1 std bands: one row of panels per noise, one line per p.

    Args:
      header: column names of ``rows``; it must hold ``noise``, ``p``, ``width`` and, for each
        quantity q, ``q_mean`` and ``q_std``.
      rows: table rows.
      quantities: (column stem q, axis label) pairs, one panel column each.
      band: the caption line that says what the bands are.
    """
    plt = _pyplot()
    col = {h: i for i, h in enumerate(header)}
    noises = list(dict.fromkeys(r[col["noise"]] for r in rows))
    fig, axes = plt.subplots(len(noises), len(quantities), figsize=(4.2 * len(quantities), 3.3 * len(noises)),
                             squeeze=False)
    for i, noise in enumerate(noises):
        sub = [r for r in rows if r[col["noise"]] == noise]
        for j, (q, ylabel) in enumerate(quantities):
            ax = axes[i, j]
            for p in sorted(dict.fromkeys(r[col["p"]] for r in sub)):
                w, m, s = _points(sub, col["p"], col["width"], col[q + "_mean"], col[q + "_std"], p)
                (line,) = ax.plot(w, m, marker="o", ms=3, label=f"p = {p:g}")
                _band(ax, w, m, s, color=line.get_color(), alpha=0.2)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("hidden width n (units per layer)")
            ax.set_ylabel(ylabel)
            ax.set_title(label(noise), fontsize=10)
            ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    caption(fig, band)
    return fig


# ---------------------------------------------------------------------------
# SNR sweep and activation studies
# ---------------------------------------------------------------------------


def _log_tick_label(v: float, _pos=None) -> str:
    """A log-axis tick label: plain for 10⁻³ < v < 10⁴, m×10^e otherwise."""
    if v <= 0:
        return ""
    e = int(np.floor(np.log10(v) + 1e-9))
    if -3 < e < 4:
        return f"{v:g}"
    m = v / 10.0**e
    return f"$10^{{{e}}}$" if abs(m - 1) < 1e-9 else f"${m:g}\\times10^{{{e}}}$"


def loglog_fits(
    panels: Sequence[tuple[str, Sequence[dict]]],
    *,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    ncols: int | None = None,
    note: str | None = None,
):
    """Log–log scatter plots with fitted power laws, one panel per entry of ``panels``.

    Args:
      panels: (panel title, series) pairs; each series is a dict with ``label`` (a key, shown
        through :func:`label`), ``x`` and ``y`` (positive values of equal length) and optionally
        ``slope``, ``intercept``, ``stderr`` of the fit log y = slope · log x + intercept (natural
        logs). A series with a slope gets the fitted line over its x range and "slope a ± s" in its
        legend entry (s: the standard error of the least-squares slope).
      xlabel, ylabel: axis labels (shared by the panels).
      ncols: panels per row (default: all in one row).
      note: a caption line (what the points are, what ± is).
    """
    from matplotlib.ticker import FuncFormatter, LogLocator

    plt = _pyplot()
    ncols = len(panels) if ncols is None else max(1, min(ncols, len(panels)))
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.6 * nrows), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.ravel()[len(panels):]:
        ax.set_visible(False)
    for ax, (name, series) in zip(axes.ravel(), panels):
        for i, s in enumerate(series):
            x, y = np.asarray(s["x"], dtype=float), np.asarray(s["y"], dtype=float)
            color = colors[i % len(colors)]
            text = label(s["label"])
            if s.get("slope") is not None:
                err = s.get("stderr")
                text += f": slope {s['slope']:.2f}" + (f" ± {err:.2f}" if err is not None and np.isfinite(err) else "")
                xs = np.geomspace(x.min(), x.max(), 50)
                ax.plot(xs, np.exp(s["intercept"]) * xs ** s["slope"], color=color, lw=1.2)
            ax.scatter(x, y, color=color, s=18, label=text, zorder=3)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_log_tick_label))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(_log_tick_label))
        ax.set_xlabel(xlabel)
        ax.set_title(name, fontsize=10)
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    for row in axes:
        row[0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    caption(fig, note)
    return fig


def group_curves(
    rows: Sequence[Sequence],
    *,
    styles: dict[str, str] | None = None,
    reference: str | None = None,
    chance: float | None = 0.1,
    xlabel: str = P_LABEL,
    ylabel: str = ACCURACY_LABEL,
    title: str | None = None,
    band: str | None = None,
):
    """Curves mean(p) ± std of several groups in one panel: one colour per group, one line style per predictor.

    Args:
      rows: table rows (group, p, predictor, mean, std, ...), e.g. group = activation.
      styles: predictor -> matplotlib line style of the curves drawn (default: network solid, ntk dashed);
        other predictors are not drawn, except ``reference``. Only solid curves get a ±1 std band.
      reference: a predictor drawn once in black dotted (its curve from the first group that has it),
        e.g. a rule that does not depend on the group.
      chance: a grey horizontal line at this level, or None.
      band: the caption line that says what the bands are.
    """
    plt = _pyplot()
    styles = {"network": "-", "ntk": "--"} if styles is None else styles
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def curve(group, pred):
        sub = [r for r in rows if r[0] == group]
        return _points(sub, 2, 1, 3, 4, pred) if any(r[2] == pred for r in sub) else None

    groups = list(dict.fromkeys(r[0] for r in rows))
    for i, group in enumerate(groups):
        color = colors[i % len(colors)]
        for pred, ls in styles.items():
            c = curve(group, pred)
            if c is None:
                continue
            p, m, s = c
            text = label(group) if len(styles) == 1 else f"{label(group)} ({label(pred)})"
            ax.plot(p, m, ls=ls, color=color, marker="o", ms=3, label=text)
            if ls == "-":
                _band(ax, p, m, s, color=color, alpha=0.2)
    if reference is not None:
        for group in groups:
            c = curve(group, reference)
            if c is not None:
                ax.plot(c[0], c[1], ls=":", color="black", lw=1.5, label=label(reference))
                break
    if chance is not None:
        ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    caption(fig, band)
    return fig


def dilution_figures(tables: Mapping[str, tuple], targets: Sequence[float]) -> dict:
    """Figures of the ``dilution`` study from its tables (``accuracy``, ``required_clean_size``).

    * ``accuracy_vs_alpha``: networks (mean, ±1 std band) per depth against α, with the NTK mean
      predictor (dotted) and the NTK predicted accuracy (dashed) on the same diluted sets;
    * ``required_clean_size``: the clean-set size reaching each target accuracy against 1 + α,
      networks (solid) and NTK prediction (dashed), log–log, with fitted slopes;
    * ``structured``: accuracy against δ per ordering; ``robustness``: batch size (H_α as a
      horizontal line), learning rate and noise source.
    """
    plt = _pyplot()
    header, rows = tables["accuracy"]
    col = {name: i for i, name in enumerate(header)}
    figs = {}

    def part(name):
        return [r for r in rows if r[col["part"]] == name]

    def num(v):
        return math.nan if v in ("", None) else float(v)

    def note(rs):
        return band_note({"networks": [r[col["n"]] for r in rs]}, "R", "networks (initialisations) per point")

    def network_series(ax, rs, group, x, label_of):
        """One network line with its ±1 std band per value of column ``group``, against column ``x``;
        returns {group value: (sorted rows, line)}."""
        out = {}
        for g in sorted({r[col[group]] for r in rs}):
            sub = sorted((r for r in rs if r[col[group]] == g), key=lambda r: r[col[x]])
            xs = np.asarray([r[col[x]] for r in sub], float)
            m = np.asarray([r[col["net_mean"]] for r in sub], float)
            sd = np.asarray([spread(r[col["net_std"]]) for r in sub], float)
            (line,) = ax.plot(xs, m, marker="o", ms=3, label=label_of(g))
            _band(ax, xs, m, sd, color=line.get_color(), alpha=0.2)
            out[g] = (sub, line)
        return out

    alpha_rows = part("alpha")
    if alpha_rows:
        fig, ax = plt.subplots(figsize=(5.6, 3.8))
        for depth, (rs, line) in network_series(ax, alpha_rows, "depth", "alpha", lambda h: f"{h} hidden: network").items():
            a = np.asarray([r[col["alpha"]] for r in rs], float)
            pred = np.asarray([num(r[col["ntk_predicted"]]) for r in rs])
            mean_acc = np.asarray([num(r[col["ntk_mean_acc"]]) for r in rs])
            if np.isfinite(pred).any():
                ax.plot(a, pred, ls="--", color=line.get_color(), label=f"{depth} hidden: NTK predicted")
                ax.plot(a, mean_acc, ls=":", color=line.get_color(), label=f"{depth} hidden: NTK mean predictor")
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("noisy examples per clean one α")
        ax.set_ylabel(ACCURACY_LABEL)
        ax.grid(alpha=0.3)
        _legend_below(fig, ax)
        caption(fig, note(alpha_rows) + "; NTK lines: exact theory on the same diluted set (missing where skipped)")
        figs["accuracy_vs_alpha"] = fig

    if "required_clean_size" in tables:
        _, srows = tables["required_clean_size"]
        fig, ax = plt.subplots(figsize=(5.0, 3.6))
        for i, target in enumerate(targets):
            rs = sorted((r for r in srows if r[1] == target), key=lambda r: r[0])
            a = np.asarray([1 + r[0] for r in rs], float)
            for j, (c, style, who) in enumerate(((2, "-", "networks"), (3, "--", "NTK predicted"))):
                n = np.asarray([num(r[c]) for r in rs], float)
                ok = np.isfinite(n)
                if ok.sum() >= 1:
                    lab = f"accuracy {target:g}: {who}"
                    if ok.sum() >= 2:
                        lab += f" (slope {np.polyfit(np.log(a[ok]), np.log(n[ok]), 1)[0]:.2f})"
                    ax.plot(a[ok], n[ok], ls=style, marker="o" if j == 0 else "s", ms=3, color=f"C{i}", label=lab)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("1 + α")
        ax.set_ylabel("clean examples N needed")
        ax.grid(alpha=0.3, which="both")
        _legend_below(fig, ax)
        caption(fig, "N where the accuracy-vs-N curve first crosses the target inside the N grid (interpolated in log N; no point "
                     "where it starts above or never reaches it); slope of log N vs "
                     "log(1 + α), 1 = linear growth")
        figs["required_clean_size"] = fig

    srows = part("structured")
    if srows:
        fig, ax = plt.subplots(figsize=(4.8, 3.4))
        network_series(ax, srows, "order", "delta", lambda o: f"{o} order")
        ax.set_xlabel("structure δ of the noisy labels")
        ax.set_ylabel(ACCURACY_LABEL)
        ax.grid(alpha=0.3)
        _legend_below(fig, ax)
        caption(fig, note(srows) + f"; α = {srows[0][col['alpha']]:g}")
        figs["structured"] = fig

    panels = [(name, part(name)) for name in ("batch", "learning_rate", "source") if part(name)]
    if panels:
        fig, axes = plt.subplots(1, len(panels), figsize=(3.4 * len(panels), 3.2), squeeze=False)
        for ax, (name, rs) in zip(axes[0], panels):
            m = np.asarray([r[col["net_mean"]] for r in rs], float)
            sd = np.asarray([spread(r[col["net_std"]]) for r in rs], float)
            if name == "source":
                ax.bar(range(len(rs)), m, yerr=np.nan_to_num(sd), color="C0", alpha=0.7)
                ax.set_xticks(range(len(rs)), [r[col["source"]] for r in rs])
                ax.set_xlabel("noisy inputs")
            else:
                key = col["batch_size"] if name == "batch" else col["learning_rate"]
                finite = [(r[key], mi, si) for r, mi, si in zip(rs, m, sd) if r[key] != 0]
                if finite:
                    x, mm, ss = (np.asarray(v, float) for v in zip(*sorted(finite)))
                    ax.errorbar(x, mm, yerr=np.nan_to_num(ss), marker="o", ms=3, capsize=2)
                ax.set_xscale("log", base=2 if name == "batch" else 10)
                ax.set_xlabel("batch size" if name == "batch" else "learning rate")
                for r, mi in zip(rs, m):
                    if name == "batch" and r[key] == 0:
                        ax.axhline(mi, color="grey", ls="--", lw=0.8, label="H_α (expected labels)")
                        ax.legend(fontsize=7)
            ax.set_ylabel(ACCURACY_LABEL if ax is axes[0][0] else "")
            ax.set_title(f"α = {rs[0][col['alpha']]:g}", fontsize=9)
            ax.grid(alpha=0.3)
        fig.tight_layout()
        caption(fig, "error bars: ±1 std over the networks of each point (ddof = 1)")
        figs["robustness"] = fig
    return figs
