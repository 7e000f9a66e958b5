"""Shared pytest configuration.

Tests that need float64 use the ``x64`` fixture, which enables 64-bit mode for
that test only (the library never flips it on import).
"""

from __future__ import annotations

import pytest

from nwcorrupt import precision


@pytest.fixture
def x64():
    with precision.x64(True):
        yield


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_code():
    """Drop jax's compilation caches after each test module.

    Every XLA:CPU executable maps its machine code into its own memory regions;
    a whole-suite run compiles thousands of functions, and without this the
    process exceeds the kernel's limit on mapped regions (vm.max_map_count,
    65530 by default) and the CPU compiler aborts or segfaults near the end.
    """
    yield
    import jax

    jax.clear_caches()
