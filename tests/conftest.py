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
