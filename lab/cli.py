"""The ``lab`` command line.  The CLI prints; the library only logs.

Every user mistake ends with exit code 2 and one line on stderr naming the file and the
field; nothing already computed is lost (results are written before anything can fail).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path

from .errors import LabError

EXIT_USAGE = 2


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def seed_type(text: str) -> int:
    """argparse type of every ``--seed``: a non-negative integer (numpy's SeedSequence)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer (got {text!r})") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"seed must be a non-negative integer (got {value})")
    return value


def positive_float(text: str) -> float:
    """argparse type of a strictly positive number (``--compress``, ``--drain``, ``--time-scale``)."""
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return v


def _json_safe(value):
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item"):
        return _json_safe(value.item())
    return value


def cmd_scenarios(args: argparse.Namespace) -> int:
    from .scenario import preset_names, preset_summary

    names = preset_names()
    width = max(len(n) for n in names)
    for name in names:
        print(f"{name:<{width}}  {preset_summary(name)}")
    return 0


def cmd_validate(args: argparse.Namespace) -> int:
    from .scenario import load_scenario, parse_set

    sc = load_scenario(args.file, **parse_set(args.set or []))
    util = ", ".join(f"{k} {v:.2f}" for k, v in sc.offered_utilisation().items())
    print(f"{args.file}: ok - {sc.name}, styles {', '.join(sc.styles)}, offered utilisation: {util}")
    return 0


def _print_summary(summary, as_json: bool) -> None:
    if as_json:
        rows = [{k: _json_safe(v) for k, v in row.items()} for row in summary.to_dict(orient="records")]
        print(json.dumps(rows))
        return
    import pandas as pd

    cols = [
        "style", "engine", "started", "completed", "failed", "in_flight", "throughput_per_s", "latency_mean_s", "latency_p50_s",
        "latency_p95_s", "latency_p99_s", "availability", "polls", "wasted_polls", "staleness_mean_s",
        "max_backlog", "lost", "duplicates",
    ]  # fmt: skip
    with pd.option_context("display.width", 200, "display.max_columns", 40, "display.float_format", "{:.4g}".format):
        print(summary[[c for c in cols if c in summary.columns]].to_string(index=False))


def cmd_run(args: argparse.Namespace) -> int:
    from .run import run
    from .scenario import load_scenario, parse_set

    sc = load_scenario(args.scenario, **parse_set(args.set or []))
    options = {}
    if args.engine == "kafka":  # --- kafka engine flags (added by lab.kafka.command) ---
        from .kafka.command import run_options as kafka_run_options

        options.update(kafka_run_options(args))
    if args.engine == "http":  # --- http engine flags (added by lab.http.command) ---
        from .http.command import run_options

        options.update(run_options(args))
    if args.out:  # a directory that cannot be made is a mistake found before the run, not after
        _ensure_dir(args.out)
    result = run(sc, engine=args.engine, seed=args.seed, **options)
    try:
        if args.out:
            path = result.save(args.out, fmt=args.format)
            if not args.json:
                print(f"wrote {path}/ (records, steps, polls, events, series, summary as {args.format})")
    finally:  # the summary is shown even when writing failed: nothing computed is lost
        _print_summary(result.summary, args.json)
    return 0


def _ensure_dir(path: str) -> None:
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise LabError(f"cannot create output directory: {exc.strerror}", source=path, field="--out") from None


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job on the embedded default: compare the styles on presets, write a figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    from . import plots
    from .run import simulate

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = [simulate(name, seed=args.seed) for name in ("retail-inventory", "fintech-hybrid", "crm-sync")]
    summary = pd.concat([r.summary for r in results], ignore_index=True)
    summary.to_csv(out / "summary.csv", index=False)
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    plots.plot_latency_cdf(results[0].records, ax=axes[0], title="retail-inventory: end-to-end latency")
    plots.plot_latency_cdf(results[1].records, ax=axes[1], column="response", title="fintech-hybrid: caller's response")
    plots.plot_staleness(results[2].steps, ax=axes[2], title="crm-sync: staleness (polling vs push)")
    fig.tight_layout()
    fig.savefig(out / "demo.png", dpi=110)
    plt.close(fig)
    for r in results:
        print(f"== {r.scenario.name}")
        _print_summary(r.summary, False)
    print(f"wrote {out / 'summary.csv'} and {out / 'demo.png'}")
    return 0


def _write_table(table, args: argparse.Namespace) -> bool:
    """``--out FILE.csv`` and ``--json`` of the table commands; True when JSON was printed
    (and nothing else may be)."""
    if args.out:
        table.to_csv(args.out, index=False)
    if args.json:
        print(table.to_json(orient="records"))
    return bool(args.json)


def _add_table_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="print the table as JSON records, nothing else")
    p.add_argument("--out", help="write the table as CSV")


