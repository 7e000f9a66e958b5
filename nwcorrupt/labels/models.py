"""Label-noise models: transition matrices and reproducible noisy-label realisations.

C classes, true label y, observed label ỹ, transition matrix ``T[a, b] = P(ỹ = b | y = a)``
(rows sum to 1). Every class-conditional model here is a *selection rate* r and a
*relabelling law* F (a row-stochastic (C, C) matrix): each example is selected with
probability r and, if selected, relabelled by a draw from ``F[y]``, so
``T = (1 − r) I + r F``.

=================================  ==========================================================
model                              T
=================================  ==========================================================
``Symmetric(r)``                   (1 − r) I + (r/C) 11ᵀ (the new label may be the true one)
``Symmetric(r, include_true=False)``  (1 − r) I + r/(C − 1) (11ᵀ − I)
``Pair(r, mapping)``               (1 − r) I + r P_π, π(i) = mapping[i] (default i + 1 mod C)
``Transition(matrix)``             the matrix itself (r = 1, F = T)
``Binary(tau_pos, tau_neg)``       C = 2, class 1 ≡ +1: T = [[1 − τ₋, τ₋], [τ₊, 1 − τ₊]]
``Structured(delta, order)``       diagonal 1/C, the wrong classes of row a in ``order`` get
                                   q_k = (1/C)(1 + δ(1 − 2(k − 1)/(C − 2))), k = 1..C − 1
``InstanceDependent(r, g)``        not class-conditional: ỹ = g(x) on a fraction r
=================================  ==========================================================

Reproducibility (as for input corruption, :mod:`nwcorrupt.corruption`): row j's draw
uses the key ``fold_in(fold_in(fold_in(key(seed), LABEL_STREAM), 0), j)`` with j the
row's *global* index (pass ``indices`` when relabelling a slice), turned into three
float64 uniforms (u_sel, u_lab, u_aux). Row j's noisy label is the ``T[y_j]``-quantile
of ``u_lab`` (inverse CDF over the classes in order), the same draw as
``model.law(y, C).sample(seed)``. So a realisation is a pure function of (model,
labels, seed), a row's draw never depends on batching, and r = 0 is the identity.
**Exact-count** variants (``exact=True``) select exactly ⌊rN⌋ rows -- the ⌊rN⌋ rows
with the smallest u_sel, a function of the seed and of the set of rows -- and give each
the ``F[y_j]``-quantile of ``u_lab``.

Realised noise: :func:`flip_fraction` (fraction of rows whose label changed) and the
clean mask (``ỹ == y``) that :func:`corrupt` returns with the data set. Label noise
draws from its own stream, so it composes with input corruption in any order:
``corrupt(ds, m, seed, inputs=(Replacement(), 0.9))`` equals input corruption with
``seed`` followed by label noise with ``seed``, and the reverse order.

:class:`LabelLaw` is the general form the exact theory (:mod:`nwcorrupt.labels.moments`)
works with: independent rows, row α's label drawn from ``probs[groups[α]]``. Every model's
:meth:`law` returns one; dilution builds one with clean rows (a one-hot law) and noisy
rows (:func:`nwcorrupt.labels.dilution_law`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import corruption as _corruption
from nwcorrupt import prototype as _prototype
from nwcorrupt._checks import (
    check_choice,
    check_int,
    check_labels,
    check_matrix,
    check_positive_int,
    check_probability,
    check_real,
    check_seed,
)

__all__ = [
    "LABEL_STREAM",
    "ORDERS",
    "LabelNoise",
    "LabelLaw",
    "Symmetric",
    "Pair",
    "Transition",
    "Binary",
    "Structured",
    "InstanceDependent",
    "check_stochastic_rows",
    "check_transition",
    "class_mean_confusion",
    "corrupt",
    "flip_fraction",
    "row_uniforms",
    "structured_transition",
    "with_confusion",
]

#: PRNG stream of label noise (input corruption uses 0 for training and 1 for test rows).
LABEL_STREAM = 2
#: Orderings of the wrong classes for :class:`Structured`.
ORDERS = ("confusing", "reverse", "random")
_STOCHASTIC_TOL = 1e-9


@runtime_checkable
class LabelNoise(Protocol):
    """What every class-conditional label-noise model offers."""

    def transition(self, num_classes: int) -> np.ndarray: ...

    def apply(self, y: Any, seed: int, *, num_classes: int, indices: Any = None) -> np.ndarray: ...

    def law(self, y: Any, num_classes: int) -> "LabelLaw": ...


# --------------------------------------------------------------------------- uniforms and checks


def row_uniforms(seed: int, indices: Any, *, stream: int = LABEL_STREAM, count: int = 3) -> np.ndarray:
    """(N, count) float64 uniforms in (0, 1) of the rows with global ``indices`` (N,).

    Each row's numbers come from its own key (:func:`nwcorrupt.corruption.row_keys`), so
    they do not depend on which other rows are drawn with it.
    """
    seed = check_seed("seed", seed)
    idx = jnp.asarray(np.asarray(indices), dtype=jnp.uint32)
    keys = _corruption.row_keys(seed, idx, stream=stream)
    bits = np.asarray(jax.vmap(lambda k: jax.random.bits(k, (count,), jnp.uint32))(keys), dtype=np.float64)
    return (bits + 0.5) / 2.0**32


def check_transition(name: str, matrix: Any, num_classes: int | None = None) -> np.ndarray:
    """Validate a (C, C) row-stochastic matrix (entries ≥ 0, rows summing to 1); return float64."""
    t = np.asarray(matrix, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] != t.shape[1] or t.shape[0] < 1:
        raise ValueError(f"{name} must be a square (C, C) matrix, got shape {t.shape}")
    if num_classes is not None and t.shape[0] != num_classes:
        raise ValueError(f"{name} is {t.shape[0]} x {t.shape[0]} but num_classes={num_classes}; they must match")
    return check_stochastic_rows(name, t)


def check_stochastic_rows(name: str, matrix: Any) -> np.ndarray:
    """Validate a (G, C) matrix of probability rows (entries ≥ 0, rows summing to 1); return float64."""
    t = np.asarray(matrix, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] < 1 or t.shape[1] < 1:
        raise ValueError(f"{name} must be a (G, C) matrix of probability rows, got shape {t.shape}")
    if not np.all(np.isfinite(t)):
        raise ValueError(f"{name} contains NaN or inf; expected probabilities")
    if np.any(t < 0):
        a, b = np.argwhere(t < 0)[0]
        raise ValueError(f"{name} must be row-stochastic: entry [{a}, {b}] = {t[a, b]:g} is negative")
    sums = t.sum(axis=1)
    bad = np.flatnonzero(np.abs(sums - 1) > _STOCHASTIC_TOL)
    if bad.size:
        raise ValueError(f"{name} must be row-stochastic: row {int(bad[0])} sums to {sums[bad[0]]:.12g}, not 1")
    return t


def _check_num_classes(num_classes: Any, lo: int = 2) -> int:
    return check_int("num_classes", num_classes, lo=lo)


def _check_y(y: Any, num_classes: int) -> np.ndarray:
    return check_labels("y", y, num_classes=num_classes)


def _indices(indices: Any, n: int) -> np.ndarray:
    if indices is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(indices)
    if idx.shape != (n,) or idx.dtype.kind not in "iu":
        raise ValueError(f"indices must be ({n},) integers, one global row index per label, got {idx.shape} {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= 2**32):
        raise ValueError("indices must lie in [0, 2**32)")
    return idx.astype(np.int64)


def _categorical(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw: row i gets the first class whose cumulative probability exceeds u[i]."""
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0  # absorb round-off so every u < 1 lands in a class
    return np.minimum((u[:, None] >= cdf).sum(axis=1), probs.shape[1] - 1).astype(np.int32)


