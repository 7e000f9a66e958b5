"""Resumable execution of an experiment, and reports rebuilt from its store.

A run computes the sweep points of its configuration that the results folder
does not hold yet. Each point is keyed by its own parameters (:func:`point_key`),
so extending a sweep list computes exactly the new points; see
:mod:`nwcorrupt.experiments.store` for the folder rules.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import numbers
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from nwcorrupt.experiments import studies
from nwcorrupt.experiments.errors import ConfigError, DamagedFileError, NonFiniteMetricsError, NonFiniteWarning
from nwcorrupt.experiments.schema import ExperimentConfig, build_params
from nwcorrupt.experiments.store import LAYOUT, Store, check_layout, merge_params, nonfinite_paths, point_id

__all__ = [
    "RunSummary",
    "environment",
    "folder_config",
    "folder_records",
    "format_plan",
    "format_tables",
    "missing_points",
    "nonfinite_cells",
    "plan",
    "point_key",
    "report",
    "run",
]


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What a run did: points in the plan, run now, skipped as already stored."""

    total: int
    ran: int
    skipped: int
    seconds: float
    out: Path


def environment() -> dict:
    """Versions and device of this process, stored in every record."""
    import jax
    import numpy as np

    from nwcorrupt import __version__

    devices = jax.devices()
    return {
        "versions": {"nwcorrupt": __version__, "jax": jax.__version__, "numpy": np.__version__, "python": platform.python_version()},
        "device": {"platform": devices[0].platform, "kind": devices[0].device_kind, "count": len(devices)},
        "host": platform.node(),
    }


def _json(value):
    return json.loads(json.dumps(value))


def point_key(config: ExperimentConfig, point: dict) -> dict:
    """The identity of a sweep point: study, the shared parameters, and the point.

    Shared parameters are every field of the study's ``Params`` except its sweep
    lists (:func:`nwcorrupt.experiments.studies.sweeps`) and its report-only fields
    (:func:`nwcorrupt.experiments.studies.report_fields`), plus the sweep lists the
    point itself depends on (:func:`nwcorrupt.experiments.studies.depends_on`).
    The key is JSON data (lists for tuples); its hash is the point's id.
    """
    sweeps = studies.sweeps(config.study)
    depends = set(studies.depends_on(config.study, config.params, point))
    report_only = set(studies.report_fields(config.study))
    params = dataclasses.asdict(config.params)
    shared = {k: v for k, v in params.items() if (k not in sweeps or k in depends) and k not in report_only}
    return _json({"study": config.study, "params": shared, "point": point})


def plan(config: ExperimentConfig) -> list[tuple[str, dict, float]]:
    """The sweep points of a configuration: (id, point, estimated seconds)."""
    study = studies.get(config.study)
    return [(point_id(point_key(config, pt)), pt, float(study.estimate(config.params, pt))) for pt in study.points(config.params)]


def _config_doc(config: ExperimentConfig) -> dict:
    return _json({"layout": LAYOUT, **config.as_dict(), "sweeps": sorted(studies.sweeps(config.study))})


def folder_config(config: ExperimentConfig, out: str | Path) -> ExperimentConfig:
    """The configuration the folder ``out`` holds after a run of ``config``: its sweep lists united with the folder's.

    ``config`` itself for a new folder, or for a folder whose config.json is damaged (it is moved aside
    with a warning, and the run rebuilds it). Nothing else is written.

    Raises:
      ConfigError: when the folder holds another study or other shared parameters (naming the keys and
        both values), or was written with another folder layout.
    """
    store = Store(Path(out))
    if not store.exists():
        return config
    try:
        doc = store.config_dict()
    except DamagedFileError:  # moved aside (the store warned, naming both paths): this run rebuilds it
        return config
    check_layout(doc, str(store.root))
    if doc.get("study") != config.study:
        raise ConfigError(f"{store.root} holds results of a different configuration: study {doc.get('study')!r} there, "
                          f"{config.study!r} here; choose another --out folder")
    # sweep lists and report-only fields may change between runs into one folder (lists are united)
    mergeable = set(studies.sweeps(config.study)) | set(studies.report_fields(config.study))
    merged = merge_params(doc["params"], _json(dataclasses.asdict(config.params)), mergeable, where=str(store.root))
    params = build_params(studies.get(config.study).Params, merged, str(store.config_path))
    return dataclasses.replace(config, scale=str(doc.get("scale", config.scale)), params=params)


def _items(config: ExperimentConfig, folder: ExperimentConfig) -> list[tuple[str, dict, float]]:
    """The points of ``config`` keyed and costed under the folder's configuration."""
    study = studies.get(config.study)
    return [(point_id(point_key(folder, pt)), pt, float(study.estimate(folder.params, pt))) for pt in study.points(config.params)]