def cmd_claims(args: argparse.Namespace) -> int:
    from .claims import check_claims

    table = check_claims(seed=args.seed, quick=not args.full, aspects=args.aspect)
    if _write_table(table, args):
        return 0
    for _, r in table.iterrows():
        figures = "   ".join(f"{st} {r[st]:.4g}" for st in ("orchestration", "events", "hybrid") if not math.isnan(r[st]))
        print(f"[{r.verdict:>13}] {r.aspect}: {r.claim}\n    {r.measure}: {figures}\n    depends on: {r.depends_on}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_assess(args: argparse.Namespace) -> int:
    import pandas as pd

    from .assess import METRICS, assess, verdicts
    from .scenario import load_scenario, parse_set

    sc = load_scenario(args.scenario, **parse_set(args.set or []))
    table = assess(sc, seed=args.seed, questions=args.question)
    if _write_table(table, args):
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        for q, g in table.groupby("question", sort=False):
            wide = g.pivot_table(index=["case", "style"], columns="metric", values="value", sort=False, dropna=False)
            wide = wide.dropna(axis=1, how="all")  # e.g. staleness of a flow, which has none
            print(f"== {q}")
            print(wide[[m for m in METRICS[q] if m in wide.columns]].to_string())
    print("== verdicts")
    for v in verdicts(table).itertuples():
        if v.tie:
            print(f"{v.question}: no difference between {v.best} and {v.runner_up} ({v.best_value:.4g}) on {v.measure}")
        else:
            other = f", then {v.runner_up} {v.runner_up_value:.4g}" if v.runner_up else ""
            print(f"{v.question}: {v.best} {v.best_value:.4g}{other} on {v.measure}")
    if args.out:
        print(f"wrote {args.out}")
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """``lab sweep``: run, store, print where the rows went.  Raises LabError on bad input."""
    from .sweep import load_sweep_file, read_sweep, sweep

    spec = load_sweep_file(args.sweep_file)
    f = spec.file
    if args.scheduler is not None and getattr(args, "verbose", 0) == 0:
        import distributed  # noqa: F401  (importing it sets its loggers to INFO: quiet them after)

        logging.getLogger("distributed").setLevel(logging.WARNING)  # no cluster chatter on the terminal
    out = args.out or f.out
    if args.workers is not None and args.workers < 1:
        raise LabError(f"must be >= 1 (got {args.workers})", source="--workers")
    df = sweep(
        spec.scenario,
        f.grid,
        replications=args.replications if args.replications is not None else f.replications,
        seed=args.seed if args.seed is not None else f.seed,
        workers=args.workers,
        scheduler=args.scheduler,
        out=out,
        resume=args.resume,
        progress=not args.no_progress,
        load=out is None,  # a stored sweep is not read back whole: it may not fit in memory
        _source=spec.source,
    )
    if df is None:
        df = read_sweep(out, columns=["run_id", "error", "key"])
    failed = int(df.drop_duplicates("run_id")["error"].notna().sum()) if len(df) else 0
    runs = df["run_id"].nunique() if len(df) else 0
    where = f" -> {out}" if out else ""
    print(f"sweep {spec.scenario.name}: {runs} runs, {len(df)} rows, {failed} failed{where}")
    if out is None:
        print(df.to_string(max_rows=40))
    if failed:  # the rows are stored; say why they failed, once per distinct reason
        reasons = df.drop_duplicates("run_id")["error"].dropna().value_counts()
        for reason, n in reasons.head(3).items():
            print(f"lab: warning: {n} run(s) failed: {reason}", file=sys.stderr)
        if len(reasons) > 3:
            print(f"lab: warning: ... and {len(reasons) - 3} other reason(s) (see the error column)", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="lab", description="Architecture comparison lab: orchestration vs events, simulated and real.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-vv for debug)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("scenarios", help="list the presets, one line each")
    p.set_defaults(func=cmd_scenarios)

    p = sub.add_parser("validate", help="validate a scenario file (or preset)")
    p.add_argument("file")
    p.add_argument("--set", action="append", metavar="dotted.key=value", help="override a field")
    p.set_defaults(func=cmd_validate)

    p = sub.add_parser("run", help="run a scenario (preset name or YAML file) on an engine")
    p.add_argument("scenario")
    p.add_argument("--engine", choices=["sim", "http", "kafka"], default="sim",
                   help="sim (every style); http (orchestration, hybrid over real HTTP); kafka (events on a real "
                        "broker, and hybrid: the core over HTTP, the rest on Kafka)")  # fmt: skip
    p.add_argument("--seed", type=seed_type, default=None, help="root seed (default: the scenario's seed)")
    p.add_argument("--set", action="append", metavar="dotted.key=value", help="override a field, e.g. workload.rate_per_s=20")
    p.add_argument("--out", help="write records and summary to this directory")
    p.add_argument("--format", choices=["parquet", "csv"], default="parquet")
    p.add_argument("--json", action="store_true", help="print the summary rows as a JSON list, nothing else")
    p.add_argument("--bootstrap", help="Kafka bootstrap HOST:PORT (kafka engine)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("demo", help="compare the styles on presets; write data/demo/summary.csv and demo.png")
    p.add_argument("--out", default="data/demo")
    p.add_argument("--seed", type=seed_type, default=2026)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser(
        "sweep",
        help="run a parameter sweep from a sweep file (grid x replications) and store it as Parquet",
        description="Run a sweep file: a scenario, a grid of overrides, replications and a root seed.",
    )
    p.add_argument("sweep_file", metavar="SWEEP.yaml", help="the sweep file")
    p.add_argument("--workers", type=int, default=None, help="local worker processes (default: CPU count)")
    p.add_argument("--scheduler", default=None, help="Dask scheduler address, or 'local' for a LocalCluster")
    p.add_argument("--out", default=None, help="output Parquet directory (default: the file's out:)")
    p.add_argument("--resume", action="store_true", help="continue a stored sweep, skipping finished runs")
    p.add_argument("--seed", type=seed_type, default=None, help="root seed (default: the file's seed:)")
    p.add_argument("--replications", type=int, default=None, help="replications (default: the file's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_sweep)

    from .assess import METRICS
    from .claims import EXPERIMENTS

    p = sub.add_parser("claims", help="measure the orchestration-vs-events claims, one verdict each")
    p.add_argument("--seed", type=seed_type, default=2026)
    p.add_argument("--full", action="store_true", help="longer runs, tighter figures")
    p.add_argument("--aspect", action="append", choices=list(EXPERIMENTS), help="only this aspect (repeatable)")
    _add_table_flags(p)
    p.set_defaults(func=cmd_claims)

    p = sub.add_parser("assess", help="your scenario through four questions: everyday, headroom, one service down, load-shedding")
    p.add_argument("scenario", help="preset name or scenario YAML")
    p.add_argument("--seed", type=seed_type, default=None, help="root seed (default: the scenario's seed)")
    p.add_argument("--set", action="append", metavar="dotted.key=value", help="override a field")
    p.add_argument("--question", action="append", choices=list(METRICS), help="only this question (repeatable)")
    _add_table_flags(p)
    p.set_defaults(func=cmd_assess)

    for hook in _HOOKS:
        hook(sub)
    return parser


def _register_optional(sub) -> None:
    """Subcommands contributed by the real engines' command modules (kafka, http compare)."""
    import importlib

    for module in ("lab.kafka.command", "lab.http.command"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and module.startswith(exc.name):
                continue
            raise
        register = getattr(mod, "register", None)
        if register is not None:
            register(sub)


_HOOKS = [_register_optional]


def main(argv: list[str] | None = None) -> int:
    try:
        parser = build_parser()  # imports the engines' modules: a Ctrl-C may land here too
        args = parser.parse_args(argv)
    except KeyboardInterrupt:
        sys.stderr.write("lab: interrupted\n")
        return 130
    level = logging.WARNING - 10 * min(args.verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except LabError as exc:
        sys.stderr.write(f"lab: error: {exc.one_line()}\n")
        return EXIT_USAGE
    except KeyboardInterrupt:
        sys.stderr.write("lab: interrupted\n")
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
