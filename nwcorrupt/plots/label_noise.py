"""Figures of the label-noise studies."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from nwcorrupt.plots.base import (
    ACCURACY_LABEL,
    band_note,
    caption,
    fill_band,
    label,
    legend_below,
    pyplot,
    spread,
)

__all__ = [
    "alignment_figures",
    "dilution_figures",
    "predictive_power_figures",
    "principal_subspace_figures",
]


def dilution_figures(tables: Mapping[str, tuple], targets: Sequence[float]) -> dict:
    """Figures of the ``dilution`` study from its tables (``accuracy``, ``required_clean_size``).

    * ``accuracy_vs_alpha``: networks (mean, ±1 std band) per depth against α, with the NTK mean
      predictor (dotted) and the NTK predicted accuracy (dashed) on the same diluted sets;
    * ``required_clean_size``: the clean-set size reaching each target accuracy against 1 + α,
      networks (solid) and NTK prediction (dashed), log–log, with fitted slopes;
    * ``structured``: accuracy against δ per ordering; ``robustness``: batch size (H_α as a
      horizontal line), learning rate and noise source.
    """
    plt = pyplot()
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
            fill_band(ax, xs, m, sd, color=line.get_color(), alpha=0.2)
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
        legend_below(fig, ax)
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
        legend_below(fig, ax)
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
        legend_below(fig, ax)
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


def _columns(header: Sequence[str]) -> dict[str, int]:
    return {name: i for i, name in enumerate(header)}


def predictive_power_figures(tables: Mapping[str, tuple], *, hidden: int) -> dict:
    """Figures of the ``predictive_power`` study from its tables (``probe``, ``network``).

    * ``probe_<dataset>[_<inputs>]``: one panel per label noise; probe test accuracy against the clean
      examples per class m (log scale) for every layer of the trained networks (solid, ±1 std band over
      networks × clean subsets), the baselines at the last hidden layer (random init dashed, NNGP and NTK
      dotted, raw inputs dash-dotted) and the noisy networks' own test accuracy (grey horizontal line);
    * ``noise_<dataset>``: at the largest m, accuracy against the symmetric rate r: the networks' own
      test accuracy and the probes of their layers, beside the NNGP baseline.
    """
    plt = pyplot()
    header, rows = tables["probe"]
    col = _columns(header)
    nh, nrows = tables["network"]
    ncol = _columns(nh)
    own = {(r[ncol["dataset"]], r[ncol["label_noise"]], r[ncol["inputs"]]): (r[ncol["test_mean"]], r[ncol["test_std"]])
           for r in nrows}
    last = hidden
    figs = {}
    groups = list(dict.fromkeys((r[col["dataset"]], r[col["inputs"]]) for r in rows))
    for dataset, inputs in groups:
        sub = [r for r in rows if r[col["dataset"]] == dataset and r[col["inputs"]] == inputs]
        noises = list(dict.fromkeys(r[col["label_noise"]] for r in sub))
        ncols = min(3, len(noises))
        nr = -(-len(noises) // ncols)
        fig, axes = plt.subplots(nr, ncols, figsize=(4.3 * ncols, 3.4 * nr), squeeze=False, sharey=True)
        for ax in axes.ravel()[len(noises):]:
            ax.set_visible(False)
        counts: dict[str, list[int]] = {}
        for ax, noise in zip(axes.ravel(), noises):
            cell = [r for r in sub if r[col["label_noise"]] == noise]

            def series(model, layer):
                pts = sorted((float(r[col["m_per_class"]]), float(r[col["mean"]]), spread(r[col["std"]]), int(r[col["n"]]))
                             for r in cell if r[col["model"]] == model and int(r[col["layer"]]) == layer)
                return [np.asarray(v) for v in zip(*pts)] if pts else None

            for layer in range(1, hidden + 2):
                s = series("trained", layer)
                if s is None:
                    continue
                name = f"trained, layer {layer}" + (" (outputs)" if layer == hidden + 1 else "")
                (line,) = ax.plot(s[0], s[1], marker="o", ms=3, label=name)
                fill_band(ax, s[0], s[1], s[2], color=line.get_color(), alpha=0.15)
                counts.setdefault("trained", []).extend(s[3].tolist())
            for model, layer, style, color in (("random", last, "--", "tab:gray"), ("nngp", last, ":", "black"),
                                               ("ntk", last, ":", "tab:purple"), ("raw", 0, "-.", "tab:brown")):
                s = series(model, layer)
                if s is not None:
                    text = {"random": f"random init, layer {last}", "nngp": f"NNGP, layer {last}",
                            "ntk": f"NTK, {last} hidden layers", "raw": "raw inputs"}[model]
                    ax.plot(s[0], s[1], ls=style, color=color, lw=1.4, label=text)
            acc = own.get((dataset, noise, inputs))
            if acc is not None:
                ax.axhline(float(acc[0]), color="0.5", lw=1.0, label="noisy network's own accuracy")
            ax.set_xscale("log")
            ms = sorted({float(r[col["m_per_class"]]) for r in cell})
            ax.set_xticks(ms, [f"{v:g}" for v in ms])
            ax.minorticks_off()
            ax.set_title(f"{label(noise.replace(':', ' r = '))}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlabel("clean examples per class m")
        for ax in axes[:, 0]:
            ax.set_ylabel("probe test accuracy (fraction correct)")
        title = f"{label(dataset)}" + ("" if inputs == "clean" else f", inputs {inputs.replace('@', ' at p = ')}")
        fig.suptitle(f"linear probes after training on noisy labels: {title}", fontsize=10)
        legend_below(fig, axes[0, 0])
        caption(fig, band_note(counts, "n", "networks × clean subsets"))
        figs[f"probe_{dataset}" + ("" if inputs == "clean" else "_" + inputs.replace("@", "_").replace(":", "_").replace(".", "p"))] = fig
    # accuracy against the symmetric rate at the largest m
    for dataset in dict.fromkeys(g[0] for g in groups):
        sub = [r for r in rows if r[col["dataset"]] == dataset and r[col["inputs"]] == "clean"
               and str(r[col["label_noise"]]).startswith("symmetric:")]
        if not sub:
            continue
        m_max = max(int(r[col["m_per_class"]]) for r in sub)
        sub = [r for r in sub if int(r[col["m_per_class"]]) == m_max]
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        rates = sorted({float(str(r[col["label_noise"]]).split(":")[1]) for r in sub})

        def at(model, layer, rate):
            for r in sub:
                if (r[col["model"]] == model and int(r[col["layer"]]) == layer
                        and float(str(r[col["label_noise"]]).split(":")[1]) == rate):
                    return float(r[col["mean"]]), spread(r[col["std"]])
            return math.nan, math.nan

        counts = {"trained": [int(r[col["n"]]) for r in sub if r[col["model"]] == "trained"]}
        for layer in range(1, hidden + 2):
            v = np.array([at("trained", layer, r) for r in rates])
            text = f"probe of the outputs (layer {layer})" if layer == hidden + 1 else f"probe of trained layer {layer}"
            (line,) = ax.plot(rates, v[:, 0], marker="o", ms=3, label=text)
            fill_band(ax, np.array(rates), v[:, 0], v[:, 1], color=line.get_color(), alpha=0.15)
        v = np.array([at("nngp", last, r) for r in rates])
        ax.plot(rates, v[:, 0], ls=":", color="black", label=f"NNGP baseline, layer {last}")
        own_by_rate = {float(k[1].split(":")[1]): float(v[0]) for k, v in own.items()
                       if k[0] == dataset and k[2] == "clean" and str(k[1]).startswith("symmetric:")}
        ax.plot(rates, [own_by_rate.get(r, math.nan) for r in rates], color="0.4", marker="s", ms=3,
                label="noisy network's own accuracy")
        ax.set_xlabel("symmetric label-noise rate r")
        ax.set_ylabel(ACCURACY_LABEL)
        ax.set_title(f"{label(dataset)}: probes with m = {m_max} clean examples per class", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        caption(fig, band_note(counts, "n", "networks × clean subsets"))
        figs[f"noise_{dataset}"] = fig
    return figs


def _panel_grid(plt, n: int, *, width: float = 4.2, height: float = 3.3, sharey: bool = True):
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False, sharey=sharey)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes


def _finish(fig, axes, title: str, note: str):
    """Title, one legend under the panels and the caption line of a panel-grid figure; returns the figure."""
    fig.suptitle(title, fontsize=10)
    legend_below(fig, axes[0, 0])
    caption(fig, note)
    return fig


def principal_subspace_figures(tables: Mapping[str, tuple], *, angle_ks: Sequence[int]) -> dict:
    """Figures of the ``principal_subspace`` study from its tables.

    * ``spectra``, ``similarity``, ``lip_ridge``: one panel per feature map at the middle ridge λ of the run:
      the singular values of the clean and the noisy ridge heads; φ(U, U′, i, i) against i; the test
      accuracy of the LIP plug-in against the kept rank k (k = C is the noisy head itself), one line per p;
    * ``sin_theta``: sin θ of the top-k feature subspace against √p, one line per λ, with k the middle of
      ``angle_ks``;
    * ``lip_trained``: LIP on the readout of networks trained on noisy labels, per loss: accuracy against
      k, one-hot refit (solid, ±1 std band over networks) and scale-matched refit (dashed).
    """
    plt = pyplot()
    figs: dict = {}
    one_draw = "no band: one label draw per p"
    sh, srows = tables["spectra"]
    col = _columns(sh)
    if srows:
        feats = list(dict.fromkeys(r[col["features"]] for r in srows))
        ridges = sorted({float(r[col["ridge"]]) for r in srows})
        mid = ridges[len(ridges) // 2]
        ps = sorted({float(r[col["p"]]) for r in srows})
        cmap = plt.get_cmap("viridis")
        color = {p: cmap(0.9 * i / max(1, len(ps) - 1)) for i, p in enumerate(ps)}
        nsv = len(sh) - 4

        fig, axes = _panel_grid(plt, len(feats), sharey=False)
        for ax, f in zip(axes.ravel(), feats):
            for r in srows:
                if r[col["features"]] != f or float(r[col["ridge"]]) != mid:
                    continue
                p = float(r[col["p"]])
                if r[col["head"]] == "clean":
                    if p == ps[0]:
                        ax.plot(range(1, nsv + 1), r[4:], color="black", lw=2, label="clean labels")
                elif p > 0:
                    ax.plot(range(1, nsv + 1), r[4:], color=color[p], marker="o", ms=2, label=f"noisy, p = {p:g}")
            ax.set_yscale("log")
            ax.set_title(f"{label(f)} features", fontsize=10)
            ax.set_xlabel("singular value index i")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel("singular value of the ridge head")
        figs["spectra"] = _finish(fig, axes, f"spectra of ridge heads, relative λ = {mid:g}", one_draw)

        mh, mrows = tables["similarity"]
        mcol = _columns(mh)
        fig, axes = _panel_grid(plt, len(feats))
        for ax, f in zip(axes.ravel(), feats):
            for r in mrows:
                p = float(r[mcol["p"]])
                if r[mcol["features"]] == f and float(r[mcol["ridge"]]) == mid and p > 0:
                    ax.plot(range(1, len(r) - 2), r[3:], color=color[p], marker="o", ms=2, label=f"p = {p:g}")
            ax.set_title(f"{label(f)} features", fontsize=10)
            ax.set_xlabel("leading directions i = j")
            ax.set_ylim(-0.02, 1.02)
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel(r"similarity $\varphi(U, U', i, i)$")
        figs["similarity"] = _finish(
            fig, axes, f"subspace similarity of clean and noisy ridge heads, relative λ = {mid:g}", one_draw)

        ah, arows = tables["sin_theta"]
        acol = _columns(ah)
        k_show = sorted(angle_ks)[len(angle_ks) // 2]
        fig, axes = _panel_grid(plt, len(feats))
        lcolor = {lam: plt.get_cmap("plasma")(0.85 * i / max(1, len(ridges) - 1)) for i, lam in enumerate(ridges)}
        for ax, f in zip(axes.ravel(), feats):
            for lam in ridges:
                pts = sorted((float(r[acol["sqrt_p"]]), float(r[acol["sin_theta"]])) for r in arows
                             if r[acol["features"]] == f and float(r[acol["ridge"]]) == lam and int(r[acol["top_k"]]) == k_show)
                if pts:
                    x, y = zip(*pts)
                    ax.plot(x, y, color=lcolor[lam], marker="o", ms=3, label=f"relative λ = {lam:g}")
            ax.set_title(f"{label(f)} features", fontsize=10)
            ax.set_xlabel(r"$\sqrt{p}$ (p: flipped fraction)")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel(rf"$\sin\theta$ of the top-{k_show} feature subspace")
        figs["sin_theta"] = _finish(
            fig, axes, "principal angle between clean and noisy ridge heads",
            one_draw + "; the perturbation bound is listed in the sin θ table of the report")

        lh, lrows = tables["lip_ridge"]
        lcol = _columns(lh)
        kcols = [i for i, h in enumerate(lh) if h.startswith("lip_k")]
        fig, axes = _panel_grid(plt, len(feats))
        for ax, f in zip(axes.ravel(), feats):
            for r in lrows:
                p = float(r[lcol["p"]])
                if r[lcol["features"]] == f and float(r[lcol["ridge"]]) == mid and p > 0:
                    clean_refit = r[lcol["refit"]] == "clean"
                    ax.plot(range(len(kcols)), [r[i] for i in kcols], color=color[p], marker=None if clean_refit else "o",
                            ms=2, ls="--" if clean_refit else "-",
                            label=f"p = {p:g}" + (", refit on clean examples" if clean_refit else ""))
                    ax.axhline(float(r[lcol["clean_head"]]), color=color[p], lw=0.6, ls=":")
            ax.set_title(f"{label(f)} features", fontsize=10)
            ax.set_xlabel("kept rank k (k = C: the noisy head)")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel(ACCURACY_LABEL)
        figs["lip_ridge"] = _finish(
            fig, axes, f"LIP plug-in on noisy ridge heads, relative λ = {mid:g} (solid: refit on the noisy training "
            "labels; dashed: on clean examples; dotted: the clean head)", one_draw)
    th, trows = tables["lip_trained"]
    if trows:
        tcol = _columns(th)
        losses = list(dict.fromkeys(r[tcol["loss"]] for r in trows))
        ps = sorted({float(r[tcol["p"]]) for r in trows if float(r[tcol["p"]]) > 0})
        cmap = plt.get_cmap("viridis")
        color = {p: cmap(0.9 * i / max(1, len(ps) - 1)) for i, p in enumerate(ps)}
        fig, axes = _panel_grid(plt, len(losses))
        counts: dict[str, list[int]] = {}
        for ax, loss in zip(axes.ravel(), losses):
            for p in ps:
                for scale, ls in (("one_hot", "-"), ("match", "--"), ("clean", ":")):
                    pts = sorted((int(r[tcol["rank_k"]]), float(r[tcol["mean"]]), spread(r[tcol["std"]]), int(r[tcol["n"]]))
                                 for r in trows if r[tcol["loss"]] == loss and float(r[tcol["p"]]) == p
                                 and r[tcol["target_scale"]] == scale)
                    if not pts:
                        continue
                    k, m, s, n = (np.asarray(v) for v in zip(*pts))
                    text = f"p = {p:g}" + {"one_hot": "", "match": ", scale-matched refit",
                                           "clean": ", refit on clean examples"}[scale]
                    ax.plot(k, m, ls=ls, color=color[p], marker="o" if ls == "-" else None, ms=2, label=text)
                    if ls == "-":
                        fill_band(ax, k.astype(float), m, s, color=color[p], alpha=0.15)
                        counts.setdefault("networks", []).extend(n.tolist())
            ax.set_title(f"networks trained with {label(loss)} loss", fontsize=10)
            ax.set_xlabel("kept rank k (k = C: the trained readout)")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel(ACCURACY_LABEL)
        figs["lip_trained"] = _finish(fig, axes, "LIP plug-in on the readout of networks trained on noisy labels",
                                      band_note(counts, "R", "networks per point"))
    return figs


def alignment_figures(tables: Mapping[str, tuple]) -> dict:
    """Figures of the ``alignment`` study from its tables (``probe``, ``network``).

    * ``probe_<dataset>``: one panel per (task, architecture): probe test accuracy of the penultimate
      representation against the clean examples per class m (log scale), one solid line per noise rate r
      for the trained networks (±1 std band over networks × clean subsets), the same architecture at
      initialisation (dashed) and the raw pixels (dash-dotted);
    * ``rates_<dataset>``: one panel per task: at the largest m, the trained networks' probe accuracy
      (solid) and their own test accuracy on the target (dashed) against r, one colour per architecture.
    """
    plt = pyplot()
    header, rows = tables["probe"]
    col = _columns(header)
    nh, nrows = tables["network"]
    ncol = _columns(nh)
    figs: dict = {}
    for dataset in dict.fromkeys(r[col["dataset"]] for r in rows):
        sub = [r for r in rows if r[col["dataset"]] == dataset]
        cells = list(dict.fromkeys((r[col["task"]], r[col["arch"]]) for r in sub))
        fig, axes = _panel_grid(plt, len(cells))
        counts: dict[str, list[int]] = {}
        for ax, (task, arch) in zip(axes.ravel(), cells):
            cell = [r for r in sub if r[col["task"]] == task and r[col["arch"]] == arch]
            rates = sorted({float(r[col["r"]]) for r in cell})

            def series(model, rate):
                pts = sorted((float(r[col["m_per_class"]]), float(r[col["mean"]]), spread(r[col["std"]]), int(r[col["n"]]))
                             for r in cell if r[col["model"]] == model and float(r[col["r"]]) == rate)
                return [np.asarray(v) for v in zip(*pts)] if pts else None

            for rate in rates:
                s_ = series("trained", rate)
                if s_ is None:
                    continue
                (line,) = ax.plot(s_[0], s_[1], marker="o", ms=3, label=f"trained, r = {rate:g}")
                fill_band(ax, s_[0], s_[1], s_[2], color=line.get_color(), alpha=0.15)
                counts.setdefault("trained", []).extend(s_[3].tolist())
            for model, style, color, text in (("random", "--", "tab:gray", "at initialisation"),
                                              ("raw", "-.", "tab:brown", "raw pixels")):
                s_ = series(model, rates[0])
                if s_ is not None:
                    ax.plot(s_[0], s_[1], ls=style, color=color, lw=1.4, label=text)
            ax.set_xscale("log")
            ms = sorted({float(r[col["m_per_class"]]) for r in cell})
            ax.set_xticks(ms, [f"{v:g}" for v in ms])
            ax.minorticks_off()
            ax.set_title(f"target: {task}, {arch}", fontsize=10)
            ax.grid(alpha=0.3)
            ax.set_xlabel("clean examples per class m")
        for ax in axes[:, 0]:
            ax.set_ylabel("probe test accuracy (fraction correct)")
        figs[f"probe_{dataset}"] = _finish(
            fig, axes, f"{label(dataset)} with a planted marker: probes of the penultimate layer (noise = the other label)",
            band_note(counts, "n", "networks × clean subsets"))
        tasks = list(dict.fromkeys(c[0] for c in cells))
        fig, axes = _panel_grid(plt, len(tasks))
        rate_counts: dict[str, list[int]] = {}
        for ax, task in zip(axes.ravel(), tasks):
            m_max = max(int(r[col["m_per_class"]]) for r in sub if r[col["task"]] == task)
            for i, arch in enumerate(dict.fromkeys(c[1] for c in cells if c[0] == task)):
                color = f"C{i}"
                pts = sorted((float(r[col["r"]]), float(r[col["mean"]]), spread(r[col["std"]]), int(r[col["n"]]))
                             for r in sub if r[col["task"]] == task and r[col["arch"]] == arch
                             and r[col["model"]] == "trained" and int(r[col["m_per_class"]]) == m_max)
                if pts:
                    x, m_, s_, n_ = (np.asarray(v) for v in zip(*pts))
                    rate_counts.setdefault("trained", []).extend(n_.tolist())
                    ax.plot(x, m_, marker="o", ms=3, color=color, label=f"{arch}: probe, m = {m_max}")
                    fill_band(ax, x, m_, s_, color=color, alpha=0.15)
                own = sorted((float(r[ncol["r"]]), float(r[ncol["test_mean"]])) for r in nrows
                             if r[ncol["dataset"]] == dataset and r[ncol["task"]] == task and r[ncol["arch"]] == arch)
                if own:
                    ax.plot(*zip(*own), ls="--", marker="s", ms=3, color=color, label=f"{arch}: own test accuracy")
            ax.set_title(f"target: {task}", fontsize=10)
            ax.set_xlabel("fraction r relabelled by the other label")
            ax.grid(alpha=0.3)
        axes[0, 0].set_ylabel(ACCURACY_LABEL)
        figs[f"rates_{dataset}"] = _finish(
            fig, axes, f"{label(dataset)} with a planted marker: predictive power against the noise rate",
            band_note(rate_counts, "n", "networks × clean subsets") + "; dashed: the networks' own mean test accuracy")
    return figs
