"""Tests of nwcorrupt.empirical against closed-form infinite-width kernels.

The reference kernels are written here from the arc-cosine (ReLU) and arcsin
(erf) closed forms, with neural-tangents' conventions: input kernel x·x'/d,
NTK parameterisation Θ^{l+1} = K^{l+1} + W_std² ⟨σ'σ'⟩ Θ^l, standard
parameterisation Θ^{l+1} = n_l ⟨σσ⟩ + W_std² ⟨σ'σ'⟩ Θ^l + 1 (n_l the base width of
the layer's input, d for the first layer, bias always trainable).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from nwcorrupt import empirical, mlp, precision
from nwcorrupt.kernels import MLP


def _dual(act: str, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(⟨σσ⟩, ⟨σ'σ'⟩) for the bivariate Gaussian with covariance matrix entries k (N, N)."""
    diag = np.diag(k)
    if act == "relu":
        norm = np.sqrt(np.outer(diag, diag))
        theta = np.arccos(np.clip(k / norm, -1.0, 1.0))
        return norm * (np.sin(theta) + (np.pi - theta) * np.cos(theta)) / (2 * np.pi), (np.pi - theta) / (2 * np.pi)
    a = 1.0 + 2.0 * diag
    ee = 2.0 / np.pi * np.arcsin(2.0 * k / np.sqrt(np.outer(a, a)))
    dd = 4.0 / np.pi / np.sqrt(np.outer(a, a) - 4.0 * k**2)
    return ee, dd


