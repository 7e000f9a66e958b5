"""Principal subspaces: φ by its definition, SVD ambiguities, the LIP refit, sin θ trends and bound."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from nwcorrupt import subspace
from nwcorrupt.labels import Symmetric


def _orth(rng, f, r):
    return np.linalg.qr(rng.normal(size=(f, r)))[0]


def test_similarity_is_one_for_identical_heads_and_matches_its_definition():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(12, 5))
    u = subspace.feature_directions(w)
    assert all(subspace.similarity(u, u, i, j) == pytest.approx(1.0) for i in range(1, 6) for j in range(1, 6))
    u2 = subspace.feature_directions(rng.normal(size=(12, 5)))
    for i, j in ((1, 1), (2, 4), (5, 3)):
        direct = sum((u[:, a] @ u2[:, b]) ** 2 for a in range(i) for b in range(j)) / min(i, j)
        assert subspace.similarity(u, u2, i, j) == pytest.approx(direct, abs=1e-13)
    mat = subspace.similarity_matrix(u, u2)
    assert mat[1, 3] == pytest.approx(subspace.similarity(u, u2, 2, 4), abs=1e-13)
    assert np.all((mat >= -1e-12) & (mat <= 1 + 1e-12))


def test_similarity_ignores_sign_and_rotation_inside_a_degenerate_block():
    rng = np.random.default_rng(1)
    q, v = _orth(rng, 10, 4), _orth(rng, 4, 4)
    s = np.array([5.0, 3.0, 3.0, 1.0])  # columns 1 and 2 share a singular value
    w = (q * s) @ v.T
    a = 0.7
    rot = np.eye(4)
    rot[1:3, 1:3] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    flip = np.diag([-1.0, 1.0, 1.0, -1.0])
    q2, v2 = q @ rot @ flip, v @ rot @ flip  # another valid SVD of the same head
    np.testing.assert_allclose((q2 * s) @ v2.T, w, atol=1e-12)
    other = subspace.feature_directions(rng.normal(size=(10, 4)))
    for i in (1, 3, 4):  # cuts outside the block
        for j in range(1, 5):
            assert subspace.similarity(q2, other, i, j) == pytest.approx(subspace.similarity(q, other, i, j), abs=1e-12)
    assert subspace.similarity(q2, q, 3, 3) == pytest.approx(1.0)


def test_principal_angles_and_sin_theta_agree_with_scipy():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(9, 3)), rng.normal(size=(9, 3))
    np.testing.assert_allclose(subspace.principal_angles(a, b), np.sort(subspace_angles(a, b)), atol=1e-12)
    assert subspace.sin_theta(a, b) == pytest.approx(np.sin(subspace_angles(a, b).max()), abs=1e-12)
    assert subspace.sin_theta(a, a @ rng.normal(size=(3, 3))) == pytest.approx(0.0, abs=1e-12)


def test_lip_at_full_rank_returns_the_head():
    rng = np.random.default_rng(3)
    w, x = rng.normal(size=(8, 4)), rng.normal(size=(30, 8))
    y = rng.integers(0, 4, 30)
    np.testing.assert_allclose(subspace.lip(w, x, y, 4), w, atol=1e-12)


def _brute_tail(w_k, x, y, u_l, v_l):
    # joint least squares over the tail singular values s: design columns vec(X u_j v_jᵀ)
    cols = np.stack([(x @ u_l[:, j:j + 1] @ v_l[:, j:j + 1].T).ravel() for j in range(u_l.shape[1])], 1)
    return np.linalg.lstsq(cols, (y - x @ w_k).ravel(), rcond=None)[0]


def test_lip_refit_is_the_least_squares_solution_when_the_tail_gram_is_diagonal():
    rng = np.random.default_rng(4)
    f, c, m, k = 7, 5, 40, 2
    w = rng.normal(size=(f, c))
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    basis = np.linalg.qr(np.concatenate([u, rng.normal(size=(f, f - c))], 1))[0]
    basis[:, :c] = u  # an orthonormal basis starting with U
    z = _orth(rng, m, f) * rng.uniform(0.5, 3.0, f)  # orthogonal columns of different norms
    x = z @ basis.T  # then Uᵀ XᵀX U = diag
    g = u[:, k:].T @ x.T @ x @ u[:, k:]
    assert np.allclose(g, np.diag(np.diag(g)), atol=1e-10)
    y = np.eye(c)[rng.integers(0, c, m)]
    out = subspace.lip(w, x, y, k)
    w_k = (u[:, :k] * s[:k]) @ vt[:k]
    tail = _brute_tail(w_k, x, y, u[:, k:], vt[k:].T)
    np.testing.assert_allclose(out, w_k + (u[:, k:] * tail) @ vt[k:], atol=1e-10)
    # the kept part is untouched: the top-k directions and singular values of the output
    np.testing.assert_allclose(out @ vt[:k].T, u[:, :k] * s[:k], atol=1e-10)


def test_lip_refit_is_coordinatewise_for_any_features():
    # each tail value alone minimises the loss against the residual of the kept part
    rng = np.random.default_rng(5)
    w, x = rng.normal(size=(6, 4)), rng.normal(size=(25, 6))
    y = np.eye(4)[rng.integers(0, 4, 25)]
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    k = 1
    out = subspace.lip(w, x, y, k)
    w_k = (u[:, :k] * s[:k]) @ vt[:k]
    tail = np.diag(u[:, k:].T @ (out - w_k) @ vt[k:].T)
    for j in range(3):
        one = _brute_tail(w_k, x, y, u[:, k + j:k + j + 1], vt[k + j:k + j + 1].T)
        assert tail[j] == pytest.approx(one[0], rel=1e-9)


def test_lip_target_scale_match_refits_against_the_logit_scale():
    rng = np.random.default_rng(6)
    x = rng.normal(size=(50, 6))
    y = np.eye(3)[rng.integers(0, 3, 50)]
    w = 7.0 * np.linalg.lstsq(x, y, rcond=None)[0]  # a head on 7 times the one-hot scale
    c = np.sum((x @ w) * y) / np.sum(y * y)
    np.testing.assert_allclose(subspace.lip(w, x, y, 1, target_scale="match"),
                               subspace.lip(w, x, y, 1, target_scale=c), atol=1e-12)
    # the scaled refit of a scaled least-squares head is the head itself at every k
    for k in range(4):
        np.testing.assert_allclose(subspace.lip(w, x, y, k, target_scale=7.0), w, atol=1e-9)


def _heads(p, lam, seed=0, m=400, f=30, c=5):
    # two classes far from the rest: the clean head has a gap after its second singular value
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, f)) / np.sqrt(f) * np.array([4.0, 4.0, 0.5, 0.5, 0.5])[:, None]
    y = rng.integers(0, c, m)
    x = centers[y] + rng.normal(size=(m, f))
    noisy = Symmetric(p, include_true=False, exact=True).apply(y, seed, num_classes=c)
    clean_t, noisy_t = np.eye(c)[y], np.eye(c)[noisy]
    return x, clean_t, noisy_t, subspace.ridge_head(x, clean_t, lam), subspace.ridge_head(x, noisy_t, lam)


def _mean_sin(p, lam, k=2, seeds=5):
    out = []
    for seed in range(seeds):
        x, t, t2, w, w2 = _heads(p, lam, seed)
        s = subspace.compare_heads(w, w2).sin_theta[k - 1]
        assert s <= subspace.sin_theta_bound(x, t, t2, lam, k)  # measured below the perturbation bound
        out.append(s)
    return float(np.mean(out))


def test_sin_theta_grows_with_the_noise_and_shrinks_with_the_ridge_below_the_bound():
    # top-2 feature subspace, mean over 5 seeded draws (measured: 0.40, 0.66, 0.74 at λ = 0.01 and
    # 0.66, 0.41, 0.12 for λ = 1, 100, 10⁴ at p = 0.1)
    by_p = [_mean_sin(p, 1e-2) for p in (0.05, 0.1, 0.2)]
    assert by_p[0] < by_p[1] < by_p[2]
    by_lam = [_mean_sin(0.1, lam) for lam in (1.0, 100.0, 1e4)]
    assert by_lam[0] > by_lam[1] > by_lam[2]


def test_compare_heads_reports_both_spectra():
    _, _, _, w, w2 = _heads(0.3, 1.0)
    cmp = subspace.compare_heads(w, w2)
    np.testing.assert_allclose(cmp.singular_values[0], np.linalg.svd(w, compute_uv=False))
    assert cmp.similarity.shape == (5, 5) and cmp.sin_theta.shape == (4,)
    assert subspace.compare_heads(w, w).sin_theta.max() < 1e-7


def test_bad_subspace_inputs_raise():
    rng = np.random.default_rng(7)
    w, x = rng.normal(size=(6, 3)), rng.normal(size=(10, 6))
    y = rng.integers(0, 3, 10)
    with pytest.raises(ValueError, match=r"k must be .*\[0, 3\]|k must lie in \[0, 3\]"):
        subspace.lip(w, x, y, 4)
    with pytest.raises(ValueError, match=r"k must"):
        subspace.lip(w, x, y, -1)
    with pytest.raises(ValueError, match="features has 5 features .*W_noisy has 6"):
        subspace.lip(w, x[:, :5], y, 1)
    with pytest.raises(ValueError, match="W has shape \\(6, 3\\) but W_prime has \\(6, 4\\)"):
        subspace.compare_heads(w, rng.normal(size=(6, 4)))
    with pytest.raises(ValueError, match="orthonormal columns"):
        subspace.similarity(w, w, 1, 1)
    u = subspace.feature_directions(w)
    with pytest.raises(ValueError, match=r"i must"):
        subspace.similarity(u, u, 4, 1)
    with pytest.raises(ValueError, match="target_scale must be one of"):
        subspace.lip(w, x, y, 1, target_scale="logits")
    with pytest.raises(ValueError, match="ridge"):
        subspace.ridge_head(x, np.eye(3)[y], 0.0)


def test_ridge_path_equals_one_ridge_head_per_lambda_and_the_bound_takes_known_singular_values():
    x, t, t2, _, _ = _heads(0.2, 1.0)
    path = subspace.ridge_path(x, t2, [0.1, 10.0])
    for i, lam in enumerate((0.1, 10.0)):
        np.testing.assert_allclose(path[i], subspace.ridge_head(x, t2, lam), rtol=1e-9, atol=1e-12)
    wide = np.random.default_rng(9).normal(size=(20, 50))  # F > M: the head stays in the row space
    y = np.eye(3)[np.arange(20) % 3]
    np.testing.assert_allclose(subspace.ridge_path(wide, y, [0.5])[0], subspace.ridge_head(wide, y, 0.5), atol=1e-10)
    sv = np.linalg.svd(x, compute_uv=False)
    s1, s2 = (np.linalg.svd(subspace.ridge_head(x, t_, 10.0), compute_uv=False) for t_ in (t, t2))
    by_hand = sv[0] * np.linalg.norm(t2 - t) / ((sv[-1] ** 2 + 10.0) * (s2[1] - s1[2]))
    assert subspace.sin_theta_bound(x, t, t2, 10.0, 2) == pytest.approx(by_hand, rel=1e-9)
    assert subspace.perturbation_bound(1.0, 0.0, 1.0, 1.0, -0.1) == float("inf")
    with pytest.raises(ValueError, match="ridges"):
        subspace.ridge_path(x, t2, [0.0])


def test_kernel_feature_map_turns_a_ridge_head_into_kernel_ridge_regression():
    rng = np.random.default_rng(10)
    a, b = rng.normal(size=(30, 4)), rng.normal(size=(8, 4))
    kern = lambda u, v: np.exp(-0.5 * np.sum((u[:, None] - v[None]) ** 2, -1))  # noqa: E731
    phi, phit = subspace.kernel_feature_map(kern(a, a), kern(b, a))
    np.testing.assert_allclose(phi @ phi.T, kern(a, a), atol=1e-9)
    g = phi.T @ phi
    np.testing.assert_allclose(g, np.diag(np.diag(g)), atol=1e-9)
    y = np.eye(3)[rng.integers(0, 3, 30)]
    w = subspace.ridge_head(phi, y, 0.3)
    krr = kern(b, a) @ np.linalg.solve(kern(a, a) + 0.3 * np.eye(30), y)
    np.testing.assert_allclose(phit @ w, krr, atol=1e-7)
