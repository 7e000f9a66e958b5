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

**Failures.** An expected failure (an invalid config or argument, a missing data set, an
``--out`` folder that cannot be written, a folder that is not a results folder, training that
diverged, non-finite metrics, an interruption) ends with one line ``error: ...`` on stderr and
a non-zero exit status (:data:`EXIT_STATUS`); ``--debug`` prints its traceback too. Any other
exception is a bug: its traceback is printed, followed by a line asking to report it.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
import tomllib
import traceback
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "DEMO_STUDY",
    "EXIT_STATUS",
    "INTERRUPT_GRACE_S",
    "build_parser",
    "check_out_dir",
    "interrupt_watchdog",
    "main",
    "parse_set",
]

DEMO_STUDY = "heavy_corruption"

#: exit status of the command, by outcome
EXIT_STATUS = {
    "ok": 0,
    "failed": 1,  # a run failed (training diverged, non-finite metrics, a file error) or a bug
    "invalid": 2,  # invalid input: config, arguments, --out folder, missing data set, not a results folder
    "incomplete": 3,  # `report` of a folder with points that have no finished record
    "interrupted": 130,  # Ctrl-C
}

_EPILOG = """\
--debug (before or after the subcommand) prints the full traceback of a failure; without it an
expected failure is one line "error: ..." on stderr. Exit status: 0 done; 1 a run failed (training
diverged, non-finite metrics, a file could not be written) or an internal error (a bug: its
traceback is printed); 2 invalid input (config or arguments, --out folder, missing data set,
not a results folder); 3 `report` of an incomplete folder; 130 interrupted."""


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


def check_out_dir(path: str | os.PathLike, *, write: bool = True, option: str = "--out") -> Path:
    """The results folder ``path``, checked before any work: it can be (or already is) a folder, and, with
    ``write``, this process may create it or write in it. Nothing is created.

    Raises:
      ConfigError: naming ``option`` and the path: an existing file, a path under a file, a folder
        without write permission.
    """
    from nwcorrupt.experiments.errors import ConfigError

    out = Path(path)
    try:
        if out.exists() and not out.is_dir():
            raise ConfigError(f"{option} {path}: is an existing file, not a folder; choose a folder for the results")
        # the nearest existing folder above it (or itself): where the run creates or writes
        base = out
        while not base.exists() and base != base.parent:
            base = base.parent
    except OSError as err:  # e.g. a parent folder that may not be searched
        raise ConfigError(f"{option} {path}: cannot be checked ({err.strerror or err}); "
                          "choose another --out folder") from err
    if not base.exists():  # pragma: no cover - a root that does not exist
        raise ConfigError(f"{option} {path}: no part of this path exists")
    if not base.is_dir():
        raise ConfigError(f"{option} {path}: {base} is a file, so no folder can be made under it; "
                          "choose another --out folder")
    if write and not os.access(base, os.W_OK | os.X_OK):
        what = "the folder" if base == out else f"{base}, where it would be created,"
        raise ConfigError(f"{option} {path}: no permission to write in {what}; choose another --out folder "
                          "or change its permissions")
    return out


def _demo_overrides(args: argparse.Namespace) -> dict:
    return {k: v for k, v in (("dataset", args.dataset), ("n_train", args.n_train), ("seed", args.seed)) if v is not None}