def analytic(arch: MLP, x: np.ndarray, base_width: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(NNGP, NTK) of the network output, both (N, N)."""
    d = x.shape[1]
    w2, b2 = arch.W_std**2, arch.b_std**2
    gram = x @ x.T / d
    k = w2 * gram + b2
    theta = k.copy() if arch.parameterization == "ntk" else d * gram + 1.0
    for _ in range(arch.depth - 1):
        ee, dd = _dual(arch.activation, k)
        k = w2 * ee + b2
        if arch.parameterization == "ntk":
            theta = k + w2 * dd * theta
        else:
            theta = base_width * ee + w2 * dd * theta + 1.0
    return k, theta


def _inputs(n: int = 5, d: int = 8, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, d))
    x -= x.mean(1, keepdims=True)
    return x / np.sqrt((x**2).mean(1, keepdims=True))  # ⟨x, x⟩ = x·x/d = 1


def _slope(widths, errors) -> float:
    return float(np.polyfit(np.log(widths), np.log(errors), 1)[0])


def _rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


# ----------------------------------------------------------------------------- exact identities


def test_ntk_modes_match_explicit_jacobian(x64):
    arch = MLP(3, "erf", W_std=1.2, b_std=0.3)
    params = mlp.init(jax.random.PRNGKey(0), arch, 6, 4, 3)
    x1, x2 = _inputs(4, 4, 1), _inputs(4, 4, 2)
    flat, unravel = ravel_pytree(params)

    @jax.jit
    def jac(x):
        return jax.jacfwd(lambda f: mlp.apply(arch, unravel(f), x))(flat)  # (N, C, P)

    j1, j2 = np.asarray(jac(x1)), np.asarray(jac(x2))
    full = np.einsum("icp,jdp->ijcd", j1, j2)
    np.testing.assert_allclose(np.asarray(empirical.ntk(arch, params, x1, x2, mode="full")), full, rtol=1e-10, atol=1e-12)
    diag = np.einsum("ijcc->ijc", full)
    np.testing.assert_allclose(np.asarray(empirical.ntk(arch, params, x1, x2, mode="diagonal")), diag, rtol=1e-10, atol=1e-12)
    trace = diag.mean(-1)
    np.testing.assert_allclose(np.asarray(empirical.ntk(arch, params, x1, x2)), trace, rtol=1e-10, atol=1e-12)
    blocked = empirical.ntk(arch, params, x1, x2, block_size=2)
    np.testing.assert_allclose(np.asarray(blocked), trace, rtol=1e-10, atol=1e-12)
    same = np.asarray(empirical.ntk(arch, params, x1))
    np.testing.assert_allclose(same, same.T, rtol=1e-12)
    assert np.all(np.linalg.eigvalsh(same) > -1e-10)


def test_ntk_vector_product_matches_full_kernel(x64):
    arch = MLP(3, "relu", b_std=0.5, parameterization="standard")
    params = mlp.init(jax.random.PRNGKey(1), arch, 5, 4, 3, width_scale=2)
    x1, x2 = _inputs(4, 4, 3), _inputs(6, 4, 4)
    v = np.random.default_rng(5).normal(size=(6, 3))
    full = np.asarray(empirical.ntk(arch, params, x1, x2, mode="full", width_scale=2))
    expected = np.einsum("ijcd,jd->ic", full, v)
    got = empirical.ntk_vp(arch, params, x1, x2, v, width_scale=2)
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-10, atol=1e-12)


def test_linearized_network(x64):
    arch = MLP(3, "erf", b_std=0.2)
    params0 = mlp.init(jax.random.PRNGKey(2), arch, 16, 4, 2)
    x = _inputs(5, 4, 6)
    f_lin = empirical.linearize(arch, params0)
    np.testing.assert_allclose(np.asarray(f_lin(params0, x)), np.asarray(mlp.apply(arch, params0, x)), rtol=1e-13)
    direction = mlp.init(jax.random.PRNGKey(3), arch, 16, 4, 2)
    move = jax.jit(lambda t: jax.tree_util.tree_map(lambda a, b: a + t * b, params0, direction))
    f0 = np.asarray(f_lin(params0, x))
    # exactly linear in the parameters
    np.testing.assert_allclose(np.asarray(f_lin(move(0.2), x)) - f0, 2 * (np.asarray(f_lin(move(0.1), x)) - f0), rtol=1e-10, atol=1e-12)
    # the linearisation error of the true network is second order: halving the step quarters it
    err = [np.abs(np.asarray(mlp.apply(arch, move(t), x)) - np.asarray(f_lin(move(t), x))).max() for t in (0.02, 0.01)]
    assert 3.6 < err[0] / err[1] < 4.4
    # the tangent equals J(θ0) δ from an explicit Jacobian
    flat0, unravel = ravel_pytree(params0)
    flat_dir, _ = ravel_pytree(direction)
    jac = np.asarray(jax.jacfwd(lambda f: mlp.apply(arch, unravel(f), x))(flat0))
    np.testing.assert_allclose(np.asarray(f_lin(move(0.1), x)) - f0, 0.1 * jac @ np.asarray(flat_dir), rtol=1e-10, atol=1e-12)
    grad = jax.grad(lambda p: f_lin(p, x).sum())(params0)  # differentiable
    assert grad[0]["W"].shape == params0[0]["W"].shape


# ----------------------------------------------------------------------------- convergence to the analytic kernels


@pytest.mark.parametrize(
    "arch,widths",
    [
        (MLP(2, "relu"), (64, 512, 4096)),
        (MLP(2, "erf", W_std=1.5, b_std=0.2), (64, 512, 4096)),
        (MLP(3, "erf"), (32, 128, 1024)),
    ],
    ids=["relu-L2", "erf-L2", "erf-L3"],
)
def test_empirical_ntk_converges_like_inverse_sqrt_width(x64, arch, widths):
    """Mean relative Frobenius error over 4 inits; log-log slope in [-0.7, -0.3] around -1/2."""
    x = _inputs()
    _, theta = analytic(arch, x)
    errors = []
    for n in widths:
        errs = [_rel(empirical.ntk(arch, mlp.init(jax.random.PRNGKey(s), arch, n, 8, 1), x), theta) for s in range(4)]
        errors.append(np.mean(errs))
    assert errors[-1] < 0.1
    assert -0.7 < _slope(widths, errors) < -0.3, errors


def test_standard_parameterisation_ntk_converges_in_width_scale(x64):
    """Standard parameterisation, base width 6: the empirical NTK tends to the base-width-6 kernel as s grows."""
    arch = MLP(2, "relu", W_std=1.2, b_std=0.3, parameterization="standard")
    x = _inputs()
    _, theta = analytic(arch, x, base_width=6)
    scales = (4, 32, 256)
    errors = []
    for s in scales:
        errs = []
        for seed in range(4):
            p = mlp.init(jax.random.PRNGKey(seed), arch, 6, 8, 1, width_scale=s)
            errs.append(_rel(empirical.ntk(arch, p, x, width_scale=s), theta))
        errors.append(np.mean(errs))
    assert errors[-1] < 0.1
    assert -0.7 < _slope(scales, errors) < -0.3, errors


@pytest.mark.parametrize("arch", [MLP(2, "relu"), MLP(3, "erf", W_std=1.3, b_std=0.1)], ids=["relu-L2", "erf-L3"])
def test_empirical_nngp_converges_like_inverse_sqrt_width(x64, arch):
    """Output covariance over 4 inits (readout integrated exactly): slope in [-0.7, -0.3]."""
    x = _inputs()
    k, _ = analytic(arch, x)
    widths = (16, 128, 1024)
    errors = []
    for n in widths:
        errs = [_rel(empirical.nngp(arch, jax.random.PRNGKey(s), x, width=n, num_inits=4), k) for s in range(4)]
        errors.append(np.mean(errs))
    assert errors[-1] < 0.07
    assert -0.7 < _slope(widths, errors) < -0.3, errors


def test_sampled_output_covariance_matches_nngp(x64):
    """Raw output covariance over M·C = 2000 Gaussian outputs: each entry within 5 standard errors."""
    arch = MLP(2, "erf", W_std=1.4, b_std=0.3)
    x = _inputs(4)
    k, _ = analytic(arch, x)
    m, c = 400, 5
    est = np.asarray(empirical.nngp(arch, jax.random.PRNGKey(7), x, width=1024, num_inits=m, num_outputs=c, readout="sample"))
    se = np.sqrt((np.outer(np.diag(k), np.diag(k)) + k**2) / (m * c))  # Var(f f') = K11 K22 + K12²
    assert np.all(np.abs(est - k) < 5 * se), (est - k) / se
    analytic_readout = empirical.nngp(arch, jax.random.PRNGKey(7), x, width=1024, num_inits=m, num_outputs=c)
    assert _rel(analytic_readout, k) < 0.02


@pytest.mark.parametrize(
    "arch,scale",
    [
        (MLP(3, "tanh", W_std=1.3, b_std=0.2), 1),  # dual kernel by Gauss-Hermite quadrature
        (MLP(2, "gelu", W_std=1.1, b_std=0.3), 1),
        (MLP(3, "erf", W_std=1.2, b_std=0.1, parameterization="standard", width=8), 128),
    ],
    ids=["tanh-L3", "gelu-L2", "erf-L3-standard"],
)
def test_empirical_kernels_match_nwcorrupt_kernels(x64, arch, scale):
    """Wide networks against nwcorrupt.kernels.kernel: mean relative error over 3 inits < 6 %."""
    from nwcorrupt.kernels import kernel

    x = _inputs()
    ref = kernel(arch, x)
    width = 1024 if scale == 1 else None  # standard: base width arch.width, scaled up by width_scale
    ntk_err = np.mean(
        [
            _rel(empirical.ntk(arch, mlp.init(jax.random.PRNGKey(s), arch, width, 8, 1, width_scale=scale), x,
                               width_scale=scale), ref.ntk)
            for s in range(3)
        ]
    )
    nngp_err = _rel(empirical.nngp(arch, jax.random.PRNGKey(9), x, width=width, num_inits=4, width_scale=scale), ref.nngp)
    assert ntk_err < 0.06 and nngp_err < 0.06, (ntk_err, nngp_err)


def test_ntk_of_x2_defaults_and_float32_error():
    arch = MLP(2, "erf")
    params = mlp.init(jax.random.PRNGKey(0), arch, 256, 8, 2)
    x = _inputs().astype(np.float32)
    k32 = np.asarray(empirical.ntk(arch, params, x))
    assert k32.dtype == np.float32 and k32.shape == (5, 5)
    with precision.x64(True):
        p64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), params)
        k64 = np.asarray(empirical.ntk(arch, p64, x.astype(np.float64)))
    assert np.abs(k32 - k64).max() < 1e-5 * np.abs(k64).max()  # documented float32 error ~1e-6 relative


def test_errors():
    arch = MLP(2)
    params = mlp.init(jax.random.PRNGKey(0), arch, 4, 3, 2)
    x = np.ones((2, 3), np.float32)
    with pytest.raises(ValueError, match="mode must be one of"):
        empirical.ntk(arch, params, x, mode="sum")
    with pytest.raises(ValueError, match="x2 has 4 features"):
        empirical.ntk(arch, params, x, np.ones((2, 4)))
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        empirical.ntk(arch, params, x, block_size=0)
    with pytest.raises(ValueError, match=r"v must have shape \(N2, C\) = \(2, 2\)"):
        empirical.ntk_vp(arch, params, x, x, np.ones((2, 3)))
    with pytest.raises(ValueError, match="num_inits must be >= 1"):
        empirical.nngp(arch, jax.random.PRNGKey(0), x, width=4, num_inits=0)
    with pytest.raises(ValueError, match="width must be >= 1"):
        empirical.nngp(arch, jax.random.PRNGKey(0), x, width=0, num_inits=2)
    with pytest.raises(ValueError, match="readout must be one of"):
        empirical.nngp(arch, jax.random.PRNGKey(0), x, width=4, num_inits=2, readout="mean")
    with pytest.raises(ValueError, match="x2 has 2 features but x1 has 3"):
        empirical.nngp(arch, jax.random.PRNGKey(0), x, np.ones((2, 2)), width=4, num_inits=2)
    with pytest.raises(ValueError, match="x contains NaN"):
        empirical.ntk(arch, params, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match="params must be a list of 3 layers"):
        empirical.linearize(MLP(3), params)
