"""The ``nwcorrupt`` command.

``nwcorrupt demo`` is the main job: the ``heavy_corruption`` study at its quick scale
(``experiments/heavy_corruption.toml``): on MNIST it trains finite-width ensembles on
corrupted training sets and compares them, as the corruption level p grows, with the
exact NTK predictor on the same noisy sets, the exact mean-field predictor and the
leading-order centroid rule argmax_i <x*, mu_i>. It prints the accuracy and agreement
table and writes the records, tables and figures to ``results/demo``. Like every
``nwcorrupt run``, it is resumable: a rerun skips the finished points.

``nwcorrupt run``, ``report`` and ``list`` drive any configured study.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path

DEMO_STUDY = "heavy_corruption"


def find_config(study: str, *, cwd: Path | None = None) -> Path:
    """The config file ``experiments/<study>.toml``: in the working directory, else beside the package.

    Raises:
      FileNotFoundError: naming the places searched.
    """
    import nwcorrupt

    candidates = [Path(cwd or Path.cwd()) / "experiments" / f"{study}.toml",
                  Path(nwcorrupt.__file__).resolve().parents[1] / "experiments" / f"{study}.toml"]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"config of study {study!r} not found; looked for {[str(c) for c in candidates]}; "
                            "pass --config PATH")


def _demo_overrides(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("dataset", args.dataset), ("n_train", args.n_train), ("seed", args.seed)) if v is not None}


def _cmd_demo(args: argparse.Namespace) -> int:
    from nwcorrupt.experiments import runner
    from nwcorrupt.experiments.schema import ConfigError, load_config
    from nwcorrupt.experiments.store import Store
    from nwcorrupt.experiments.studies import heavy_corruption

    t0 = time.perf_counter()
    try:
        path = Path(args.config) if args.config else find_config(DEMO_STUDY)
        config = load_config(path, args.scale, overrides=_demo_overrides(args))
        if config.study != DEMO_STUDY:
            raise ConfigError(f"{path}: the demo runs the {DEMO_STUDY!r} study, this config is {config.study!r}")
        out = Path(args.out)
        if not args.quiet:
            p = config.params
            print(f"nwcorrupt demo: study {DEMO_STUDY} ({config.scale} scale, {path})")
            print(f"  {p.dataset}, N = {p.n_train}, {p.activation} MLP L = {p.depth}, width {p.width}, "
                  f"K x M = {p.k} x {p.m} (noisy sets x inits), noises {list(p.noises)}, p in {list(p.ps)}")
            print(runner.format_plan(config, out).splitlines()[-1])
        summary = runner.run(config, out, quiet=args.quiet)
    except (ConfigError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    runner.report(out, formats=("png",))
    records = sorted(Store(out).records(), key=lambda r: r["index"])
    print(heavy_corruption.summary_table(records))
    print(f"accuracy on the clean test set (mean over K = {config.params.k} noisy training sets); "
          "agree: fraction of test points where the two predictors' decisions coincide")
    print(f"{summary.ran} points run, {summary.skipped} already stored, {time.perf_counter() - t0:.1f} s; "
          f"tables in {out / 'tables'}, figures in {out / 'figures'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nwcorrupt", description="Infinite-width theory of learning from corrupted data.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="the main job: heavy_corruption study at quick scale (networks, NTK, mean-field, rule)")
    demo.add_argument("--scale", default="quick", help="scale table of the config (default: quick)")
    demo.add_argument("--config", default=None, help="config file (default: experiments/heavy_corruption.toml)")
    demo.add_argument("--dataset", default=None, help="override the config's data set")
    demo.add_argument("--n-train", type=int, default=None, help="override the config's training set size")
    demo.add_argument("--seed", type=int, default=None, help="override the config's seed")
    demo.add_argument("--out", default="results/demo", help="results folder (default: results/demo)")
    demo.add_argument("--quiet", action="store_true", help="print only the table")
    demo.set_defaults(func=_cmd_demo)

    run = sub.add_parser("run", help="run a configured study (resumable)")
    run.add_argument("config", help="TOML config file (see experiments/)")
    run.add_argument("--scale", default="quick", help="scale table of the config: quick (CPU, minutes) or full")
    run.add_argument("--out", default=None, help="results folder (default: results/<study>-<scale>)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost, run nothing")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.set_defaults(func=_cmd_run)

    rep = sub.add_parser("report", help="rebuild tables and figures of a results folder from its records")
    rep.add_argument("dir", help="results folder written by `nwcorrupt run`")
    rep.set_defaults(func=_cmd_report)

    lst = sub.add_parser("list", help="list the studies and the config files in experiments/")
    lst.set_defaults(func=_cmd_list)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from nwcorrupt.experiments import runner, studies
    from nwcorrupt.experiments.schema import ConfigError, load_config

    try:
        config = load_config(args.config, args.scale)
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
    from nwcorrupt.experiments import runner

    try:
        tables = runner.report(args.dir)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(runner.format_tables(tables))
    print(f"tables in {Path(args.dir) / 'tables'}, figures in {Path(args.dir) / 'figures'}")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from nwcorrupt.experiments import studies

    for name in studies.names():
        print(f"{name:<22} {studies.get(name).DESCRIPTION}")
    configs = sorted(Path("experiments").glob("*.toml")) if Path("experiments").is_dir() else []
    if configs:
        print()
        print("config files:")
        for c in configs:
            print(f"  {c}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