def _cmd_demo(args: argparse.Namespace) -> int:
    from nwcorrupt.experiments import catalog, runner
    from nwcorrupt.experiments.errors import ConfigError
    from nwcorrupt.experiments.studies import heavy_corruption

    t0 = time.perf_counter()
    out = check_out_dir(args.out)
    config = catalog.load(args.config or DEMO_STUDY, args.scale, overrides=_demo_overrides(args))
    if config.study != DEMO_STUDY:
        raise ConfigError(f"{config.source}: the demo runs the {DEMO_STUDY!r} study, this config is {config.study!r}")
    if not args.quiet:
        p = config.params
        print(f"nwcorrupt demo: study {DEMO_STUDY} ({config.scale} scale, {config.source})")
        print(f"  {p.dataset}, N = {p.n_train}, {p.activation} MLP L = {p.depth}, width {p.width}, "
              f"K x M = {p.k} x {p.m} (noisy sets x inits), noises {list(p.noises)}, p in {list(p.ps)}")
        print(runner.format_plan(config, out).splitlines()[-1])
    summary = runner.run(config, out, quiet=args.quiet)
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
    debug_help = "on a failure, print the full traceback (default: one line 'error: ...' for expected failures)"
    parser = argparse.ArgumentParser(prog="nwcorrupt", description="Infinite-width theory of learning from corrupted data.",
                                     epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help=debug_help)
    # the subcommands accept it too (nwcorrupt run --debug ...); SUPPRESS keeps a --debug given before
    # the subcommand from being reset to the subcommand's default
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help=debug_help)
    sub = parser.add_subparsers(dest="command", required=True)

    def add(name: str, **kw) -> argparse.ArgumentParser:
        return sub.add_parser(name, parents=[common], epilog=_EPILOG,
                              formatter_class=argparse.RawDescriptionHelpFormatter, **kw)

    demo = add("demo", help="the main job: heavy_corruption study at quick scale (networks, NTK, mean-field, rule)")
    demo.add_argument("--scale", default="quick", help=_scale_help("quick"))
    demo.add_argument("--config", default=None, help="TOML config file of the heavy_corruption study (default: the shipped one)")
    demo.add_argument("--dataset", default=None, help="override the config's data set")
    demo.add_argument("--n-train", type=int, default=None, help="override the config's training set size")
    demo.add_argument("--seed", type=int, default=None, help="override the config's seed")
    demo.add_argument("--out", default="results/demo", help="results folder (default: results/demo)")
    demo.add_argument("--quiet", action="store_true", help="print only the table")
    demo.set_defaults(func=_cmd_demo)

    run = add("run", help="run a study by name or from a TOML config (resumable; a longer sweep list adds points)")
    run.add_argument("study", help="a study name (see `nwcorrupt list`) or the path of a TOML config file")
    run.add_argument("--scale", default="quick", help=_scale_help("quick"))
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override one parameter of the scale table, VALUE in TOML syntax (e.g. --set 'ps=[0.5, 0.9]'); repeatable")
    run.add_argument("--out", default=None, help="results folder (default: results/<study>-<scale>)")
    run.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost, run nothing")
    run.add_argument("--quiet", action="store_true", help="no progress output")
    run.add_argument("--distributed", action="store_true",
                     help="one of several processes of a multi-process run (jax.distributed): join them (coordinator "
                          "from NWCORRUPT_COORDINATOR, NWCORRUPT_NUM_PROCESSES, NWCORRUPT_PROCESS_ID, or the cluster's "
                          "own variables, e.g. Slurm) and share out the sweep points; see docs/distributed.md")
    run.set_defaults(func=_cmd_run)

    rep = add("report", help="rebuild tables and figures of a results folder from its records")
    rep.add_argument("dir", help="results folder written by `nwcorrupt run`")
    rep.set_defaults(func=_cmd_report)

    lst = add("list", help="list the studies with their descriptions and scales")
    lst.set_defaults(func=_cmd_list)
    return parser


def _cmd_run(args: argparse.Namespace) -> int:
    from nwcorrupt import distributed as _distributed
    from nwcorrupt.experiments import catalog, runner, studies

    distributed = bool(getattr(args, "distributed", False)) and not args.dry_run
    if distributed:
        info = _distributed.initialize()  # before any other JAX call; arguments from the environment
        if not args.quiet:
            print(f"process {info.index} of {info.count}: {len(info.local_devices)} local device(s), "
                  f"{len(info.devices)} in all", file=sys.stderr)
    write = not args.dry_run  # a dry run writes nothing: --out need only be a possible folder
    out = None if args.out is None else check_out_dir(args.out, write=write)  # before the config is even read
    config = catalog.load(args.study, args.scale, overrides=parse_set(args.overrides))
    out = out or check_out_dir(f"results/{config.study}-{config.scale}", write=write)
    if args.dry_run:
        studies.preflight(config.study, config.params)
        print(runner.format_plan(config, out))
        return 0
    summary = runner.run(config, out, quiet=args.quiet, distributed=distributed)
    if distributed and not _distributed.is_primary():
        return 0  # process 0 reports
    print(f"{config.study} ({config.scale}): {summary.ran} points run, {summary.skipped} already stored, "
          f"{summary.seconds:.1f} s; results in {out}")
    tables = runner.report(out)
    print(runner.format_tables(tables))
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    import warnings

    from nwcorrupt.experiments import runner
    from nwcorrupt.experiments.errors import ConfigError, DamagedFileWarning

    folder = Path(args.dir)
    if not folder.exists():
        raise ConfigError(f"report: {args.dir} does not exist; give the results folder that `nwcorrupt run --out` wrote")
    if not folder.is_dir():
        raise ConfigError(f"report: {args.dir} is a file, not a results folder; give the folder that "
                          "`nwcorrupt run --out` wrote")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DamagedFileWarning)
        tables = runner.report(args.dir)
        missing = runner.missing_points(args.dir)
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


def _one_line(err: BaseException) -> str:
    """The message of ``err`` on one line (its type's name when it has none)."""
    return " ".join(line.strip() for line in str(err).splitlines() if line.strip()) or type(err).__name__


def _diverged_at(err: BaseException) -> tuple[str | None, dict | None, object]:
    """(study, point, params) of the sweep point ``runner.run`` was running when ``err`` was raised, where known."""
    from nwcorrupt.experiments import runner

    tb = err.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        if frame.f_code is runner.run.__code__:
            config = frame.f_locals.get("config")
            folder = frame.f_locals.get("folder", config)
            return getattr(config, "study", None), frame.f_locals.get("pt"), getattr(folder, "params", None)
        tb = tb.tb_next
    return None, None, None


