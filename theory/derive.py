"""Symbolic derivation of the leading-order (pure-noise) expansion of the mean-field predictor.

Run:  python theory/derive.py
Writes theory/derived.json (SymPy srepr strings + LaTeX) and the block between the
DERIVED markers of docs/theory.md. Every identity used below is checked by SymPy
(``_assert_zero``) before anything is written; tests lambdify the stored expressions.

Steps
1. Sherman–Morrison: K0 = Δ I + θ_o 11ᵀ has inverse a I + b 11ᵀ; solve for a, b with 1ᵀ1 = N.
2. Zeroth order f0_i = θ_* 1ᵀ K0⁻¹ Y_i.
3. First order f1 = k1ᵀ A − θ_* 1ᵀ K0⁻¹ K1 A (A = K0⁻¹ Y), with K1 built from the overlap
   coefficients: K1_αβ = S_o (ġ_α + ġ_β) + T_o (μ(x̄_α + x̄_β) − 2μ²) (α ≠ β), K1_αα = S_d ġ_α,
   k1_α = T_* h_α + S_* ġ_α (h_α = ⟨x*, x_α⟩ − μ x̄*). The structured formula (column sums c_β)
   is checked against explicit matrices for N = 3..6.
4. Transfer coefficient: the layer recursion a ← C_w D a, b ← C_w D a + C_w (D b + Θ E a) is
   unrolled symbolically and compared with the product formula C_w^L [P + Σ (D + ΘE) P P].
5. Leading-order rule for balanced classes.
"""

from __future__ import annotations

import json
import pathlib

import sympy as sp

ROOT = pathlib.Path(__file__).resolve().parents[1]

N, Delta, theta_o, theta_s = sp.symbols("N Delta theta_o theta_star", positive=True)
N_i, C = sp.symbols("N_i C", positive=True)
S_o, T_o, S_d, T_s, S_s, mu = sp.symbols("S_o T_o S_d T_star S_star mu", real=True)
Cw = sp.Symbol("C_w", positive=True)


def _assert_zero(expr, what: str) -> None:
    if sp.simplify(expr) != 0:
        raise AssertionError(f"symbolic check failed: {what}: {sp.simplify(expr)}")


def sherman_morrison():
    a, b = sp.symbols("a b")
    # (Δ I + θ_o 11ᵀ)(a I + b 11ᵀ) = Δ a I + (Δ b + θ_o a + N θ_o b) 11ᵀ  must equal I
    sol = sp.solve([Delta * a - 1, Delta * b + theta_o * a + N * theta_o * b], [a, b], dict=True)[0]
    for n in (2, 3, 5):
        k0 = Delta * sp.eye(n) + theta_o * sp.ones(n, n)
        inv = (sol[a] * sp.eye(n) + sol[b] * sp.ones(n, n)).subs(N, n)
        _assert_zero(sp.Matrix(k0 * inv - sp.eye(n)).norm(1), f"Sherman–Morrison N={n}")
    return sp.simplify(sol[a]), sp.simplify(sol[b])


def zeroth_order(a, b):
    # 1ᵀ K0⁻¹ Y_i = (a + b N) N_i
    f0 = sp.simplify(theta_s * (a + b * N) * N_i)
    psi = N / (Delta + N * theta_o)
    _assert_zero(f0 - theta_s * psi * N_i / N, "f0 = θ_* ψ N_i / N")
    return f0, psi


def first_order_structured(n, a, b, gdot, xbar, h, y):
    """The structured (O(N)) first-order formula of nwcorrupt.theory.first_order."""
    one_k = (a + b * n)  # 1ᵀ K0⁻¹ = (a + b N) 1ᵀ
    ssum, msum = sum(gdot), sum(xbar)
    c = [(S_d + (n - 2) * S_o) * gdot[k] + S_o * ssum + T_o * (mu * ((n - 2) * xbar[k] + msum) - 2 * (n - 1) * mu**2)
         for k in range(n)]
    w = [T_s * h[k] + S_s * gdot[k] - theta_s * one_k * c[k] for k in range(n)]
    A = (a * sp.eye(n) + b * sp.ones(n, n)) * y
    return sp.Matrix([w]) * A, c, w


def first_order_explicit(n, a, b, gdot, xbar, h, y):
    k1 = sp.zeros(n, n)
    for i in range(n):
        for j in range(n):
            k1[i, j] = S_d * gdot[i] if i == j else S_o * (gdot[i] + gdot[j]) + T_o * (mu * (xbar[i] + xbar[j]) - 2 * mu**2)
    kin = a * sp.eye(n) + b * sp.ones(n, n)
    kstar1 = sp.Matrix([[T_s * h[k] + S_s * gdot[k] for k in range(n)]])
    kstar0 = theta_s * sp.ones(1, n)
    A = kin * y
    return kstar1 * A - kstar0 * kin * k1 * A


def check_first_order(a, b):
    for n in (3, 4, 6):
        gdot = sp.symbols(f"gd0:{n}")
        xbar = sp.symbols(f"xb0:{n}")
        h = sp.symbols(f"h0:{n}")
        y = sp.Matrix(n, 2, lambda i, j: sp.Symbol(f"y{i}_{j}"))
        s, _, _ = first_order_structured(n, a.subs(N, n), b.subs(N, n), gdot, xbar, h, y)
        e = first_order_explicit(n, a.subs(N, n), b.subs(N, n), gdot, xbar, h, y)
        for j in range(2):
            _assert_zero(sp.expand(s[0, j] - e[0, j]), f"first order N={n} class {j}")


