"""Building blocks shared by the ``snr_sweep`` and ``activations`` studies.

The nested-ensemble protocol of SCIENCE.md §8 on K fixed noisy training sets:
finite-width ensembles (init-averaged logits), the exact NTK predictor per set,
and the exact mean-field predictor computed with the tiled kernel-from-Gram path
(memory bounded, so activations without a closed-form dual kernel — tanh, swish —
also work at N in the thousands; :func:`nwcorrupt.theory.meanfield_predict` holds
N² · 80² quadrature values at once, ~100 GB at N = 1000).
"""

from __future__ import annotations

import numpy as np

from nwcorrupt import metrics, precision

#: Working memory of one kernel tile of the mean-field predictor (bytes).
MEANFIELD_MEMORY_BUDGET = 1 << 28


def noisy_sets(model, x_train, p: float, seeds) -> np.ndarray:
    """(K, N, d) fixed corrupted copies of ``x_train`` (N, d), one per noise seed (float32)."""
    return np.stack([np.asarray(model.apply(x_train, p, int(s))) for s in seeds])


def network_logits(arch, noisy, y_train, x_test, y_test, *, num_classes: int, width: int, epochs: int,
                   batch_size: int, learning_rate: float, num_inits: int, seed: int) -> tuple[np.ndarray, float]:
    """Init-averaged test logits of K × M finite networks (Adam, MSE on one-hot targets).

    Args:
      arch: the :class:`~nwcorrupt.kernels.MLP`; noisy: (K, N, d) training sets; y_train: (N,);
      x_test: (T, d); y_test: (T,).

    Returns:
      ((K, T, C) logits averaged over the M = ``num_inits`` initialisations (float64, computed in
      float32), training wall time in seconds).
    """
    from nwcorrupt import train

    cfg = train.TrainConfig(
        arch=arch, width=width, num_classes=num_classes, optimizer=train.Optimizer("adam", learning_rate),
        loss="mse", batch_size=batch_size, epochs=epochs, seed=seed,
    )
    ens = train.train_ensemble(cfg, noisy, y_train, x_test, y_test, num_inits=num_inits, quiet=True)
    return np.asarray(ens.test_logits, dtype=np.float64).mean(axis=1), float(ens.train_seconds)


def ntk_logits(arch, noisy, y_train, x_test, *, num_classes: int, diag_reg: float) -> np.ndarray:
    """(K, T, C) exact NTK predictor (gradient flow, t = ∞) on each noisy set, in float64."""
    from nwcorrupt import predict

    onehot = np.eye(num_classes)[np.asarray(y_train)]
    with precision.x64():
        xt = np.asarray(x_test, dtype=np.float64)
        return np.stack([
            np.asarray(predict.ntk_predict(arch, np.asarray(x, dtype=np.float64), onehot, xt, diag_reg=diag_reg),
                       dtype=np.float64)
            for x in noisy
        ])


def meanfield_logits(arch, model, p: float, x_train, y_train, x_test, *, num_classes: int, diag_reg: float,
                     memory_budget: int = MEANFIELD_MEMORY_BUDGET) -> np.ndarray:
    """(T, C) exact mean-field NTK predictor K(x*, X̃) [K(X̃, X̃) + diag_reg·I]⁻¹ Y, in float64.

    Same predictor as :func:`nwcorrupt.theory.meanfield_predict` (noise-averaged first-layer
    overlaps of :func:`nwcorrupt.theory.meanfield_overlaps` propagated through the NTK recursion),
    but the kernels come from :func:`nwcorrupt.kernels.kernel_from_gram` in tiles of at most
    ``memory_budget`` bytes. Activations without a closed form use its default Gauss–Hermite order.
    """
    import scipy.linalg

    from nwcorrupt import kernels, theory

    with precision.x64():
        ov = theory.meanfield_overlaps(model, p, np.asarray(x_train, dtype=np.float64), np.asarray(x_test, dtype=np.float64))
        diag = ov.train_diag
        ktt = kernels.kernel_from_gram(arch, ov.train, diag, get="ntk", symmetric=True, memory_budget=memory_budget).ntk
        kst = kernels.kernel_from_gram(arch, ov.test_train, ov.test_diag, diag, get="ntk", memory_budget=memory_budget).ntk
        ktt = np.asarray(ktt, dtype=np.float64) + diag_reg * np.eye(diag.shape[0])
        kst = np.asarray(kst, dtype=np.float64)
    y = np.eye(num_classes)[np.asarray(y_train)]
    return kst @ scipy.linalg.cho_solve(scipy.linalg.cho_factor(ktt, lower=True), y)


def accuracies_and_agreements(preds: dict, y_test, pairs) -> tuple[dict, dict]:
    """Accuracy of every row of each predictor's (R, T) decisions, and agreements of the named pairs.

    A predictor with one row (R = 1) is compared with every row of the other one.

    Returns:
      ({name: [accuracy per row]}, {"a~b": [agreement per row]}).
    """
    acc = {name: [metrics.accuracy(row, y_test) for row in pr] for name, pr in preds.items()}
    agree = {}
    for a, b in pairs:
        pa, pb = preds[a], preds[b]
        rows = max(len(pa), len(pb))
        agree[f"{a}~{b}"] = [metrics.agreement(pa[min(i, len(pa) - 1)], pb[min(i, len(pb) - 1)]) for i in range(rows)]
    return acc, agree