def _selection(u_sel: np.ndarray, r: float, exact: bool, indices: Any) -> np.ndarray:
    if not exact:
        return u_sel < r
    if indices is not None:
        raise ValueError("exact=True selects exactly floor(r*N) rows of the whole set; indices must be None")
    count = math.floor(r * u_sel.shape[0] + 1e-9)
    sel = np.zeros(u_sel.shape[0], dtype=bool)
    sel[np.argsort(u_sel, kind="stable")[:count]] = True
    return sel


def _relabel(y, seed, num_classes, indices, r, flip, exact):
    c = _check_num_classes(num_classes, lo=1)
    y = _check_y(y, c)
    seed = check_seed("seed", seed)
    idx = _indices(indices, y.shape[0])
    u = row_uniforms(seed, idx)
    if not y.size:
        return y
    if not exact:  # one draw from T[y]: the same realisation as LabelLaw.sample
        return _categorical(((1 - r) * np.eye(c) + r * flip)[y], u[:, 1])
    sel = _selection(u[:, 0], r, exact, indices)
    return np.where(sel, _categorical(flip[y], u[:, 1]), y).astype(np.int32)


# --------------------------------------------------------------------------- the per-row law


@dataclasses.dataclass(frozen=True, eq=False)
class LabelLaw:
    """Independent per-row label distributions: row α's label is drawn from ``probs[groups[α]]``.

    Attributes:
      groups: (N,) int group of each row.
      probs: (G, C) row-stochastic label distribution of each group.

    A class-conditional model with true labels y is ``LabelLaw(y, T)``; a clean row is a
    one-hot group. The exact theory needs only the per-row means ``probs[groups]`` and the
    group covariances ``diag(p) − p pᵀ``.
    """

    groups: np.ndarray
    probs: np.ndarray

    def __post_init__(self) -> None:
        probs = check_stochastic_rows("probs", self.probs)
        groups = check_labels("groups", self.groups, num_classes=probs.shape[0])
        object.__setattr__(self, "probs", probs)
        object.__setattr__(self, "groups", groups)

    @property
    def num_classes(self) -> int:
        return int(self.probs.shape[1])

    @property
    def n(self) -> int:
        return int(self.groups.shape[0])

    def mean_targets(self) -> np.ndarray:
        """(N, C) expected one-hot target of each row, E[e_ỹ] = probs[groups]."""
        return self.probs[self.groups]

    def group_covariances(self) -> np.ndarray:
        """(G, C, C) covariance of the one-hot target of each group, diag(p) − p pᵀ."""
        p = self.probs
        return np.einsum("gi,ij->gij", p, np.eye(p.shape[1])) - p[:, :, None] * p[:, None, :]

    def sample(self, seed: int, *, indices: Any = None) -> np.ndarray:
        """One realisation (N,) int32; row j uses the label stream of :func:`row_uniforms`."""
        idx = _indices(indices, self.n)
        u = row_uniforms(check_seed("seed", seed), idx)
        return _categorical(self.probs[self.groups], u[:, 1])

    def law(self, y: Any, num_classes: int) -> "LabelLaw":
        """Itself, after checking that it describes ``len(y)`` rows of ``num_classes`` classes."""
        if np.shape(y)[0] != self.n:
            raise ValueError(f"the label law describes {self.n} rows but y_train has {np.shape(y)[0]}; they must match")
        if num_classes != self.num_classes:
            raise ValueError(f"the label law has {self.num_classes} classes but num_classes={num_classes}")
        return self


