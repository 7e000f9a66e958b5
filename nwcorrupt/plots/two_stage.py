"""Figures of the ``two_stage`` study (built from its tables alone)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nwcorrupt.plots.base import caption, label, legend_below, pyplot

__all__ = ["two_stage_figures"]


def _cols(header) -> dict[str, int]:
    return {h: i for i, h in enumerate(header)}


def _series(rows, col, tau, model, key):
    sel = [r for r in rows if float(r[col["tau"]]) == tau and r[col["model"]] == model and r[col[key]] != ""]
    return np.asarray([float(r[col["t"]]) for r in sel]), np.asarray([float(r[col[key]]) for r in sel])


def _stage_end(stages, tau: float) -> float | None:
    if stages is None:
        return None
    header, rows = stages
    c = _cols(header)
    for r in rows:
        if r[c["part"]] == "trajectory" and float(r[c["tau"]]) == tau and r[c["model"]] == "network":
            return float(r[c["window_end"]]) if r[c["window_end"]] != "" else None
    return None


def _trajectory(plt, tables, params):
    header, rows = tables["trajectory"]
    col = _cols(header)
    taus = sorted({float(r[col["tau"]]) for r in rows})
    fig, axes = plt.subplots(len(taus), 4, figsize=(16, 3.4 * len(taus)), squeeze=False)
    for row, tau in zip(axes, taus):
        end = _stage_end(tables.get("stages"), tau)
        ax = row[0]
        for key, text, color in (("gamma_max", "signal γ (max over filters)", "tab:blue"),
                                 ("rho_clean", "noise ρ of clean rows (max over filters)", "tab:green"),
                                 ("rho_flipped", "noise ρ of flipped rows (max over filters)", "tab:red")):  # fmt: skip
            t, v = _series(rows, col, tau, "network", key)
            if key == "rho_flipped" and tau == 0:
                continue
            ax.plot(t, v, color=color, label=text)
        ax.set_ylabel("coefficient")
        ax.set_title(f"τ = {tau:g}: signal and noise coefficients", fontsize=10)
        ax = row[1]
        for model, style in (("network", "-"), ("lazy", "--")):
            t, v = _series(rows, col, tau, model, "fit_clean")
            ax.plot(t, v, color="tab:green", ls=style, label=f"clean rows fitted ({model})")
            if tau > 0:
                t, v = _series(rows, col, tau, model, "fit_flipped")
                ax.plot(t, v, color="tab:red", ls=style, label=f"flipped rows fitted to their noisy label ({model})")
        ax.set_ylabel("fraction of training rows")
        ax.set_title(f"τ = {tau:g}: training fit", fontsize=10)
        ax = row[2]
        for model, style in (("network", "-"), ("lazy", "--")):
            for key, color, text in (("test_study", "tab:purple", "test, study law"), ("test_iid", "tab:orange", "test, fresh iid")):
                t, v = _series(rows, col, tau, model, key)
                ax.plot(t, v, color=color, ls=style, label=f"{text} ({model})")
        ax.set_ylabel("test accuracy (fraction correct)")
        ax.set_title(f"τ = {tau:g}: test accuracy", fontsize=10)
        ax = row[3]
        if tau > 0:
            for model, style in (("network", "-"), ("lazy", "--")):
                for key, color in (("precision", "tab:brown"), ("recall", "tab:cyan")):
                    t, v = _series(rows, col, tau, model, key)
                    ax.plot(t, v, color=color, ls=style, label=f"small-loss {key} at log 2 ({model})")
            ax.set_ylabel("precision / recall (clean = positive)")
            ax.set_title(f"τ = {tau:g}: loss < log 2 ⇒ clean", fontsize=10)
        else:
            ax.set_visible(False)
        for ax in row:
            ax.set_xscale("symlog", linthresh=10.0)
            ax.set_xlabel("gradient-descent step t (linear to 10, then logarithmic)")
            ax.grid(alpha=0.3)
            if end is not None:
                ax.axvline(end, color="0.4", lw=0.8, ls=":")
            if ax.get_visible():
                ax.legend(fontsize=7)
    fig.suptitle(f"Two-layer CNN on signal–noise data, n·SNR² = {params.n_snr2:g} (n = {params.n}, d = {params.d}, "
                 f"m = {params.m}, η = {params.lr:g}); dashed: lazy (NTK) counterpart", fontsize=10)  # fmt: skip
    fig.tight_layout()
    caption(fig, f"Curves: mean over {params.seeds} seeds (no bands). Dotted line: end of Stage I (every clean "
                 "row fitted, no flipped row), mean over the network runs that have one.")  # fmt: skip
    return fig


def _sweep(plt, tables, params):
    header, rows = tables["sweep"]
    col = _cols(header)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for tau in sorted({float(r[col["tau"]]) for r in rows}):
        sub = sorted((r for r in rows if float(r[col["tau"]]) == tau), key=lambda r: float(r[col["n_snr2"]]))
        v = [float(r[col["one_minus_2tau_n_snr2"]]) for r in sub]
        (line,) = axes[0].plot(v, [float(r[col["window_fraction"]]) for r in sub], marker="o", label=f"network, τ = {tau:g}")
        axes[0].plot(v, [float(r[col["lazy_window_fraction"]]) for r in sub], marker="x", ls="--", color=line.get_color(),
                     label=f"lazy (NTK), τ = {tau:g}")  # fmt: skip
        es = [(float(r[col["n_snr2"]]), r[col["study_at_stage1_end"]]) for r in sub]
        axes[1].plot([c for c, s in es if s != ""], [float(s) for c, s in es if s != ""], marker="o", color=line.get_color(),
                     label=f"early stopped at the end of Stage I, τ = {tau:g}")  # fmt: skip
        axes[1].plot([float(r[col["n_snr2"]]) for r in sub], [float(r[col["study_final"]]) for r in sub], marker="s",
                     ls="--", color=line.get_color(), label=f"after step {params.steps}, τ = {tau:g}")  # fmt: skip
    if "constant" in tables:
        ch, crow = tables["constant"]
        c = _cols(ch)
        allrow = [r for r in crow if r[c["tau"]] == "all"]
        if allrow and allrow[0][c["estimate"]] != "":
            axes[0].axvline(float(allrow[0][c["estimate"]]), color="0.4", ls=":", lw=1, label="fitted constant C")
    for ax, key in ((axes[0], "one_minus_2tau_n_snr2"), (axes[1], "n_snr2")):
        ax.set_xscale("log")
        ticks = sorted({round(float(r[col[key]]), 3) for r in rows})
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks], fontsize=7)
        ax.minorticks_off()
    axes[0].set_xlabel("(1 − 2τ)·n·SNR²")
    axes[0].set_ylabel("fraction of runs with a Stage I window")
    axes[1].set_xlabel("n·SNR²")
    axes[1].set_ylabel("test accuracy, study law (fraction correct)")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Where a Stage I window exists (two-layer CNN vs its lazy counterpart)", fontsize=10)
    fig.tight_layout()
    caption(fig, f"Each point: {params.seeds} runs (seeds); right panel: mean over the runs that have a window (early "
                 "stopped) or over all runs (final).")  # fmt: skip
    return fig


def _selection(plt, tables):
    header, rows = tables["selection"]
    col = _cols(header)
    fig, ax = plt.subplots(figsize=(5, 4))
    for tau in sorted({float(r[col["tau"]]) for r in rows}):
        for when in dict.fromkeys(r[col["when"]] for r in rows):
            sub = [r for r in rows if float(r[col["tau"]]) == tau and r[col["when"]] == when]
            if sub:
                ax.plot([float(r[col["recall"]]) for r in sub], [float(r[col["precision"]]) for r in sub],
                        label=f"τ = {tau:g}, {label(when)} (step {sub[0][col['step']]})")  # fmt: skip
    ax.set_xlabel("recall of clean rows")
    ax.set_ylabel("precision (clean fraction of the selected rows)")
    ax.grid(alpha=0.3)
    ax.set_title("Small-loss selection: every loss threshold, seed 0", fontsize=10)
    legend_below(fig, ax)
    return fig


def _real(plt, tables, params):
    header, rows = tables["real"]
    col = _cols(header)
    opts = list(dict.fromkeys(r[col["optimizer"]] for r in rows))
    fig, axes = plt.subplots(1, len(opts), figsize=(5.2 * len(opts), 3.8), squeeze=False)
    for ax, opt in zip(axes[0], opts):
        sub = [r for r in rows if r[col["optimizer"]] == opt]
        e = [int(r[col["epoch"]]) for r in sub]
        for key, color, text in (("fit_clean", "tab:green", "clean rows fitted"),
                                 ("fit_flipped", "tab:red", "flipped rows fitted to their noisy label"),
                                 ("test_accuracy", "tab:purple", "test accuracy (true labels)"),
                                 ("precision", "tab:brown", "small-loss precision at log 2")):  # fmt: skip
            ax.plot(e, [float(r[col[key]]) for r in sub], color=color, label=text)
        ax.set_title(f"{label(params.real_dataset)} {params.real_classes[0]} vs {params.real_classes[1]}, "
                     f"{params.real_flip:.0%} flipped: {opt}", fontsize=10)  # fmt: skip
        ax.set_xlabel("epoch")
        ax.set_ylabel("fraction")
        ax.grid(alpha=0.3)
    legend_below(fig, axes[0, 0])
    caption(fig, f"One MLP per optimiser ({params.real_hidden} hidden ReLU layers of {params.real_width}), "
                 f"N = {params.real_n_train}; no bands (one run).")  # fmt: skip
    return fig


def two_stage_figures(tables: Mapping[str, tuple], params) -> dict:
    """``trajectory`` (coefficients, fits, test accuracies, small-loss rule vs step per τ; network solid,
    lazy dashed), ``sweep`` (window fraction vs (1 − 2τ)·n·SNR², accuracies vs n·SNR²), ``selection``
    (precision–recall of the small-loss rule over thresholds) and ``real`` (per-epoch fits and test
    accuracy of the MLP per optimiser), each where its table exists."""
    plt = pyplot()
    figs = {}
    if "trajectory" in tables:
        figs["trajectory"] = _trajectory(plt, tables, params)
    if "sweep" in tables:
        figs["sweep"] = _sweep(plt, tables, params)
    if "selection" in tables:
        figs["selection"] = _selection(plt, tables)
    if "real" in tables:
        figs["real"] = _real(plt, tables, params)
    return figs
