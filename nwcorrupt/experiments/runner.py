"""Resumable execution of an experiment, and reports rebuilt from its store."""

from __future__ import annotations

import dataclasses
import datetime
import platform
import sys
import time
from pathlib import Path

from nwcorrupt.experiments import studies
from nwcorrupt.experiments.schema import ExperimentConfig
from nwcorrupt.experiments.store import Store, point_id


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


def plan(config: ExperimentConfig) -> list[tuple[str, dict, float]]:
    """The sweep points of a configuration: (id, point, estimated seconds)."""
    study = studies.get(config.study)
    return [(point_id(config, pt), pt, float(study.estimate(config.params, pt))) for pt in study.points(config.params)]


def format_plan(config: ExperimentConfig, out: Path) -> str:
    items = plan(config)
    store = Store(Path(out))
    done = sum(store.has(pid) for pid, _, _ in items)
    todo = sum(cost for pid, _, cost in items if not store.has(pid))
    lines = [f"study {config.study} ({config.scale}): {len(items)} points, {done} already stored in {out}"]
    for pid, pt, cost in items:
        mark = "done" if store.has(pid) else f"~{cost:.1f}s"
        lines.append(f"  {pid}  {pt}  {mark}")
    lines.append(f"estimated cost of the remaining points: ~{todo:.0f} s on this machine")
    return "\n".join(lines)


def run(config: ExperimentConfig, out: str | Path, *, quiet: bool = False, max_points: int | None = None) -> RunSummary:
    """Run every sweep point not yet in the store, writing each record as soon as it is done.

    Args:
      config: a validated configuration.
      out: the results folder (created; must not hold another configuration's results).
      quiet: no progress output.
      max_points: stop after running this many new points (for tests of resumption).
    """
    from tqdm.auto import tqdm

    study = studies.get(config.study)
    study.preflight(config.params)  # e.g. a missing data set fails here, before any work
    store = Store(Path(out)).open_for(config)
    items = plan(config)
    env = environment()
    t0 = time.perf_counter()
    ran = skipped = 0
    bar = tqdm(items, desc=config.study, disable=quiet or not sys.stderr.isatty(), unit="pt")
    for index, (pid, pt, _) in enumerate(bar):
        if store.has(pid):
            skipped += 1
            continue
        if max_points is not None and ran >= max_points:
            break
        t = time.perf_counter()
        metrics = study.run_point(config.params, pt)
        record = {
            "id": pid,
            "index": index,
            "study": config.study,
            "scale": config.scale,
            "params": dataclasses.asdict(config.params),
            "point": pt,
            "metrics": metrics,
            "seconds": time.perf_counter() - t,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            **env,
        }
        store.write_record(pid, record)
        ran += 1
        if not quiet and not sys.stderr.isatty():
            print(f"[{config.study}] point {index + 1}/{len(items)} {pt}: {record['seconds']:.1f}s", file=sys.stderr)
    return RunSummary(total=len(items), ran=ran, skipped=skipped, seconds=time.perf_counter() - t0, out=Path(out))


def report(out: str | Path, *, formats: tuple[str, ...] = ("png", "pdf")) -> dict[str, list[list]]:
    """Rebuild the tables (CSV) and figures of a results folder from its records alone.

    Returns:
      the tables, name -> rows with the header first.
    """
    from nwcorrupt.experiments.schema import build_params

    store = Store(Path(out))
    cfg = store.config_dict()
    study = studies.get(cfg["study"])
    params = build_params(study.Params, cfg["params"], f"{out}/config.json")
    records = store.records()
    tables = study.tables(params, records)
    for name, (header, rows) in tables.items():
        store.write_table(name, header, rows)
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
