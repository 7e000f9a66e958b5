"""Configured, resumable experiments: configs, schema, results store, runner and studies.

See :mod:`nwcorrupt.experiments.catalog` for the study configs shipped with the
package, :mod:`nwcorrupt.experiments.schema` for the config format,
:mod:`nwcorrupt.experiments.store` for the results layout,
:mod:`nwcorrupt.experiments.runner` for ``run``/``report`` and
:mod:`nwcorrupt.experiments.studies` for the registry of studies.
"""

__all__ = ["catalog", "errors", "runner", "schema", "store", "studies"]
