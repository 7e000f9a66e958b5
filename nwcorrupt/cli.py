"""The ``nwcorrupt`` command.

``nwcorrupt demo`` is the main job: the ``heavy_corruption`` study at its quick scale
(the shipped config ``heavy_corruption.toml``): on MNIST it trains finite-width
ensembles on corrupted training sets and compares them, as the corruption level p
grows, with the exact NTK predictor on the same noisy sets, the exact mean-field
predictor and the leading-order centroid rule argmax_i <x*, mu_i>. It prints the
accuracy and agreement table and writes the records, tables and figures to
``results/demo``. Like every ``nwcorrupt run``, it is resumable: a rerun skips the
finished points.

``nwcorrupt run STUDY`` runs any study by name (its config ships with the package,
see ``nwcorrupt list``) or from a TOML file; ``report`` rebuilds tables and figures
of a results folder.
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from collections.abc import Sequence
from pathlib import Path

__all__ = ["DEMO_STUDY", "build_parser", "main", "parse_set"]

DEMO_STUDY = "heavy_corruption"


def parse_set(items: Sequence[str]) -> dict:
    """Parameter overrides from ``KEY=VALUE`` strings; VALUE is a TOML value (``[0.5, 0.9]``, ``3``), else a string.

    Raises:
      ConfigError: for an item without ``=``.
    """
    from nwcorrupt.experiments.errors import ConfigError

    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE (e.g. 'ps=[0.5, 0.9]'), got {item!r}")
        try:
            out[key] = tomllib.loads(f"v = {value.strip()}")["v"]
        except tomllib.TOMLDecodeError:
            out[key] = value.strip()
    return out


def _demo_overrides(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("dataset", args.dataset), ("n_train", args.n_train), ("seed", args.seed)) if v is not None}


def _cmd_demo(args: argparse.Namespace) -> int:
    from nwcorrupt.experiments import catalog, runner
    from nwcorrupt.experiments.errors import ConfigError
    from nwcorrupt.experiments.studies import heavy_corruption

    t0 = time.perf_counter()
    try:
        config = catalog.load(args.config or DEMO_STUDY, args.scale, overrides=_demo_overrides(args))
        if config.study != DEMO_STUDY:
            raise ConfigError(f"{config.source}: the demo runs the {DEMO_STUDY!r} study, this config is {config.study!r}")
        out = Path(args.out)
        if not args.quiet:
            p = config.params
            print(f"nwcorrupt demo: study {DEMO_STUDY} ({config.scale} scale, {config.source})")
            print(f"  {p.dataset}, N = {p.n_train}, {p.activation} MLP L = {p.depth}, width {p.width}, "
                  f"K x M = {p.k} x {p.m} (noisy sets x inits), noises {list(p.noises)}, p in {list(p.ps)}")
            print(runner.format_plan(config, out).splitlines()[-1])
        summary = runner.run(config, out, quiet=args.quiet)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runner.report(out, formats=("png",))
    print(heavy_corruption.summary_table(runner.folder_records(out)))
    print(f"accuracy on the clean test set (mean over K = {config.params.k} noisy training sets); "
          "agreement of decisions: fraction of test points where the two predictors' decisions coincide")
    print(f"{summary.ran} points run, {summary.skipped} already stored, {time.perf_counter() - t0:.1f} s; "
          f"tables in {out / 'tables'}, figures in {out / 'figures'}")
    return 0


def _scale_help(default: str) -> str:
    from nwcorrupt.experiments import catalog

    return (f"scale table of the config (default: {default}); the shipped configs define "
            f"{', '.join(catalog.scales())}: tiny (tests, seconds), quick (CPU, minutes), full (the study's recipe, GPU)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``nwcorrupt`` command."""
    parser = argparse.ArgumentParser(prog="nwcorrupt", description="Infinite-width theory of learning from corrupted data.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main job: heavy_corruption study at quick scale (networks, NTK, mean-field, rule)")
    demo.add_argument("--scale", default="quick", help=_scale_help("quick"))
    demo.add_argument("--config", default=None, help="TOML config file of the heavy_corruption study (default: the shipped one)")
    demo.add_argument("--dataset", default=None, help="override the config's data set")
    demo.add_argument("--n-train", type=int, default=None, help="override the config's training set size")
    demo.add_argument("--seed", type=int, default=None, help="override the config's seed")
    demo.add_argument("--out", default="results/demo", help="results folder (default: results/demo)")
    demo.add_argument("--quiet", action="store_true", help="print only the table")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run a study by name or from a TOML config (resumable; a longer sweep list adds points)")
    run.add_argument("study", help="a study name (see `nwcorrupt list`) or the path of a TOML config file")
    run.add_argument("--scale", default="quick", help=_scale_help("quick"))
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one parameter of the scale table, VALUE in TOML syntax (e.g. --set 'ps=[0.5, 0.9]'); repeatable")
    run.add_argument("--out", default=None, help="results folder (default: results/<study>-<scale>)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost, run nothing")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="rebuild tables and figures of a results folder from its records")
    rep.add_argument("dir", help="results folder written by `nwcorrupt run`")
    rep.set_defaults(func=_cmd_report)

    lst = sub.add_parser("list", help="list the studies with their descriptions and scales")
    lst.set_defaults(func=_cmd_list)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from nwcorrupt.experiments import catalog, runner, studies
    from nwcorrupt.experiments.errors import ConfigError

    try:
        config = catalog.load(args.study, args.scale, overrides=parse_set(args.overrides))
        out = Path(args.out or f"results/{config.study}-{config.scale}")
        if args.dry_run:
            studies.get(config.study).preflight(config.params)
            print(runner.format_plan(config, out))
            return 0
        summary = runner.run(config, out, quiet=args.quiet)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"{config.study} ({config.scale}): {summary.ran} points run, {summary.skipped} already stored, "
          f"{summary.seconds:.1f} s; results in {out}")
    tables = runner.report(out)
    print(runner.format_tables(tables))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import warnings

    from nwcorrupt.experiments import runner
    from nwcorrupt.experiments.errors import ConfigError, DamagedFileWarning

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DamagedFileWarning)
            tables = runner.report(args.dir)
            missing = runner.missing_points(args.dir)
    except (FileNotFoundError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    for w in caught:
        print(f"{'damaged' if issubclass(w.category, DamagedFileWarning) else 'warning'}: {w.message}", file=sys.stderr)
    print(runner.format_tables(tables))
    print(f"tables in {Path(args.dir) / 'tables'}, figures in {Path(args.dir) / 'figures'}")
    if missing:
        shown = ", ".join(str(pt) for pt in missing[:5]) + (", ..." if len(missing) > 5 else "")
        print(f"incomplete: {len(missing)} point(s) of this folder have no finished record ({shown}); the tables "
              f"leave them out. Run `nwcorrupt run` with this folder's configuration to compute them", file=sys.stderr)
        return 3
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from nwcorrupt.experiments import catalog

    rows = catalog.describe()
    width = max(len(name) for name, _, _ in rows)
    swidth = max(len(", ".join(scales)) for _, _, scales in rows)
    print(f"{'study':<{width}}  {'scales':<{swidth}}  description")
    for name, description, scales in rows:
        print(f"{name:<{width}}  {', '.join(scales):<{swidth}}  {description}")
    print("\nrun one with: nwcorrupt run STUDY --scale SCALE (or a path to your own TOML config)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
