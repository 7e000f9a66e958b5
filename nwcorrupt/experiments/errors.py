"""The errors and warnings of experiment configurations and results folders.

It lives in a module of its own so that the schema, the study registry and the
study modules can all raise it without importing one another.
"""

from __future__ import annotations

__all__ = ["ConfigError", "DamagedFileError", "DamagedFileWarning", "NonFiniteMetricsError", "NonFiniteWarning"]


class ConfigError(ValueError):
    """An experiment configuration is invalid; the message names the key and what was expected."""


class DamagedFileError(ConfigError):
    """A file of a results folder does not parse or lacks what it must hold; it has been moved aside."""


class DamagedFileWarning(UserWarning):
    """A damaged file of a results folder was moved aside (and its point will be recomputed)."""


class NonFiniteMetricsError(RuntimeError):
    """Points of a run produced NaN or infinite metrics that their study does not declare possible.

    Those points are not stored (a rerun recomputes them); every other point of the run was run and stored.
    The message names each point and the metric paths.
    """


class NonFiniteWarning(UserWarning):
    """A table of a report holds NaN or infinite values (named by table, column and row)."""