def _expected(err: BaseException, args: argparse.Namespace) -> tuple[str, int] | None:
    """The one-line message and exit status of an expected failure, or None for a bug."""
    from nwcorrupt.experiments.errors import NonFiniteMetricsError

    # not imported when the error came before any training (e.g. jax itself failed to import)
    diverged = getattr(sys.modules.get("nwcorrupt.train.config"), "TrainingDivergedError", ())
    running = getattr(args, "command", None) in ("run", "demo")
    resumes = "; the points finished before it are stored and a rerun resumes" if running else ""
    if isinstance(err, KeyboardInterrupt):
        return f"interrupted{resumes}", EXIT_STATUS["interrupted"]
    if isinstance(err, diverged):
        from nwcorrupt.experiments import studies

        study, point, params = _diverged_at(err)
        where = f" in study {study}, point {point}" if study and point is not None else ""
        how = ""
        if hasattr(params, "learning_rate"):  # a shared parameter: its results go to a folder of their own
            new_folder = "" if "learning_rate" in studies.sweeps(study) else " into a new --out folder"
            how = f" (--set learning_rate=...{new_folder})"
        stored = "; the points finished before it are stored" if running else ""
        hint = f"lower the learning rate{how}, or run with --debug for the traceback{stored}"
        return f"{type(err).__name__}{where}: {_one_line(err)} Hint: {hint}", EXIT_STATUS["failed"]
    if isinstance(err, NonFiniteMetricsError):
        return f"{_one_line(err)}; rerun to recompute them, or run with --debug for the traceback", EXIT_STATUS["failed"]
    if isinstance(err, (ValueError, TypeError, FileNotFoundError)):  # ConfigError, DatasetNotFoundError, validation
        return _one_line(err), EXIT_STATUS["invalid"]
    if isinstance(err, OSError):  # e.g. a disk full or a permission lost while writing
        return f"{_one_line(err)} (run with --debug for the traceback)", EXIT_STATUS["failed"]
    return None


#: Seconds an interrupted command may take to stop by itself before :func:`interrupt_watchdog` ends it.
INTERRUPT_GRACE_S = 3.0

_WATCHER = """
import os, signal, sys, time
signal.signal(signal.SIGINT, signal.SIG_IGN)
fd, parent, grace = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
while True:
    try:
        data = os.read(fd, 64)
    except OSError:
        sys.exit(0)
    if not data:
        sys.exit(0)
    if signal.SIGINT in data:
        time.sleep(grace)
        if os.getppid() != parent:
            sys.exit(0)
        sys.stderr.write("error: interrupted; the computation did not stop within %g s, so it was ended "
                         "(finished results are kept; rerun to resume)\\n" % grace)
        sys.stderr.flush()
        os.kill(parent, signal.SIGKILL)
        sys.exit(0)
"""


def interrupt_watchdog(grace_s: float = INTERRUPT_GRACE_S) -> None:
    """Make Ctrl-C end this process within ``grace_s`` seconds, whatever it is computing.

    Python acts on Ctrl-C (SIGINT) only between bytecodes: JAX computations notice it at once, but a long
    call into a library that holds the interpreter lock (a large LAPACK factorisation through SciPy, for
    instance) would delay it until the call returns. Here Python's signal wake-up fd reports every SIGINT,
    as it arrives, to a small watcher process; if this process is still alive ``grace_s`` seconds later,
    the watcher prints a line and ends it (SIGKILL, exit status 137). Results written so far are complete
    (every file is written atomically); the interrupted point is recomputed by the next run. Called by the
    ``nwcorrupt`` command itself, never on import; must run in the main thread.
    """
    import subprocess

    r, w = os.pipe()
    os.set_blocking(w, False)
    subprocess.Popen(
        [sys.executable, "-c", _WATCHER, str(r), str(os.getpid()), str(float(grace_s))],
        pass_fds=(r,), start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
    )  # fmt: skip
    os.close(r)
    signal.set_wakeup_fd(w, warn_on_full_buffer=False)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status (:data:`EXIT_STATUS`).

    An expected failure prints one line ``error: ...`` on stderr (its traceback first with ``--debug``);
    any other exception is a bug: its traceback, then a line asking to report it. Run as the ``nwcorrupt``
    command (``argv`` None), Ctrl-C ends it within :data:`INTERRUPT_GRACE_S` seconds
    (:func:`interrupt_watchdog`).
    """
    args = build_parser().parse_args(argv)
    if argv is None and os.environ.get("NWCORRUPT_NO_WATCHDOG", "") in ("", "0"):
        interrupt_watchdog()
    try:
        return int(args.func(args))
    except (Exception, KeyboardInterrupt) as err:
        known = _expected(err, args)
        if known is None or args.debug:
            sys.stdout.flush()
            traceback.print_exception(err, file=sys.stderr)
        if known is None:
            print(f"error: internal error ({type(err).__name__}: {_one_line(err)}); this is a bug of nwcorrupt: "
                  "please report it with the traceback above", file=sys.stderr)
            return EXIT_STATUS["failed"]
        message, status = known
        print(f"error: {message}", file=sys.stderr)
        return status


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
