"""Principal subspaces of linear heads: how noisy labels move a classifier's singular directions.

A head is W (F, C): features × classes, the logits of features Φ (M, F) are Φ W. (A PyTorch
``nn.Linear`` readout stores Wᵀ (C, F); its *right* singular vectors are the *left* ones of W here,
the directions in feature space, which :func:`feature_directions` returns.) Writing W = U S Vᵀ
(thin SVD, r = min(F, C) singular values, descending):

- :func:`similarity` — φ(V1, V2, i, j) = ‖V1[:, :i]ᵀ V2[:, :j]‖²_F / min(i, j) ∈ [0, 1] for two
  matrices with orthonormal columns; 1 when the smaller span lies in the larger. It depends only on
  the spans of the first i and j columns, so it is blind to the sign and rotation ambiguities of an
  SVD inside a block of equal singular values, as long as i and j do not cut such a block.
- :func:`principal_angles` and :func:`sin_theta` — the principal angles between two spans and the
  sine of the largest (‖(I − P1) Q2‖₂).
- :func:`ridge_head` — the ridge head (ΦᵀΦ + λI)⁻¹ΦᵀY of fixed features (:func:`nwcorrupt.probe.solve`).
- :func:`sin_theta_bound` — the perturbation bound of the top-k feature subspace of a ridge head
  when the targets change from Y to Y′ on the same features: W′ − W = (ΦᵀΦ + λI)⁻¹Φᵀ(Y′ − Y), whose
  norm is at most σ_max(Φ)/(σ_min(Φ)² + λ) · ‖Y′ − Y‖_F, and Wedin's theorem divides by the gap
  δ = σ_k(W′) − σ_{k+1}(W). A fraction p of relabelled rows gives ‖Y′ − Y‖_F = √(2pM), hence
  sin θ ≲ σ_max(Φ) √(2M) / (δ (λ_min(ΦᵀΦ) + λ)) · √p: linear in √p, falling with λ.
- :func:`lip` — the LIP plug-in (principal subspace preservation): keep the rank-k part of a noisy
  head W′ = U S Vᵀ, W_k = U_k S_k V_kᵀ, and refit only the tail singular values by least squares on
  data (Φ, Y): s_l* = diag(U_lᵀΦᵀ(Y − ΦW_k)V_l) / diag(U_lᵀΦᵀΦU_l); return W_k + U_l diag(s_l*) V_lᵀ.
  Each s_j* minimises ‖Y − Φ(W_k + U_l diag(s) V_lᵀ)‖²_F over s_j with the others fixed at zero
  coupling, i.e. exactly when U_lᵀΦᵀΦU_l is diagonal. The refit targets Y are on the scale of
  one-hot labels, which suits squared-loss heads; a cross-entropy head's logits live on another
  scale, and ``target_scale="match"`` refits against c·Y with c = ⟨ΦW′, Y⟩/‖Y‖²_F, the least-squares
  scale of the head's own logits.

Everything is float64 numpy.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from nwcorrupt import probe as _probe
from nwcorrupt._checks import (
    check_array,
    check_int,
    check_matrix,
    check_nonneg_float,
    check_positive_float,
    check_same_size,
)

__all__ = [
    "TARGET_SCALES",
    "svd",
    "feature_directions",
    "similarity",
    "similarity_matrix",
    "principal_angles",
    "sin_theta",
    "HeadComparison",
    "compare_heads",
    "kernel_feature_map",
    "perturbation_bound",
    "ridge_head",
    "ridge_path",
    "sin_theta_bound",
    "lip",
]

#: ``target_scale`` choices of :func:`lip` (besides a positive number)
TARGET_SCALES = ("one_hot", "match")


def _head(name: str, w: Any) -> np.ndarray:
    return np.asarray(check_matrix(name, w), np.float64)


def svd(w: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Thin SVD of a head W (F, C): U (F, r), s (r,) descending, V (C, r), r = min(F, C)."""
    u, s, vt = np.linalg.svd(_head("W", w), full_matrices=False)
    return u, s, vt.T


def feature_directions(w: Any) -> np.ndarray:
    """(F, r) singular directions of W (F, C) in feature space (the right singular vectors of the
    PyTorch-layout head Wᵀ), ordered by descending singular value."""
    return svd(w)[0]


