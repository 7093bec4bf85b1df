"""CLI pieces of the HTTP engine, registered into ``lab`` by lab.cli's optional hooks:
``--compress`` / ``--transport`` / ``--drain`` for ``lab run --engine http`` and the
``lab compare SCENARIO --engines sim,http`` subcommand."""

from __future__ import annotations

import argparse
import json
import math

from ..cli import positive_float, seed_type


def _add_http_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("http engine")
    g.add_argument("--compress", type=positive_float, default=1.0,
                   help="scenario seconds per wall second for the calendar (duration, faults, bursts); default 1")  # fmt: skip
    g.add_argument("--transport", choices=["aiohttp", "httpx"], default="aiohttp",
                   help="httpx transport of the orchestrator (default aiohttp: measured faster)")  # fmt: skip
    g.add_argument("--drain", type=positive_float, default=30.0, help="seconds to wait for workflows after the last arrival")


def run_options(args: argparse.Namespace) -> dict:
    """Keyword options of run_http from the parsed flags."""
    return {
        "compress": getattr(args, "compress", 1.0),
        "transport": getattr(args, "transport", "aiohttp"),
        "drain_s": getattr(args, "drain", 30.0),
    }


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from ..errors import LabError
    from ..run import ENGINES
    from ..scenario import load_scenario, parse_set
    from .compare import compare_engines

    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    for e in engines:
        if e not in ENGINES:
            raise LabError(f"unknown engine (choose from {', '.join(ENGINES)})", source="--engines", field=e)
    if len(engines) < 2:
        raise LabError("name at least two engines, e.g. sim,http", source="--engines", field=args.engines)
    sc = load_scenario(args.scenario, **parse_set(args.set or []))
    table, results = compare_engines(sc, engines, seed=args.seed, options={"http": run_options(args)})
    if args.out:
        table.to_csv(args.out, index=False)
    if args.json:
        rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()}
                for r in table.to_dict(orient="records")]  # fmt: skip
        print(json.dumps(rows))
        return 0
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(f"{sc.name}: {' vs '.join(engines)} (seed {results[0].seed})")
        print(table.to_string(index=False))
    return 0


def register(sub) -> None:
    run_parser = sub.choices.get("run")
    if run_parser is not None:
        _add_http_flags(run_parser)
    p = sub.add_parser("compare", help="run one scenario on several engines; p50/p95/p99, throughput side by side")
    p.add_argument("scenario")
    p.add_argument("--engines", default="sim,http", help="comma-separated, the first is the reference (default sim,http)")
    p.add_argument("--seed", type=seed_type, default=None)
    p.add_argument("--set", action="append", metavar="dotted.key=value", help="override a field")
    p.add_argument("--json", action="store_true", help="print the comparison rows as JSON")
    p.add_argument("--out", help="also write the comparison table to this CSV file")
    _add_http_flags(p)
    p.set_defaults(func=cmd_compare)
