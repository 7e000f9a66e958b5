"""nwcorrupt's native kernels and predictors against neural-tangents (the oracle).

Both libraries run in one process (the reference environment, jax 0.5.3). Cases
are drawn at random from a seed that changes every run (printed in the report
header and in every failure message; replay with ``ORACLE_SEED=<seed>``):

* architecture: depth 1-6, every activation that both libraries support (leaky
  ReLU with a random slope), both parameterisations, W_std ~ U[0.5, 2],
  b_std ~ U[0, 1] (exactly 0 in a quarter of the cases), hidden width
  log-uniform in [1, 4096] for the standard parameterisation;
* inputs: d ~ U{3..50}, N1, N2 ~ U{2..20}, Gaussian rows rescaled to random
  norms ⟨x, x⟩ ∈ [0.3, 3]; x2 = None (symmetric kernel) in a third of the cases.

Tolerances (float64): kernels 1e-10 and predictors 1e-6, both relative to the
largest absolute entry of the neural-tangents result (max-norm relative error).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import pytest

from nwcorrupt import activations, nt_backend
from nwcorrupt import kernels as nk
from nwcorrupt.kernels import MLP

#: Drawn by conftest.py (fresh each run) unless ORACLE_SEED was set by the caller.
SEED = int(os.environ["ORACLE_SEED"])

KERNEL_RTOL = 1e-10
PREDICT_RTOL = 1e-6

ACTIVATIONS = ("relu", "leaky_relu", "abs", "erf", "gelu", "sin", "identity")
PARAMETERIZATIONS = ("ntk", "standard")
CASES_PER_COMBINATION = 2

@dataclasses.dataclass(frozen=True)
class Case:
    arch: MLP
    x1: np.ndarray
    x2: np.ndarray | None
    label: str

    def __str__(self) -> str:  # shown in assertion messages
        return self.label


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([SEED, *key])


def _activation(name: str, rng: np.random.Generator):
    if name == "leaky_relu":
        return activations.get("leaky_relu", alpha=float(rng.uniform(0.01, 0.5)))
    return name


def _draw_arch(rng: np.random.Generator, activation: str, parameterization: str, max_depth: int = 6) -> MLP:
    b_std = 0.0 if rng.random() < 0.25 else float(rng.uniform(0.0, 1.0))
    # the standard-parameterisation NTK needs the hidden width (log-uniform in [1, 4096])
    width = int(round(2 ** rng.uniform(0, 12))) if parameterization == "standard" else None
    return MLP(
        depth=int(rng.integers(1, max_depth + 1)),
        activation=_activation(activation, rng),
        W_std=float(rng.uniform(0.5, 2.0)),
        b_std=b_std,
        parameterization=parameterization,
        width=width,
    )


def _draw_inputs(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.normal(size=(n, d))
    x /= np.sqrt(np.mean(x**2, axis=1, keepdims=True))  # <x, x> = 1
    return x * np.sqrt(rng.uniform(0.3, 3.0, size=(n, 1)))  # <x, x> in [0.3, 3]


def _draw_case(key: tuple[int, ...], activation: str, parameterization: str) -> Case:
    rng = _rng(*key)
    arch = _draw_arch(rng, activation, parameterization)
    d = int(rng.integers(3, 51))
    x1 = _draw_inputs(rng, int(rng.integers(2, 21)), d)
    x2 = None if rng.random() < 1 / 3 else _draw_inputs(rng, int(rng.integers(2, 21)), d)
    shape2 = "None" if x2 is None else x2.shape
    label = f"ORACLE_SEED={SEED} key={key}: {arch}, x1 {x1.shape}, x2 {shape2}"
    return Case(arch, x1, x2, label)


def _rel_err(got, want) -> float:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != {want.shape}"
    scale = np.max(np.abs(want))
    return float(np.max(np.abs(got - want)) / scale) if scale > 0 else float(np.max(np.abs(got)))


#: Slope α of the piecewise-linear activations σ(u) = max(u, 0) + α min(u, 0).
_PIECEWISE_LINEAR = {"relu": 0.0, "abs": -1.0, "identity": 1.0}


def _piecewise_alpha(arch: MLP) -> float | None:
    act = arch.act
    base = act.name.split("(", 1)[0]
    if base == "leaky_relu":
        return float(dict(act.params)["alpha"])
    return _PIECEWISE_LINEAR.get(base)


def _exact_diag(arch: MLP, x: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Exact NNGP/NTK diagonals for σ(u) = max(u,0) + α min(u,0): E[σ(u)²] = (1+α²) q / 2 and
    E[σ'(u)²] = (1+α²) / 2 for u ~ N(0, q). Plain float64 numpy, independent of both libraries."""
    cw, cb = arch.W_std**2, arch.b_std**2
    g = np.sum(x**2, axis=1) / x.shape[1]
    standard = arch.parameterization == "standard"
    k = cb + cw * g
    theta = x.shape[1] * g + 1.0 if standard else k
    for _ in range(arch.depth - 1):
        ss, dd = (1 + alpha**2) * k / 2, (1 + alpha**2) / 2
        k = cb + cw * ss
        theta = (arch.width * ss + cw * dd * theta + 1.0) if standard else (k + cw * dd * theta)
    return k, theta