def _law_from_transition(y: Any, t: np.ndarray) -> LabelLaw:
    return LabelLaw(_check_y(y, t.shape[0]), t)


# --------------------------------------------------------------------------- class-conditional models


class _RateModel:
    """Shared by the models made of a selection rate ``r`` and a relabelling law: a subclass defines
    ``flip_law(C) -> (C, C)`` and the fields ``r`` and ``exact``."""

    r: float
    exact: bool
    flip_law: Callable[[int], np.ndarray]

    def transition(self, num_classes: int) -> np.ndarray:
        """T = (1 − r) I + r F (C, C)."""
        c = _check_num_classes(num_classes)
        return (1 - self.r) * np.eye(c) + self.r * self.flip_law(c)

    def apply(self, y, seed: int, *, num_classes: int, indices=None) -> np.ndarray:
        """Noisy labels (N,) int32 of the true labels ``y`` (N,); ``indices``: their global row numbers."""
        return _relabel(y, seed, num_classes, indices, self.r, self.flip_law(num_classes), self.exact)

    def law(self, y, num_classes: int) -> LabelLaw:
        """The per-row :class:`LabelLaw` of true labels ``y``: row α drawn from T[y_α]."""
        return _law_from_transition(y, self.transition(num_classes))


@dataclasses.dataclass(frozen=True)
class Symmetric(_RateModel):
    """Symmetric noise at rate r.

    ``include_true=True``: a fraction r of rows gets ỹ ~ Uniform{0..C−1}, so
    T = (1 − r) I + (r/C) 11ᵀ and the expected flip fraction is r (C − 1)/C.
    ``include_true=False``: a fraction r gets a uniformly chosen *other* class,
    T = (1 − r) I + r/(C − 1)(11ᵀ − I). ``exact=True`` selects exactly ⌊rN⌋ rows.
    """

    r: float
    include_true: bool = True
    exact: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "r", check_probability("r", self.r))

    def flip_law(self, num_classes: int) -> np.ndarray:
        c = _check_num_classes(num_classes)
        if self.include_true:
            return np.full((c, c), 1.0 / c)
        return (np.ones((c, c)) - np.eye(c)) / (c - 1)


