"""Package-level behaviour: lazy submodules, no side effects, validation inside jit."""

from __future__ import annotations

import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from nwcorrupt import _checks


def test_every_submodule_is_reachable_lazily_without_flipping_x64():
    code = (
        "import importlib, jax, nwcorrupt\n"
        "for name in nwcorrupt._SUBMODULES:\n"
        "    importlib.util.find_spec('nwcorrupt.' + name) is not None or print('missing', name)\n"
        "import nwcorrupt.kernels\n"
        "assert nwcorrupt.predict.__name__ == 'nwcorrupt.predict'\n"
        "assert nwcorrupt.theory.__name__ == 'nwcorrupt.theory'\n"
        "assert not jax.config.read('jax_enable_x64')\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "ok"


def test_check_array_works_on_traced_values():
    @jax.jit
    def f(x):
        _checks.check_array("x", x, ndim=2)
        _checks.check_matrix("x", x)
        return x * 2

    assert float(f(jnp.ones((2, 3))).sum()) == 12.0
    with pytest.raises(ValueError, match="x must be 2-dimensional"):
        jax.jit(lambda x: _checks.check_array("x", x, ndim=2))(jnp.ones(3))