def _orthonormal(name: str, v: Any) -> np.ndarray:
    v = np.asarray(check_matrix(name, v), np.float64)
    gram = v.T @ v
    if not np.allclose(gram, np.eye(v.shape[1]), atol=1e-6):
        raise ValueError(f"{name} must have orthonormal columns (VᵀV = I); max |VᵀV − I| = "
                         f"{np.max(np.abs(gram - np.eye(v.shape[1]))):.3g}")
    return v


def similarity(v1: Any, v2: Any, i: int, j: int) -> float:
    """φ(V1, V2, i, j) = ‖V1[:, :i]ᵀ V2[:, :j]‖²_F / min(i, j).

    Args:
      v1, v2: (F, r1) and (F, r2) matrices with orthonormal columns (e.g. :func:`feature_directions`).
      i, j: how many leading columns of each, 1 <= i <= r1, 1 <= j <= r2.
    """
    a, b = _orthonormal("V1", v1), _orthonormal("V2", v2)
    check_same_size("V2", b.shape[0], "V1", a.shape[0])
    i = check_int("i", i, lo=1, hi=a.shape[1])
    j = check_int("j", j, lo=1, hi=b.shape[1])
    return float(np.sum((a[:, :i].T @ b[:, :j]) ** 2) / min(i, j))


def similarity_matrix(v1: Any, v2: Any) -> np.ndarray:
    """(r1, r2) matrix of φ(V1, V2, i, j) for i = 1..r1, j = 1..r2 (row i − 1, column j − 1)."""
    a, b = _orthonormal("V1", v1), _orthonormal("V2", v2)
    check_same_size("V2", b.shape[0], "V1", a.shape[0])
    sq = (a.T @ b) ** 2
    cum = np.cumsum(np.cumsum(sq, axis=0), axis=1)
    ii, jj = np.meshgrid(np.arange(1, a.shape[1] + 1), np.arange(1, b.shape[1] + 1), indexing="ij")
    return cum / np.minimum(ii, jj)


def principal_angles(a: Any, b: Any) -> np.ndarray:
    """Principal angles (radians, ascending) between the column spans of a (F, k1) and b (F, k2)."""
    qa = np.linalg.qr(np.asarray(check_matrix("a", a), np.float64))[0]
    qb = np.linalg.qr(np.asarray(check_matrix("b", b), np.float64))[0]
    check_same_size("b", qb.shape[0], "a", qa.shape[0])
    cos = np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0)
    return np.sort(np.arccos(cos))


def sin_theta(a: Any, b: Any) -> float:
    """sin of the largest principal angle between two spans of equal dimension: ‖(I − P_a) Q_b‖₂."""
    qa = np.linalg.qr(np.asarray(check_matrix("a", a), np.float64))[0]
    qb = np.linalg.qr(np.asarray(check_matrix("b", b), np.float64))[0]
    check_same_size("b", qb.shape[0], "a", qa.shape[0])
    if qa.shape[1] != qb.shape[1]:
        raise ValueError(f"a spans {qa.shape[1]} dimensions but b spans {qb.shape[1]}; they must match")
    return float(np.linalg.norm(qb - qa @ (qa.T @ qb), 2))


@dataclasses.dataclass(frozen=True, eq=False)
class HeadComparison:
    """Two heads over the same features, compared (:func:`compare_heads`).

    Attributes:
      singular_values: (2, r) singular values of W and W′.
      similarity: (r, r) φ(U, U′, i, j) of their feature directions (row i − 1, column j − 1).
      sin_theta: (r − 1,) sin θ between the top-k feature subspaces for k = 1..r − 1.
    """

    singular_values: np.ndarray
    similarity: np.ndarray
    sin_theta: np.ndarray


def compare_heads(w: Any, w_prime: Any) -> HeadComparison:
    """Spectra, φ matrix and top-k sin θ of two heads W, W′ (F, C) of the same shape."""
    a, b = _head("W", w), _head("W_prime", w_prime)
    if a.shape != b.shape:
        raise ValueError(f"W has shape {a.shape} but W_prime has {b.shape}; heads over the same features "
                         "and classes must have the same shape")
    ua, sa, _ = svd(a)
    ub, sb, _ = svd(b)
    sines = np.array([sin_theta(ua[:, :k], ub[:, :k]) for k in range(1, ua.shape[1])])
    return HeadComparison(singular_values=np.stack([sa, sb]), similarity=similarity_matrix(ua, ub), sin_theta=sines)


