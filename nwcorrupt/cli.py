"""The ``nwcorrupt`` command.

``nwcorrupt demo``: on MNIST (N = 4000 balanced, clean test set, per-example
normalisation), sweep the corruption level p of replacement and additive noise
and print the test accuracy of the overlap centroid rule and of the Euclidean
nearest-centroid rule fitted on the *corrupted* training set; write the table
(CSV + JSON) and a figure of corrupted example images.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

DEMO_PS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.97, 0.99, 1.0)
DEMO_RULES = ("overlap", "euclidean")


def demo_models() -> dict:
    """The two noise models of the demo, for per-example normalised data."""
    from nwcorrupt.corruption import Additive, Replacement

    return {"replacement": Replacement("uniform"), "additive": Additive("gaussian")}


def demo_table(dataset, models: dict, ps: Sequence[float], seed: int, rules: Sequence[str] = DEMO_RULES) -> list[dict]:
    """Accuracy of prototype rules fitted on corrupted training sets.

    Returns:
      one row per (noise, p): {"noise", "p", "acc_<rule>" for each rule, "agreement"}.
    """
    from nwcorrupt import metrics, prototype
    from nwcorrupt.corruption import corrupt

    rows = []
    for noise, model in models.items():
        for p in ps:
            noisy = corrupt(dataset, model, p, seed, where="train")
            preds = {
                r: prototype.predict(noisy.x_test, noisy.x_train, noisy.y_train, num_classes=dataset.num_classes, rule=r)
                for r in rules
            }
            row = {"noise": noise, "p": float(p)}
            row.update({f"acc_{r}": metrics.accuracy(preds[r], dataset.y_test) for r in rules})
            if len(rules) == 2:
                row["agreement"] = metrics.agreement(preds[rules[0]], preds[rules[1]])
            rows.append(row)
    return rows


def format_table(rows: list[dict], n_test: int) -> str:
    """A plain-text table of :func:`demo_table` rows."""
    keys = [k for k in rows[0] if k not in ("noise", "p")]
    header = f"{'noise':<12} {'p':>5} " + " ".join(f"{k:>14}" for k in keys)
    lines = [header, "-" * len(header)]
    for r in rows:
        lines.append(f"{r['noise']:<12} {r['p']:>5.2f} " + " ".join(f"{r[k]:>14.4f}" for k in keys))
    lines.append(f"(test accuracy on {n_test} clean test points; chance = 0.1; ±{0.5 / np.sqrt(n_test):.4f} max std. err.)")
    return "\n".join(lines)


def _cmd_demo(args: argparse.Namespace) -> int:
    from nwcorrupt import __version__, data, plots
    from nwcorrupt._io import atomic_write_csv, atomic_write_json

    t0 = time.perf_counter()
    out = Path(args.out)
    try:
        ds = data.load(args.dataset, n_train=args.n_train, seed=args.seed, data_dir=args.data_dir)
    except data.DatasetNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    models = demo_models()
    if not args.quiet:
        print(f"nwcorrupt demo: {ds.name}, N = {ds.n_train} balanced, d = {ds.d}, {ds.n_test} clean test points")
        print("noise on the training set only: replacement U[-sqrt3, sqrt3], additive N(0, 1); noise seed", args.seed)
    rows = demo_table(ds, models, DEMO_PS, args.seed)
    print(format_table(rows, ds.n_test))

    header = list(rows[0])
    atomic_write_csv(out / "demo.csv", header, [[r[k] for k in header] for r in rows])
    atomic_write_json(
        out / "demo.json",
        {
            "study": "demo",
            "config": {"dataset": args.dataset, "n_train": args.n_train, "seed": args.seed, "ps": list(DEMO_PS),
                       "noise": {k: repr(v) for k, v in models.items()}, "rules": list(DEMO_RULES)},
            "rows": rows,
            "versions": _versions(__version__),
            "device": platform.processor() or platform.machine(),
            "seconds": time.perf_counter() - t0,
            "finished": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        },
    )
    if ds.image_shape is not None:
        example = ds.x_train[:1]
        strip = [
            (name, [np.asarray(m.apply(example, p, args.seed))[0] for p in DEMO_PS]) for name, m in models.items()
        ]
        fig = plots.corrupted_strip(strip, DEMO_PS, ds.image_shape, title=f"{ds.name}: one training image, corrupted")
        paths = plots.save_figure(fig, out / "demo_corrupted", formats=("png",))
        print(f"wrote {out / 'demo.csv'}, {out / 'demo.json'} and {paths[0]}")
    else:
        print(f"wrote {out / 'demo.csv'} and {out / 'demo.json'}")
    return 0


def _versions(version: str) -> dict:
    import jax

    return {"nwcorrupt": version, "jax": jax.__version__, "numpy": np.__version__, "python": platform.python_version()}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nwcorrupt", description="Infinite-width theory of learning from corrupted data.")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="centroid rules on corrupted MNIST: accuracy table and a figure")
    demo.add_argument("--dataset", default="mnist", help="registered data set (default: mnist)")
    demo.add_argument("--n-train", type=int, default=4000, help="balanced training subset size (default: 4000)")
    demo.add_argument("--seed", type=int, default=0, help="seed of the subset and of the noise (default: 0)")
    demo.add_argument("--data-dir", default=None, help="directory with the data set's files, if not installed")
    demo.add_argument("--out", default="results/demo", help="output folder (default: results/demo)")
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
