"""The SymPy-derived closed forms (theory/derived.json) against autodiff Taylor coefficients."""

from __future__ import annotations

import json
import pathlib

import numpy as np
import pytest
import sympy as sp

from nwcorrupt import corruption as C
from nwcorrupt import data, theory
from nwcorrupt.kernels import MLP

DERIVED = pathlib.Path(__file__).resolve().parents[1] / "theory" / "derived.json"


def _load():
    raw = json.loads(DERIVED.read_text())
    return {k: sp.sympify(v) if isinstance(v, str) and k not in ("verified",) else v for k, v in raw.items() if k != "latex"}


def _fn(expr):
    syms = sorted(expr.free_symbols, key=lambda s: s.name)
    f = sp.lambdify(syms, expr, "numpy")
    return lambda **kw: f(*[kw[s.name] for s in syms])


@pytest.mark.parametrize("act,noise", [("erf", C.Replacement("uniform", low=0.0, high=1.0)), ("gelu", C.Additive())])
def test_derived_expressions_reproduce_autodiff(x64, act, noise):
    d = _load()
    ds = data.load("digits", n_train=30, normalize="none")
    x, y, xt = ds.x_train.astype(np.float64), ds.y_train, ds.x_test[:4].astype(np.float64)
    arch = MLP(3, act, W_std=1.2, b_std=0.3)
    fo = theory.first_order(arch, noise, x, y, xt)  # only its scalars (θ's, S, T) are used
    co = theory.taylor(arch, noise, x, y, xt, order=1)
    poly = theory.overlap_poly(noise, x, xt)
    n, mu = x.shape[0], poly.mu
    gd, xb, h = poly.train_diag[1], x.mean(axis=1), poly.test_train[1]
    yy = np.eye(10)[y]
    common = dict(N=n, Delta=fo.pure.delta, theta_o=fo.pure.theta_o)
    a_mat = _fn(d["A"])(y=yy, N_i=yy.sum(0)[None, :], **common)
    c = _fn(d["c_beta"])(gd=gd, xb=xb, sum_gd=gd.sum(), sum_xb=xb.sum(), S_d=fo.S_d, S_o=fo.S_o, T_o=fo.T_o, mu=mu, N=n)
    w = _fn(d["w_alpha"])(
        T_star=fo.T_star[:, None], S_star=fo.S_star[:, None], theta_star=fo.theta_star[:, None], h=h, gd=gd[None, :],
        c=c[None, :], **common
    )
    f0 = _fn(d["f0"])(theta_star=fo.theta_star[:, None], N_i=yy.sum(0)[None, :], **common)
    np.testing.assert_allclose(f0, co[0], rtol=1e-10)
    np.testing.assert_allclose(w @ a_mat, co[1], rtol=0, atol=1e-9 * np.abs(co[1]).max())


def test_derived_transfer_polynomials_match_science_formula():
    d = _load()
    for L in range(1, 6):
        t = d["T_ntk"][str(L)]
        t = sp.sympify(t) if isinstance(t, str) else t
        # the NTK coefficient is C_w^L times a polynomial with L·(number of paths) structure: at D = 1, E = 0 it is L C_w^L
        subs = {s: (1 if s.name.startswith("D") else 0) for s in t.free_symbols if s.name != "C_w"}
        assert sp.simplify(t.subs(subs) - L * sp.Symbol("C_w", positive=True) ** L) == 0