#: neural-tangents' relu-family NTK on the diagonal of a symmetric kernel carries the
#: rounding of ρ = 1 amplified by the arc-cosine's √(1 − ρ) singularity (~1e-8 relative
#: seen); those entries are checked against the exact diagonal instead, and against
#: neural-tangents only to this tolerance.
NT_RELU_DIAG_RTOL = 1e-6

_COMBOS = [(a, p) for a in ACTIVATIONS for p in PARAMETERIZATIONS]


@pytest.mark.parametrize("case_index", range(CASES_PER_COMBINATION))
@pytest.mark.parametrize("activation,parameterization", _COMBOS)
def test_kernels_match_neural_tangents(activation, parameterization, case_index):
    key = (0, _COMBOS.index((activation, parameterization)), case_index)
    case = _draw_case(key, activation, parameterization)
    native = nk.kernel(case.arch, case.x1, case.x2)
    ref = nt_backend.kernel(case.arch, case.x1, case.x2)
    assert np.asarray(native.nngp).dtype == np.float64
    alpha = _piecewise_alpha(case.arch)
    for name in ("nngp", "ntk"):
        got, want = np.asarray(getattr(native, name)), np.asarray(getattr(ref, name))
        if case.x2 is None and name == "ntk" and alpha is not None and alpha != 1.0:
            off = ~np.eye(got.shape[0], dtype=bool)
            scale = np.max(np.abs(want))
            err = float(np.max(np.abs(got - want)[off], initial=0.0) / scale)
            assert err < KERNEL_RTOL, f"{name} off-diagonal relative error {err:.2e} for {case}"
            exact = _exact_diag(case.arch, case.x1, alpha)[1]
            err = float(np.max(np.abs(np.diag(got) - exact)) / scale)
            assert err < KERNEL_RTOL, f"{name} diagonal vs exact: relative error {err:.2e} for {case}"
            err = float(np.max(np.abs(np.diag(got) - np.diag(want))) / scale)
            assert err < NT_RELU_DIAG_RTOL, f"{name} diagonal vs neural-tangents: {err:.2e} for {case}"
        else:
            err = _rel_err(got, want)
            assert err < KERNEL_RTOL, f"{name} relative error {err:.2e} for {case}"


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_kernel_diag_matches_neural_tangents(activation):
    key = (1, ACTIVATIONS.index(activation))
    rng = _rng(*key)
    arch = _draw_arch(rng, activation, str(rng.choice(PARAMETERIZATIONS)))
    x = _draw_inputs(rng, int(rng.integers(2, 21)), int(rng.integers(3, 51)))
    ref = nt_backend.kernel(arch, x)
    diag = nk.kernel_diag(arch, x)
    alpha = _piecewise_alpha(arch)
    label = f"ORACLE_SEED={SEED} key={key}, {arch}"
    for i, name in enumerate(("nngp", "ntk")):
        want = np.diag(np.asarray(getattr(ref, name)))
        got = np.asarray(getattr(diag, name))
        tol = NT_RELU_DIAG_RTOL if (name == "ntk" and alpha is not None and alpha != 1.0) else KERNEL_RTOL
        err = _rel_err(got, want)
        assert err < tol, f"{name} diagonal vs neural-tangents: {err:.2e}, {label}"
        if alpha is not None:
            err = _rel_err(got, _exact_diag(arch, x, alpha)[i])
            assert err < KERNEL_RTOL, f"{name} diagonal vs exact: {err:.2e}, {label}"


