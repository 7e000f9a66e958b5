"""Theory of heavily corrupted data: the mean-field (noise-averaged) first layer.

For large d the first-layer overlaps ⟨x̃_α, x̃_β⟩ of corrupted points
concentrate on their average over the noise (SCIENCE.md §4). With ε = 1 − p,
inner product ⟨x, x'⟩ = (1/d) Σ_i x_i x'_i, feature mean x̄ = (1/d) Σ_i x_i and
the noise moments (μ, μ₂) of the model (``model.moments``):

Replacement (x̃_i = x_i with probability ε, else u_i ~ D_u):
  E⟨x̃_α, x̃_α⟩ = ε ⟨x_α, x_α⟩ + (1 − ε) μ₂
  E⟨x̃_α, x̃_β⟩ = ε² ⟨x_α, x_β⟩ + ε(1 − ε) μ (x̄_α + x̄_β) + (1 − ε)² μ²        (α ≠ β)

Additive (x̃ = ε x + (1 − ε) ξ, ξ_i i.i.d. with moments μ, μ₂; the supported
laws have μ = 0, μ₂ = 1):
  E⟨x̃_α, x̃_β⟩ = ε² ⟨x_α, x_β⟩ + ε(1 − ε) μ (x̄_α + x̄_β) + (1 − ε)² (μ² + δ_αβ (μ₂ − μ²))

A clean point x* against a corrupted one (both models):
  E⟨x*, x̃_α⟩ = ε ⟨x*, x_α⟩ + (1 − ε) μ x̄*

For per-example normalised data (⟨x, x⟩ = 1, x̄ = 0) and additive Gaussian
noise these reduce to ε²⟨x_α, x_β⟩ + δ_αβ (1 − ε)² and ε⟨x*, x_α⟩.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from nwcorrupt import activations as _act
from nwcorrupt._checks import check_array, check_choice, check_matrix, check_positive_int, check_probability

KINDS = ("replacement", "additive")


@dataclasses.dataclass(frozen=True)
class Overlaps:
    """Noise-averaged first-layer overlaps (all already divided by d).

    Attributes:
      train: (N, N) E⟨x̃_α, x̃_β⟩ among corrupted training points (diagonal included).
      test_train: (M, N) E⟨x*, x̃_α⟩ between clean test and corrupted training points.
      test_diag: (M,) ⟨x*, x*⟩ of the clean test points.
    """

    train: np.ndarray
    test_train: np.ndarray
    test_diag: np.ndarray

    @property
    def train_diag(self) -> np.ndarray:
        """(N,) E⟨x̃_α, x̃_α⟩."""
        return np.diagonal(self.train).copy()


def _kind(noise) -> str:
    kind = getattr(noise, "kind", None)
    if kind not in KINDS:
        raise ValueError(f"noise must be a corruption model of kind {KINDS} (nwcorrupt.corruption), got {noise!r}")
    return kind


def meanfield_overlaps(noise, p: float, x_train, x_test=None) -> Overlaps:
    """Noise-averaged first-layer overlaps of a corrupted training set and clean test points.

    Args:
      noise: a corruption model (``Replacement`` or ``Additive``); only its kind
        and moments (μ, μ₂) enter.
      p: corruption level in [0, 1] (ε = 1 − p).
      x_train: (N, d) clean training inputs (any scaling; not required to be normalised).
      x_test: (M, d) clean test inputs, or None for an empty test set.

    Returns:
      :class:`Overlaps` in float64.
    """
    kind = _kind(noise)
    eps = 1.0 - check_probability("p", p)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    n, d = x.shape
    xt = np.zeros((0, d)) if x_test is None else np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    if xt.shape[1] != d:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has {d}; they must match")
    mu, mu2 = (float(m) for m in noise.moments)
    gram = x @ x.T / d
    mean = x.mean(axis=1)
    train = eps**2 * gram + eps * (1 - eps) * mu * (mean[:, None] + mean[None, :]) + (1 - eps) ** 2 * mu**2
    sq = np.diagonal(gram)
    if kind == "replacement":
        diag = eps * sq + (1 - eps) * mu2
    else:
        diag = eps**2 * sq + 2 * eps * (1 - eps) * mu * mean + (1 - eps) ** 2 * mu2
    train[np.diag_indices(n)] = diag
    test_train = eps * (xt @ x.T / d) + (1 - eps) * mu * xt.mean(axis=1)[:, None]
    return Overlaps(train=train, test_train=test_train, test_diag=np.sum(xt * xt, axis=1) / d)


def empirical_overlaps(x_noisy, x_test=None) -> Overlaps:
    """The same overlaps computed from one corrupted realisation (for Monte Carlo checks).

    Args:
      x_noisy: (N, d) corrupted training inputs.
      x_test: (M, d) clean test inputs or None.
    """
    x = np.asarray(check_matrix("x_noisy", x_noisy), dtype=np.float64)
    d = x.shape[1]
    xt = np.zeros((0, d)) if x_test is None else np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    return Overlaps(train=x @ x.T / d, test_train=xt @ x.T / d, test_diag=np.sum(xt * xt, axis=1) / d)


# ---------------------------------------------------------------------------
# Overlaps as polynomials in ε (differentiable, jnp)
# ---------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class OverlapPoly:
    """Mean-field overlaps as polynomials in ε = 1 − p (coefficients of ε⁰, ε¹, ε²).

    Attributes:
      train: (3, N, N) coefficients of the off-diagonal E⟨x̃_α, x̃_β⟩ (the diagonal
        of these arrays is not used).
      train_diag: (3, N) coefficients of E⟨x̃_α, x̃_α⟩.
      test_train: (2, M, N) coefficients of E⟨x*, x̃_α⟩ (linear in ε).
      test_diag: (M,) ⟨x*, x*⟩ (independent of ε: test points are clean).
      mu, mu2: the noise moments E[u], E[u²].
    """

    train: np.ndarray
    train_diag: np.ndarray
    test_train: np.ndarray
    test_diag: np.ndarray
    mu: float
    mu2: float

    def at(self, eps) -> Overlaps:
        """The overlaps at ε (numpy float64), identical to :func:`meanfield_overlaps` at p = 1 − ε."""
        e = np.array([1.0, eps, eps * eps])
        train = np.tensordot(e, self.train, axes=1)
        n = train.shape[0]
        train[np.diag_indices(n)] = e @ self.train_diag
        return Overlaps(train=train, test_train=np.tensordot(e[:2], self.test_train, axes=1), test_diag=self.test_diag)


def overlap_poly(noise, x_train, x_test) -> OverlapPoly:
    """Coefficients in ε of the mean-field overlaps (module docstring), float64.

    Args:
      noise: ``Replacement`` or ``Additive`` model (only kind and moments enter).
      x_train: (N, d) clean training inputs.
      x_test: (M, d) clean test inputs.
    """
    kind = _kind(noise)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    xt = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    n, d = x.shape
    if xt.shape[1] != d:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has {d}; they must match")
    mu, mu2 = (float(m) for m in noise.moments)
    gram = x @ x.T / d
    m = x.mean(axis=1)
    msum = m[:, None] + m[None, :]
    train = np.stack([np.full((n, n), mu * mu), mu * msum - 2 * mu * mu, gram - mu * msum + mu * mu])
    sq = np.diagonal(gram).copy()
    if kind == "replacement":
        diag = np.stack([np.full(n, mu2), sq - mu2, np.zeros(n)])
    else:
        diag = np.stack([np.full(n, mu2), 2 * mu * m - 2 * mu2, sq - 2 * mu * m + mu2])
    mt = xt.mean(axis=1)
    tt0 = np.broadcast_to(mu * mt[:, None], (xt.shape[0], n))
    tt = np.stack([tt0, xt @ x.T / d - tt0])
    return OverlapPoly(train, diag, tt, np.sum(xt * xt, axis=1) / d, mu, mu2)


# ---------------------------------------------------------------------------
# Dual kernels (private; differentiable in the covariance entries)
# ---------------------------------------------------------------------------

KERNELS = ("ntk", "nngp")
#: Gauss–Hermite nodes per dimension for activations without a closed-form dual
#: (per pair of :func:`meanfield_predict`; tanh at kernel variances ~3 is accurate to ~1e-6).
QUAD_ORDER = 80
#: Nodes for the Taylor coefficients and transfer coefficients, which are evaluated at
#: few points only (tanh to ~1e-10; smooth entire activations to machine precision).
SERIES_QUAD_ORDER = 200


@functools.lru_cache(maxsize=16)
def _gauss_hermite(n: int) -> tuple[np.ndarray, np.ndarray]:
    z, w = np.polynomial.hermite_e.hermegauss(n)
    return z, w / math.sqrt(2 * math.pi)


def _relu_alpha(act: _act.Activation) -> float | None:
    """σ = α x + (1 − α) relu(x) for the piecewise-linear family (relu, abs, leaky_relu, identity)."""
    if act.name == "relu":
        return 0.0
    if act.name == "abs":
        return -1.0
    if act.name == "identity":
        return 1.0
    if act.name.startswith("leaky_relu"):
        return float(dict(act.params)["alpha"])
    return None


def _quad_pair(f, g, k11, k12, k22, n: int):
    """E[f(u) g(v)] for (u, v) ~ N(0, [[k11, k12], [k12, k22]]) by product Gauss–Hermite (arrays broadcast)."""
    z, w = _gauss_hermite(n)
    dt = jnp.result_type(k11, k12, k22, float)
    z, w = jnp.asarray(z, dt), jnp.asarray(w, dt)
    s11 = jnp.sqrt(k11)
    c = k12 / s11
    r = jnp.sqrt(jnp.maximum(k22 - c * c, 0.0))
    u = s11[..., None] * z
    v = c[..., None, None] * z[:, None] + r[..., None, None] * z[None, :]
    inner = jnp.sum(g(v) * w, axis=-1)
    return jnp.sum(f(u) * inner * w, axis=-1)


def _quad_diag(f, g, k, n: int):
    """E[f(u) g(u)] for u ~ N(0, k)."""
    z, w = _gauss_hermite(n)
    dt = jnp.result_type(k, float)
    u = jnp.sqrt(k)[..., None] * jnp.asarray(z, dt)
    return jnp.sum(f(u) * g(u) * jnp.asarray(w, dt), axis=-1)


def _vd_pair(act, k11, k12, k22, n: int):
    """(⟨σσ⟩, ⟨σ'σ'⟩) of an off-diagonal pair (closed forms for relu family, erf, sin)."""
    alpha = _relu_alpha(act)
    if alpha is not None:
        det = jnp.maximum(k11 * k22 - k12 * k12, 0.0)
        theta = jnp.arccos(jnp.clip(k12 / jnp.sqrt(k11 * k22), -1.0, 1.0))
        v = (jnp.sqrt(det) + (jnp.pi - theta) * k12) / (2 * jnp.pi)
        dd = (jnp.pi - theta) / (2 * jnp.pi)
        b = (1 - alpha) ** 2
        return alpha * k12 + b * v, alpha + b * dd
    if act.name == "erf":
        a = (1 + 2 * k11) * (1 + 2 * k22)
        return (2 / jnp.pi) * jnp.arcsin(2 * k12 / jnp.sqrt(a)), (4 / jnp.pi) / jnp.sqrt(a - 4 * k12 * k12)
    if act.name == "sin":
        e = jnp.exp(-(k11 + k22) / 2)
        return e * jnp.sinh(k12), e * jnp.cosh(k12)
    f, df = act.fn, act.derivative(1)
    return _quad_pair(f, f, k11, k12, k22, n), _quad_pair(df, df, k11, k12, k22, n)


def _vd_diag(act, k, n: int):
    """(⟨σ²⟩, ⟨σ'²⟩) at variance k."""
    alpha = _relu_alpha(act)
    if alpha is not None:
        b = (1 - alpha) ** 2
        return (alpha + b / 2) * k, (alpha + b / 2) + 0 * k
    if act.name == "erf":
        return (2 / jnp.pi) * jnp.arcsin(2 * k / (1 + 2 * k)), (4 / jnp.pi) / jnp.sqrt(1 + 4 * k)
    if act.name == "sin":
        return (1 - jnp.exp(-2 * k)) / 2, (1 + jnp.exp(-2 * k)) / 2
    f, df = act.fn, act.derivative(1)
    return _quad_diag(f, f, k, n), _quad_diag(df, df, k, n)


def _check_arch(arch, kernel: str):
    check_choice("kernel", kernel, KERNELS)
    if getattr(arch, "parameterization", None) != "ntk":
        raise ValueError(
            "arch.parameterization must be 'ntk': the theory module implements the NTK-parameterisation "
            f"recursion of SCIENCE.md §3, got {getattr(arch, 'parameterization', arch)!r}"
        )
    return arch.act, float(arch.W_std) ** 2, float(arch.b_std) ** 2


def _hyper(arch):
    """(depth, C_w, C_b) as traced-friendly arrays, so that jitted code compiles once per activation."""
    return jnp.asarray(arch.depth, jnp.int32), jnp.asarray([float(arch.W_std) ** 2, float(arch.b_std) ** 2])


def _pair_kernel(act, kernel: str, depth, hyper, g11, g12, g22, n: int = QUAD_ORDER):
    """Output kernel (Θ^L or K^L) of an off-diagonal pair with first-layer overlaps (g11, g12, g22).

    ``depth`` (L) may be traced (``lax.fori_loop``); ``hyper`` = (C_w, C_b).
    """
    cw, cb = hyper[0], hyper[1]
    k11, k12, k22 = cb + cw * g11, cb + cw * g12, cb + cw * g22
    k11, k12, k22 = jnp.broadcast_arrays(k11, k12, k22)

    def layer(_, carry):
        k11, k12, k22, th = carry
        v, dd = _vd_pair(act, k11, k12, k22, n)
        k12 = cb + cw * v
        th = k12 + cw * dd * th
        return cb + cw * _vd_diag(act, k11, n)[0], k12, cb + cw * _vd_diag(act, k22, n)[0], th

    _, k12, _, th = jax.lax.fori_loop(0, depth - 1, layer, (k11, k12, k22, k12))
    return th if kernel == "ntk" else k12


def _diag_kernel(act, kernel: str, depth, hyper, g, n: int = QUAD_ORDER):
    """Output kernel of a point with itself, first-layer overlap g = ⟨x, x⟩."""
    cw, cb = hyper[0], hyper[1]
    k = cb + cw * g

    def layer(_, carry):
        k, th = carry
        v, dd = _vd_diag(act, k, n)
        knew = cb + cw * v
        return knew, knew + cw * dd * th

    k, th = jax.lax.fori_loop(0, depth - 1, layer, (k, k))
    return th if kernel == "ntk" else k


def kernels_from_overlaps(arch, overlaps: Overlaps, *, kernel: str = "ntk", quad_order: int = QUAD_ORDER):
    """Output kernels from first-layer overlaps: (K_train (N, N), K_test_train (M, N)) as jnp arrays.

    The train-train diagonal uses the single-point recursion, off-diagonal
    entries the pair recursion; test-train pairs use diag1 = ``test_diag`` and
    diag2 = the train diagonal. Activations without a closed form use
    ``quad_order``² Gauss–Hermite nodes per pair (memory ∝ N² · quad_order²).
    """
    _check_arch(arch, kernel)
    check_positive_int("quad_order", quad_order)
    return _kernels_jit(
        arch.act, kernel, quad_order, *_hyper(arch), jnp.asarray(overlaps.train), jnp.asarray(overlaps.test_train),
        jnp.asarray(overlaps.test_diag),
    )


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _kernels_jit(act, kernel, n, depth, hyper, g, tt, td):
    gd = jnp.diagonal(g)
    eye = jnp.eye(g.shape[0], dtype=bool)
    off = _pair_kernel(act, kernel, depth, hyper, gd[:, None], jnp.where(eye, 0.0, g), gd[None, :], n)
    ktt = jnp.where(eye, _diag_kernel(act, kernel, depth, hyper, gd, n)[None, :], off)
    kst = _pair_kernel(act, kernel, depth, hyper, td[:, None], tt, gd[None, :], n)
    return ktt, kst


# ---------------------------------------------------------------------------
# Targets and the exact mean-field predictor
# ---------------------------------------------------------------------------


def _targets(y_train, n: int, num_classes: int | None) -> np.ndarray:
    """One-hot (N, C) float64 targets from integer labels (N,) or one-hot / real targets (N, C)."""
    arr = np.asarray(y_train)
    if arr.ndim == 2:
        check_array("y_train", arr, ndim=2)
        if arr.shape[0] != n:
            raise ValueError(f"y_train has {arr.shape[0]} rows but x_train has {n}; they must match")
        if num_classes is not None and arr.shape[1] != num_classes:
            raise ValueError(f"y_train has {arr.shape[1]} columns but num_classes={num_classes}")
        return arr.astype(np.float64)
    from nwcorrupt._checks import check_labels

    y = check_labels("y_train", arr, n=n, num_classes=num_classes, data_name="x_train")
    c = int(num_classes) if num_classes is not None else int(y.max()) + 1
    return np.eye(c)[y]


def _check_diag_reg(diag_reg) -> float:
    v = float(diag_reg)
    if not math.isfinite(v) or v < 0:
        raise ValueError(f"diag_reg must be a finite number >= 0, got {diag_reg!r}")
    return v


def meanfield_predict(
    arch,
    noise,
    p: float,
    x_train,
    y_train,
    x_test,
    *,
    kernel: str = "ntk",
    diag_reg: float = 0.0,
    num_classes: int | None = None,
    quad_order: int = QUAD_ORDER,
) -> np.ndarray:
    """Exact mean-field predictor (N_test, C): K(x*, X̃) [K(X̃, X̃) + diag_reg·I]⁻¹ Y.

    The random first-layer Gram matrix of the corrupted training set is replaced
    by its noise average (:func:`meanfield_overlaps`), then propagated through
    the infinite-width recursion of ``arch`` (``parameterization="ntk"``) by
    :func:`nwcorrupt.kernels.kernel_from_gram` (tiled to its memory budget, so
    quadrature activations scale to large N).
    ``kernel="ntk"`` gives the t = ∞ gradient-flow mean, ``"nngp"`` the NNGP
    posterior mean.

    Args:
      arch: :class:`nwcorrupt.arch.MLP`.
      noise: corruption model (``Replacement`` / ``Additive``).
      p: corruption level in [0, 1] (ε = 1 − p).
      x_train: (N, d) clean training inputs; x_test: (M, d) clean test inputs.
      y_train: (N,) integer labels (one-hot encoded with C = num_classes or
        max + 1) or (N, C) one-hot / real targets used as given.
      diag_reg: ridge λ ≥ 0 added to the train-train kernel diagonal.

    Returns:
      float64 numpy array (M, C). Kernels are computed in JAX's current default
      float type (use x64: in float32 the solve loses ~1e-4 relative accuracy at
      p → 1, where the train kernel is nearly rank one).
    """
    p = check_probability("p", p)
    _check_arch(arch, kernel)
    reg = _check_diag_reg(diag_reg)
    ov = meanfield_overlaps(noise, p, x_train, x_test)
    y = _targets(y_train, ov.train.shape[0], num_classes)
    from nwcorrupt.kernels import kernel_from_gram

    # the kernels module tiles the N x N (and M x N) recursion to its memory budget; the private
    # differentiable recursion (kernels_from_overlaps) would hold N² · quad_order² quadrature values
    ktt = getattr(kernel_from_gram(arch, ov.train, ov.train_diag, get=kernel, symmetric=True, quad_order=quad_order), kernel)
    kst = getattr(kernel_from_gram(arch, ov.test_train, ov.test_diag, ov.train_diag, get=kernel, quad_order=quad_order), kernel)
    import scipy.linalg

    ktt = np.asarray(ktt, dtype=np.float64) + reg * np.eye(ktt.shape[0])
    sol = scipy.linalg.cho_solve(scipy.linalg.cho_factor(ktt, lower=True), y)
    return np.asarray(kst, dtype=np.float64) @ sol


# ---------------------------------------------------------------------------
# Taylor expansion in ε by automatic differentiation
# ---------------------------------------------------------------------------


def _derivative_tensors(fun, base, order: int) -> list:
    """[D^m fun(base) for m = 0..order], each of shape (k,)*m (fun: R^k -> R), by nested jacfwd."""
    out, f = [], fun
    for m in range(order + 1):
        out.append(f(base))
        f = jax.jacfwd(f)
    return out


def _compose_series(tensors: list, v, order: int):
    """Taylor coefficients (order + 1, *S) of F(base + v(ε)) given the derivative tensors of F at base.

    Args:
      tensors: [D^m F] for m = 0..order; D^m F has shape (k,)*m + B with B
        broadcastable against S (per-entry base points).
      v: (order + 1, k, *S) polynomial coefficients of the displacement, v[0] = 0.
    """
    ns = v.ndim - 2
    tensors = [
        jnp.reshape(t, t.shape[:m] + (1,) * (ns - (t.ndim - m)) + t.shape[m:]) for m, t in enumerate(tensors)
    ]
    shape = jnp.broadcast_shapes(jnp.shape(tensors[0]), v.shape[2:])
    out = [jnp.broadcast_to(tensors[0], shape)] + [jnp.zeros(shape, v.dtype) for _ in range(order)]
    for m in range(1, order + 1):
        # state[i]: coefficient of ε^i of D^m F[·, ..., ·] with r free slots left
        state = {0: tensors[m]}
        for r in range(m, 0, -1):
            new: dict = {}
            for i, s in state.items():
                for l in range(1, order + 1 - i):
                    # contract the last free slot (axis r - 1) with v[l]
                    vl = v[l].reshape((1,) * (r - 1) + v[l].shape)
                    term = jnp.sum(s * vl, axis=r - 1)
                    new[i + l] = new.get(i + l, 0) + term
            state = new
        fact = math.factorial(m)
        for i, s in state.items():
            out[i] = out[i] + s / fact
    return jnp.stack(out)


@dataclasses.dataclass(frozen=True)
class KernelSeries:
    """Taylor coefficients in ε of the output kernels (jnp arrays).

    Attributes:
      train: (order + 1, N, N) of K(X̃, X̃) (diagonal included, no ridge).
      test_train: (order + 1, M, N) of K(x*, X̃).
    """

    train: jax.Array
    test_train: jax.Array


def kernel_series(arch, noise, x_train, x_test, *, order: int = 1, kernel: str = "ntk",
                  quad_order: int = SERIES_QUAD_ORDER, test_chunk: int = 1024) -> KernelSeries:
    """Taylor coefficients of the mean-field kernels in ε by automatic differentiation.

    Every off-diagonal train pair sits at the same pure-noise point (μ₂, μ², μ₂)
    at ε = 0, and every test-train pair of test point t at (⟨x*,x*⟩, μ x̄*, μ₂):
    derivative tensors of the scalar kernel map are taken there (nested
    ``jax.jacfwd``) and composed with the overlap polynomials entry by entry.
    Cost O((N² + M N)·3^order) plus O(M·quad_order²·3^order) kernel evaluations;
    test points are processed in chunks of ``test_chunk`` to bound memory.
    """
    _check_arch(arch, kernel)
    order = check_positive_int("order", order, allow_zero=True)
    poly = overlap_poly(noise, x_train, x_test)
    dt = jnp.result_type(float)
    args = (arch.act, kernel, order, quad_order, *_hyper(arch), jnp.asarray([poly.mu, poly.mu2], dt))
    pd = jnp.asarray(poly.train_diag, dt)
    train = _train_series_jit(*args, jnp.asarray(poly.train, dt), pd)
    chunk = max(1, int(test_chunk))
    m = poly.test_train.shape[1]
    parts = [
        _test_series_jit(*args, pd, jnp.asarray(poly.test_train[:, i:i + chunk], dt), jnp.asarray(poly.test_diag[i:i + chunk], dt))
        for i in range(0, m, chunk)
    ]
    return KernelSeries(train=train, test_train=jnp.concatenate(parts, axis=1))


def _pair_fn(act, kernel, depth, hyper, quad_order):
    return lambda gvec: _pair_kernel(act, kernel, depth, hyper, gvec[0], gvec[1], gvec[2], quad_order)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _train_series_jit(act, kernel, order, quad_order, depth, hyper, moments, pt, pd):
    dt = pt.dtype
    mu, mu2 = moments[0], moments[1]
    n = pt.shape[1]

    def pair(gvec):
        return _pair_kernel(act, kernel, depth, hyper, gvec[0], gvec[1], gvec[2], quad_order)

    def diag(gvec):
        return _diag_kernel(act, kernel, depth, hyper, gvec[0], quad_order)

    base_off = jnp.stack([mu2, mu * mu, mu2])
    tens = _derivative_tensors(pair, base_off, order)
    pad = [jnp.zeros((n, n), dt)] * max(0, order + 1 - 3)
    v_off = jnp.stack(
        [
            jnp.stack([jnp.broadcast_to(pd[j][:, None], (n, n)), pt[j], jnp.broadcast_to(pd[j][None, :], (n, n))])
            if j > 0 else jnp.zeros((3, n, n), dt)
            for j in range(min(order, 2) + 1)
        ]
        + [jnp.zeros((3, n, n), dt)] * len(pad)
    )
    off = _compose_series(tens, v_off, order)
    tens_d = _derivative_tensors(diag, jnp.stack([mu2]), order)
    v_d = jnp.stack([pd[j][None] if 0 < j <= 2 else jnp.zeros((1, n), dt) for j in range(order + 1)])
    dg = _compose_series(tens_d, v_d, order)  # (order + 1, N)
    eye = jnp.eye(n, dtype=bool)
    return jnp.where(eye[None], dg[:, None, :], off)


@functools.partial(jax.jit, static_argnums=(0, 1, 2, 3))
def _test_series_jit(act, kernel, order, quad_order, depth, hyper, moments, pd, ptt, ptd):
    dt = pd.dtype
    mu2 = moments[1]
    n = pd.shape[1]
    pair = _pair_fn(act, kernel, depth, hyper, quad_order)
    m = ptt.shape[1]
    bases = jnp.stack([ptd, ptt[0][:, 0], jnp.full((m,), mu2, dt)], axis=1)  # (M, 3)
    tens_t = jax.vmap(lambda b: _derivative_tensors(pair, b, order))(bases)
    # move the test axis to the end and add a train axis: (3,)*k + (M, 1)
    tens_t = [jnp.moveaxis(t, 0, -1)[..., None] for t in tens_t]
    zeros = jnp.zeros((m, n), dt)
    v_t = jnp.stack(
        [jnp.stack([zeros, ptt[1], jnp.broadcast_to(pd[j][None, :], (m, n))]) if j == 1
         else jnp.stack([zeros, zeros, jnp.broadcast_to(pd[j][None, :], (m, n))]) if j == 2
         else jnp.zeros((3, m, n), dt)
         for j in range(order + 1)]
    )
    return _compose_series(tens_t, v_t, order)


@dataclasses.dataclass(frozen=True)
class PureNoise:
    """The exchangeable ε = 0 train kernel θ_o 11ᵀ + Δ I and its Sherman–Morrison inverse.

    Attributes: theta_d (diagonal, ridge included), theta_o (off-diagonal),
    delta = θ_d − θ_o, n = N, psi = N / (Δ + N θ_o), q = θ_o ψ.
    """

    theta_d: float
    theta_o: float
    n: int

    @property
    def delta(self) -> float:
        return self.theta_d - self.theta_o

    @property
    def psi(self) -> float:
        return self.n / (self.delta + self.n * self.theta_o)

    @property
    def q(self) -> float:
        return self.theta_o * self.psi

    def solve(self, b):
        """K0⁻¹ b for b of shape (N, ...) in O(N) per column."""
        return (b - (self.q / self.n) * jnp.sum(b, axis=0, keepdims=True)) / self.delta


def _pure_noise_from(train0, reg: float) -> PureNoise:
    k = np.asarray(train0, dtype=np.float64)
    n = k.shape[0]
    td = float(k[0, 0]) + reg
    to = float(k[0, 1]) if n > 1 else 0.0
    if not np.allclose(np.diagonal(k), k[0, 0], rtol=1e-10, atol=0) or (
        n > 1 and not np.allclose(k[~np.eye(n, dtype=bool)], to, rtol=1e-10, atol=1e-300)
    ):
        raise AssertionError("the ε = 0 train kernel is not exchangeable; this is a bug")
    pn = PureNoise(td, to, n)
    if not pn.delta > 0:
        raise ValueError(f"the pure-noise kernel has Δ = θ_d − θ_o = {pn.delta} <= 0: K(ε=0) is singular; add diag_reg")
    return pn


def series_coefficients(series: KernelSeries, y, *, diag_reg: float = 0.0):
    """Taylor coefficients (order + 1, M, C) of k*(ε)ᵀ K(ε)⁻¹ Y from kernel coefficients.

    Uses B = K⁻¹Y = Σ ε^j B_j with B_0 = K0⁻¹Y, B_j = −K0⁻¹ Σ_{i=1..j} K_i B_{j−i},
    where K0 = θ_o 11ᵀ + Δ I is inverted by Sherman–Morrison (no N×N solve).
    """
    reg = _check_diag_reg(diag_reg)
    pn = _pure_noise_from(series.train[0], reg)
    y = jnp.asarray(y, series.train.dtype)
    order = series.train.shape[0] - 1
    bs = [pn.solve(y)]
    for j in range(1, order + 1):
        acc = sum(series.train[i] @ bs[j - i] for i in range(1, j + 1))
        bs.append(-pn.solve(acc))
    f = [sum(series.test_train[i] @ bs[j - i] for i in range(j + 1)) for j in range(order + 1)]
    return jnp.stack(f)


def taylor(
    arch,
    noise,
    x_train,
    y_train,
    x_test,
    *,
    order: int = 1,
    kernel: str = "ntk",
    diag_reg: float = 0.0,
    num_classes: int | None = None,
    quad_order: int = SERIES_QUAD_ORDER,
    method: str = "auto",
) -> np.ndarray:
    """Taylor coefficients in ε = 1 − p of the mean-field predictor, (order + 1, M, C) float64.

    f̄(x*; ε) = Σ_j ε^j coeffs[j] + O(ε^{order+1}) around pure noise (ε = 0),
    computed by automatic differentiation of the kernel recursion. Arguments as in
    :func:`meanfield_predict`, and

      method: ``"structured"`` (orders 0 and 1 only): the kernel's value and gradient
        at the pure-noise points by ``jax.jacfwd``, combined through the exchangeable
        structure (Sherman–Morrison for K0, rank-two K1, test–train products through
        Xᵀ A): cost O((N + M) d C), memory O((N + M) d), no N × N array.
        ``"dense"``: every order; the kernel coefficients of all N² pairs
        (:func:`kernel_series`) and the perturbation series of the solve
        (:func:`series_coefficients`), cost O(N² d + order² N² C).
        ``"auto"`` (default): structured for order ≤ 1, dense otherwise.
    """
    method = check_choice("method", method, ("auto", "structured", "dense"))
    order = check_positive_int("order", order, allow_zero=True)
    if method == "structured" and order > 1:
        raise ValueError(f"method='structured' gives orders 0 and 1 only, got order={order}; use method='dense'")
    n = np.shape(x_train)[0]
    y = _targets(y_train, n, num_classes)
    if method != "dense" and order <= 1:
        fo = _first_order_autodiff(arch, noise, x_train, y, x_test, kernel=kernel, diag_reg=diag_reg, quad_order=quad_order)
        return np.stack([fo.f0, fo.f1][: order + 1])
    series = kernel_series(arch, noise, x_train, x_test, order=order, kernel=kernel, quad_order=quad_order)
    return np.asarray(series_coefficients(series, y, diag_reg=diag_reg), dtype=np.float64)


def series_sum(coeffs, eps) -> np.ndarray:
    """Truncated sum Σ_j ε^j coeffs[j]: (M, C) for scalar ε, (E, M, C) for an (E,) array of ε."""
    c = np.asarray(coeffs, dtype=np.float64)
    e = np.asarray(eps, dtype=np.float64)
    powers = e[..., None] ** np.arange(c.shape[0])
    return np.tensordot(powers, c, axes=1)


def taylor_predict(arch, noise, x_train, y_train, x_test, eps, *, order: int = 1, **kwargs) -> np.ndarray:
    """Truncated Taylor predictor Σ_{j ≤ order} ε^j f_j (M, C) (or (E, M, C) for an array of ε)."""
    return series_sum(taylor(arch, noise, x_train, y_train, x_test, order=order, **kwargs), eps)


def leading_decision(coeffs, *, rtol: float = 1e-9) -> np.ndarray:
    """The ε → 0⁺ decision (M,) int32 of a Taylor series: lexicographic argmax over (f_0, f_1, ...).

    Classes tied in f_0 (within rtol of the row's scale, e.g. balanced classes at
    pure noise) are separated by f_1, and so on.
    """
    c = np.asarray(coeffs, dtype=np.float64)
    alive = np.ones(c.shape[1:], dtype=bool)
    for j in range(c.shape[0]):
        vals = np.where(alive, c[j], -np.inf)
        best = vals.max(axis=1, keepdims=True)
        scale = np.max(np.abs(c[j]), axis=1, keepdims=True)
        alive &= vals >= best - rtol * scale
    return np.argmax(alive, axis=1).astype(np.int32)


# ---------------------------------------------------------------------------
# Closed-form first order: transfer coefficients from dual kernels of derivatives
# ---------------------------------------------------------------------------


def _price_pair(act, k11, k12, k22, n: int):
    """Dual kernels of an off-diagonal pair and their partial derivatives (Price's theorem).

    Returns (V, D, E, V2, D2) with V = ⟨σσ⟩, D = ⟨σ'σ'⟩ = ∂V/∂k12, E = ∂D/∂k12 =
    ⟨σ''σ''⟩, V2 = ∂V/∂k22 = ½⟨σ σ''⟩, D2 = ∂D/∂k22 = ½⟨σ' σ'''⟩ (the second factor
    acts on v, the variable of variance k22). For the piecewise-linear family
    σ = α x + (1 − α) relu the delta-function expectations are evaluated in closed
    form: E = b/(2π√det), V2 = b√det/(4π k22), D2 = −b k12/(4π k22 √det),
    b = (1 − α)², det = k11 k22 − k12² (finite for |ρ| < 1).
    """
    alpha = _relu_alpha(act)
    if alpha is not None:
        b = (1 - alpha) ** 2
        v, dd = _vd_pair(act, k11, k12, k22, n)
        sdet = jnp.sqrt(k11 * k22 - k12 * k12)
        return v, dd, b / (2 * jnp.pi * sdet), b * sdet / (4 * jnp.pi * k22), -b * k12 / (4 * jnp.pi * k22 * sdet)
    d = [act.derivative(k) for k in range(4)]

    def q(i, j):
        return _quad_pair(d[i], d[j], k11, k12, k22, n)

    return q(0, 0), q(1, 1), q(2, 2), q(0, 2) / 2, q(1, 3) / 2


def _price_diag(act, k, n: int):
    """(Vd, Dd, Vd', Dd') at variance k: ⟨σ²⟩, ⟨σ'²⟩ and their k-derivatives ⟨σ'²⟩ + ⟨σσ''⟩, ⟨σ''²⟩ + ⟨σ'σ'''⟩."""
    alpha = _relu_alpha(act)
    if alpha is not None:
        c = alpha + (1 - alpha) ** 2 / 2
        return c * k, c + 0 * k, c + 0 * k, 0 * k
    d = [act.derivative(j) for j in range(4)]

    def q(i, j):
        return _quad_diag(d[i], d[j], k, n)

    return q(0, 0), q(1, 1), q(1, 1) + q(0, 2), q(2, 2) + q(1, 3)


@dataclasses.dataclass(frozen=True)
class Transfer:
    """Output kernel of a pair and its sensitivities to the first-layer overlaps (arrays broadcast).

    Attributes:
      value: F = Θ^L (or K^L) at (g11, g12, g22).
      T: ∂F/∂g12 (test-train overlap sensitivity; = C_w^L T^{1→L} of SCIENCE.md §5).
      S: ∂F/∂g22 (sensitivity to the second point's norm ⟨x₂, x₂⟩).
      T_science: C_w^L [P^{1→L} + Σ_i (⟨σ'σ'⟩ + Θ ⟨σ''σ''⟩)^{(i)} P^{1→i} P^{i+1→L}], the
        hypothesis formula evaluated layer by layer (NTK only; NNGP: C_w^L P^{1→L}).
    """

    value: jax.Array
    T: jax.Array
    S: jax.Array
    T_science: jax.Array


def transfer(arch, g11, g12, g22, *, kernel: str = "ntk", quad_order: int = SERIES_QUAD_ORDER) -> Transfer:
    """Transfer coefficients by forward recursion through the layers (no autodiff of the recursion).

    Layer 1: K¹ = C_b + C_w g, Θ¹ = K¹. With a = ∂K₁₂/∂g12, b = ∂Θ₁₂/∂g12,
    r = ∂K₂₂/∂g22, s = ∂K₁₂/∂g22, t = ∂Θ₁₂/∂g22 (a = b = r = C_w, s = t = 0 at
    layer 1), each layer maps
      a ← C_w D a,  b ← C_w D a + C_w (D b + Θ E a),
      r ← C_w Vd'(K₂₂) r,  s ← C_w (D s + V2 r),  t ← s_new + C_w (D t + Θ (E s + D2 r)),
    with the duals of :func:`_price_pair` at the layer's (K₁₁, K₁₂, K₂₂).

    Args:
      arch: MLP (``parameterization="ntk"``); g11, g12, g22: first-layer overlaps
        (arrays broadcast; |g12| < √(g11 g22)).
    """
    act, cw, cb = _check_arch(arch, kernel)
    g11, g12, g22 = (jnp.asarray(g, dtype=jnp.result_type(float)) for g in (g11, g12, g22))
    k11, k12, k22 = cb + cw * g11, cb + cw * g12, cb + cw * g22
    th = k12
    a = b = r = cw + 0 * k12
    s = t = 0 * k12
    prod = 1.0 + 0 * k12  # P^{1→ℓ}
    t_sci_terms = 0 * k12  # Σ_i (D + Θ E)^{(i)} P^{1→i} P^{i+1→ℓ} (accumulated with later P factors)
    for _ in range(arch.depth - 1):
        v, dd, e, v2, d2 = _price_pair(act, k11, k12, k22, quad_order)
        vd22, _, vd22p, _ = _price_diag(act, k22, quad_order)
        vd11 = _price_diag(act, k11, quad_order)[0]
        s_new = cw * (dd * s + v2 * r)
        t = s_new + cw * (dd * t + th * (e * s + d2 * r))
        s = s_new
        b = cw * dd * a + cw * (dd * b + th * e * a)
        a = cw * dd * a
        r = cw * vd22p * r
        t_sci_terms = t_sci_terms * dd + (dd + th * e) * prod
        prod = prod * dd
        k12 = cb + cw * v
        th = k12 + cw * dd * th
        k11, k22 = cb + cw * vd11, cb + cw * vd22
    cwl = cw ** arch.depth
    if kernel == "ntk":
        return Transfer(value=th, T=b, S=t, T_science=cwl * (prod + t_sci_terms))
    return Transfer(value=k12, T=a, S=s, T_science=cwl * prod)


def transfer_diag(arch, g, *, kernel: str = "ntk", quad_order: int = SERIES_QUAD_ORDER):
    """(F_diag(g), dF_diag/dg) of a point with itself (forward recursion, Price duals)."""
    act, cw, cb = _check_arch(arch, kernel)
    k = cb + cw * jnp.asarray(g, dtype=jnp.result_type(float))
    th, r, t = k, cw + 0 * k, cw + 0 * k
    for _ in range(arch.depth - 1):
        vd, dd, vdp, ddp = _price_diag(act, k, quad_order)
        knew = cb + cw * vd
        r_new = cw * vdp * r
        t = r_new + cw * (dd * t + th * ddp * r)
        th = knew + cw * dd * th
        k, r = knew, r_new
    return (th, t) if kernel == "ntk" else (k, r)


@dataclasses.dataclass(frozen=True)
class FirstOrder:
    """Closed-form zeroth and first Taylor coefficients of the mean-field predictor.

    Attributes:
      f0, f1: (M, C) coefficients of ε⁰ and ε¹.
      pure: :class:`PureNoise` (θ_d, θ_o, Δ, ψ, q) of the train kernel at ε = 0.
      theta_star, T_star, S_star: (M,) test-train kernel at ε = 0 and its sensitivities.
      S_o, T_o: off-diagonal train sensitivities at the pure-noise point; S_d: diagonal.
      class_term: (M, C) the class-dependent part (N/(CΔ)) T_* ΔE_i[⟨x*, x_α⟩] for balanced
        classes (general: T_* Σ_α ⟨x*, x_α⟩ A_αi with A = K0⁻¹Y).
    """

    f0: np.ndarray
    f1: np.ndarray
    pure: PureNoise
    theta_star: np.ndarray
    T_star: np.ndarray
    S_star: np.ndarray
    T_o: float
    S_o: float
    S_d: float
    class_term: np.ndarray


def first_order(arch, noise, x_train, y_train, x_test, *, kernel: str = "ntk", diag_reg: float = 0.0,
                num_classes: int | None = None, quad_order: int = SERIES_QUAD_ORDER) -> FirstOrder:
    """Closed-form first-order expansion f̄ = f0 + ε f1 + O(ε²) (cost O((N + M) d C), no N × N array).

    With A = K0⁻¹Y = (Y − q N_i/N)/Δ (Sherman–Morrison), ġ the ε-coefficients of the
    overlaps (ġ_αα diagonal, ġ_αβ = μ(x̄_α + x̄_β) − 2μ² off-diagonal,
    ġ*_α = ⟨x*, x_α⟩ − μ x̄*):
      f0_i = θ_* ψ N_i / N,
      f1 = w A,  w_α = T_* ġ*_α + S_* ġ_αα − θ_*/(Δ + N θ_o) c_α,
      c_β = (K1 1)_β = (S_d + (N−2) S_o) ġ_ββ + S_o Σ_α ġ_αα + T_o [μ((N−2) x̄_β + Σ_α x̄_α) − 2(N−1)μ²].
    The sensitivities come from the forward transfer recursion (:func:`transfer`,
    Price's theorem), not from autodiff; ``taylor(order=1)`` computes the same
    expansion with autodiff sensitivities.
    """
    reg = _check_diag_reg(diag_reg)
    t = _first_order_inputs(noise, x_train, x_test)
    y = _targets(y_train, t.n, num_classes)
    off = transfer(arch, t.mu2, t.mu * t.mu, t.mu2, kernel=kernel, quad_order=quad_order)
    fd, sd = transfer_diag(arch, t.mu2, kernel=kernel, quad_order=quad_order)
    ts = transfer(arch, t.test_sq, t.mu * t.test_xbar, np.full_like(t.test_sq, t.mu2), kernel=kernel, quad_order=quad_order)
    sens = _Sensitivities(theta_d=float(fd) + reg, theta_o=float(off.value), S_o=float(off.S), T_o=float(off.T),
                          S_d=float(sd), theta_star=np.asarray(ts.value, np.float64),
                          T_star=np.asarray(ts.T, np.float64), S_star=np.asarray(ts.S, np.float64))
    return _assemble_first_order(t, y, sens)


@dataclasses.dataclass(frozen=True)
class _FirstOrderInputs:
    """The O((N + M) d) data summaries the first order needs (float64)."""

    x: np.ndarray  # (N, d) clean training inputs
    xt: np.ndarray  # (M, d) test inputs
    xbar: np.ndarray  # (N,) feature means x̄_α
    gdd: np.ndarray  # (N,) ε-coefficient of the diagonal overlap E⟨x̃_α, x̃_α⟩
    test_sq: np.ndarray  # (M,) ⟨x*, x*⟩
    test_xbar: np.ndarray  # (M,) x̄*
    mu: float
    mu2: float

    @property
    def n(self) -> int:
        return self.x.shape[0]


def _first_order_inputs(noise, x_train, x_test) -> _FirstOrderInputs:
    kind = _kind(noise)
    x = np.asarray(check_matrix("x_train", x_train), dtype=np.float64)
    xt = np.asarray(check_matrix("x_test", x_test), dtype=np.float64)
    d = x.shape[1]
    if xt.shape[1] != d:
        raise ValueError(f"x_test has {xt.shape[1]} features but x_train has {d}; they must match")
    mu, mu2 = (float(m) for m in noise.moments)
    xbar = x.mean(axis=1)
    sq = np.einsum("nd,nd->n", x, x) / d
    gdd = sq - mu2 if kind == "replacement" else 2 * mu * xbar - 2 * mu2  # as overlap_poly's train_diag[1]
    return _FirstOrderInputs(x, xt, xbar, gdd, np.einsum("md,md->m", xt, xt) / d, xt.mean(axis=1), mu, mu2)


@dataclasses.dataclass(frozen=True)
class _Sensitivities:
    """Kernel values and first derivatives at the pure-noise points (see :class:`FirstOrder`)."""

    theta_d: float  # ridge included
    theta_o: float
    S_o: float
    T_o: float
    S_d: float
    theta_star: np.ndarray  # (M,)
    T_star: np.ndarray
    S_star: np.ndarray


def _assemble_first_order(t: _FirstOrderInputs, y: np.ndarray, sens: _Sensitivities) -> FirstOrder:
    """f0, f1 from the sensitivities through the exchangeable structure, O((N + M) d C)."""
    n, d = t.x.shape
    pure = PureNoise(sens.theta_d, sens.theta_o, n)
    if not pure.delta > 0:
        raise ValueError(f"the pure-noise kernel has Δ = θ_d − θ_o = {pure.delta} <= 0: K(ε=0) is singular; add diag_reg")
    so, to, sd, mu = sens.S_o, sens.T_o, sens.S_d, t.mu
    a_mat = (y - pure.q * y.sum(axis=0)[None, :] / n) / pure.delta  # (N, C)
    a_sum = a_mat.sum(axis=0)
    c = (sd + (n - 2) * so) * t.gdd + so * t.gdd.sum() + to * (mu * ((n - 2) * t.xbar + t.xbar.sum()) - 2 * (n - 1) * mu * mu)
    xs_a = t.xt @ (t.x.T @ a_mat) / d  # (M, C): Σ_α ⟨x*, x_α⟩ A_αi
    gstar_a = xs_a - mu * t.test_xbar[:, None] * a_sum[None, :]  # Σ_α ġ*_α A_αi
    coef = sens.theta_star / (pure.delta + n * pure.theta_o)
    f1 = (sens.T_star[:, None] * gstar_a + sens.S_star[:, None] * (t.gdd @ a_mat)[None, :]
          - coef[:, None] * (c @ a_mat)[None, :])
    f0 = sens.theta_star[:, None] * a_sum[None, :]
    return FirstOrder(f0, f1, pure, sens.theta_star, sens.T_star, sens.S_star, to, so, sd, sens.T_star[:, None] * xs_a)


def _first_order_autodiff(arch, noise, x_train, y, x_test, *, kernel: str, diag_reg: float, quad_order: int,
                          test_chunk: int = 1024) -> FirstOrder:
    """:func:`first_order` with the sensitivities from ``jax.jacfwd`` of the kernel recursion."""
    _check_arch(arch, kernel)
    reg = _check_diag_reg(diag_reg)
    t = _first_order_inputs(noise, x_train, x_test)
    dt = jnp.result_type(float)
    moments = jnp.asarray([t.mu, t.mu2], dt)
    static = (arch.act, kernel, quad_order)
    (th_o, g_o), (fd, gd) = _pure_noise_grads_jit(*static, *_hyper(arch), moments)
    parts = [_test_grads_jit(*static, *_hyper(arch), moments, jnp.asarray(t.test_sq[i:i + test_chunk], dt),
                             jnp.asarray(t.test_xbar[i:i + test_chunk], dt))
             for i in range(0, t.test_sq.shape[0], max(1, int(test_chunk)))]
    th_s, g_s = (np.concatenate([np.asarray(p[j], np.float64) for p in parts]) for j in range(2))
    sens = _Sensitivities(theta_d=float(fd) + reg, theta_o=float(th_o), S_o=float(g_o[0]), T_o=float(g_o[1]),
                          S_d=float(gd[0]), theta_star=th_s, T_star=g_s[:, 1], S_star=g_s[:, 2])
    return _assemble_first_order(t, y, sens)


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _pure_noise_grads_jit(act, kernel, quad_order, depth, hyper, moments):
    mu, mu2 = moments[0], moments[1]
    pair = _pair_fn(act, kernel, depth, hyper, quad_order)
    off = _derivative_tensors(pair, jnp.stack([mu2, mu * mu, mu2]), 1)
    diag = _derivative_tensors(lambda g: _diag_kernel(act, kernel, depth, hyper, g[0], quad_order), jnp.stack([mu2]), 1)
    return off, diag


@functools.partial(jax.jit, static_argnums=(0, 1, 2))
def _test_grads_jit(act, kernel, quad_order, depth, hyper, moments, test_sq, test_xbar):
    mu, mu2 = moments[0], moments[1]
    pair = _pair_fn(act, kernel, depth, hyper, quad_order)
    bases = jnp.stack([test_sq, mu * test_xbar, jnp.full_like(test_sq, mu2)], axis=1)  # (M, 3)
    return jax.vmap(lambda b: _derivative_tensors(pair, b, 1))(bases)


# ---------------------------------------------------------------------------
# Sign sweep of the leading-order rule
# ---------------------------------------------------------------------------


def transfer_signs(
    activations=("erf", "tanh", "gelu", "swish", "sin", "relu"),
    depths=range(1, 9),
    W_stds=(0.5, 1.0, 1.5),
    b_stds=(0.0, 0.5),
    noises=((0.0, 1.0),),
    *,
    test_norm: float = 1.0,
    kernel: str = "ntk",
    quad_order: int = SERIES_QUAD_ORDER,
) -> list[dict]:
    """T_* and Δ on a grid: the leading-order rule is argmax ⟨x*, μ_i⟩ iff T_*/Δ > 0.

    For normalised data (x̄ = 0) the pure-noise point depends on the noise only
    through μ₂ (= E⟨x̃, x̃⟩ at ε = 0) and μ² (off-diagonal overlap): ``noises`` is a
    sequence of (μ, μ₂) pairs. The test-train pair is (test_norm, μ x̄* = 0, μ₂).

    Returns:
      one dict per grid point: activation, depth, W_std, b_std, mu, mu2, T_star,
      Delta, ok (T_* > 0 and Δ > 0).
    """
    from nwcorrupt.arch import MLP

    rows = []
    for act in activations:
        for w in W_stds:
            for b in b_stds:
                for mu, mu2 in noises:
                    for L in depths:
                        arch = MLP(int(L), act, W_std=float(w), b_std=float(b))
                        ts = transfer(arch, test_norm, 0.0, mu2, kernel=kernel, quad_order=quad_order)
                        off = transfer(arch, mu2, mu * mu, mu2, kernel=kernel, quad_order=quad_order)
                        fd, _ = transfer_diag(arch, mu2, kernel=kernel, quad_order=quad_order)
                        t, dl = float(ts.T), float(fd) - float(off.value)
                        rows.append(dict(activation=act, depth=int(L), W_std=float(w), b_std=float(b), mu=float(mu),
                                         mu2=float(mu2), T_star=t, Delta=dl, ok=bool(t > 0 and dl > 0)))
    return rows
