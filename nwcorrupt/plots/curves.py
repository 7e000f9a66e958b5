"""Generic figures of the studies: accuracy curves, panels, heat maps, width and log-log fits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from nwcorrupt.plots.base import (
    ACCURACY_LABEL,
    P_LABEL,
    band_note,
    caption,
    fill_band,
    label,
    legend_below,
    points,
    pyplot,
    spread,
)

__all__ = [
    "accuracy_curves",
    "accuracy_grid",
    "accuracy_heatmap",
    "accuracy_panels",
    "corrupted_strip",
    "curve_with_band",
    "group_curves",
    "log_tick_label",
    "logit_scatter",
    "loglog_fits",
    "width_curves",
]


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
    plt = pyplot()
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
    plt = pyplot()
    noises = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(1, len(noises), figsize=(4.2 * len(noises), 3.4), squeeze=False, sharey=True)
    for ax, noise in zip(axes[0], noises):
        sub = [r for r in rows if r[0] == noise]
        for name in dict.fromkeys(r[2] for r in sub):
            p, m, s = points(sub, 2, 1, 3, 4, name)
            (line,) = ax.plot(p, m, marker="o", ms=3, label=label(name))
            fill_band(ax, p, m, s, color=line.get_color(), alpha=0.25)
        level = chance.get(noise) if isinstance(chance, Mapping) else chance
        if level is not None:
            ax.axhline(level, color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel(xlabel)
        ax.set_title(label(noise), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(ylabel)
    if title:
        fig.suptitle(title, fontsize=10)
    legend_below(fig, axes[0, -1])
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
    plt = pyplot()
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
    plt = pyplot()
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
                p, m, s = points(sub, 3, 2, 4, 5, name)
                (line,) = ax.plot(p, m, marker="o", ms=3, label=label(name))
                fill_band(ax, p, m, s, color=line.get_color(), alpha=0.2)
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
    legend_below(fig, axes[0, 0])
    caption(fig, band)
    return fig


def logit_scatter(panels: Sequence[tuple[str, dict]], *, title: str | None = None, note: str | None = None):
    """Centroid-model fit: predicted a·s_i + b against the actual mean logits, one panel per fit.

    Args:
      panels: (panel title, fit) pairs; fit holds ``predicted`` and ``actual`` (n,) arrays,
        ``is_true`` (n,) bool (entry of the true class), and the numbers a, b, c, r2.
      note: a caption line (e.g. what the logits are averaged over).
    """
    plt = pyplot()
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
    plt = pyplot()
    xs, m = (np.asarray(v, dtype=float) for v in (x, mean))
    s = np.asarray([spread(v) for v in std], dtype=float)
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    (line,) = ax.plot(xs, m, marker="o", ms=3)
    fill_band(ax, xs, m, s, color=line.get_color(), alpha=0.25)
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
    plt = pyplot()
    col = {h: i for i, h in enumerate(header)}
    noises = list(dict.fromkeys(r[col["noise"]] for r in rows))
    fig, axes = plt.subplots(len(noises), len(quantities), figsize=(4.2 * len(quantities), 3.3 * len(noises)),
                             squeeze=False)
    for i, noise in enumerate(noises):
        sub = [r for r in rows if r[col["noise"]] == noise]
        for j, (q, ylabel) in enumerate(quantities):
            ax = axes[i, j]
            for p in sorted(dict.fromkeys(r[col["p"]] for r in sub)):
                w, m, s = points(sub, col["p"], col["width"], col[q + "_mean"], col[q + "_std"], p)
                (line,) = ax.plot(w, m, marker="o", ms=3, label=f"p = {p:g}")
                fill_band(ax, w, m, s, color=line.get_color(), alpha=0.2)
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


def log_tick_label(v: float, _pos=None) -> str:
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

    plt = pyplot()
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
        ax.xaxis.set_major_formatter(FuncFormatter(log_tick_label))
        ax.xaxis.set_minor_locator(LogLocator(subs=(2.0, 5.0)))
        ax.xaxis.set_minor_formatter(FuncFormatter(log_tick_label))
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
    plt = pyplot()
    styles = {"network": "-", "ntk": "--"} if styles is None else styles
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def curve(group, pred):
        sub = [r for r in rows if r[0] == group]
        return points(sub, 2, 1, 3, 4, pred) if any(r[2] == pred for r in sub) else None

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
                fill_band(ax, p, m, s, color=color, alpha=0.2)
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
