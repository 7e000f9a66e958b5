"""The errors and warnings of experiment configurations and results folders.

It lives in a module of its own so that the schema, the study registry and the
study modules can all raise it without importing one another.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DamagedFileError", "DamagedFileWarning"]


class ConfigError(ValueError):
    """An experiment configuration is invalid; the message names the key and what was expected."""


class DamagedFileError(ConfigError):
    """A file of a results folder does not parse or lacks what it must hold; it has been moved aside."""


class DamagedFileWarning(UserWarning):
    """A damaged file of a results folder was moved aside (and its point will be recomputed)."""