def kernel_feature_map(k_train: Any, k_test_train: Any = None, *, rtol: float = 1e-10):
    """The finite-sample feature map of a kernel: Φ (N, r) with ΦΦᵀ = K, and Φ* (T, r) for test points.

    K = V Λ Vᵀ (eigendecomposition, eigenvalues below ``rtol`` · λ_max dropped, r kept); Φ = V Λ^½ and
    Φ* = K(X*, X) V Λ^-½. A ridge head on Φ then predicts Φ*(ΦᵀΦ + λ)⁻¹ΦᵀY = K*(K + λ)⁻¹Y on the kept
    span: kernel ridge regression, with a head W (r, C) whose spectrum and subspaces can be compared.
    The columns of Φ are orthogonal (ΦᵀΦ = Λ).

    Returns:
      ``(phi, phi_test)``; ``phi_test`` is None without ``k_test_train``.
    """
    k = np.asarray(check_matrix("k_train", k_train), np.float64)
    if k.shape[0] != k.shape[1]:
        raise ValueError(f"k_train must be square (N, N), got shape {k.shape}")
    lam, vec = np.linalg.eigh((k + k.T) / 2)
    keep = lam > check_positive_float("rtol", rtol) * lam[-1]
    lam, vec = lam[keep][::-1], vec[:, keep][:, ::-1]
    phi = vec * np.sqrt(lam)
    if k_test_train is None:
        return phi, None
    kt = np.asarray(check_matrix("k_test_train", k_test_train), np.float64)
    check_same_size("k_test_train", kt.shape[1], "k_train", k.shape[0], "columns")
    return phi, (kt @ vec) / np.sqrt(lam)


def ridge_head(features: Any, targets: Any, ridge: float) -> np.ndarray:
    """The ridge head (ΦᵀΦ + λI)⁻¹ΦᵀY, (F, C); ``ridge`` = λ > 0 absolute."""
    lam = check_positive_float("ridge", ridge)
    return _probe.solve(features, targets, ridge=lam)


def ridge_path(features: Any, targets: Any, ridges: Any) -> np.ndarray:
    """Ridge heads for many λ from one SVD of Φ: (len(ridges), F, C) with head i = (ΦᵀΦ + λ_i I)⁻¹ΦᵀY.

    Φ = A S Bᵀ (thin SVD) gives (ΦᵀΦ + λ)⁻¹ΦᵀY = B diag(s/(s² + λ)) AᵀY plus nothing outside the row space
    of Φ (the ridge head has no component there); every λ_i must be > 0.
    """
    phi = np.asarray(check_matrix("features", features), np.float64)
    y = np.asarray(check_array("targets", targets, ndim=2), np.float64)
    check_same_size("targets", y.shape[0], "features", phi.shape[0])
    lams = [check_positive_float("ridges", lam) for lam in np.atleast_1d(np.asarray(ridges, np.float64))]
    a, sv, bt = np.linalg.svd(phi, full_matrices=False)
    ay = a.T @ y
    return np.stack([bt.T @ ((sv / (sv**2 + lam))[:, None] * ay) for lam in lams])


def perturbation_bound(sigma_max: float, lambda_min: float, targets_change: float, ridge: float, gap: float) -> float:
    """σ_max ‖Y′ − Y‖_F / ((λ_min + λ) δ): the bound on sin θ of :func:`sin_theta_bound` from its numbers
    (σ_max(Φ), λ_min(ΦᵀΦ), ‖Y′ − Y‖_F, λ, the gap δ); inf when δ <= 0 or λ_min + λ = 0."""
    den = (check_nonneg_float("lambda_min", lambda_min) + check_nonneg_float("ridge", ridge)) * float(gap)
    if gap <= 0 or den <= 0:
        return float("inf")
    return float(check_nonneg_float("sigma_max", sigma_max) * check_nonneg_float("targets_change", targets_change) / den)


