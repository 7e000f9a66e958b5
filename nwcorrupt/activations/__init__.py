"""Registry of activation functions and their dual kernels.

Each :class:`Activation` carries the elementwise function, its derivatives (by
autodiff) and, where one is known, a closed form of its *dual kernels*

    E[σ^(a)(u) σ^(b)(v)],   (u, v) ~ N(0, [[k11, k12], [k12, k22]]),

the Gaussian expectations that drive the infinite-width NNGP/NTK recursions
(a = b = 0 gives ⟨σσ⟩, a = b = 1 gives ⟨σ'σ'⟩; the perturbative theory also
needs a, b ≤ 3). :func:`dual` evaluates them elementwise over arrays,
:func:`duals` several orders in one pass, :func:`dual_pair` returns
(⟨σσ⟩, ⟨σ'σ'⟩), :func:`dual_diag` is the special case u = v
(k11 = k12 = k22 = q) and :func:`has_closed_form` says which method is used.

Closed forms (exact up to rounding):

* ``identity``: every order.
* ``erf``: arcsin formula for ⟨σσ⟩; ⟨σ'σ'⟩ = (4/π) D^{-1/2},
  ⟨σ''σ''⟩ = (16/π) k12 D^{-3/2}, ⟨σ'''σ'''⟩ = (16/π)(D^{-3/2} + 12 k12² D^{-5/2}) with
  D = (1 + 2k11)(1 + 2k22) − 4k12²; mixed orders by Price's theorem (below).
* ``gelu`` (exact erf GELU, x Φ(x)): closed forms for ⟨σσ⟩, ⟨σ'σ'⟩ and
  E[σ'(u)σ(v)] derived with Stein's lemma (see ``docs/kernels.md``); every
  other order by Price's theorem. ``gelu(tanh)`` uses quadrature.
* ``relu``, ``leaky_relu(α)``, ``abs``: arc-cosine kernels of orders 0 and 1
  (abs and leaky ReLU are α·identity + (1 − α)·relu). Their second derivative is
  a Dirac delta, so any order ≥ 2 raises ``ValueError``.
* ``sin``: E[sin(u + aπ/2) sin(v + bπ/2)] =
  ½[e^{−(k11+k22−2k12)/2} cos((a−b)π/2) − e^{−(k11+k22+2k12)/2} cos((a+b)π/2)].

Price's theorem: ∂/∂k12 E[f(u)g(v)] = E[f'(u)g'(v)] and
∂/∂k11 E[f(u)g(v)] = ½ E[f''(u)g(v)], so mixed orders follow from ⟨σσ⟩ (and
E[σ'σ]) by forward-mode autodiff of the closed forms.

Everything else (``tanh``, ``swish``/``silu``, ``softplus``, ``sigmoid``,
``gelu(tanh)``, user-registered functions) uses a 2-D Gauss–Hermite product rule
of ``order`` nodes per dimension after the change of variables
(u, v) = Σ^{1/2} z with the *symmetric* square root Σ^{1/2} = (Σ + sI)/t,
s = √det Σ, t = √(k11 + k22 + 2s) (ρ = k12/√(k11 k22) clipped to [−1, 1]). It
stays stable as |ρ| → 1 and as k11 or k22 → 0, is exactly symmetric under
exchanging u and v (so kernels stay symmetric) and, near |ρ| = 1, is far more
accurate than a Cholesky factor. Measured float64 errors (max over ρ ∈ [−1, 1]):

* erf, gelu, sin vs their closed forms, all orders a, b ≤ 3, variances ≤ 1:
  order 32: ≤ 1e-8 (erf; its derivatives are narrow Gaussian bumps),
  ≤ 1e-13 (gelu, sin); order 64: ≤ 1e-11.
* tanh-like (tanh, sigmoid, swish, softplus), variances ≤ 1: order 32 ~1e-7
  (⟨σσ⟩) and ~2e-6 (⟨σ'σ'⟩), order 64 ≲ 2e-9. Convergence is geometric but
  slows with the variance (poles of tanh at ±iπ/2): at variance 4, order 64
  gives ~4e-5 (table in docs/kernels.md).
* relu family (closed forms are used; quadrature only on request): the kink
  limits convergence to ~1/order for ⟨σσ⟩ (2e-3 at order 64), and the step
  function ⟨σ'σ'⟩ stalls at 1e-2–1e-1 near |ρ| = 1.

The cost is 2·order² evaluations of σ^(a) per entry (nested ``lax.scan``, so
the memory is a few arrays of the output's size). In float32 expect ~1e-7
relative error for the closed forms and ~1e-6 for quadrature.

Use :func:`get` to look an activation up by name (``"relu"``, ``"erf"``, ...),
and :func:`register` to add a new one from any elementwise ``jnp`` function
(its dual kernels then come from quadrature unless you pass a closed form).

Layout: :mod:`~nwcorrupt.activations.registry` (the registry), :mod:`~nwcorrupt.activations.duals`
(evaluating dual kernels), :mod:`~nwcorrupt.activations.closed_forms`,
:mod:`~nwcorrupt.activations.quadrature`, :mod:`~nwcorrupt.activations.numerics` and
:mod:`~nwcorrupt.activations.builtin` (the built-in activations, registered when this package
loads); every public name is importable from ``nwcorrupt.activations``.
"""

from __future__ import annotations

from nwcorrupt.activations.builtin import register_builtins
from nwcorrupt.activations.duals import (
    dual,
    dual_diag,
    dual_pair,
    duals,
    duals_diag_unchecked,
    duals_unchecked,
    has_closed_form,
)
from nwcorrupt.activations.registry import (
    DEFAULT_ORDER,
    MAX_ORDER,
    METHODS,
    Activation,
    DiagFn,
    DualFn,
    LayerDuals,
    PairFn,
    PointFn,
    get,
    names,
    register,
)

__all__ = [
    "Activation",
    "LayerDuals",
    "DualFn",
    "DiagFn",
    "PointFn",
    "PairFn",
    "METHODS",
    "DEFAULT_ORDER",
    "MAX_ORDER",
    "register",
    "names",
    "get",
    "duals",
    "dual",
    "dual_pair",
    "dual_diag",
    "duals_unchecked",
    "duals_diag_unchecked",
    "has_closed_form",
]

register_builtins()