def format_plan(config: ExperimentConfig, out: Path) -> str:
    """The plan of a run of ``config`` into ``out``: its points, which are stored, the estimated remaining cost."""
    items = _items(config, folder_config(config, out))
    store = Store(Path(out))
    done = sum(store.has(pid) for pid, _, _ in items)
    todo = sum(cost for pid, _, cost in items if not store.has(pid))
    lines = [f"study {config.study} ({config.scale}): {len(items)} points, {done} already stored in {out}"]
    for pid, pt, cost in items:
        mark = "done" if store.has(pid) else f"~{cost:.1f}s"
        lines.append(f"  {pid}  {pt}  {mark}")
    lines.append(f"estimated cost of the remaining points: ~{todo:.0f} s on this machine")
    return "\n".join(lines)


def run(
    config: ExperimentConfig,
    out: str | Path,
    *,
    quiet: bool = False,
    max_points: int | None = None,
    distributed: bool = False,
) -> RunSummary:
    """Run every sweep point of ``config`` not yet in the store, writing each record as soon as it is done.

    Points are keyed under :func:`folder_config` (the folder's sweep lists united
    with the run's) and computed with its parameters, which give every point of
    ``config`` the result it would have alone.

    Args:
      config: a validated configuration.
      out: the results folder (created; must not hold results of other shared parameters).
      quiet: no progress output.
      max_points: stop after running this many new points (for tests of resumption; per process
        when distributed).
      distributed: every process of a multi-process run (:mod:`nwcorrupt.distributed`) calls this
        with the same arguments; the points not yet stored are dealt out among them round-robin,
        each process computes its points on its own devices and writes their records. Process 0
        writes ``config.json`` and moves damaged records aside first; the processes then check that
        they see the same folder (it must be on a shared file system). The summary counts the points
        of all processes.
    """
    from tqdm.auto import tqdm

    from nwcorrupt import distributed as _distributed

    if not isinstance(distributed, bool):
        raise TypeError(f"distributed must be True or False, got {distributed!r}")
    study = studies.get(config.study)
    studies.preflight(config.study, config.params)  # e.g. a missing data set fails here, before any work
    primary = not distributed or _distributed.is_primary()
    folder = folder_config(config, out)
    store = Store(Path(out))
    items = _items(config, folder)
    if primary:
        store.write_config(_config_doc(folder))
        for pid, _, _ in items:  # a damaged record is moved aside (once, by one process) and recomputed
            store.load_record(pid)
    if distributed:
        _distributed.barrier(f"nwcorrupt-run-scan-{config.study}")
    todo = [(pid, pt) for pid, pt, _ in items if not store.has(pid)]
    skipped = len(items) - len(todo)
    if distributed:
        _distributed.check_same(f"the points of {config.study} still to run in {out}", json.dumps([p for p, _ in todo]))
        todo = _distributed.round_robin(todo)
    index_of = {pid: i for i, (pid, _, _) in enumerate(plan(folder))}
    env = environment()
    t0 = time.perf_counter()
    ran = 0
    failed: list[str] = []
    bar = tqdm(todo, desc=config.study, disable=quiet or not sys.stderr.isatty(), unit="pt")
    for pid, pt in bar:
        if max_points is not None and ran >= max_points:
            break
        t = time.perf_counter()
        metrics = study.run_point(folder.params, pt)
        bad = [path for path in nonfinite_paths(metrics) if not _allowed_nonfinite(study, path)]
        if bad:  # not stored: a rerun recomputes the point; the other points go on
            shown = ", ".join(bad[:6]) + (f", ... ({len(bad)} in all)" if len(bad) > 6 else "")
            failed.append(f"{pt}: {shown}")
            if not quiet:
                print(f"[{config.study}] point {pt}: non-finite metrics ({shown}); not stored", file=sys.stderr)
            continue
        record = {
            "id": pid,
            "key": point_key(folder, pt),
            "index": index_of.get(pid, len(index_of)),
            "study": config.study,
            "scale": config.scale,
            "params": dataclasses.asdict(folder.params),
            "point": pt,
            "metrics": metrics,
            "seconds": time.perf_counter() - t,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            **env,
        }
        store.write_record(pid, record)
        ran += 1
        if not quiet and not sys.stderr.isatty():
            print(f"[{config.study}] point {skipped + ran}/{len(items)} {pt}: {record['seconds']:.1f}s", file=sys.stderr)
    n_failed = len(failed)
    if distributed:  # every process learns the totals (and ends here together)
        ran, n_failed = (int(v) for v in _distributed.allreduce_sum(np.array([ran, len(failed)], np.int64)))
    if n_failed:
        here = "; ".join(failed) if failed else "none on this process"
        raise NonFiniteMetricsError(
            f"{n_failed} point(s) of {config.study} produced NaN or infinite metrics and were not stored "
            f"(the other {ran} new point(s) were): " + here
        )
    return RunSummary(total=len(items), ran=ran, skipped=skipped, seconds=time.perf_counter() - t0, out=Path(out))


