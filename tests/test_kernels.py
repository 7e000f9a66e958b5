"""NNGP/NTK kernels of MLPs: closed forms, structure, tiling, sharding, Monte Carlo, errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import pathlib
import subprocess
import sys
import textwrap
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import nwcorrupt
from nwcorrupt import activations as A
from nwcorrupt import kernels as K
from nwcorrupt import precision


def _inputs(n1: int = 9, n2: int = 7, d: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x1 = rng.standard_normal((n1, d))
    x1[1] = x1[0] + 1e-3 * rng.standard_normal(d)  # a nearly parallel pair (ρ → 1)
    return x1, rng.standard_normal((n2, d))


def _gram(x1, x2):
    d = x1.shape[1]
    return x1 @ x2.T / d, (x1 * x1).sum(1) / d, (x2 * x2).sum(1) / d


ARCHS = [
    K.MLP(3, "relu", W_std=1.4, b_std=0.1),
    K.MLP(2, "erf", W_std=0.9, b_std=0.5, parameterization="standard", width=64),
    K.MLP(3, "tanh", W_std=1.0, b_std=0.2),
    K.MLP(3, "gelu", W_std=1.2, b_std=0.3),
    K.MLP(2, "abs", W_std=0.8, b_std=0.4, parameterization="standard", width=10),
    K.MLP(3, A.get("leaky_relu", alpha=0.2), W_std=1.0),
    K.MLP(3, "sin", W_std=1.5, b_std=0.1),
]


# ---------------------------------------------------------------------------
# Closed forms.


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_identity_activation_closed_forms(x64, parameterization, depth):
    """σ = identity: explicit polynomials in ⟨x, x'⟩ (sums, not the recursion)."""
    cw, cb, n = 1.3**2, 0.4**2, 17
    arch = K.MLP(depth, "identity", W_std=1.3, b_std=0.4, parameterization=parameterization, width=n)
    x1, x2 = _inputs()
    g, _, _ = _gram(x1, x2)
    d = x1.shape[1]
    Kl = [cw**ell * g + cb * sum(cw**i for i in range(ell)) for ell in range(1, depth + 1)]
    if parameterization == "ntk":
        theta = sum(cw ** (depth - ell) * Kl[ell - 1] for ell in range(1, depth + 1))
    else:
        theta = cw ** (depth - 1) * (d * g + 1) + sum(cw ** (depth - ell) * (n * Kl[ell - 2] + 1) for ell in range(2, depth + 1))
    out = K.kernel(arch, x1, x2)
    np.testing.assert_allclose(out.nngp, Kl[-1], rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(out.ntk, theta, rtol=1e-13, atol=1e-12)


@pytest.mark.parametrize("name", ["relu", "erf", "tanh", "sin"])
def test_depth_one_is_input_kernel(x64, name):
    x1, x2 = _inputs()
    g, _, _ = _gram(x1, x2)
    out = K.kernel(K.MLP(1, name, W_std=1.7, b_std=0.6), x1, x2)
    np.testing.assert_allclose(out.nngp, 0.36 + 1.7**2 * g, rtol=1e-14, atol=1e-14)
    np.testing.assert_allclose(out.ntk, out.nngp, rtol=0, atol=0)
    std = K.kernel(K.MLP(1, name, parameterization="standard"), x1, x2, get="ntk")
    np.testing.assert_allclose(std.ntk, x1 @ x2.T + 1.0, rtol=1e-13, atol=1e-12)


def test_relu_depth_two_arc_cosine(x64):
    """Depth 2 relu from the textbook arc-cosine formula (numpy arccos; independent of our arcsin code)."""
    cw, cb = 1.4**2, 0.3**2
    x1, x2 = _inputs()
    g, q1, q2 = _gram(x1, x2)
    k, k1, k2 = cb + cw * g, cb + cw * q1, cb + cw * q2
    s = np.sqrt(np.outer(k1, k2))
    theta = np.arccos(np.clip(k / s, -1, 1))
    nngp = cb + cw * s / (2 * np.pi) * (np.sin(theta) + (np.pi - theta) * np.cos(theta))
    ntk = nngp + cw * (np.pi - theta) / (2 * np.pi) * k
    out = K.kernel(K.MLP(2, "relu", W_std=1.4, b_std=0.3), x1, x2)
    np.testing.assert_allclose(out.nngp, nngp, rtol=1e-12)
    np.testing.assert_allclose(out.ntk, ntk, rtol=1e-12)


# ---------------------------------------------------------------------------
# Structure.


@pytest.mark.parametrize("arch", ARCHS, ids=lambda a: f"{a.act.name}-L{a.depth}-{a.parameterization}")
def test_symmetric_psd_and_diagonal(x64, arch):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((24, 5))
    x[3] = x[2] * 1.0000001
    out = K.kernel(arch, x)
    diag = K.kernel_diag(arch, x)
    for name in ("nngp", "ntk"):
        mat = np.asarray(getattr(out, name))
        assert mat.shape == (24, 24) and mat.dtype == np.float64
        np.testing.assert_array_equal(mat, mat.T)  # square tiles above the diagonal, mirrored
        eig = np.linalg.eigvalsh(0.5 * (mat + mat.T))
        assert eig.min() >= -1e-10 * eig.max(), (name, eig.min())
        # The symmetric path puts the exact diagonal on the diagonal.
        np.testing.assert_allclose(np.diag(mat), getattr(diag, name), rtol=1e-14)
    # Without the symmetric shortcut (x2 a copy of x) the diagonal agrees too; the relu family's
    # arc-cosine √(1 − ρ) singularity turns the ~1e-16 Gram rounding into ~1e-8 there.
    tol = 1e-7 if arch.act.max_dual_order == 1 else 1e-12
    copy = K.kernel(arch, x, np.array(x))
    np.testing.assert_allclose(np.diag(copy.ntk), diag.ntk, rtol=tol)
    np.testing.assert_allclose(np.diag(copy.nngp), diag.nngp, rtol=tol)


@pytest.mark.parametrize("arch", ARCHS[:3], ids=lambda a: f"{a.act.name}-L{a.depth}-{a.parameterization}")
def test_kernel_from_gram_equals_kernel(x64, arch):
    x1, x2 = _inputs()
    g, q1, q2 = _gram(x1, x2)
    direct = K.kernel(arch, x1, x2)
    via = K.kernel_from_gram(arch, g, q1, q2, input_dim=x1.shape[1])
    np.testing.assert_allclose(via.nngp, direct.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(via.ntk, direct.ntk, rtol=1e-12, atol=1e-14)
    gs, qs, _ = _gram(x1, x1)
    sym = K.kernel_from_gram(arch, gs, qs, symmetric=True, input_dim=x1.shape[1])
    full = K.kernel(arch, x1)
    np.testing.assert_allclose(sym.nngp, full.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sym.ntk, full.ntk, rtol=1e-12, atol=1e-14)
    if arch.act.name == "relu":
        layers = K.kernel_layers(arch, g, q1, q2, input_dim=x1.shape[1])
        assert len(layers) == arch.depth
        np.testing.assert_allclose(layers[-1].ntk, direct.ntk, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(layers[0].nngp, arch.b_std**2 + arch.W_std**2 * g, rtol=1e-14)


def test_get_selects_outputs_and_dtypes(x64):
    x1, x2 = _inputs()
    arch = K.MLP(3, "erf")
    only = K.kernel(arch, x1, x2, get="nngp")
    assert only.ntk is None and only.nngp.shape == (9, 7) and only.nngp.dtype == jnp.float64
    both = K.kernel(arch, x1, x2, get=("ntk", "nngp"))
    np.testing.assert_allclose(only.nngp, both.nngp, rtol=1e-15)
    ntk_only = K.kernel(arch, x1, x2, get=["ntk"])
    assert ntk_only.nngp is None
    np.testing.assert_allclose(ntk_only.ntk, both.ntk, rtol=1e-15)
    assert K.kernel_diag(arch, x1, get="ntk").nngp is None


def test_float32_error_and_dtype():
    """Float32 (HIGHEST-precision Gram) stays within the documented error of float64."""
    x1, x2 = _inputs(40, 30, 20, seed=4)
    with precision.x64():
        ref = {n: K.kernel(K.MLP(3, n), x1, x2) for n in ("relu", "erf")}
        ref = {n: (np.asarray(v.nngp), np.asarray(v.ntk)) for n, v in ref.items()}
    for name, (nngp, ntk) in ref.items():
        out = K.kernel(K.MLP(3, name), x1, x2)
        assert out.nngp.dtype == jnp.float32
        # relu's nearly parallel pair (row 1 vs row 0 is not in x2, so ρ stays < 0.999 here)
        np.testing.assert_allclose(out.nngp, nngp, rtol=2e-5, atol=1e-6)
        np.testing.assert_allclose(out.ntk, ntk, rtol=2e-5, atol=1e-6)


# ---------------------------------------------------------------------------
# Tiling and memory.


def test_tiled_equals_untiled(x64):
    arch = K.MLP(3, "relu", W_std=1.2, b_std=0.3)
    x1, x2 = _inputs(13, 11)
    ref = K.kernel(arch, x1, x2)
    ref_sym = K.kernel(arch, x1)
    for tiles in [1, (4, 3), (5, 100)]:
        got = K.kernel(arch, x1, x2, tile_size=tiles)
        np.testing.assert_allclose(got.nngp, ref.nngp, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.ntk, ref.ntk, rtol=1e-12, atol=1e-14)
    got = K.kernel(arch, x1, tile_size=(4, 3))
    np.testing.assert_allclose(got.nngp, ref_sym.nngp, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(got.ntk, ref_sym.ntk, rtol=1e-12, atol=1e-14)
    g, q1, q2 = _gram(x1, x2)
    got = K.kernel_from_gram(arch, g, q1, q2, tile_size=(3, 4))
    np.testing.assert_allclose(got.ntk, ref.ntk, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name,depth,budget", [("relu", 3, 2**19), ("tanh", 2, 2**20), ("gelu", 6, 2**21)])
def test_memory_budget_bounds_compiled_working_memory(x64, name, depth, budget):
    """The tiles chosen for a budget compile to at most that much XLA scratch memory; results unchanged."""
    arch = K.MLP(depth, name)
    n, d = 300, 20
    rng = np.random.default_rng(5)
    x, y = jnp.asarray(rng.standard_normal((n, d))), jnp.asarray(rng.standard_normal((n, d)))
    rt, ct = K.plan_tiles(arch, n, n, d, memory_budget=budget)
    assert rt * ct < n * n
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("dev",))
    args = (x.reshape(1, n, d), y, None, None, jnp.ones(()))
    compiled = K.tiled.fill_tiles.lower(
        *args, arch=arch, want_ntk=True, order=32, d=d, rt=rt, ct=ct, symmetric=False, from_gram=False, m=n, n2=n,
        out_sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("dev")),
    ).compile()  # fmt: skip
    temp = compiled.memory_analysis().temp_size_in_bytes
    assert temp <= budget, (budget, rt, ct, temp)
    ref = K.kernel(arch, x, y)
    np.testing.assert_allclose(compiled(*args)[1], ref.ntk, rtol=1e-12, atol=1e-14)


def test_tile_defaults_by_platform(monkeypatch):
    cpu = K.tile_defaults(jax.devices("cpu"))
    assert (cpu.tile_bytes, cpu.square_tile, cpu.max_columns) == (2**22, 512, 4096)
    gpu = K.tile_defaults([types.SimpleNamespace(platform="gpu")])
    assert (gpu.tile_bytes, gpu.square_tile, gpu.max_columns) == (2**26, 4096, 16384)
    assert K.tile_defaults([types.SimpleNamespace(platform="tpu")]) == gpu
    # plan_tiles on an accelerator: the larger defaults, still shrunk to a memory budget
    monkeypatch.setattr(K.tiled, "tile_defaults", lambda devices: gpu)
    arch = K.MLP(3, "relu")
    assert K.plan_tiles(arch, 60_000, 60_000, 784, symmetric=True) == (4096, 4096)
    # 10000 columns fit under 16384; rows: a divisor of 10000 in [838, 1677] (2**26 bytes of float32)
    assert K.plan_tiles(arch, 10_000, 10_000, 784) == (1250, 10_000)
    rt, ct = K.plan_tiles(arch, 10_000, 10_000, 784, memory_budget=2**29)  # the default tile needs ~1.0e9
    assert rt * ct < 1250 * 10_000 and rt * ct * 4 * K.buffers_per_entry(3) < 2**29


def test_kernel_takes_the_tiles_of_its_devices(monkeypatch, x64):
    """kernel() asks tile_defaults for its devices' tiling, and any tiling gives the same kernel."""
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(23, 6)), rng.normal(size=(19, 6))
    arch = K.MLP(3, "erf")
    ref, ref_sym = K.kernel(arch, x, y), K.kernel(arch, x)
    asked = []

    def odd_defaults(devices):
        asked.append(list(devices))
        return K.TileDefaults(tile_bytes=8 * 5 * 9, square_tile=7, max_columns=9)

    monkeypatch.setattr(K.tiled, "tile_defaults", odd_defaults)
    assert K.plan_tiles(arch, 23, 19, 6) == (5, 9) and K.plan_tiles(arch, 23, 23, 6, symmetric=True) == (7, 7)
    got, got_sym = K.kernel(arch, x, y), K.kernel(arch, x)
    assert asked[-2:] == [jax.local_devices(), jax.local_devices()]
    for a, b in ((got, ref), (got_sym, ref_sym)):
        np.testing.assert_allclose(a.nngp, b.nngp, rtol=1e-12, atol=0)
        np.testing.assert_allclose(a.ntk, b.ntk, rtol=1e-12, atol=0)


def test_plan_tiles_defaults_and_limits():
    arch = K.MLP(3, "relu")
    assert K.plan_tiles(arch, 50, 40, 10) == (50, 40)
    assert K.plan_tiles(arch, 50, 40, 10, tile_size=(7, 9)) == (7, 9)
    rt, ct = K.plan_tiles(arch, 10_000, 10_000, 784)
    # sides that split 10000 exactly (no shifted last tile), at most 4096 columns
    assert (rt, ct) == (400, 2500) and rt * ct * 4 <= K.DEFAULT_TILE_BYTES
    assert K.plan_tiles(arch, 4000, 8000, 784) == (250, 4000)
    assert K.plan_tiles(arch, 4001, 8191, 784) == (256, 4096)  # primes: shifted last tiles
    with pytest.raises(ValueError, match="memory_budget=.* too small"):
        K.plan_tiles(arch, 50, 40, 10, memory_budget=10_000)


SHARD_SCRIPT = textwrap.dedent(
    """
    import json
    import jax
    jax.config.update("jax_enable_x64", True)
    import numpy as np
    from nwcorrupt import kernels as K

    devs = jax.devices()
    assert len(devs) == 4, devs
    rng = np.random.default_rng(0)
    x1, x2, x8 = rng.standard_normal((10, 6)), rng.standard_normal((7, 6)), rng.standard_normal((8, 6))
    out = {"diffs": {}, "ref": {}}
    for name in ("relu",):
        arch = K.MLP(3, name, W_std=1.2, b_std=0.3)
        ref = K.kernel(arch, x1, x2, devices=devs[:1])
        ref_sym = K.kernel(arch, x1, devices=devs[:1])
        out["ref"][name] = np.asarray(ref.ntk).tolist()
        diff = lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b))))  # noqa: E731
        for tiles in (None, (2, 3)):
            got = K.kernel(arch, x1, x2, tile_size=tiles)
            out["diffs"][f"{name}-{tiles}"] = max(diff(got.nngp, ref.nngp), diff(got.ntk, ref.ntk))
        sym = K.kernel(arch, x1, tile_size=(2, 3))
        out["diffs"]["sym"] = max(diff(sym.ntk, ref_sym.ntk), diff(sym.nngp, ref_sym.nngp))
        g = K.kernel_from_gram(arch, x1 @ x2.T / 6, (x1 * x1).sum(1) / 6, (x2 * x2).sum(1) / 6)
        out["diffs"]["gram"] = diff(g.ntk, ref.ntk)
        even = K.kernel(arch, x8, x2)
        out["devices_" + name] = len(even.ntk.sharding.device_set)
    print("RESULT" + json.dumps(out))
    """
)


def test_sharded_over_four_host_devices_equals_single_device(x64):
    root = pathlib.Path(nwcorrupt.__file__).resolve().parents[1]
    env = dict(os.environ)
    env["XLA_FLAGS"] = (env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=4").strip()
    env["PYTHONPATH"] = os.pathsep.join([str(root), env.get("PYTHONPATH", "")])
    env["JAX_PLATFORMS"] = "cpu"
    proc = subprocess.run([sys.executable, "-c", SHARD_SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT"))
    res = json.loads(line[len("RESULT"):])
    for key, diff in res["diffs"].items():
        assert diff <= 1e-12, (key, diff)
    assert res["devices_relu"] == 4
    # ... and the 4-device subprocess agrees with this (1-device) process.
    rng = np.random.default_rng(0)
    x1, x2 = rng.standard_normal((10, 6)), rng.standard_normal((7, 6))
    for name in ("relu",):
        here = K.kernel(K.MLP(3, name, W_std=1.2, b_std=0.3), x1, x2).ntk
        np.testing.assert_allclose(np.asarray(res["ref"][name]), here, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# Finite networks.


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_nngp_matches_monte_carlo_of_wide_random_networks(x64, name):
    """Mean over 64 random width-512 networks of the readout covariance vs K^L.

    Tolerance: 5 standard errors across draws + 3/width × max|K| (the O(1/n)
    finite-width bias of the mean).
    """
    act = {"relu": jax.nn.relu, "erf": jax.scipy.special.erf}[name]
    W_std, b_std, depth, width, draws, d = 1.4, 0.3, 3, 512, 64, 8
    rng = np.random.default_rng(1)
    x = rng.standard_normal((5, d))
    x[1] = x[0] + 0.2 * rng.standard_normal(d)
    xf = jnp.asarray(x, jnp.float32)

    def draw(key):
        h, fan = xf, d
        for _ in range(depth - 1):
            key, kw, kb = jax.random.split(key, 3)
            W = jax.random.normal(kw, (fan, width), jnp.float32) * (W_std / math.sqrt(fan))
            b = jax.random.normal(kb, (width,), jnp.float32) * b_std
            h, fan = act(h @ W + b), width
        # E over the readout layer given the last hidden layer, exactly:
        return b_std**2 + W_std**2 * (h @ h.T) / width

    ests = np.asarray(jax.jit(jax.vmap(draw))(jax.random.split(jax.random.PRNGKey(0), draws)), np.float64)
    nngp = np.asarray(K.kernel(K.MLP(depth, name, W_std=W_std, b_std=b_std), x, get="nngp").nngp)
    se = ests.std(0, ddof=1) / math.sqrt(draws)
    assert np.all(np.abs(ests.mean(0) - nngp) <= 5 * se + 3 / width * np.abs(nngp).max())


@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_ntk_matches_empirical_ntk_of_wide_network(x64, parameterization):
    """Average empirical NTK (J Jᵀ over all weights and biases) of width-1024 erf nets vs Θ^L.

    Parameterisations as neural-tangents stax.Dense: "ntk" h = W_std/√fan_in · x W + b_std b with
    W, b ~ N(0, 1); "standard" h = x W + b with W ~ N(0, W_std²/fan_in), b ~ N(0, b_std²).
    Fluctuations are O(1/√width): tolerance 6% of max|Θ| (observed ~2%).
    """
    W_std, b_std, depth, width, d = 1.2, 0.5, 3, 1024, 6
    x = jnp.asarray(np.random.default_rng(2).standard_normal((4, d)))

    def init(key):
        params, fan = [], d
        for ell in range(depth):
            out = width if ell < depth - 1 else 1
            key, kw, kb = jax.random.split(key, 3)
            W, b = jax.random.normal(kw, (fan, out)), jax.random.normal(kb, (out,))
            if parameterization == "standard":
                W, b = W * W_std / math.sqrt(fan), b * b_std
            params.append((W, b))
            fan = out
        return params

    def apply(params):
        h = x
        for ell, (W, b) in enumerate(params):
            h = (W_std / math.sqrt(h.shape[1]) * h @ W + b_std * b) if parameterization == "ntk" else h @ W + b
            if ell < depth - 1:
                h = jax.scipy.special.erf(h)
        return h[:, 0]

    @jax.jit
    def empirical_ntk(key):
        jac = jax.jacobian(apply)(init(key))
        return sum(j.reshape(x.shape[0], -1) @ j.reshape(x.shape[0], -1).T for j in jax.tree_util.tree_leaves(jac))

    emp = [np.asarray(empirical_ntk(jax.random.PRNGKey(seed))) for seed in range(3)]
    arch = K.MLP(depth, "erf", W_std=W_std, b_std=b_std, parameterization=parameterization, width=width)
    theta = np.asarray(K.kernel(arch, np.asarray(x)).ntk)
    assert np.max(np.abs(np.mean(emp, 0) - theta)) <= 0.06 * np.abs(theta).max()


# ---------------------------------------------------------------------------
# Differentiability (kernel_layers is the jit/autodiff entry point).


def test_kernel_layers_is_differentiable_and_jittable(x64):
    x1, _ = _inputs(6, 6)
    g, q, _ = _gram(x1, x1)
    for name in ("erf", "tanh"):
        arch = K.MLP(3 if name == "erf" else 2, name, W_std=1.2, b_std=0.2)

        def f(eps):
            # A noise-averaged Gram-like family: ε² G + (1 − ε²) I on the diagonal.
            gram = eps**2 * g + (1 - eps**2) * jnp.eye(6) * q.mean()
            return K.kernel_layers(arch, gram, jnp.diag(gram), symmetric=True)[-1].ntk

        eps, h = 0.7, 1e-5
        fj = jax.jit(f)
        _, tangent = jax.jvp(fj, (eps,), (1.0,))
        fd = (fj(eps + h) - fj(eps - h)) / (2 * h)
        np.testing.assert_allclose(tangent, fd, rtol=1e-6, atol=1e-8)
        if name == "erf":  # (reverse mode of the quadrature path would only cost compile time)
            grad = jax.grad(lambda e: fj(e).sum())(eps)
            np.testing.assert_allclose(grad, tangent.sum(), rtol=1e-10)
            np.testing.assert_allclose(fj(1.0), K.kernel(arch, x1).ntk, rtol=1e-12)


# ---------------------------------------------------------------------------
# Errors.


def test_input_validation_errors():
    x1, x2 = _inputs()
    arch = K.MLP(2, "relu")
    with pytest.raises(ValueError, match="same number of features"):
        K.kernel(arch, x1, x2[:, :3])
    with pytest.raises(ValueError, match="x1 must be 2-dimensional"):
        K.kernel(arch, x1[0])
    with pytest.raises(ValueError, match="x2 must be 2-dimensional"):
        K.kernel(arch, x1, x2[None])
    bad = x1.copy()
    bad[2, 3] = np.nan
    with pytest.raises(ValueError, match="x1 contains NaN or inf"):
        K.kernel(arch, bad)
    bad = x2.copy()
    bad[0, 0] = np.inf
    with pytest.raises(ValueError, match="x2 contains NaN or inf"):
        K.kernel(arch, x1, bad)
    with pytest.raises(ValueError, match="x contains NaN"):
        K.kernel_diag(arch, np.full((2, 2), np.nan))
    with pytest.raises(ValueError, match="get must contain only"):
        K.kernel(arch, x1, get="cov")
    with pytest.raises(ValueError, match="get must name at least one"):
        K.kernel(arch, x1, get=())
    with pytest.raises(ValueError, match="backend must be one of"):
        K.kernel(arch, x1, backend="torch")
    with pytest.raises(TypeError, match="arch must be an nwcorrupt.arch.MLP"):
        K.kernel("relu", x1)
    with pytest.raises(ValueError, match="tile_size must be >= 1"):
        K.kernel(arch, x1, tile_size=0)
    with pytest.raises(ValueError, match="tile_size must be an int or a"):
        K.kernel(arch, x1, tile_size=(1, 2, 3))
    with pytest.raises(ValueError, match="memory_budget=10 bytes is too small"):
        K.kernel(arch, x1, memory_budget=10)
    with pytest.raises(ValueError, match="quad_order must be <= 200"):
        K.kernel(arch, x1, quad_order=1000)
    with pytest.raises(ValueError, match="devices must be a non-empty"):
        K.kernel(arch, x1, devices=[])
    with pytest.raises(ValueError, match="width must be >= 1"):
        K.MLP(2, width=0)
    with pytest.raises(ValueError, match=r"set MLP\(width=n\)"):
        K.kernel(K.MLP(2, parameterization="standard"), x1)
    # NNGP of the standard parameterisation does not need the width.
    K.kernel(K.MLP(2, parameterization="standard"), x1, get="nngp")


def test_gram_validation_errors():
    x1, x2 = _inputs()
    g, q1, q2 = _gram(x1, x2)
    arch = K.MLP(2, "erf")
    with pytest.raises(ValueError, match="diag1 must have shape"):
        K.kernel_from_gram(arch, g, q1[:-1], q2)
    with pytest.raises(ValueError, match="diag2 must have shape"):
        K.kernel_from_gram(arch, g, q1, q1)
    with pytest.raises(ValueError, match="diag2 must be an array"):
        K.kernel_from_gram(arch, g, q1)
    with pytest.raises(ValueError, match="gram12 must be 2-dimensional"):
        K.kernel_from_gram(arch, g[0], q1, q2)
    with pytest.raises(ValueError, match="diag1 holds squared norms"):
        K.kernel_from_gram(arch, g, -q1, q2)
    with pytest.raises(ValueError, match="gram12 contains NaN"):
        K.kernel_from_gram(arch, np.where(g > 0, np.nan, g), q1, q2)
    with pytest.raises(ValueError, match="symmetric=True needs a square"):
        K.kernel_from_gram(arch, g, q1, symmetric=True)
    gs, qs, _ = _gram(x1, x1)
    with pytest.raises(ValueError, match="needs diag2 equal to diag1"):
        K.kernel_from_gram(arch, gs, qs, qs + 1, symmetric=True)
    with pytest.raises(ValueError, match="input_dim .* is required"):
        K.kernel_from_gram(K.MLP(2, "erf", parameterization="standard", width=5), g, q1, q2)
    with pytest.raises(ValueError, match="input_dim must be >= 1"):
        K.kernel_layers(arch, g, q1, q2, input_dim=0)


def _first_overflow_layer(cw: float, depth: int, q0: float, dtype) -> int:
    """Independent float recursion of the relu diagonal (K, Θ) to find the first non-finite layer."""
    big = float(np.finfo(dtype).max)
    k = cw * q0
    theta = k
    for ell in range(1, depth + 1):
        if not (k <= big and theta <= big):
            return ell
        k = cw * k / 2
        theta = k + cw * 0.5 * theta
    raise AssertionError("no overflow")


@pytest.mark.parametrize("use_x64", [True, False])
def test_overflow_names_the_layer(use_x64):
    x = np.random.default_rng(0).standard_normal((4, 5))
    x = x / np.sqrt((x * x).mean(1, keepdims=True))  # ⟨x, x⟩ = 1
    with precision.x64(use_x64):
        dtype = np.float64 if use_x64 else np.float32
        layer = _first_overflow_layer(100.0, 400, 1.0, dtype)
        arch = K.MLP(400, "relu", W_std=10.0)
        with pytest.raises(FloatingPointError, match=f"at layer {layer} of 400.*W_std=10.0"):
            K.kernel(arch, x)
        with pytest.raises(FloatingPointError, match=f"at layer {layer} of 400"):
            K.kernel_diag(arch, x)


@pytest.mark.skipif(importlib.util.find_spec("neural_tangents") is not None, reason="neural-tangents is installed")
def test_neural_tangents_backend_reports_missing_install():
    x1, _ = _inputs()
    with pytest.raises(ImportError, match="scripts/ref_env.sh"):
        K.kernel(K.MLP(2, "relu"), x1, backend="neural_tangents")
    with pytest.raises(ValueError, match="apply to backend='native' only"):
        K.kernel(K.MLP(2, "relu"), x1, backend="neural_tangents", tile_size=4)


@pytest.mark.parametrize("name", ["relu", "abs", "erf"])
@pytest.mark.parametrize("parameterization", ["ntk", "standard"])
def test_fused_layer_path_equals_generic_duals(x64, name, parameterization):
    """The kernels from an activation's fused LayerDuals equal those from its dual_fn alone."""
    act = A.get(name)
    generic = dataclasses.replace(act, name=f"{name}-generic", layer=None)
    x1, x2 = _inputs(23, 17, seed=6)
    kw = dict(depth=4, W_std=1.3, b_std=0.2, parameterization=parameterization)
    if parameterization == "standard":
        kw["width"] = 64
    for sym in (False, True):
        other = None if sym else x2
        fast = K.kernel(K.MLP(activation=act, **kw), x1, other, tile_size=(5, 7) if not sym else 6)
        slow = K.kernel(K.MLP(activation=generic, **kw), x1, other)
        np.testing.assert_allclose(fast.nngp, slow.nngp, rtol=1e-12, atol=1e-14)
        fast_ntk, slow_ntk = np.array(fast.ntk), np.array(slow.ntk)
        if sym:
            # x1[0] and x1[1] are nearly parallel (rho = 1 - 1.1e-7): the arccos-type duals (relu, abs)
            # amplify rounding by ~1/sqrt(1 - rho^2) ~ 2000 at this entry (abs measured 1.07e-12 on
            # 2026-12-07, numpy 2.4.6): a looser bound there, 1e-12 everywhere else.
            np.testing.assert_allclose(fast_ntk[0, 1], slow_ntk[0, 1], rtol=2000 * 2.2e-16 * 10)
            fast_ntk[[0, 1], [1, 0]] = slow_ntk[[0, 1], [1, 0]]
        np.testing.assert_allclose(fast_ntk, slow_ntk, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", ["relu", "erf", "tanh"])
def test_unrolled_layer_loop_equals_scanned(x64, name, monkeypatch):
    """Shallow non-symmetric NTKs unroll the layer loop; the values equal the scanned loop's."""
    x1, x2 = _inputs(23, 17, seed=9)
    for depth in (2, 3):
        arch = K.MLP(depth, name, W_std=1.2, b_std=0.3)
        unrolled = K.kernel(arch, x1, x2, tile_size=(5, 7))
        with monkeypatch.context() as m:
            m.setattr(K.recursion, "UNROLL_LAYERS", 0)
            jax.clear_caches()
            scanned = K.kernel(arch, x1, x2, tile_size=(5, 7))
        jax.clear_caches()
        np.testing.assert_allclose(unrolled.nngp, scanned.nngp, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(unrolled.ntk, scanned.ntk, rtol=1e-14, atol=1e-15)
        # and both equal the textbook recursion on whole matrices (Θ carried, not Θ − K)
        cw, cb = 1.2**2, 0.3**2
        g, q1, q2 = _gram(x1, x2)
        k, k1, k2 = cb + cw * g, cb + cw * q1, cb + cw * q2
        theta = k
        for _ in range(depth - 1):
            c11, c22 = k1[:, None], k2[None, :]
            ss, dd = (np.asarray(A.dual(name, c11, k, c22, a, a)) for a in (0, 1))
            k = cb + cw * ss
            theta = k + cw * dd * theta
            k1 = cb + cw * np.asarray(A.dual_diag(name, k1))
            k2 = cb + cw * np.asarray(A.dual_diag(name, k2))
        np.testing.assert_allclose(unrolled.nngp, k, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(unrolled.ntk, theta, rtol=1e-12, atol=1e-14)


# ---------------------------------------------------------------------------
# The CPU host loop (one compiled call per tile) against the compiled tile loop.


def _fill_tiles_reference(arch, x1, x2, rt, ct, symmetric):
    """The kernel from the single compiled loop over tiles (the accelerator / several-device path)."""
    n1, d = x1.shape
    mesh = jax.sharding.Mesh(np.asarray(jax.devices()[:1]), ("dev",))
    out = K.tiled.fill_tiles(
        jnp.asarray(x1).reshape(1, n1, d), jnp.asarray(x2), None, None, jnp.ones(()),
        arch=arch, want_ntk=True, order=32, d=d, rt=rt, ct=ct, symmetric=symmetric, from_gram=False, m=n1,
        n2=x2.shape[0], out_sharding=jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("dev")),
    )  # fmt: skip
    return np.asarray(out[0]), np.asarray(out[1])


@pytest.mark.parametrize("name", ["relu", "erf"])
def test_host_loop_equals_compiled_loop_and_textbook(x64, name):
    """One device on CPU takes the host loop; it equals fill_tiles' compiled loop and the untiled recursion
    (1e-12), with shifted last tiles, triangular symmetric tiles (exactly symmetric), NTK-only output."""
    assert K.tiled.uses_host_loop(jax.devices()[:1]) == (tuple(map(int, jax.__version__.split(".")[:2])) >= (0, 10))
    arch = K.MLP(3, name, W_std=1.3, b_std=0.2)
    x1, x2 = _inputs(23, 17, 5, seed=11)
    g, q1, q2 = _gram(x1, x2)
    textbook = K.kernel_layers(arch, g, q1, q2)[-1]
    for tiles in [(5, 4), (8, 6)]:
        got = K.kernel(arch, x1, x2, tile_size=tiles)
        ref_k, ref_t = _fill_tiles_reference(arch, x1, x2, *tiles, symmetric=False)
        np.testing.assert_allclose(got.nngp, ref_k, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.ntk, ref_t, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(got.ntk, textbook.ntk, rtol=1e-12, atol=1e-14)
        only = K.kernel(arch, x1, x2, get="ntk", tile_size=tiles)
        assert only.nngp is None
        np.testing.assert_allclose(only.ntk, got.ntk, rtol=1e-14, atol=1e-15)  # Gram from tiles, not one product
    gs, qs, _ = _gram(x1, x1)
    sym_textbook = K.kernel_layers(arch, gs, qs, symmetric=True)[-1]
    for side in (5, 7):  # 23 = 4 x 5 + 3: the last tile is shifted back over its neighbour
        got = K.kernel(arch, x1, tile_size=side)
        ref_k, ref_t = _fill_tiles_reference(arch, x1, x1, side, side, symmetric=True)
        for out, ref, tb in ((got.nngp, ref_k, sym_textbook.nngp), (got.ntk, ref_t, sym_textbook.ntk)):
            out = np.asarray(out)
            np.testing.assert_array_equal(out, out.T)
            np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-14)
            np.testing.assert_allclose(out, tb, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(np.diag(np.asarray(got.ntk)), K.kernel_diag(arch, x1).ntk, rtol=1e-14, atol=0)
    got = K.kernel_from_gram(arch, g, q1, q2, input_dim=5, tile_size=(6, 5))
    np.testing.assert_allclose(got.ntk, textbook.ntk, rtol=1e-12, atol=1e-14)


def test_host_loop_output_is_a_cpu_array_that_owns_aligned_memory(x64):
    """The host loop's outputs are ordinary jax arrays on the CPU device; the NumPy buffers they wrap
    start on a page boundary (so wrapping them needs no copy) and later arithmetic works on them."""
    arch = K.MLP(2, "relu")
    x1, x2 = _inputs(30, 20, 4)
    out = K.kernel(arch, x1, x2)
    assert isinstance(out.ntk, jax.Array) and out.ntk.devices() == {jax.devices()[0]}
    ref = np.array(out.ntk)
    import gc

    gc.collect()
    for _ in range(5):  # allocate and free blocks of the outputs' size: the outputs' memory must stay theirs
        scratch = K.tiled._aligned_empty((30, 20), np.float64)
        scratch[:] = np.nan
        del scratch
        gc.collect()
    np.testing.assert_array_equal(np.asarray(out.ntk), ref)
    buf = K.tiled._aligned_empty((7, 9), np.float64)
    assert buf.ctypes.data % 4096 == 0 and buf.flags.c_contiguous and buf.shape == (7, 9)
    np.testing.assert_allclose(np.asarray(out.ntk * 2.0), 2.0 * np.asarray(out.ntk), rtol=0, atol=0)
