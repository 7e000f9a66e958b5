"""Test matrices and error measures shared by the solver tests (imported as a plain module)."""

from __future__ import annotations

import numpy as np


def spd(n: int, cond: float, seed: int) -> np.ndarray:
    """Symmetric positive-definite matrix with eigenvalues log-spaced in [1/cond, 1] (exactly symmetric)."""
    q, _ = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    k = (q * np.logspace(-np.log10(cond), 0, n)) @ q.T
    return (k + k.T) / 2


def max_rel(a, b) -> float:
    """max |a - b| / max |b|, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / np.max(np.abs(b)))


def fro_rel(a, b) -> float:
    """||a - b||_F / ||b||_F, in float64."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))
