"""The error raised for an invalid experiment configuration.

It lives in a module of its own so that the schema, the study registry and the
study modules can all raise it without importing one another.
"""

from __future__ import annotations

__all__ = ["ConfigError"]


class ConfigError(ValueError):
    """An experiment configuration is invalid; the message names the key and what was expected."""