def _allowed_nonfinite(study, path: str) -> bool:
    """Whether the study declares NaN/inf possible at metric ``path`` (``NONFINITE_METRICS``: path prefixes)."""
    return any(path == p or path.startswith(p + ".") or path.startswith(p + "[")
               for p in getattr(study, "NONFINITE_METRICS", ()))  # fmt: skip


def nonfinite_cells(tables: dict) -> list[str]:
    """``table[row].column`` of every NaN or infinite number in ``{name: (header, rows)}`` tables."""
    out = []
    for name, (header, rows) in tables.items():
        for i, row in enumerate(rows):
            for col, v in zip(header, row):
                if isinstance(v, numbers.Real) and not isinstance(v, bool) and not math.isfinite(float(v)):
                    out.append(f"{name}[{i}].{col}")
    return out


def _stored_config(store: Store) -> ExperimentConfig:
    cfg = store.config_dict()
    study = studies.get(cfg["study"])
    params = build_params(study.Params, cfg["params"], str(store.config_path))
    return ExperimentConfig(study=cfg["study"], scale=str(cfg.get("scale", "")), params=params)


def folder_records(out: str | Path) -> list[dict]:
    """The records of the points the folder's configuration describes, in the order of its sweep.

    Records of other points (e.g. superseded by a longer sweep list they depend on)
    are left out. A folder of the first layout held a single configuration: all its
    records, in their stored order. A damaged record, or one whose key is not its
    point's, is moved aside with a warning and left out (:func:`missing_points` lists
    the points without a record).

    Raises:
      FileNotFoundError: when ``out`` is not a results folder.
      DamagedFileError: when its config.json is damaged (moved aside).
    """
    store = Store(Path(out))
    doc = store.config_dict()
    if doc.get("layout", 1) == 1:
        return store.records()
    check_layout(doc, str(store.root))
    config = _stored_config(store)
    records = []
    for pt in studies.get(config.study).points(config.params):
        key = point_key(config, pt)
        pid = point_id(key)
        rec = store.load_record(pid)
        if rec is None:
            continue
        if rec.get("key") != key:
            store.quarantine(store.records_dir / f"{pid}.json", f"does not hold point {pt} of {store.root}")
            continue
        records.append(rec)
    return records


def missing_points(out: str | Path) -> list[dict]:
    """The points of the folder's configuration that have no finished record (not run yet, or damaged)."""
    store = Store(Path(out))
    config = _stored_config(store)
    return [pt for pt in studies.get(config.study).points(config.params) if not store.has(point_id(point_key(config, pt)))]


def report(out: str | Path, *, formats: tuple[str, ...] = ("png", "pdf")) -> dict[str, list[list]]:
    """Rebuild the tables (CSV) and figures of a results folder from its records alone.

    Returns:
      the tables, name -> rows with the header first. Points without a finished record are left out
      (:func:`missing_points`); damaged records are moved aside with a warning naming them.
    """
    store = Store(Path(out))
    config = _stored_config(store)
    study = studies.get(config.study)
    params = config.params
    records = folder_records(out)
    tables = study.tables(params, records)
    for name, (header, rows) in tables.items():
        store.write_table(name, header, rows)
    cells = nonfinite_cells(tables)
    if cells:
        shown = ", ".join(cells[:8]) + (f", ... ({len(cells)} in all)" if len(cells) > 8 else "")
        warnings.warn(f"tables of {store.root} hold NaN or infinite values: {shown}", NonFiniteWarning, stacklevel=2)
    if records:
        from nwcorrupt import plots

        import matplotlib.pyplot as plt

        for name, fig in study.figures(params, records).items():
            plots.save_figure(fig, store.root / "figures" / name, formats=formats)
            plt.close(fig)  # reports of long sweeps build many figures; free each once saved
    return {name: [header, *rows] for name, (header, rows) in tables.items()}


def format_tables(tables: dict[str, list[list]]) -> str:
    """Plain-text rendering of report tables."""
    chunks = []
    for name, (header, *rows) in tables.items():
        cells = [[str(h) for h in header]] + [[f"{v:.4f}" if isinstance(v, float) else str(v) for v in r] for r in rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
        lines = [name, "  ".join(c.rjust(w) for c, w in zip(cells[0], widths))]
        lines.append("-" * len(lines[-1]))
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells[1:]]
        chunks.append("\n".join(lines))
    return "\n\n".join(chunks)