@dataclasses.dataclass(frozen=True)
class Pair(_RateModel):
    """Pair (flip) noise: a fraction r is relabelled through the class map π.

    ``mapping[i] = π(i)`` (a tuple of C class indices, π(i) ≠ i); default i → (i + 1) mod C.
    T = (1 − r) I + r P_π. ``exact=True`` flips exactly ⌊rN⌋ rows.
    """

    r: float
    mapping: tuple[int, ...] | None = None
    exact: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "r", check_probability("r", self.r))
        if self.mapping is not None:
            m = tuple(int(check_int(f"mapping[{i}]", v, lo=0)) for i, v in enumerate(self.mapping))
            for i, v in enumerate(m):
                if v == i:
                    raise ValueError(f"mapping[{i}] = {v} maps class {i} to itself; a pair map sends each class elsewhere")
            object.__setattr__(self, "mapping", m)

    def permutation(self, num_classes: int) -> tuple[int, ...]:
        c = _check_num_classes(num_classes)
        if self.mapping is None:
            return tuple((i + 1) % c for i in range(c))
        if len(self.mapping) != c:
            raise ValueError(f"mapping has {len(self.mapping)} entries but num_classes={c}; give one target per class")
        if max(self.mapping) >= c:
            raise ValueError(f"mapping must hold classes in [0, {c}), got {max(self.mapping)}")
        return self.mapping

    def flip_law(self, num_classes: int) -> np.ndarray:
        c = _check_num_classes(num_classes)
        return np.eye(c)[list(self.permutation(c))]


@dataclasses.dataclass(frozen=True)
class Transition:
    """Any class-conditional noise: ỹ ~ ``matrix[y]`` for every row.

    Attributes:
      matrix: (C, C) row-stochastic matrix, as nested tuples (lists and arrays are converted).
      exact: realise the counts exactly: among the n_a rows of class a, the numbers relabelled
        b are n_a T_ab rounded by largest remainder (so they sum to n_a), the rows assigned
        by their u_sel order. Without ``exact`` each row draws independently.
    """

    matrix: Any
    exact: bool = False

    def __post_init__(self) -> None:
        t = check_transition("matrix", self.matrix)
        object.__setattr__(self, "matrix", tuple(tuple(float(v) for v in row) for row in t))

    def transition(self, num_classes: int) -> np.ndarray:
        return check_transition("matrix", self.matrix, _check_num_classes(num_classes, lo=1))

    def apply(self, y, seed: int, *, num_classes: int, indices=None) -> np.ndarray:
        """Noisy labels (N,) int32."""
        t = self.transition(num_classes)
        if not self.exact:
            return _relabel(y, seed, num_classes, indices, 1.0, t, False)
        if indices is not None:
            raise ValueError("exact=True realises the counts of the whole set; indices must be None")
        y = _check_y(y, t.shape[0])
        u = row_uniforms(check_seed("seed", seed), np.arange(y.shape[0]))[:, 0]
        out = np.empty_like(y)
        for a in range(t.shape[0]):
            rows = np.flatnonzero(y == a)
            rows = rows[np.argsort(u[rows], kind="stable")]
            want = t[a] * rows.size
            counts = np.floor(want).astype(int)
            short = rows.size - counts.sum()
            counts[np.argsort(-(want - counts), kind="stable")[:short]] += 1
            out[rows] = np.repeat(np.arange(t.shape[0]), counts)
        return out.astype(np.int32)

    def law(self, y, num_classes: int) -> LabelLaw:
        return _law_from_transition(y, self.transition(num_classes))


