"""Train at one corruption level, test at another (docs/science.md#train-and-test-corruption).

For each training level p_train, R networks (the ReLU network of
:mod:`~nwcorrupt.experiments.studies.online_training`, training corruption
redrawn every epoch) are trained once; each is then evaluated, without
retraining, on the test set corrupted at every p_test of the grid.

Test noise: the test set at level p_test is ``model.apply(x_test, p_test,
test_seed, stream=TEST_STREAM)`` — the corruption module's test stream with one
fixed seed, so every p_train (and every repeat) sees the very same corrupted
test images. With one seed for all levels the replacement masks are nested
(a pixel replaced at p is replaced at every p' > p, by the same value).

Reports the accuracy matrix (mean ± std over the R networks) and, for each
p_train, the area under accuracy(p_test) by the trapezoid rule
(:func:`nwcorrupt.metrics.auc`, over the p_test grid, not normalised), mean ± std
over the R networks. The networks' fit of the inputs of their last training epoch
is recorded per p_train; the table ``training_fit`` flags p_train = 0 points whose
networks did not fit the clean training set
(:mod:`~nwcorrupt.experiments.studies.training_fit`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from nwcorrupt import corruption, metrics
from nwcorrupt._checks import check_seed
from nwcorrupt.experiments.studies import common, training_fit
from nwcorrupt.experiments.studies import online_training as ot

__all__ = [
    "DESCRIPTION",
    "Params",
    "preflight",
    "points",
    "estimate",
    "corrupted_test_sets",
    "auc_per_network",
    "run_point",
    "tables",
    "figures",
]

DESCRIPTION = "ReLU MLP trained at p_train, tested at p_test (same test noise for all): accuracy matrix and AUC"


def _grid(step: float) -> tuple[float, ...]:
    n = round(1 / step)
    return tuple(round(i * step, 6) for i in range(n + 1))


@dataclasses.dataclass(frozen=True)
class Params(ot.NetParams):
    """See :class:`~nwcorrupt.experiments.studies.online_training.NetParams`, plus:

    Attributes:
      dataset: an image data set.
      p_train: training corruption levels (one sweep point each).
      p_test: test corruption levels, strictly increasing, at least two (for the AUC).
      test_seed: the one noise seed of every corrupted test set.

    Memory: all P_test corrupted test sets are evaluated in one pass per trained
    network, held as one (P_test · T, d) array (float32: 2.5 GB for the full grid
    of 81 levels × 10000 images).
    """

    dataset: str = "mnist"
    p_train: tuple[float, ...] = _grid(0.05)
    p_test: tuple[float, ...] = _grid(0.0125)
    test_seed: int = 12345
    repeats: int = 20

    def __post_init__(self) -> None:
        super().__post_init__()
        ot.check_image_dataset(self.dataset)
        common.check_ps("p_train", self.p_train)
        common.check_ps("p_test", self.p_test)
        if len(self.p_test) < 2 or any(b <= a for a, b in zip(self.p_test, self.p_test[1:])):
            raise ValueError(f"p_test must be strictly increasing with at least 2 levels, got {list(self.p_test)}")
        check_seed("test_seed", self.test_seed)


def preflight(params: Params) -> None:
    common.preflight_dataset(params.dataset)


def points(params: Params) -> list[dict]:
    return [{"p_train": p} for p in params.p_train]


def estimate(params: Params, point: dict) -> float:
    n = params.n_train or 60000
    t = (params.n_test or 10000) * len(params.p_test)
    flops = 6 * params.repeats * params.epochs * n * ot.num_params(params) + 2 * params.repeats * t * ot.num_params(params)
    noise = 3 * params.repeats * params.epochs * n * 784 + 3 * t * 784
    return 3.0 + flops / 1e10 + noise / 1e8


def corrupted_test_sets(params: Params, x_test: np.ndarray) -> np.ndarray:
    """The corrupted test sets, stacked: (P_test · T, d), block j at level p_test[j].

    A pure function of (params.noise, params.p_test, params.test_seed, x_test):
    identical for every p_train.
    """
    model = ot.noise_model(params)
    blocks = [
        np.asarray(model.apply(x_test, p, params.test_seed, epoch=0, stream=corruption.TEST_STREAM))
        for p in params.p_test
    ]
    return np.concatenate(blocks)


def auc_per_network(p_test, acc) -> list[float]:
    """AUC of accuracy over p_test for each network: acc (R, P_test) -> R floats."""
    return [metrics.auc(p_test, row) for row in np.asarray(acc)]


def run_point(params: Params, point: dict) -> dict:
    ds = ot.load_dataset(params.dataset, params)
    x_eval = corrupted_test_sets(params, ds.x_test)
    logits, seconds, fit = ot.train_repeats(params, ds, float(point["p_train"]), x_eval)
    r, c = logits.shape[0], logits.shape[-1]
    pred = logits.reshape(r, len(params.p_test), ds.n_test, c).argmax(-1)  # (R, P_test, T)
    acc = (pred == ds.y_test[None, None]).mean(-1)  # (R, P_test)
    return {
        "p_test": list(params.p_test),
        "accuracy": acc.tolist(),
        "auc": auc_per_network(params.p_test, acc),
        "chance": 1.0 / ds.num_classes,
        "n_train": ds.n_train,
        "n_test": ds.n_test,
        "noise_seeds": [params.seed + i for i in range(params.repeats)],
        "test_seed": params.test_seed,
        "train_seconds": seconds,
        **fit,
    }


def tables(params: Params, records: list[dict]) -> dict:
    acc_rows, auc_rows, fit_rows = [], [], []
    for rec in records:
        m, pt = rec["metrics"], rec["point"]["p_train"]
        fit_rows.append([pt, *training_fit.columns(m, training_fit.online_threshold(pt))])
        acc = np.asarray(m["accuracy"], dtype=float)  # (R, P_test)
        for j, q in enumerate(m["p_test"]):
            acc_rows.append([pt, q, *common.mean_std(acc[:, j]), acc.shape[0]])
        span = m["p_test"][-1] - m["p_test"][0]
        auc_rows.append([pt, *common.mean_std(m["auc"]), len(m["auc"]), m["chance"] * span])
    return {
        "accuracy": (["p_train", "p_test", "mean", "std", "n"], acc_rows),
        "auc": (["p_train", "auc_mean", "auc_std", "n", "auc_chance"], auc_rows),
        "training_fit": (["p_train", *training_fit.HEADER], fit_rows),
    }


def figures(params: Params, records: list[dict]) -> dict:
    from nwcorrupt import plots

    t = tables(params, records)
    _, acc_rows = t["accuracy"]
    _, auc_rows = t["auc"]
    p_tr = sorted({r[0] for r in acc_rows})
    p_te = sorted({r[1] for r in acc_rows})
    cell = {(r[0], r[1]): r[2] for r in acc_rows}
    grid = np.array([[cell.get((a, b), np.nan) for b in p_te] for a in p_tr])
    net = f"{plots.label(params.dataset)}, ReLU {params.depth - 1}×{params.width}, {params.epochs} epochs"
    auc = sorted(auc_rows)
    r_acc = sorted({int(r[4]) for r in acc_rows})
    colorbar = (r"accuracy on the test set corrupted at $p_{\mathrm{test}}$" + "\n"
                f"(mean over R = {'/'.join(map(str, r_acc))} networks)")
    return {
        "accuracy_heatmap": plots.accuracy_heatmap(p_tr, p_te, grid, title=f"mean test accuracy; {net}",
                                                   colorbar_label=colorbar),
        "auc_vs_ptrain": plots.curve_with_band(
            [r[0] for r in auc], [r[1] for r in auc], [r[2] for r in auc],
            xlabel=r"training corruption level $p_{\mathrm{train}}$",
            ylabel="area under accuracy vs " + r"$p_{\mathrm{test}}$" + "\n(trapezoid rule over the grid)",
            reference=auc[0][4] if auc else None, reference_label="chance", title=net,
            band=plots.band_note({"auc": [r[3] for r in auc]}, "R", "trained networks"),
        ),
    }