def sin_theta_bound(features: Any, targets: Any, noisy_targets: Any, ridge: float, k: int) -> float:
    """Upper bound on sin θ between the top-k feature subspaces of the ridge heads of Y and Y′.

    σ_max(Φ) ‖Y′ − Y‖_F / ((σ_min(Φ)² + λ) δ) with δ = σ_k(W′) − σ_{k+1}(W) (module docstring;
    σ_min(Φ)² = λ_min(ΦᵀΦ), 0 when F > M). Returns inf when δ <= 0 (the bound says nothing).
    """
    phi = np.asarray(check_matrix("features", features), np.float64)
    y = np.asarray(check_array("targets", targets, ndim=2), np.float64)
    y2 = np.asarray(check_array("noisy_targets", noisy_targets, ndim=2), np.float64)
    if y.shape != y2.shape or y.shape[0] != phi.shape[0]:
        raise ValueError(f"targets {y.shape} and noisy_targets {y2.shape} must both be (M, C) with "
                         f"M = {phi.shape[0]} rows of features")
    lam = check_nonneg_float("ridge", ridge)
    r = min(phi.shape[1], y.shape[1])
    k = check_int("k", k, lo=1, hi=r - 1, note="(the gap needs a (k+1)-th singular value)")
    sv = np.linalg.svd(phi, compute_uv=False)
    lam_min = sv[-1] ** 2 if phi.shape[1] <= phi.shape[0] else 0.0
    s_clean = np.linalg.svd(_probe.solve(phi, y, ridge=lam), compute_uv=False)
    s_noisy = np.linalg.svd(_probe.solve(phi, y2, ridge=lam), compute_uv=False)
    return perturbation_bound(sv[0], lam_min, float(np.linalg.norm(y2 - y)), lam, s_noisy[k - 1] - s_clean[k])


def lip(w_noisy: Any, features: Any, targets: Any, k: int, *, target_scale: Any = "one_hot") -> np.ndarray:
    """The LIP plug-in: keep the top-k singular part of W′, refit the tail singular values.

    Args:
      w_noisy: W′ (F, C), a head trained on noisy labels.
      features: Φ (M, F), the features the head reads (append a ones column, and the bias as a row
        of W′, to treat a bias).
      targets: Y (M, C) (one-hot labels, as available: the noisy ones) or (M,) int labels.
      k: kept rank, 0 <= k <= r = min(F, C); k = r returns W′ unchanged.
      target_scale: ``"one_hot"`` (refit against Y), ``"match"`` (against c·Y with
        c = ⟨ΦW′, Y⟩/‖Y‖²_F) or a positive number c.

    Returns:
      (F, C) float64 head W_k + U_l diag(s_l*) V_lᵀ (module docstring). A tail direction that Φ
      annihilates (U_lᵀΦᵀΦU_l = 0 there) keeps its singular value.
    """
    w = _head("W_noisy", w_noisy)
    phi = np.asarray(check_matrix("features", features), np.float64)
    check_same_size("features", phi.shape[1], "W_noisy", w.shape[0], "features (columns vs rows of W)")
    f, c = w.shape
    y = np.asarray(check_array("targets", targets))
    if y.ndim == 1:
        if y.dtype.kind not in "iu":
            raise TypeError(f"1-D targets must be integer labels, got dtype {y.dtype}")
        if y.size and (y.min() < 0 or y.max() >= c):
            raise ValueError(f"targets must lie in [0, {c}) for a head with C={c} columns")
        y = np.eye(c)[y]
    y = y.astype(np.float64)
    if y.shape != (phi.shape[0], c):
        raise ValueError(f"targets must be (M, C) = ({phi.shape[0]}, {c}) or (M,) labels, got shape {y.shape}")
    r = min(f, c)
    k = check_int("k", k, lo=0, hi=r, note=f"(the rank range [0, r] of a ({f}, {c}) head)")
    if isinstance(target_scale, str):
        if target_scale not in TARGET_SCALES:
            raise ValueError(f"target_scale must be one of {sorted(TARGET_SCALES)} or a positive number, "
                             f"got {target_scale!r}")
        scale = 1.0 if target_scale == "one_hot" else float(np.sum((phi @ w) * y) / np.sum(y * y))
    else:
        scale = check_positive_float("target_scale", target_scale)
    if k == r:
        return w.copy()
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    v = vt.T
    w_k = (u[:, :k] * s[:k]) @ v[:, :k].T
    xu = phi @ u[:, k:]  # (M, r - k)
    resid = scale * y - phi @ w_k
    num = np.einsum("mj,mc,cj->j", xu, resid, v[:, k:])
    den = np.einsum("mj,mj->j", xu, xu)
    tail = np.where(den > 1e-12 * max(float(den.max(initial=0.0)), 1e-300), num / np.where(den > 0, den, 1.0), s[k:])
    return w_k + (u[:, k:] * tail) @ v[:, k:].T