@dataclasses.dataclass(frozen=True)
class Binary:
    """Binary class-conditional noise; class 1 is the positive class (+1), class 0 the negative (−1).

    Attributes:
      tau_pos: τ₊ = P(ỹ = −1 | y = +1).
      tau_neg: τ₋ = P(ỹ = +1 | y = −1).
      exact: flip exactly ⌊τ₊ N₊⌋ of the N₊ positive rows and ⌊τ₋ N₋⌋ of the N₋ negative
        rows (those with the smallest selection uniforms of their class) instead of one
        Bernoulli draw per row; needs the whole set (``indices=None``).
    """

    tau_pos: float
    tau_neg: float
    exact: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "tau_pos", check_probability("tau_pos", self.tau_pos))
        object.__setattr__(self, "tau_neg", check_probability("tau_neg", self.tau_neg))
        if not isinstance(self.exact, (bool, np.bool_)):
            raise TypeError(f"exact must be True or False, got {self.exact!r}")

    def transition(self, num_classes: int = 2) -> np.ndarray:
        if num_classes != 2:
            raise ValueError(f"Binary noise needs num_classes=2, got {num_classes}")
        return np.array([[1 - self.tau_neg, self.tau_neg], [self.tau_pos, 1 - self.tau_pos]])

    def apply(self, y, seed: int, *, num_classes: int = 2, indices=None) -> np.ndarray:
        """Noisy labels (N,) int32 in {0, 1}."""
        if not self.exact:
            return _relabel(y, seed, num_classes, indices, 1.0, self.transition(num_classes), False)
        self.transition(num_classes)
        if indices is not None:
            raise ValueError("exact=True flips exactly floor(tau*N_class) rows of the whole set; indices must be None")
        y = _check_y(y, 2)
        u = row_uniforms(check_seed("seed", seed), np.arange(y.shape[0]))[:, 0]
        out = y.copy()
        for cls, tau in ((1, self.tau_pos), (0, self.tau_neg)):
            rows = np.flatnonzero(y == cls)
            sel = _selection(u[rows], tau, True, None)
            out[rows[sel]] = 1 - cls
        return out.astype(np.int32)

    def law(self, y, num_classes: int = 2) -> LabelLaw:
        return _law_from_transition(y, self.transition(num_classes))


def class_mean_confusion(x, y, num_classes: int) -> np.ndarray:
    """(C, C) confusion counts of the overlap prototype rule on (x, y): [a, b] = #{y = a, predicted b}.

    The rule's class means are those of (x, y) itself; the "confusing" ordering of
    :class:`Structured` ranks, for each true class a, the other classes by this count.
    """
    c = _check_num_classes(num_classes)
    y = check_labels("y", y, n=np.shape(x)[0], num_classes=c, data_name="x")
    pred = _prototype.predict(x, x, y, num_classes=c)
    out = np.zeros((c, c), dtype=np.int64)
    np.add.at(out, (y, pred), 1)
    return out


def _wrong_order(order: str, confusion: np.ndarray | None, c: int, order_seed: int) -> list[list[int]]:
    """For each true class a, the C − 1 other classes, first = the one that gets q_1."""
    out = []
    rng = np.random.default_rng(order_seed)
    for a in range(c):
        others = [b for b in range(c) if b != a]
        if order == "random":
            out.append([others[i] for i in rng.permutation(c - 1)])
            continue
        # most confused first; ties broken by class index (stable sort)
        score = np.array([-confusion[a, b] for b in others], dtype=np.float64)
        ranked = [others[i] for i in np.argsort(score, kind="stable")]
        out.append(ranked if order == "confusing" else ranked[::-1])
    return out


def structured_transition(delta: float, num_classes: int, order: str, confusion=None, order_seed: int = 0) -> np.ndarray:
    """The (C, C) matrix of :class:`Structured`: diagonal 1/C, the k-th wrong class of row a gets q_k."""
    delta = check_probability("delta", delta)
    c = _check_num_classes(num_classes, lo=3)
    check_choice("order", order, ORDERS)
    conf = None
    if order != "random":
        if confusion is None:
            raise ValueError(
                f"order={order!r} needs confusion=, a (C, C) confusion matrix; compute one from the class-mean rule "
                "with nwcorrupt.labels.class_mean_confusion(x, y, num_classes) or use Structured.from_class_means"
            )
        conf = np.asarray(confusion, dtype=np.float64)
        if conf.shape != (c, c) or not np.all(np.isfinite(conf)):
            raise ValueError(f"confusion must be a finite ({c}, {c}) matrix, got shape {conf.shape}")
    k = np.arange(1, c)
    q = (1.0 + delta * (1.0 - 2.0 * (k - 1) / (c - 2))) / c
    t = np.zeros((c, c))
    for a, wrong in enumerate(_wrong_order(order, conf, c, order_seed)):
        t[a, a] = 1.0 / c
        t[a, wrong] = q
    return t


