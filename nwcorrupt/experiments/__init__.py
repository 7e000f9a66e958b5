"""Configured, resumable experiments: schema, results store, runner and studies.

See :mod:`nwcorrupt.experiments.schema` for the config format,
:mod:`nwcorrupt.experiments.store` for the results layout and
:mod:`nwcorrupt.experiments.runner` for ``run``/``report``.
"""
