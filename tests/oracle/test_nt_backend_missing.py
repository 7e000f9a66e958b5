"""The neural-tangents adapter fails with install instructions when neural_tangents is absent.

Runs in every environment: the missing package is simulated with ``sys.modules``.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from nwcorrupt import nt_backend
from nwcorrupt.kernels import MLP


@pytest.fixture
def no_neural_tangents(monkeypatch):
    # A None entry in sys.modules makes `import neural_tangents` raise ImportError.
    for name in list(sys.modules):
        if name == "neural_tangents" or name.startswith("neural_tangents."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "neural_tangents", None)
    nt_backend._stax_mlp_cached.cache_clear()
    nt_backend._jitted_kernel_fn.cache_clear()
    yield
    nt_backend._stax_mlp_cached.cache_clear()
    nt_backend._jitted_kernel_fn.cache_clear()


def test_import_error_points_to_ref_env(no_neural_tangents):
    with pytest.raises(ImportError, match=r"scripts/ref_env\.sh"):
        nt_backend.import_neural_tangents()


@pytest.mark.parametrize("call", ["stax_mlp", "kernel", "ntk_predict", "nngp_predict"])
def test_every_entry_point_raises_import_error(no_neural_tangents, call):
    arch = MLP(depth=2, activation="relu")
    x = np.ones((3, 4))
    y = np.eye(3)
    with pytest.raises(ImportError, match="neural_tangents is not installed"):
        if call == "stax_mlp":
            nt_backend.stax_mlp(arch)
        elif call == "kernel":
            nt_backend.kernel(arch, x)
        elif call == "ntk_predict":
            nt_backend.ntk_predict(arch, x, y, x)
        else:
            nt_backend.nngp_predict(arch, x, y, x)