@dataclasses.dataclass(frozen=True)
class Structured:
    """Structured noise with concentration δ ∈ [0, 1] (the reading of Rolnick et al.'s law).

    The true class keeps probability 1/C; the C − 1 wrong classes of class a, ranked by
    ``order``, get q_k = (1/C)(1 + δ(1 − 2(k − 1)/(C − 2))): δ = 0 is uniform noise over
    all classes, δ = 1 puts 2/C on the first wrong class and 0 on the last.

    Attributes:
      delta: δ.
      order: ``"confusing"`` (most confused class first, from ``confusion``),
        ``"reverse"`` (least confused first) or ``"random"`` (a random ranking per class,
        from ``order_seed``).
      confusion: (C, C) confusion counts [a, b] = #{true a, predicted b} (nested tuples),
        needed by the two confusion orders; :meth:`from_class_means` computes them from
        the class-mean rule.
      order_seed: seed of the ``"random"`` ranking.
    """

    delta: float
    order: str = "confusing"
    confusion: Any = None
    order_seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "delta", check_probability("delta", self.delta))
        check_choice("order", self.order, ORDERS)
        check_seed("order_seed", self.order_seed)
        if self.confusion is not None:
            conf = np.asarray(self.confusion, dtype=np.float64)
            if conf.ndim != 2 or conf.shape[0] != conf.shape[1] or not np.all(np.isfinite(conf)):
                raise ValueError(f"confusion must be a finite square (C, C) matrix, got shape {conf.shape}")
            object.__setattr__(self, "confusion", tuple(tuple(float(v) for v in row) for row in conf))

    @classmethod
    def from_class_means(cls, delta: float, x, y, num_classes: int, *, order: str = "confusing", order_seed: int = 0):
        """A model whose confusion ordering is that of the class-mean rule on (x, y)."""
        conf = class_mean_confusion(x, y, num_classes)
        return cls(delta, order=order, confusion=conf, order_seed=order_seed)

    def transition(self, num_classes: int) -> np.ndarray:
        return structured_transition(self.delta, num_classes, self.order, self.confusion, self.order_seed)

    def apply(self, y, seed: int, *, num_classes: int, indices=None) -> np.ndarray:
        """Noisy labels (N,) int32: every row is drawn from T[y] (the true class kept with 1/C)."""
        return _relabel(y, seed, num_classes, indices, 1.0, self.transition(num_classes), False)

    def law(self, y, num_classes: int) -> LabelLaw:
        return _law_from_transition(y, self.transition(num_classes))


