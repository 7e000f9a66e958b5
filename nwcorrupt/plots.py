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
