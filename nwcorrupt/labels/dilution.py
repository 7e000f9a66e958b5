"""Dilution: N clean examples plus αN noisy ones (Rolnick et al.'s massive label noise).

``dilute(dataset, alpha, seed)`` keeps the N clean training rows and appends
``round(α N)`` noisy rows whose labels are drawn, independently per row, from the noise
law (default: uniform over all C classes). α ≥ 0 may be non-integer. The noisy inputs
come from a ``source``:

* ``"pool"``: other images of the same data set, given as ``pool=`` (a Dataset, whose
  training rows are used, or an ``(x, y)`` pair); default: the clean set's own rows. Drawn
  without replacement when the pool holds enough images, else with replacement
  (:attr:`Diluted.with_replacement` says which; ``replace=`` forces either);
* ``"copies"``: noisy row j is a copy of clean row j mod N (so α copies of each image for
  integer α; for non-integer α the first rows get one copy more);
* ``"external"``: images of another data set (``external=``, same input dimension), e.g.
  Fashion-MNIST images into MNIST; their classes are not classes of this task;
* ``"white"``: white-noise images, every pixel i.i.d. N(m, s²) with m and s the mean and
  standard deviation of all entries of the clean training inputs.

Reproducibility: the noisy rows' labels and the with-replacement draws of the pool are
per row (global row index N + j; :func:`nwcorrupt.labels.row_uniforms`); a
without-replacement draw is one permutation of the pool from the seed. The labels of a
diluted set are exactly ``Diluted.law.sample(seed)``.

Per clean example of class y the labels seen for its class (with ``copies``) are
distributed as e_y/(1 + α) + α/((1 + α)C)·1 (:func:`smoothed_targets`): the true label
stays the plurality with margin 1/(1 + α).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import corruption as _corruption
from nwcorrupt._checks import check_choice, check_labels, check_matrix, check_real, check_seed
from nwcorrupt.labels.models import LabelLaw, check_transition, row_uniforms, with_confusion

__all__ = [
    "DILUTION_STREAM",
    "SOURCES",
    "Dilution",
    "Diluted",
    "dilute",
    "dilution_law",
    "smoothed_targets",
]

#: PRNG stream of the noisy inputs of a dilution (pool draws, white-noise images).
DILUTION_STREAM = 3
SOURCES = ("pool", "copies", "external", "white")


def _noise_matrix(noise: Any, num_classes: int) -> np.ndarray:
    if noise is None:
        return np.full((num_classes, num_classes), 1.0 / num_classes)
    if not hasattr(noise, "transition"):
        raise TypeError(f"noise must be a class-conditional label-noise model (with .transition), got {noise!r}")
    return check_transition("noise.transition(num_classes)", noise.transition(num_classes), num_classes)


def dilution_law(y, clean_mask, num_classes: int, *, noise: Any = None, source_labels=None) -> LabelLaw:
    """The exact label law of a diluted training set.

    Args:
      y: (N_total,) labels of the diluted set; only the clean rows' labels are read.
      clean_mask: (N_total,) bool, True on the clean rows.
      num_classes: C.
      noise: the noisy rows' label model (``transition(C)``); None = uniform over all classes.
      source_labels: (N_total,) true class of each noisy row's input (−1 unknown); needed
        when the noise law is not the same for every class.

    Returns:
      a :class:`LabelLaw` with groups 0..C−1 (clean, one-hot), C..2C−1 (noisy, by source
      class) and 2C (noisy, source unknown; uniform noise only).
    """
    c = int(num_classes)
    y = check_labels("y", y, num_classes=c)
    mask = np.asarray(clean_mask)
    if mask.shape != y.shape or mask.dtype != bool:
        raise ValueError(f"clean_mask must be a bool array of shape {y.shape}, got {mask.dtype} {mask.shape}")
    t = _noise_matrix(noise, c)
    uniform_rows = bool(np.allclose(t, t[0:1], atol=1e-15))
    src = np.full(y.shape, -1, dtype=np.int64) if source_labels is None else np.asarray(source_labels, dtype=np.int64)
    if src.shape != y.shape:
        raise ValueError(f"source_labels must have shape {y.shape}, got {src.shape}")
    if not uniform_rows and np.any((src < 0) & ~mask):
        raise ValueError(
            "this noise law depends on the true class of each noisy input, but some noisy rows have no known "
            "class (source 'white' or 'external'); use the pool or copies source, or noise=None (uniform)"
        )
    groups = np.where(mask, y, np.where(src >= 0, c + src, 2 * c))
    probs = np.vstack([np.eye(c), t, t[0:1]])
    return LabelLaw(groups.astype(np.int32), probs)


def smoothed_targets(y, alpha: float, num_classes: int, *, noise: Any = None) -> np.ndarray:
    """(N, C) expected targets per clean example under dilution α: e_y/(1 + α) + α/(1 + α)·T_noise[y].

    With the default uniform noise this is e_y/(1 + α) + α/((1 + α)C)·1, the target of the
    infinite-batch ("H_α") training of the ``copies`` source.
    """
    alpha = check_real("alpha", alpha, lo=0.0)
    c = int(num_classes)
    y = check_labels("y", y, num_classes=c)
    t = _noise_matrix(noise, c)
    return (np.eye(c)[y] + alpha * t[y]) / (1.0 + alpha)


@dataclasses.dataclass(frozen=True, eq=False)
class Diluted:
    """A diluted training set and everything known about its noise.

    Attributes:
      dataset: the data set; training rows = the N clean rows, then the noisy rows.
      clean_mask: (N_total,) bool, True on the original (clean) rows.
      source_labels: (N_total,) int true class of each row's input (−1 when unknown).
      law: the exact :class:`LabelLaw` of the training labels (pass it as ``model`` to
        :func:`nwcorrupt.labels.predictor_moments`).
      with_replacement: whether the noisy inputs were drawn with replacement.
    """

    dataset: Any
    clean_mask: np.ndarray
    source_labels: np.ndarray
    law: LabelLaw
    with_replacement: bool

    @property
    def n_noisy(self) -> int:
        return int(np.sum(~self.clean_mask))


def _pool_arrays(pool: Any, name: str, d: int) -> tuple[np.ndarray, np.ndarray | None]:
    if hasattr(pool, "x_train"):
        x, y = pool.x_train, pool.y_train
    elif isinstance(pool, tuple) and len(pool) == 2:
        x, y = pool
    else:
        x, y = pool, None
    x = np.asarray(check_matrix(name, x))
    if x.shape[1] != d:
        raise ValueError(f"{name} has {x.shape[1]} features but the data set has {d}; they must match")
    if y is not None:
        y = check_labels(f"{name} labels", y, n=x.shape[0], data_name=name)
    return x, y


@dataclasses.dataclass(frozen=True)
class Dilution:
    """The dilution recipe: α noisy rows per clean one, their inputs' source and label law.

    Attributes:
      alpha: α ≥ 0 (non-integer allowed; round(α N) noisy rows).
      source: ``"pool"``, ``"copies"``, ``"external"`` or ``"white"`` (module docstring).
      noise: label law of the noisy rows (a class-conditional model, e.g.
        :class:`~nwcorrupt.labels.Structured`; ranked by confusion without ``confusion``, it gets the
        class-mean rule's on the clean rows); None = uniform over all C classes.
      replace: draw the pool with replacement (True), without (False) or as needed (None).
    """

    alpha: float
    source: str = "pool"
    noise: Any = None
    replace: bool | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "alpha", check_real("alpha", self.alpha, lo=0.0))
        check_choice("source", self.source, SOURCES)
        if self.replace not in (None, True, False):
            raise ValueError(f"replace must be None, True or False, got {self.replace!r}")

    def n_noisy(self, n_clean: int) -> int:
        return int(round(self.alpha * n_clean))

    def apply(self, dataset, seed: int, *, pool: Any = None, external: Any = None) -> Diluted:
        """Dilute ``dataset`` (its training rows are the clean rows); see :func:`dilute`."""
        seed = check_seed("seed", seed)
        c, n, d = dataset.num_classes, dataset.n_train, dataset.d
        noise = with_confusion(self.noise, dataset.x_train, dataset.y_train, c)
        _noise_matrix(noise, c)  # validates the noise before any work
        n_noisy = self.n_noisy(n)
        idx = np.arange(n, n + n_noisy)
        replaced = False
        if self.source == "copies":
            rows = np.arange(n_noisy) % n
            x_noisy, src = dataset.x_train[rows], dataset.y_train[rows]
        elif self.source == "white":
            if pool is not None or external is not None:
                raise ValueError("source='white' draws its own images; do not pass pool= or external=")
            x_noisy, src = self._white(dataset.x_train, seed, idx), np.full(n_noisy, -1)
        else:
            if self.source == "pool":
                if external is not None:
                    raise ValueError("source='pool' takes its images from pool=, not external=")
                px, py = (dataset.x_train, dataset.y_train) if pool is None else _pool_arrays(pool, "pool", d)
                if py is None:
                    raise ValueError("pool= needs the labels of its images: pass a Dataset or an (x, y) pair")
            else:
                if external is None:
                    raise ValueError("source='external' needs external=, the images of another data set")
                if pool is not None:
                    raise ValueError("source='external' takes its images from external=, not pool=")
                px, _ = _pool_arrays(external, "external", d)
                py = None
            rows, replaced = self._draw_rows(px.shape[0], n_noisy, seed, idx)
            x_noisy = px[rows]
            src = py[rows] if py is not None else np.full(n_noisy, -1)
        x_all = np.concatenate([np.asarray(dataset.x_train), np.asarray(x_noisy, dtype=dataset.x_train.dtype)])
        mask = np.concatenate([np.ones(n, bool), np.zeros(n_noisy, bool)])
        src_all = np.concatenate([np.asarray(dataset.y_train, np.int64), np.asarray(src, np.int64)])
        y_all = np.concatenate([dataset.y_train, np.zeros(n_noisy, np.int32)]).astype(np.int32)
        law = dilution_law(y_all, mask, c, noise=noise, source_labels=src_all)
        y_all = law.sample(seed)
        name = f"{dataset.name}+dilution(alpha={self.alpha:g},{self.source})"
        out = dataset.replace(x_train=x_all, y_train=y_all, name=name)
        return Diluted(out, mask, src_all.astype(np.int32), law, replaced)

    def _draw_rows(self, pool_size: int, count: int, seed: int, idx: np.ndarray) -> tuple[np.ndarray, bool]:
        if pool_size < 1:
            raise ValueError("the pool of noisy images is empty")
        replace = count > pool_size if self.replace is None else self.replace
        if not replace:
            if count > pool_size:
                raise ValueError(
                    f"replace=False needs at least {count} pool images (alpha * N), the pool has {pool_size}"
                )
            key = jax.random.fold_in(jax.random.key(seed), DILUTION_STREAM)
            return np.asarray(jax.random.permutation(key, pool_size))[:count], False
        u = row_uniforms(seed, idx, stream=DILUTION_STREAM, count=1)[:, 0]
        return np.minimum((u * pool_size).astype(np.int64), pool_size - 1), True

    @staticmethod
    def _white(x_clean: np.ndarray, seed: int, idx: np.ndarray) -> np.ndarray:
        x = np.asarray(x_clean, dtype=np.float64)
        m, s = float(x.mean()), float(x.std())
        keys = _corruption.row_keys(seed, jnp.asarray(idx, jnp.uint32), epoch=1, stream=DILUTION_STREAM)
        z = jax.vmap(lambda k: jax.random.normal(k, (x.shape[1],), jnp.float32))(keys)
        return (m + s * np.asarray(z, dtype=np.float64)).astype(np.float32)


def dilute(dataset, alpha: float, seed: int, *, source: str = "pool", external: Any = None, pool: Any = None,
           noise: Any = None, replace: bool | None = None):
    """Dilute a data set by α noisy examples per clean one.

    Args:
      dataset: the clean :class:`~nwcorrupt.data.Dataset` (N training rows).
      alpha: α ≥ 0; round(α N) noisy rows are appended.
      seed: seed of the noisy rows (labels and inputs).
      source: where the noisy inputs come from (module docstring).
      external: for ``source="external"``: a Dataset or (P, d) array of another data set.
      pool: for ``source="pool"``: a Dataset or (x, y) of other images of the same data set
        (default: the clean rows themselves).
      noise: label law of the noisy rows (None: uniform over all C classes).
      replace: pool draws with (True) or without (False) replacement; None: as needed.

    Returns:
      ``(diluted dataset, clean_mask)``; for the exact label law (to give
      :func:`~nwcorrupt.labels.predictor_moments`) use ``Dilution(...).apply(...)`` whose
      :class:`Diluted` result has ``.law``, or :func:`dilution_law`.
    """
    out = Dilution(alpha, source, noise, replace).apply(dataset, seed, pool=pool, external=external)
    return out.dataset, out.clean_mask