def test_backend_neural_tangents_dispatches_to_the_adapter():
    rng = _rng(2)
    arch = _draw_arch(rng, "erf", "ntk")
    x1, x2 = _draw_inputs(rng, 5, 8), _draw_inputs(rng, 3, 8)
    via_kernels = nk.kernel(arch, x1, x2, backend="neural_tangents")
    direct = nt_backend.kernel(arch, x1, x2)
    np.testing.assert_array_equal(np.asarray(via_kernels.ntk), np.asarray(direct.ntk))
    np.testing.assert_array_equal(np.asarray(via_kernels.nngp), np.asarray(direct.nngp))
    only = nk.kernel(arch, x1, x2, get="nngp", backend="neural_tangents")
    assert only.ntk is None


# ------------------------------------------------------------------------- predictors


def _draw_problem(key: tuple[int, ...], activation: str):
    rng = _rng(*key)
    arch = _draw_arch(rng, activation, str(rng.choice(PARAMETERIZATIONS)), max_depth=5)
    d = int(rng.integers(3, 51))
    n, m, c = int(rng.integers(4, 21)), int(rng.integers(2, 11)), int(rng.integers(2, 6))
    x_train, x_test = _draw_inputs(rng, n, d), _draw_inputs(rng, m, d)
    y_train = np.eye(c)[rng.integers(0, c, size=n)]
    return rng, arch, x_train, y_train, x_test


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_predictors_match_neural_tangents(activation):
    """NTK at t = ∞ and at a finite t, and the NNGP posterior mean, on one drawn problem."""
    from nwcorrupt import predict

    key = (3, ACTIVATIONS.index(activation))
    rng, arch, x_train, y_train, x_test = _draw_problem(key, activation)
    label = f"ORACLE_SEED={SEED} key={key}: {arch}, N={x_train.shape[0]}, d={x_train.shape[1]}"

    reg = float(10 ** rng.uniform(-4, -1))
    native = predict.ntk_predict(arch, x_train, y_train, x_test, diag_reg=reg)
    ref = nt_backend.ntk_predict(arch, x_train, y_train, x_test, diag_reg=reg)
    err = _rel_err(native, ref)
    assert err < PREDICT_RTOL, f"NTK t=inf diag_reg={reg:.3g}: relative error {err:.2e} for {label}"

    reg = 0.0 if rng.random() < 0.5 else float(10 ** rng.uniform(-4, -1))
    t = float(10 ** rng.uniform(-1, 3))
    native = predict.ntk_predict(arch, x_train, y_train, x_test, t=t, diag_reg=reg)
    ref = nt_backend.ntk_predict(arch, x_train, y_train, x_test, t=t, diag_reg=reg)
    err = _rel_err(native, ref)
    assert err < PREDICT_RTOL, f"NTK t={t:.3g} diag_reg={reg:.3g}: relative error {err:.2e} for {label}"

    reg = float(10 ** rng.uniform(-4, -1))
    native = predict.nngp_predict(arch, x_train, y_train, x_test, diag_reg=reg)
    ref = nt_backend.nngp_predict(arch, x_train, y_train, x_test, diag_reg=reg)
    err = _rel_err(native, ref)
    assert err < PREDICT_RTOL, f"NNGP diag_reg={reg:.3g}: relative error {err:.2e} for {label}"
