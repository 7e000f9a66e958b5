"""Finite versus infinite width: trained ensembles against the exact NTK and NNGP predictors.

For K noisy training sets (noise seeds ``seed, ..., seed + K - 1``; only the
training set is corrupted, the test set stays clean) :func:`compare_widths`
trains, for every width n, an ensemble of M initialisations with one recipe
(:class:`nwcorrupt.train.TrainConfig`), and computes on the same noisy sets

- the exact NTK predictor (mean of an infinite ensemble of infinite-width
  networks trained by gradient flow on MSE; t = ∞, or a finite training time),
- the NNGP posterior mean (Bayesian readout),

both in float64 (``nwcorrupt.precision.x64()``). The network prediction of data
set k is the init-averaged logit f̄_n = (1/M) Σ_m f_{n,m}. Per width it reports
the accuracy of argmax f̄_n, the agreement of its argmax with the NTK and NNGP
predictors, and the relative logit distance ‖f̄_n − f_NTK‖_F / ‖f_NTK‖_F over
the (T, C) test logits.

Reading the distance: at finite M it contains the init-averaged residual of
the initial function, whose size is O(1/√M) at every width (in the NTK
parameterisation the output at initialisation does not shrink with width), on
top of the finite-width deviation, which shrinks like O(1/√n). Its decrease with
width therefore flattens at a floor set by M and by how far training has gone.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from nwcorrupt import corruption as _corruption
from nwcorrupt import metrics, precision
from nwcorrupt._checks import (
    check_labels,
    check_matrix,
    check_nonneg_float,
    check_positive_float,
    check_positive_int,
    check_probability,
    check_same_size,
    check_seed,
)
from nwcorrupt.arch import check_arch
from nwcorrupt.metrics import mean_std

__all__ = ["WidthComparison", "compare_widths", "matching_ntk_time"]

_RESERVED = ("arch", "width", "num_classes", "seed")
ROW_HEADER = (
    "width",
    "accuracy_mean",
    "accuracy_std",
    "agreement_ntk_mean",
    "agreement_ntk_std",
    "agreement_nngp_mean",
    "agreement_nngp_std",
    "rel_distance_ntk_mean",
    "rel_distance_ntk_std",
)


@dataclasses.dataclass(frozen=True, eq=False)
class WidthComparison:
    """Result of :func:`compare_widths` (W widths, K noisy data sets, T test points, C classes).

    Attributes:
      widths: (W,) hidden widths, in the order given.
      accuracy: (W, K) accuracy of the init-averaged network logits on data set k.
      agreement_ntk: (W, K) fraction of test points where argmax f̄_n equals argmax f_NTK.
      agreement_nngp: (W, K) the same against the NNGP posterior mean.
      rel_distance_ntk: (W, K) ‖f̄_n − f_NTK‖_F / ‖f_NTK‖_F over the (T, C) test logits.
      ntk_accuracy, nngp_accuracy: (K,) accuracies of the kernel predictors.
      network_logits: (W, K, T, C) init-averaged test logits (float32 training).
      ntk_logits, nngp_logits: (K, T, C) float64 kernel predictions.
      noise_seeds: (K,) noise seeds of the training sets.
      p: corruption level of the training sets.
      t: NTK training time used (None: t = ∞); ntk_learning_rate: its learning rate.
      num_inits: M initialisations per width and data set.
      train_loss: (W, K, M) training loss of each network on its noisy training set
        (:attr:`nwcorrupt.train.EnsembleResult.train_loss`).
      train_accuracy: (W, K, M) training accuracy of each network on its noisy training set.
      agreement_ntk_standard, rel_distance_ntk_standard, ntk_standard_accuracy: (W, K), with
        ``standard_ntk=True`` (else None): the same measures against the standard-parameterisation
        NTK predictor at base width n, the kernel whose gradient-descent limit the width-n network
        has (docs/science.md#which-kernel-do-the-study-networks-approach).
    """

    widths: tuple[int, ...]
    accuracy: np.ndarray
    agreement_ntk: np.ndarray
    agreement_nngp: np.ndarray
    rel_distance_ntk: np.ndarray
    ntk_accuracy: np.ndarray
    nngp_accuracy: np.ndarray
    network_logits: np.ndarray
    ntk_logits: np.ndarray
    nngp_logits: np.ndarray
    noise_seeds: tuple[int, ...]
    p: float
    t: float | None
    ntk_learning_rate: float
    num_inits: int
    train_loss: np.ndarray
    train_accuracy: np.ndarray
    agreement_ntk_standard: np.ndarray | None = None
    rel_distance_ntk_standard: np.ndarray | None = None
    ntk_standard_accuracy: np.ndarray | None = None

    def as_rows(self) -> tuple[tuple[str, ...], list[list[Any]]]:
        """A table: header and one row per width, then rows ``"ntk"`` and ``"nngp"``.

        Each width row holds mean and std over the K data sets (ddof = 1) of the
        accuracy, the agreements with NTK and NNGP, and the relative distance to
        the NTK logits. The kernel rows hold their accuracy, agreement 1 with
        themselves (NTK row vs NTK; NNGP row: its agreement with the NTK in the
        NTK column) and NaN where a column does not apply. Cells are those of
        :func:`nwcorrupt.metrics.mean_std`, as in the study tables: with K = 1 every
        std cell is :data:`~nwcorrupt.metrics.NO_STD` (empty), not 0.
        """
        rows: list[list[Any]] = []
        for i, w in enumerate(self.widths):
            rows.append(
                [int(w), *mean_std(self.accuracy[i]), *mean_std(self.agreement_ntk[i]),
                 *mean_std(self.agreement_nngp[i]), *mean_std(self.rel_distance_ntk[i])]
            )
        ntk_vs_nngp = np.array([metrics.agreement(a, b) for a, b in zip(self.ntk_logits, self.nngp_logits)])
        nan2 = [math.nan, math.nan]
        exact = mean_std([1.0] * len(self.noise_seeds))  # agreement with itself: 1 on every data set
        distance = mean_std([0.0] * len(self.noise_seeds))
        rows.append(["ntk", *mean_std(self.ntk_accuracy), *exact, *mean_std(ntk_vs_nngp), *distance])
        rows.append(["nngp", *mean_std(self.nngp_accuracy), *mean_std(ntk_vs_nngp), *exact, *nan2])
        return ROW_HEADER, rows

    def format_table(self) -> str:
        """The rows of :meth:`as_rows` as fixed-width text."""
        header, rows = self.as_rows()
        short = ("width", "acc", "±", "agree NTK", "±", "agree NNGP", "±", "‖f̄−f_NTK‖/‖f_NTK‖", "±")
        lines = ["".join(f"{h:>12}" if j else f"{h:<8}" for j, h in enumerate(short))]
        for r in rows:
            cells = (f"{v:>12.4f}" if isinstance(v, float) else f"{v:>12}" for v in r[1:])  # NO_STD stays blank
            lines.append(f"{str(r[0]):<8}" + "".join(cells))
        return "\n".join(lines)


def _check_widths(widths: Any) -> tuple[int, ...]:
    if isinstance(widths, (int, np.integer)) and not isinstance(widths, bool):
        widths = (widths,)
    try:
        ws = tuple(widths)
    except TypeError:
        raise TypeError(f"widths must be a non-empty sequence of positive integers, got {widths!r}") from None
    if not ws:
        raise ValueError("widths must be a non-empty sequence of positive integers, got an empty sequence")
    out = tuple(check_positive_int(f"widths[{i}]", w) for i, w in enumerate(ws))
    if len(set(out)) != len(out):
        raise ValueError(f"widths must be distinct, got {out}")
    return out


def _check_noise(noise: Any) -> Any:
    if isinstance(noise, str):
        return _corruption.get(noise)
    if not callable(getattr(noise, "apply", None)):
        raise TypeError(
            "noise must be a corruption model (e.g. nwcorrupt.corruption.Replacement()) or one of "
            f"'replacement', 'additive'; got {noise!r}"
        )
    return noise


def matching_ntk_time(config: Any, n_train: int) -> tuple[float, float]:
    """NTK time and learning rate that match a full-batch SGD recipe on MSE.

    With ``train``'s MSE (mean over N·C, no factor 1/2), ``s`` gradient steps of
    size η follow gradient flow for ``ntk_predict(..., t=s, learning_rate=2η)``
    in the small-step limit (docs/training.md).

    Args:
      config: a :class:`nwcorrupt.train.TrainConfig` with ``Optimizer("sgd", η)``,
        ``loss="mse"``, ``batch_size == n_train`` and no early stopping.
      n_train: number of training rows N.

    Returns:
      (t, learning_rate) = (number of steps, 2η).
    """
    from nwcorrupt import train

    opt = config.optimizer
    if not (isinstance(opt, train.Optimizer) and opt.name == "sgd"):
        raise ValueError(f"t='match' needs optimizer Optimizer('sgd', lr), got {opt!r}")
    if config.loss != "mse":
        raise ValueError(f"t='match' needs loss='mse', got loss={config.loss!r}")
    if config.batch_size != n_train:
        raise ValueError(
            f"t='match' needs full-batch training (batch_size == N = {n_train}), got batch_size={config.batch_size}"
        )
    if config.early_stopping is not None:
        raise ValueError("t='match' needs early_stopping=None")
    steps = config.steps if config.steps is not None else config.epochs  # full batch: one step per epoch
    return float(steps), 2.0 * float(opt.learning_rate)


def compare_widths(
    arch: Any,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    *,
    noise: Any,
    p: float,
    widths: Sequence[int],
    num_datasets: int = 1,
    num_inits: int = 1,
    num_classes: int | None = None,
    seed: int = 0,
    diag_reg: float = 1e-6,
    t: float | str | None = None,
    ntk_learning_rate: float | None = None,
    quiet: bool = True,
    kernel_arch: Any = None,
    standard_ntk: bool = False,
    **train_config_kwargs: Any,
) -> WidthComparison:
    """Train width-n ensembles on K noisy sets and compare them with the exact NTK/NNGP predictors.

    Args:
      arch: :class:`nwcorrupt.arch.MLP` spec of the networks (and of the kernels unless
        ``kernel_arch`` is given).
      x_train: (N, d) clean training inputs; y_train: (N,) integer labels.
      x_test: (T, d) clean test inputs; y_test: (T,) integer labels.
      noise: corruption model with ``apply(x, p, seed)`` (``Replacement``,
        ``Additive``) or the name ``"replacement"``/``"additive"`` (default law).
      p: corruption level in [0, 1] of the training set.
      widths: non-empty sequence of distinct positive hidden widths.
      num_datasets: K noisy training sets (noise seeds seed, ..., seed + K − 1).
      num_inits: M initialisations per width and data set.
      num_classes: C (default: 1 + the largest label in y_train and y_test).
      seed: noise seed of the first set and run seed of the training (inits, batches).
      diag_reg: relative diagonal regulariser of both kernel solves.
      t: None for the NTK at t = ∞; a number for the NTK mean at that time (with
        ``ntk_learning_rate``); ``"match"`` for the time of the recipe
        (:func:`matching_ntk_time`: full-batch SGD on MSE).
      ntk_learning_rate: learning rate of ``ntk_predict`` for a numeric t (default:
        2η of an ``Optimizer("sgd", η)`` recipe, else required).
      quiet: no progress bars while training.
      kernel_arch: the :class:`~nwcorrupt.arch.MLP` of the NTK and NNGP predictors (default
        ``arch``). Networks trained in the standard parameterisation with Adam are compared
        with the NTK-parameterised kernels of the same depth, activation, W_std and b_std
        (docs/science.md#which-kernel-do-the-study-networks-approach).
      standard_ntk: also compare each width n with the NTK predictor of ``kernel_arch`` in the
        standard parameterisation at base width n (one more kernel solve per width and data set).
      **train_config_kwargs: the recipe, passed to :class:`nwcorrupt.train.TrainConfig`
        (optimizer, loss, batch_size, epochs or steps, ...; not arch, width,
        num_classes or seed).

    Returns:
      :class:`WidthComparison`.

    Networks train in the default float (float32 unless x64 is on); kernels and
    solves run in float64. Float32 training changes the logits by ~1e-6 relative
    (docs/training.md), far below the finite-width effects measured here.
    """
    from nwcorrupt import predict, train

    xtr = np.asarray(check_matrix("x_train", x_train))
    xte = np.asarray(check_matrix("x_test", x_test))
    check_same_size("x_test", xte.shape[1], "x_train", xtr.shape[1], "features")
    ytr = check_labels("y_train", y_train, n=xtr.shape[0], data_name="x_train")
    yte = check_labels("y_test", y_test, n=xte.shape[0], data_name="x_test")
    if num_classes is None:
        num_classes = int(max(ytr.max(), yte.max())) + 1
    c = check_positive_int("num_classes", num_classes)
    check_labels("y_train", ytr, num_classes=c)
    check_labels("y_test", yte, num_classes=c)
    p = check_probability("p", p)
    ws = _check_widths(widths)
    k_count = check_positive_int("num_datasets", num_datasets)
    m_count = check_positive_int("num_inits", num_inits)
    check_seed("seed", seed)
    diag_reg = check_nonneg_float("diag_reg", diag_reg)
    bad = sorted(set(train_config_kwargs) & set(_RESERVED))
    if bad:
        raise ValueError(f"{bad} are set by compare_widths; do not pass them as train_config_kwargs")
    model = _check_noise(noise)
    if kernel_arch is None:
        kernel_arch = arch
    check_arch(kernel_arch)

    configs = [train.TrainConfig(arch=arch, width=w, num_classes=c, seed=int(seed), **train_config_kwargs) for w in ws]
    t_ntk: float | None
    if t is None:
        t_ntk, lr_ntk = None, 1.0
    elif isinstance(t, str):
        if t != "match":
            raise ValueError(f"t must be None, a number >= 0 or 'match', got {t!r}")
        t_ntk, lr_ntk = matching_ntk_time(configs[0], xtr.shape[0])
    else:
        t_ntk = float(t)
        if not (math.isfinite(t_ntk) and t_ntk >= 0):
            raise ValueError(f"t must be None, a finite number >= 0 or 'match', got {t!r}")
        if ntk_learning_rate is None:
            opt = configs[0].optimizer
            if not (isinstance(opt, train.Optimizer) and opt.name == "sgd"):
                raise ValueError("a numeric t needs ntk_learning_rate unless the optimizer is Optimizer('sgd', lr)")
            lr_ntk = 2.0 * float(opt.learning_rate)
        else:
            lr_ntk = check_positive_float("ntk_learning_rate", ntk_learning_rate)

    seeds = tuple(int(seed) + k for k in range(k_count))
    noisy = np.stack([np.asarray(model.apply(xtr, p, s), dtype=np.float32) for s in seeds])  # (K, N, d)
    onehot = np.eye(c)[ytr]

    with precision.x64():
        kw: dict[str, Any] = {"diag_reg": diag_reg}
        ntk = np.stack([
            np.asarray(predict.ntk_predict(kernel_arch, noisy[k].astype(np.float64), onehot, xte.astype(np.float64),
                                           t=t_ntk, learning_rate=lr_ntk, **kw))
            for k in range(k_count)
        ])
        nngp = np.stack([
            np.asarray(predict.nngp_predict(kernel_arch, noisy[k].astype(np.float64), onehot, xte.astype(np.float64), **kw))
            for k in range(k_count)
        ])

    if not isinstance(standard_ntk, bool):
        raise TypeError(f"standard_ntk must be True or False, got {standard_ntk!r}")
    ntk_std = None
    if standard_ntk:
        with precision.x64():
            ntk_std = np.stack([
                np.stack([
                    np.asarray(predict.ntk_predict(
                        dataclasses.replace(kernel_arch, parameterization="standard", width=int(w)),
                        noisy[k].astype(np.float64), onehot, xte.astype(np.float64), t=t_ntk,
                        learning_rate=lr_ntk, **kw))
                    for k in range(k_count)
                ])
                for w in ws
            ])  # (W, K, T, C)

    nets, fit_loss, fit_acc = [], [], []
    for cfg in configs:
        ens = train.train_ensemble(cfg, noisy, ytr, xte, num_inits=m_count, quiet=quiet)
        nets.append(np.asarray(ens.test_logits).mean(axis=1))  # keep only the init average of the logits
        fit_loss.append(np.asarray(ens.train_loss))
        fit_acc.append(np.asarray(ens.train_accuracy))
    net = np.stack(nets).astype(np.float64)  # (W, K, T, C)

    ntk_norm = np.linalg.norm(ntk.reshape(k_count, -1), axis=1)
    if np.any(ntk_norm == 0):
        raise ValueError("the NTK predictor is identically zero (t = 0?); the relative distance is undefined")
    # every reference predictor as (W, K, T, C), broadcast over the widths when it has none
    def per_width(score, a, b) -> np.ndarray:
        b = np.broadcast_to(b, net.shape)
        return np.array([[score(a[i, k], b[i, k]) for k in range(k_count)] for i in range(len(ws))])

    def rel_distance(ref) -> np.ndarray:
        ref = np.broadcast_to(ref, net.shape).reshape(len(ws), k_count, -1)
        return np.linalg.norm(net.reshape(len(ws), k_count, -1) - ref, axis=2) / np.linalg.norm(ref, axis=2)

    rel = rel_distance(ntk)
    acc = np.array([[metrics.accuracy(net[i, k], yte) for k in range(k_count)] for i in range(len(ws))])
    ag_ntk = per_width(metrics.agreement, net, ntk)
    ag_nngp = per_width(metrics.agreement, net, nngp)
    extra: dict[str, Any] = {}
    if ntk_std is not None:
        extra = {
            "agreement_ntk_standard": per_width(metrics.agreement, net, ntk_std),
            "rel_distance_ntk_standard": rel_distance(ntk_std),
            "ntk_standard_accuracy": np.array(
                [[metrics.accuracy(ntk_std[i, k], yte) for k in range(k_count)] for i in range(len(ws))]),
        }
    return WidthComparison(
        **extra,
        widths=ws,
        accuracy=acc,
        agreement_ntk=ag_ntk,
        agreement_nngp=ag_nngp,
        rel_distance_ntk=rel,
        ntk_accuracy=np.array([metrics.accuracy(ntk[k], yte) for k in range(k_count)]),
        nngp_accuracy=np.array([metrics.accuracy(nngp[k], yte) for k in range(k_count)]),
        network_logits=net,
        ntk_logits=ntk,
        nngp_logits=nngp,
        noise_seeds=seeds,
        p=p,
        t=t_ntk,
        ntk_learning_rate=lr_ntk,
        num_inits=m_count,
        train_loss=np.stack(fit_loss),
        train_accuracy=np.stack(fit_acc),
    )