@dataclasses.dataclass(frozen=True, eq=False)
class InstanceDependent:
    """Instance-dependent noise: on a fraction r of rows, ỹ = g(x).

    Attributes:
      r: fraction of rows relabelled.
      g: the other labelling, either a function ``g(x) -> (N,) int labels`` of the inputs
        (e.g. a second attribute of the image) or an (N,) int array of the alternative
        labels of the rows in order.
      exact: relabel exactly ⌊rN⌋ rows.

    It is not class-conditional: :meth:`transition` is the class-averaged T given y and
    the alternative labels, and :meth:`law` gives the exact per-row law the theory uses.
    """

    r: float
    g: Callable[[Any], Any] | Any
    exact: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "r", check_probability("r", self.r))

    def other_labels(self, num_classes: int, *, n: int, x=None) -> np.ndarray:
        if callable(self.g):
            if x is None:
                raise ValueError("InstanceDependent with a function g needs x=, the (N, d) inputs g reads")
            x = check_matrix("x", x)
            return check_labels("g(x)", np.asarray(self.g(x)), n=x.shape[0], num_classes=num_classes, data_name="x")
        return check_labels("g", np.asarray(self.g), n=n, num_classes=num_classes, data_name="y")

    def apply(self, y, seed: int, *, num_classes: int, indices=None, x=None) -> np.ndarray:
        """Noisy labels (N,) int32: g's label on the selected rows."""
        c = _check_num_classes(num_classes, lo=1)
        y = _check_y(y, c)
        if not self.exact:
            return self.law(y, c, x=x).sample(seed, indices=indices)
        other = self.other_labels(c, n=y.shape[0], x=x)
        u = row_uniforms(check_seed("seed", seed), _indices(indices, y.shape[0]))
        return np.where(_selection(u[:, 0], self.r, True, indices), other, y).astype(np.int32)

    def transition(self, num_classes: int, *, y=None, x=None) -> np.ndarray:
        """Class-averaged T: T_ab = (1 − r) δ_ab + r · freq(g = b | y = a); needs y (and x for a function g)."""
        if y is None:
            raise ValueError("InstanceDependent.transition needs y=, the true labels (the noise depends on each row)")
        c = _check_num_classes(num_classes, lo=1)
        y = _check_y(y, c)
        other = self.other_labels(c, n=y.shape[0], x=x)
        counts = np.zeros((c, c))
        np.add.at(counts, (y, other), 1.0)
        freq = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
        return (1 - self.r) * np.eye(c) + self.r * freq

    def law(self, y, num_classes: int, *, x=None) -> LabelLaw:
        """Exact per-row law: group (y, g) has probability 1 − r on y and r on g."""
        c = _check_num_classes(num_classes, lo=1)
        y = _check_y(y, c)
        other = self.other_labels(c, n=y.shape[0], x=x)
        eye = np.eye(c)
        groups = y * c + other
        probs = (1 - self.r) * eye[np.repeat(np.arange(c), c)] + self.r * eye[np.tile(np.arange(c), c)]
        return LabelLaw(groups.astype(np.int32), probs)


# --------------------------------------------------------------------------- realised noise on a data set


def with_confusion(model: Any, x: Any, y: Any, num_classes: int) -> Any:
    """``model``, or, for a :class:`Structured` model ranked by confusion but given none, the same model with
    the confusion counts of the class-mean rule on (x, y) (:func:`class_mean_confusion`)."""
    if isinstance(model, Structured) and model.order != "random" and model.confusion is None:
        conf = class_mean_confusion(x, y, num_classes)
        return dataclasses.replace(model, confusion=tuple(tuple(float(v) for v in row) for row in conf))
    return model


def flip_fraction(y, y_noisy) -> float:
    """Fraction of rows whose observed label differs from the true one."""
    a, b = np.asarray(y), np.asarray(y_noisy)
    if a.shape != b.shape:
        raise ValueError(f"y and y_noisy must have the same shape, got {a.shape} and {b.shape}")
    return float(np.mean(a != b)) if a.size else 0.0


def corrupt(dataset, model, seed: int, *, inputs: tuple[Any, float] | None = None, x=None):
    """A copy of a :class:`~nwcorrupt.data.Dataset` with noisy training labels (test labels stay clean).

    Args:
      dataset: the data set (its ``y_train`` are the true labels).
      model: a label-noise model (anything with ``apply(y, seed, num_classes=...)``); a
        :class:`Structured` model ranked by confusion without ``confusion`` gets that of the class-mean
        rule on the clean training set.
      seed: the seed of the label noise, and of the input corruption when ``inputs`` is given.
      inputs: optional ``(corruption_model, p)``: also corrupt the training inputs, exactly as
        ``nwcorrupt.corruption.corrupt(dataset, corruption_model, p, seed)`` does. Label and
        input noise use separate streams, so one call and the two calls in either order agree.
      x: for :class:`InstanceDependent` with a function g, the inputs it reads (default: the
        clean training inputs).

    Returns:
      ``(noisy dataset, clean_mask)``, clean_mask (N,) bool True where ỹ == y.
    """
    y = dataset.y_train
    model = with_confusion(model, dataset.x_train, y, dataset.num_classes)
    if isinstance(model, InstanceDependent):
        noisy = model.apply(y, seed, num_classes=dataset.num_classes, x=dataset.x_train if x is None else x)
    else:
        noisy = model.apply(y, seed, num_classes=dataset.num_classes)
    out = dataset.replace(y_train=np.asarray(noisy, dtype=np.int32))
    if inputs is not None:
        corr, p = inputs
        out = _corruption.corrupt(out, corr, p, seed)
    return out, np.asarray(noisy) == np.asarray(y)