def transfer_recursion(L):
    """T_* (NTK) from the layer recursion vs the product formula (docs/science.md#transfer-coefficients), per-layer symbols."""
    D = sp.symbols(f"D1:{L}")
    E = sp.symbols(f"E1:{L}")
    Th = sp.symbols(f"Theta1:{L}")
    a = b = Cw
    for i in range(L - 1):
        a, b = Cw * D[i] * a, Cw * D[i] * a + Cw * (D[i] * b + Th[i] * E[i] * a)

    def P(lo, hi):  # Π_{i=lo}^{hi-1} D_i  (1-based layers)
        return sp.Mul(*[D[i - 1] for i in range(lo, hi)])

    science = Cw**L * (P(1, L) + sum((D[i - 1] + Th[i - 1] * E[i - 1]) * P(1, i) * P(i + 1, L) for i in range(1, L)))
    _assert_zero(sp.expand(b - science), f"T^(1→{L}) formula")
    return sp.expand(b), sp.expand(a)


def leading_rule():
    # balanced classes, normalised data, μ = 0: A = (Y − q/C)/Δ, the class part of f1 is T_* Σ_α h_α A_αi
    q = theta_o * N / (Delta + N * theta_o)
    hbar_i, hbar = sp.symbols("hbar_i hbar")  # (C/N) Σ_{α∈i} h_α = ⟨x*, μ_i⟩ and (1/N) Σ_α h_α
    class_part = T_s * (N / C * hbar_i - q / C * N * hbar) / Delta
    return sp.simplify(class_part), q


def main() -> None:
    a, b = sherman_morrison()
    f0, psi = zeroth_order(a, b)
    check_first_order(a, b)
    gd, xb, h, yy = sp.symbols("gd xb h y")
    transfers = {L: transfer_recursion(L) for L in range(1, 6)}
    class_part, q = leading_rule()
    # per-entry generic forms (for lambdify): column sum c_β and weight w_α with sums as symbols
    ssum, msum = sp.symbols("sum_gd sum_xb")
    c_beta = (S_d + (N - 2) * S_o) * gd + S_o * ssum + T_o * (mu * ((N - 2) * xb + msum) - 2 * (N - 1) * mu**2)
    w_alpha = T_s * h + S_s * gd - theta_s * sp.simplify(a + b * N) * sp.Symbol("c")
    out = {
        "K0inv_a": sp.srepr(a), "K0inv_b": sp.srepr(b),
        "f0": sp.srepr(f0), "psi": sp.srepr(psi), "q": sp.srepr(q),
        "c_beta": sp.srepr(c_beta), "w_alpha": sp.srepr(w_alpha),
        "A": sp.srepr((yy - q * N_i / N) / Delta),
        "class_part_balanced": sp.srepr(class_part),
        "T_ntk": {str(L): sp.srepr(v[0]) for L, v in transfers.items()},
        "T_nngp": {str(L): sp.srepr(v[1]) for L, v in transfers.items()},
        "latex": {
            "K0inv": sp.latex(a) + r"\,I - " + sp.latex(-b) + r"\,\mathbf{1}\mathbf{1}^\top",
            "f0": sp.latex(f0), "c_beta": sp.latex(c_beta), "w_alpha": sp.latex(w_alpha),
            "class_part": sp.latex(class_part), "T3": sp.latex(transfers[3][0]),
        },
        "verified": ["Sherman–Morrison N=2,3,5", "f0 = θ_* ψ N_i/N", "structured first order = explicit matrices N=3,4,6",
                     "T_* recursion = product formula C_w^L T^{1→L}, L=1..5"],
    }
    (ROOT / "theory" / "derived.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n")
    lx = out["latex"]
    block = "\n".join([
        "<!-- BEGIN DERIVED (generated by theory/derive.py; do not edit by hand) -->",
        "$$K_0^{-1} = " + lx["K0inv"] + "$$",
        "$$\\bar f^{(0)}_i = " + lx["f0"] + "$$",
        "$$c_\\beta = (K_1\\mathbf 1)_\\beta = " + lx["c_beta"] + "$$",
        "$$w_\\alpha = " + lx["w_alpha"] + ",\\qquad \\bar f^{(1)}_i = \\sum_\\alpha w_\\alpha (K_0^{-1}Y)_{\\alpha i}$$",
        "$$\\text{class part (balanced, } \\mu = 0\\text{)} = " + lx["class_part"] + "$$",
        "$$T_*(L=3) = " + lx["T3"] + "$$",
        "Verified symbolically: " + "; ".join(out["verified"]) + ".",
        "<!-- END DERIVED -->",
    ])
    doc = ROOT / "docs" / "theory.md"
    text = doc.read_text() if doc.exists() else ""
    if "<!-- BEGIN DERIVED" in text:
        pre, rest = text.split("<!-- BEGIN DERIVED", 1)
        post = rest.split("<!-- END DERIVED -->", 1)[1]
        doc.write_text(pre + block + post)
    else:
        doc.write_text(text + "\n" + block + "\n")
    print("wrote theory/derived.json and the derived block of docs/theory.md")


if __name__ == "__main__":
    main()
