"""Corruption models (attribute noise; labels stay correct); docs/science.md#corruption-models.

p ∈ [0, 1] is the corruption level and ε = 1 − p the surviving signal fraction.

- :class:`Replacement`: each feature is, independently with probability p,
  replaced by a draw u from a replacement law: x̃_i = (1 − m_i) x_i + m_i u_i,
  m_i ~ Bernoulli(p). Laws: ``"uniform"`` on [low, high] (default U[−√3, √3],
  mean 0 and variance 1, for normalised data; use U[0, 1] on raw pixels),
  ``"gaussian"`` N(loc, scale²), ``"marginal"`` (the empirical pixel marginal of
  a data set, see :meth:`Replacement.from_marginal`), ``"salt_pepper"`` (u = high
  with probability ``salt_prob``, else low).
- :class:`Additive`: x̃ = (1 − p) x + p ξ with ξ of zero mean and unit variance
  (``"gaussian"``, ``"uniform"`` on [−√3, √3], ``"laplace"`` with scale 1/√2).

Reproducibility: a corrupted data set is a pure function of (model, p, seed,
data). Row j is corrupted with the key ``fold_in(fold_in(fold_in(key(seed),
stream), epoch), j)`` where j is the row's *global* index (pass ``indices`` when
corrupting a slice), ``stream`` separates training (0) and test (1) noise and
``epoch`` = 0 is the fixed realisation (per-epoch redraw uses epoch = 1, 2, ...).
So a row's noise never depends on batching or order, and the same call is
bit-identical. The work is jit-compiled (the model is a static argument).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Protocol, runtime_checkable

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt._checks import (
    check_choice,
    check_int,
    check_matrix,
    check_positive_float,
    check_probability,
    check_real,
    check_seed,
)

__all__ = [
    "Corruption",
    "Replacement",
    "Additive",
    "Online",
    "REPLACEMENT_DISTS",
    "ADDITIVE_DISTS",
    "WHERE",
    "SQRT3",
    "TRAIN_STREAM",
    "TEST_STREAM",
    "row_keys",
    "get",
    "corrupt",
]

Array = jax.Array

SQRT3 = math.sqrt(3.0)
REPLACEMENT_DISTS = ("uniform", "gaussian", "marginal", "salt_pepper")
ADDITIVE_DISTS = ("gaussian", "uniform", "laplace")
WHERE = ("train", "test", "both")
TRAIN_STREAM, TEST_STREAM = 0, 1


@runtime_checkable
class Corruption(Protocol):
    """What every corruption model offers."""

    kind: str

    @property
    def moments(self) -> tuple[float, float]: ...

    def apply(self, x, p, seed, *, indices=None, epoch: int = 0, stream: int = TRAIN_STREAM) -> Array: ...


def _check_stream(stream: object) -> int:
    if stream not in (TRAIN_STREAM, TEST_STREAM):
        raise ValueError(f"stream must be {TRAIN_STREAM} (train) or {TEST_STREAM} (test), got {stream!r}")
    return int(stream)


def _check_indices(indices: object, n: int) -> Array:
    if indices is None:
        return jnp.arange(n, dtype=jnp.uint32)
    idx = np.asarray(indices)
    if idx.shape != (n,):
        raise ValueError(f"indices must have shape ({n},), one global index per row of x, got {idx.shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"indices must be integers, got dtype {idx.dtype}")
    if idx.size and (idx.min() < 0 or idx.max() >= 2**32):
        raise ValueError("indices must lie in [0, 2**32)")
    return jnp.asarray(idx, dtype=jnp.uint32)


def row_keys(seed: int, indices: Array, *, epoch: int = 0, stream: int = TRAIN_STREAM) -> Array:
    """Per-row PRNG keys: (N,) keys for the rows with global ``indices``."""
    base = jax.random.fold_in(jax.random.fold_in(jax.random.key(seed), stream), epoch)
    return jax.vmap(lambda j: jax.random.fold_in(base, j))(indices)


def _prepare(model: "Replacement | Additive", x, p, seed, indices, epoch, stream):
    x = check_matrix("x", x)
    p = check_probability("p", p)
    seed = check_seed("seed", seed)
    check_seed("epoch", epoch)
    _check_stream(stream)
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.float32)
    idx = _check_indices(indices, x.shape[0])
    return x, jnp.asarray(p, dtype=x.dtype), seed, idx


@dataclasses.dataclass(frozen=True)
class Replacement:
    """Replacement noise: each feature replaced with probability p by a draw u ~ D_u.

    Attributes:
      dist: ``"uniform"`` (on [low, high]), ``"gaussian"`` (N(loc, scale²)),
        ``"marginal"`` (equally weighted ``atoms``), ``"salt_pepper"``
        (``high`` with probability ``salt_prob``, else ``low``).
      low, high: interval of the uniform law; the two values of salt-and-pepper.
      loc, scale: mean and standard deviation of the Gaussian law.
      salt_prob: probability of ``high`` for salt-and-pepper.
      atoms: support points of the empirical marginal (equal weights).
    """

    dist: str = "uniform"
    low: float = -SQRT3
    high: float = SQRT3
    loc: float = 0.0
    scale: float = 1.0
    salt_prob: float = 0.5
    atoms: tuple[float, ...] = ()

    kind = "replacement"

    def __post_init__(self) -> None:
        check_choice("dist", self.dist, REPLACEMENT_DISTS)
        for name in ("low", "high", "loc", "scale", "salt_prob"):
            check_real(name, getattr(self, name))
        if self.dist == "uniform" and not self.low < self.high:
            raise ValueError(f"uniform replacement needs low < high, got low={self.low}, high={self.high}")
        if self.dist == "gaussian":
            check_positive_float("scale", self.scale, note="the std of the gaussian replacement law")
        if self.dist == "salt_pepper":
            check_probability("salt_prob", self.salt_prob)
        if self.dist == "marginal":
            if not self.atoms:
                raise ValueError(
                    "dist='marginal' needs atoms; build it with Replacement.from_marginal(x) from the data"
                )
            for i, a in enumerate(self.atoms):
                check_real(f"atoms[{i}]", a)
        elif self.atoms:
            raise ValueError(f"atoms only apply to dist='marginal', not {self.dist!r}")

    @classmethod
    def from_marginal(cls, x, n_atoms: int = 1024) -> "Replacement":
        """The empirical marginal of all entries of ``x`` as ``n_atoms`` equal-weight quantiles.

        Args:
          x: (N, d) data whose pooled feature values define the law.
          n_atoms: number of quantile atoms (the law's resolution), an integer >= 2; a float
            such as 10.5 raises ``TypeError``.
        """
        x = check_matrix("x", x)
        n_atoms = check_int("n_atoms", n_atoms, lo=2)
        levels = (np.arange(n_atoms) + 0.5) / n_atoms
        q = np.quantile(np.asarray(x, dtype=np.float64).ravel(), levels)
        return cls(dist="marginal", atoms=tuple(float(a) for a in q))

    @property
    def moments(self) -> tuple[float, float]:
        """(μ, μ₂) = (E[u], E[u²]) of the replacement law."""
        if self.dist == "uniform":
            a, b = self.low, self.high
            return (a + b) / 2, (a * a + a * b + b * b) / 3
        if self.dist == "gaussian":
            return self.loc, self.loc**2 + self.scale**2
        if self.dist == "salt_pepper":
            q = self.salt_prob
            return q * self.high + (1 - q) * self.low, q * self.high**2 + (1 - q) * self.low**2
        atoms = np.asarray(self.atoms, dtype=np.float64)
        return float(atoms.mean()), float(np.mean(atoms**2))

    def _sample(self, key: Array, d: int, dtype) -> Array:
        if self.dist == "uniform":
            return jax.random.uniform(key, (d,), dtype, self.low, self.high)
        if self.dist == "gaussian":
            return self.loc + self.scale * jax.random.normal(key, (d,), dtype)
        if self.dist == "salt_pepper":
            salt = jax.random.bernoulli(key, self.salt_prob, (d,))
            return jnp.where(salt, jnp.asarray(self.high, dtype), jnp.asarray(self.low, dtype))
        atoms = jnp.asarray(self.atoms, dtype)
        return atoms[jax.random.randint(key, (d,), 0, len(self.atoms))]

    def _row(self, x_row: Array, key: Array, p: Array) -> tuple[Array, Array]:
        k_mask, k_u = jax.random.split(key)
        mask = jax.random.uniform(k_mask, x_row.shape, x_row.dtype) < p
        return mask, self._sample(k_u, x_row.shape[0], x_row.dtype)

    def draw(self, x, p, seed: int, *, indices=None, epoch: int = 0, stream: int = TRAIN_STREAM) -> tuple[Array, Array]:
        """The noise behind :meth:`apply`: the replacement mask m (N, d) bool and values u (N, d)."""
        x, p, seed, idx = _prepare(self, x, p, seed, indices, epoch, stream)
        return _draw(self, x, p, seed, idx, epoch, stream)

    def apply(self, x, p, seed: int, *, indices=None, epoch: int = 0, stream: int = TRAIN_STREAM) -> Array:
        """Corrupted copy of x (N, d): x̃ = (1 − m) x + m u (same dtype as x)."""
        x, p, seed, idx = _prepare(self, x, p, seed, indices, epoch, stream)
        return _apply(self, x, p, seed, idx, epoch, stream)

    def combine(self, x: Array, noise: tuple[Array, Array], p: Array) -> Array:
        mask, u = noise
        return jnp.where(mask, u, x)


@dataclasses.dataclass(frozen=True)
class Additive:
    """Additive noise x̃ = (1 − p) x + p ξ with ξ of zero mean, unit variance.

    Attributes:
      dist: law of ξ: ``"gaussian"``, ``"uniform"`` (U[−√3, √3]) or ``"laplace"``
        (scale 1/√2).
    """

    dist: str = "gaussian"

    kind = "additive"

    def __post_init__(self) -> None:
        check_choice("dist", self.dist, ADDITIVE_DISTS)

    @property
    def moments(self) -> tuple[float, float]:
        """(E[ξ], E[ξ²]) = (0, 1) for every supported law."""
        return 0.0, 1.0

    def _row(self, x_row: Array, key: Array, p: Array) -> Array:
        d, dtype = x_row.shape[0], x_row.dtype
        if self.dist == "gaussian":
            return jax.random.normal(key, (d,), dtype)
        if self.dist == "uniform":
            return jax.random.uniform(key, (d,), dtype, -SQRT3, SQRT3)
        return jax.random.laplace(key, (d,), dtype) / jnp.sqrt(jnp.asarray(2.0, dtype))

    def draw(self, x, p, seed: int, *, indices=None, epoch: int = 0, stream: int = TRAIN_STREAM) -> Array:
        """The noise ξ (N, d) behind :meth:`apply`."""
        x, p, seed, idx = _prepare(self, x, p, seed, indices, epoch, stream)
        return _draw(self, x, p, seed, idx, epoch, stream)

    def apply(self, x, p, seed: int, *, indices=None, epoch: int = 0, stream: int = TRAIN_STREAM) -> Array:
        """Corrupted copy of x (N, d): (1 − p) x + p ξ (same dtype as x)."""
        x, p, seed, idx = _prepare(self, x, p, seed, indices, epoch, stream)
        return _apply(self, x, p, seed, idx, epoch, stream)

    def combine(self, x: Array, noise: Array, p: Array) -> Array:
        return (1 - p) * x + p * noise


def _draw_rows(model, x, p, seed, indices, epoch, stream):
    """The per-row noise of ``model`` (traceable in every argument but model and stream)."""
    keys = row_keys(seed, indices, epoch=epoch, stream=stream)
    return jax.vmap(model._row, in_axes=(0, 0, None))(x, keys, p)


_draw = functools.partial(jax.jit, static_argnums=(0, 5, 6))(_draw_rows)


@functools.partial(jax.jit, static_argnums=(0, 5, 6))
def _apply(model, x, p, seed, indices, epoch, stream):
    return model.combine(x, _draw(model, x, p, seed, indices, epoch, stream), p)


@dataclasses.dataclass(frozen=True)
class Online:
    """Per-epoch ("online") corruption: a fresh noise realisation in every training epoch.

    ``Online(model, p, seed)(x_clean, k, epoch)`` is the corrupted copy (N, d) of the
    clean rows ``x_clean`` (N, d) that training set k sees in training epoch ``epoch``
    (both may be traced int32 scalars, e.g. inside a compiled training loop). It equals
    ``model.apply(x_clean, p, seed + k, epoch=epoch + 1)`` bit for bit: realisation
    ``epoch = 0`` of each seed is the fixed (offline) corrupted set and is never drawn
    online. Row j is treated as global row j (as in :func:`row_keys`). Pass it as
    ``nwcorrupt.train.train_ensemble(..., corrupt=Online(model, p, seed), num_datasets=K)``.

    Attributes:
      model: a :class:`Replacement` or :class:`Additive` model.
      p: corruption level in [0, 1].
      seed: noise seed of training set 0 (set k uses seed + k; seed + K < 2**32).
      stream: :data:`TRAIN_STREAM` (default) or :data:`TEST_STREAM`.
    """

    model: Replacement | Additive
    p: float
    seed: int
    stream: int = TRAIN_STREAM

    def __post_init__(self) -> None:
        if not isinstance(self.model, (Replacement, Additive)):
            raise TypeError(f"model must be a Replacement or Additive corruption model, got {self.model!r}")
        object.__setattr__(self, "p", check_probability("p", self.p))
        check_seed("seed", self.seed)
        _check_stream(self.stream)

    def __call__(self, x_clean: Array, k, epoch) -> Array:
        x = jnp.asarray(x_clean)
        p = jnp.asarray(self.p, x.dtype)
        idx = jnp.arange(x.shape[0], dtype=jnp.uint32)
        seed = jnp.asarray(self.seed, jnp.uint32) + jnp.asarray(k, jnp.uint32)
        epoch = jnp.asarray(epoch, jnp.uint32) + 1
        return self.model.combine(x, _draw_rows(self.model, x, p, seed, idx, epoch, self.stream), p)


def get(kind: str, **params: object) -> Replacement | Additive:
    """Build a model by kind name: ``get("replacement", dist="uniform", low=0, high=1)``."""
    check_choice("kind", kind, ("replacement", "additive"))
    return Replacement(**params) if kind == "replacement" else Additive(**params)  # type: ignore[arg-type]


def _check_model(model: object) -> None:
    """Raise ``TypeError`` unless ``model`` is a corruption model (anything with a callable ``apply``)."""
    if isinstance(model, (str, bytes)) or not callable(getattr(model, "apply", None)):
        raise TypeError(
            "model must be a corruption model: nwcorrupt.corruption.Replacement(...) or Additive(...) "
            "(or any object with apply(x, p, seed, *, epoch, stream)); to build one from a kind name use "
            f"nwcorrupt.corruption.get('replacement') or get('additive'); got {model!r}"
        )


def corrupt(
    dataset,
    model: Replacement | Additive,
    p: float,
    seed: int,
    *,
    where: str = "train",
    p_test: float | None = None,
    epoch: int = 0,
):
    """A corrupted copy of a :class:`~nwcorrupt.data.Dataset`.

    Args:
      dataset: the clean data set.
      model: a corruption model, :class:`Replacement` or :class:`Additive` (:func:`get` builds one
        from a kind name).
      p: corruption level of the training set (and of the test set unless
        ``p_test`` is given).
      seed: noise seed k; the training and test noise come from separate streams.
      where: ``"train"`` (main setting, clean test set), ``"test"`` or ``"both"``.
      p_test: corruption level of the test set when it differs from p.
      epoch: 0 for the fixed realisation; e ≥ 1 for the redraw of epoch e.

    Returns:
      a new Dataset whose corrupted parts are float32 numpy arrays.
    """
    _check_model(model)
    check_choice("where", where, WHERE)
    p = check_probability("p", p)
    pt = p if p_test is None else check_probability("p_test", p_test)
    check_seed("seed", seed)
    x_train, x_test = dataset.x_train, dataset.x_test
    if where in ("train", "both"):
        x_train = np.asarray(model.apply(x_train, p, seed, epoch=epoch, stream=TRAIN_STREAM))
    if where in ("test", "both"):
        x_test = np.asarray(model.apply(x_test, pt, seed, epoch=epoch, stream=TEST_STREAM))
    return dataset.replace(x_train=x_train, x_test=x_test)
