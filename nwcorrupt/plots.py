"""Figures (matplotlib, Agg backend). The core modules never import this one."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from nwcorrupt._io import atomic_write_bytes


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


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
      rows: (label, images) pairs; images is a sequence of len(ps) flattened (d,) arrays.
      ps: the corruption levels of the columns.
      image_shape: (h, w) with h·w = d.
    """
    plt = _pyplot()
    fig, axes = plt.subplots(len(rows), len(ps), figsize=(1.3 * len(ps), 1.45 * len(rows) + 0.3), squeeze=False)
    for r, (label, images) in enumerate(rows):
        for c, (p, img) in enumerate(zip(ps, images)):
            ax = axes[r, c]
            ax.imshow(np.asarray(img).reshape(image_shape), cmap="gray", interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"p = {p:g}", fontsize=9)
            if c == 0:
                ax.set_ylabel(label, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def accuracy_curves(rows: Sequence[Sequence], *, title: str | None = None, chance: float | None = 0.1):
    """Accuracy vs p with ±1 std bands, one panel per noise model, one line per predictor.

    Args:
      rows: table rows (noise, p, predictor, mean, std, ...).
    """
    plt = _pyplot()
    noises = list(dict.fromkeys(r[0] for r in rows))
    fig, axes = plt.subplots(1, len(noises), figsize=(4.2 * len(noises), 3.4), squeeze=False, sharey=True)
    for ax, noise in zip(axes[0], noises):
        sub = [r for r in rows if r[0] == noise]
        for name in dict.fromkeys(r[2] for r in sub):
            pts = sorted((r[1], r[3], r[4]) for r in sub if r[2] == name)
            p, m, s = (np.asarray(v, dtype=float) for v in zip(*pts))
            ax.plot(p, m, marker="o", ms=3, label=name)
            ax.fill_between(p, m - s, m + s, alpha=0.25)
        if chance is not None:
            ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel("corruption level p")
        ax.set_title(noise, fontsize=10)
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("clean test accuracy")
    axes[0, -1].legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------- studies accuracy_vs_corruption, ptrain_ptest


def accuracy_panels(rows: Sequence[Sequence], *, title: str | None = None, ylabel: str = "accuracy"):
    """Accuracy vs p with ±1 std bands: one panel per data set, one line per evaluation split.

    Args:
      rows: table rows (dataset, p, split, mean, std, n, chance); the panel of a
        data set draws its chance level (last column) as a dashed line.
    """
    fig = accuracy_curves(rows, title=title, chance=None)
    panels = list(dict.fromkeys(r[0] for r in rows))
    for ax, panel in zip(fig.axes, panels):
        ax.axhline(next(float(r[6]) for r in rows if r[0] == panel), color="grey", lw=0.8, ls="--", label="chance")
        ax.set_xlabel("training corruption level p")
    fig.axes[0].set_ylabel(ylabel)
    fig.axes[-1].legend(fontsize=8)
    return fig


def _edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges around sorted centres: midpoints inside, half a spacing beyond the ends."""
    c = np.asarray(centres, dtype=float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def accuracy_heatmap(p_train: Sequence[float], p_test: Sequence[float], acc, *, title: str | None = None):
    """Heat map of accuracy over (p_train, p_test) with a colour bar.

    Args:
      p_train: (A,) sorted training levels (vertical axis).
      p_test: (B,) sorted test levels (horizontal axis).
      acc: (A, B) accuracies; cell (i, j) is (p_train[i], p_test[j]).
    """
    plt = _pyplot()
    a = np.asarray(acc, dtype=float)
    if a.shape != (len(p_train), len(p_test)):
        raise ValueError(f"acc must have shape ({len(p_train)}, {len(p_test)}), got {a.shape}")
    fig, ax = plt.subplots(figsize=(5.6, 4.4))
    mesh = ax.pcolormesh(_edges(p_test), _edges(p_train), a, cmap="viridis", shading="flat")
    fig.colorbar(mesh, ax=ax, label="test accuracy")
    ax.set_xlabel("test corruption p_test")
    ax.set_ylabel("training corruption p_train")
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
):
    """Accuracy vs p with ±1 std bands on a grid of panels (one row per first key, one column per second).

    Args:
      rows: table rows (row_key, col_key, p, predictor, mean, std, ...), e.g. (data set, noise, ...).
      curves: optional {(row_key, col_key): [(label, ps, values), ...]} drawn as dashed lines
        without bands (model predictions).
      title: figure title; chance: a horizontal reference line (None: none).
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
                pts = sorted((r[2], r[4], r[5]) for r in sub if r[3] == name)
                p, m, s = (np.asarray(v, dtype=float) for v in zip(*pts))
                ax.plot(p, m, marker="o", ms=3, label=name)
                ax.fill_between(p, m - s, m + s, alpha=0.2)
            for n, (label, ps, vals) in enumerate((curves or {}).get((rk, ck), [])):
                order = np.argsort(np.asarray(ps, dtype=float))
                ax.plot(np.asarray(ps, dtype=float)[order], np.asarray(vals, dtype=float)[order], color="k",
                        ls=styles[n % len(styles)], lw=1.2, label=label)
            if chance is not None:
                ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
            ax.set_title(f"{rk}, {ck}", fontsize=10)
            ax.grid(alpha=0.3)
            if i == len(row_keys) - 1:
                ax.set_xlabel("corruption level p")
            if j == 0:
                ax.set_ylabel("clean test accuracy")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(4, len(labels)), fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    legend_rows = -(-len(labels) // 4)
    fig.tight_layout(rect=(0, 0.045 * legend_rows / len(row_keys) + 0.02, 1, 1))
    return fig


def logit_scatter(panels: Sequence[tuple[str, dict]], *, title: str | None = None):
    """Centroid-model fit: predicted a·s_i + b against the actual mean logits, one panel per fit.

    Args:
      panels: (panel title, fit) pairs; fit holds ``predicted`` and ``actual`` (n,) arrays,
        ``is_true`` (n,) bool (entry of the true class), and the numbers a, b, c, r2.
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
        ax.set_xlabel("model a·s_i + b")
        ax.set_ylabel("mean network logit")
        ax.legend(fontsize=7, loc="lower right", markerscale=4)
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def curve_with_band(
    x: Sequence[float],
    mean: Sequence[float],
    std: Sequence[float],
    *,
    xlabel: str,
    ylabel: str,
    reference: float | None = None,
    reference_label: str = "reference",
    title: str | None = None,
):
    """One curve with a ±1 std band, and an optional horizontal reference line."""
    plt = _pyplot()
    xs, m, s = (np.asarray(v, dtype=float) for v in (x, mean, std))
    fig, ax = plt.subplots(figsize=(4.8, 3.4))
    ax.plot(xs, m, marker="o", ms=3)
    ax.fill_between(xs, m - s, m + s, alpha=0.25)
    if reference is not None:
        ax.axhline(reference, color="grey", lw=0.8, ls="--", label=reference_label)
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def width_curves(
    header: Sequence[str],
    rows: Sequence[Sequence],
    *,
    quantities: Sequence[tuple[str, str]],
    title: str | None = None,
):
    """Quantities vs width (log x) with ±1 std bands: one row of panels per noise, one line per p.

    Args:
      header: column names of ``rows``; it must hold ``noise``, ``p``, ``width`` and, for each
        quantity q, ``q_mean`` and ``q_std``.
      rows: table rows.
      quantities: (column stem q, axis label) pairs, one panel column each.
    """
    plt = _pyplot()
    col = {h: i for i, h in enumerate(header)}
    noises = list(dict.fromkeys(r[col["noise"]] for r in rows))
    fig, axes = plt.subplots(len(noises), len(quantities), figsize=(4.2 * len(quantities), 3.3 * len(noises)),
                             squeeze=False)
    for i, noise in enumerate(noises):
        sub = [r for r in rows if r[col["noise"]] == noise]
        for j, (q, label) in enumerate(quantities):
            ax = axes[i, j]
            for p in sorted(dict.fromkeys(r[col["p"]] for r in sub)):
                pts = sorted((r[col["width"]], r[col[q + "_mean"]], r[col[q + "_std"]]) for r in sub if r[col["p"]] == p)
                w, m, s = (np.asarray(v, dtype=float) for v in zip(*pts))
                ax.plot(w, m, marker="o", ms=3, label=f"p = {p:g}")
                ax.fill_between(w, m - s, m + s, alpha=0.2)
            ax.set_xscale("log", base=2)
            ax.set_xlabel("hidden width n")
            ax.set_ylabel(label)
            ax.set_title(noise, fontsize=10)
            ax.grid(alpha=0.3)
    axes[0, -1].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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
):
    """Log–log scatter plots with fitted power laws, one panel per entry of ``panels``.

    Args:
      panels: (panel title, series) pairs; each series is a dict with ``label``, ``x`` and ``y``
        (positive values of equal length) and optionally ``slope``, ``intercept``, ``stderr`` of the
        fit log y = slope · log x + intercept (natural logs). A series with a slope gets the fitted
        line over its x range and "slope a ± s" in its legend entry.
      xlabel, ylabel: axis labels (shared by the panels).
      ncols: panels per row (default: all in one row).
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
            label = s["label"]
            if s.get("slope") is not None:
                err = s.get("stderr")
                label += f": slope {s['slope']:.2f}" + (f" ± {err:.2f}" if err is not None and np.isfinite(err) else "")
                xs = np.geomspace(x.min(), x.max(), 50)
                ax.plot(xs, np.exp(s["intercept"]) * xs ** s["slope"], color=color, lw=1.2)
            ax.scatter(x, y, color=color, s=18, label=label, zorder=3)
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
    return fig


def group_curves(
    rows: Sequence[Sequence],
    *,
    styles: dict[str, str] | None = None,
    reference: str | None = None,
    chance: float | None = 0.1,
    xlabel: str = "corruption level p",
    ylabel: str = "clean test accuracy",
    title: str | None = None,
):
    """Curves mean(p) ± std of several groups in one panel: one colour per group, one line style per predictor.

    Args:
      rows: table rows (group, p, predictor, mean, std, ...), e.g. group = activation.
      styles: predictor -> matplotlib line style of the curves drawn (default: network solid, ntk dashed);
        other predictors are not drawn, except ``reference``.
      reference: a predictor drawn once in black dotted (its curve from the first group that has it),
        e.g. a rule that does not depend on the group.
      chance: a grey horizontal line at this level, or None.
    """
    plt = _pyplot()
    styles = {"network": "-", "ntk": "--"} if styles is None else styles
    fig, ax = plt.subplots(figsize=(7.2, 4.0))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]

    def curve(group, pred):
        pts = sorted((float(r[1]), float(r[3]), float(r[4])) for r in rows if r[0] == group and r[2] == pred)
        return tuple(np.asarray(v) for v in zip(*pts)) if pts else None

    groups = list(dict.fromkeys(r[0] for r in rows))
    for i, group in enumerate(groups):
        color = colors[i % len(colors)]
        for pred, ls in styles.items():
            c = curve(group, pred)
            if c is None:
                continue
            p, m, s = c
            ax.plot(p, m, ls=ls, color=color, marker="o", ms=3, label=f"{group} ({pred})")
            if ls == "-":
                ax.fill_between(p, m - s, m + s, color=color, alpha=0.2)
    if reference is not None:
        for group in groups:
            c = curve(group, reference)
            if c is not None:
                ax.plot(c[0], c[1], ls=":", color="black", lw=1.5, label=reference)
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
    return fig
