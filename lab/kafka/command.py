"""``lab kafka up | status | down``: the command-line side of the lab's broker.

:func:`register` adds the ``kafka`` subcommand to the CLI's argparse subparsers; the
handler prints (the library only logs) and lets :class:`~lab.errors.LabError` reach the
CLI, which turns it into one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse

from ..cli import positive_float
from . import broker


def run_options(args: argparse.Namespace) -> dict:
    """Keyword options of ``run_kafka`` from ``lab run --engine kafka`` flags.

    Also quiets kafka-python's own logging (reconnects while a broker restarts, sockets closed
    at shutdown) unless ``-vv``: the lab's summary reports what matters (lost, duplicates)."""
    if getattr(args, "verbose", 0) < 2:
        import logging

        logging.getLogger("kafka").setLevel(logging.CRITICAL)
    out: dict = {"time_scale": getattr(args, "time_scale", 1.0)}
    if getattr(args, "compress", None) is not None:
        out["compress"] = args.compress
    if getattr(args, "bootstrap", None):
        out["bootstrap"] = args.bootstrap
    return out


def register(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    run_parser = subparsers.choices.get("run")
    if run_parser is not None:
        g = run_parser.add_argument_group("kafka engine")
        g.add_argument("--time-scale", type=positive_float, default=1.0,
                       help="wall seconds per scenario second, service times included (default 1)")  # fmt: skip
    p = subparsers.add_parser(
        "kafka",
        help="start, inspect or stop the lab's single-node Kafka broker (KRaft, no Docker)",
        description="A single-node Apache Kafka broker on 127.0.0.1, jars fetched with Maven into ~/.cache/lab.",
    )
    sub = p.add_subparsers(dest="kafka_action", metavar="{up,status,down}")
    sub.required = True
    up = sub.add_parser("up", help="start the broker (or report the one running) and print its bootstrap address")
    up.add_argument("--port", type=int, default=None, help="broker port (default: a free port)")
    up.add_argument("--heap", default=broker.DEFAULT_HEAP, help="JVM max heap (default: %(default)s)")
    up.add_argument("--kafka-version", default=broker.KAFKA_VERSION, help="Kafka version (default: %(default)s)")
    up.add_argument(
        "--bootstrap", default=None,
        help=f"use an existing cluster HOST:PORT instead of starting one (also ${broker.ENV_BOOTSTRAP})",
    )  # fmt: skip
    sub.add_parser("status", help="say whether the broker runs, where, and whether it accepts connections")
    sub.add_parser("down", help="stop the broker and remove its data directory")
    p.set_defaults(func=handle)
    return p


def handle(args: argparse.Namespace) -> int:
    action = args.kafka_action
    if action == "up":
        external = broker.validate_bootstrap(args.bootstrap) if args.bootstrap else None
        if external is None and broker.running() is None:
            import os

            env = os.environ.get(broker.ENV_BOOTSTRAP)
            external = broker.validate_bootstrap(env, source=broker.ENV_BOOTSTRAP) if env else None
        if external is not None:
            print(f"using existing Kafka cluster at {external} (nothing started)")
            print(external)
            return 0
        info = broker.start(port=args.port, version=args.kafka_version, heap=args.heap)
        print(f"kafka {info.version} up: pid {info.pid}, data {info.data_dir}, log {info.log_file}")
        print(info.bootstrap)
        return 0
    if action == "status":
        st = broker.status()
        print(st.line())
        return 0 if st.running else 1
    if action == "down":
        info = broker.stop()
        print("kafka: not running" if info is None else f"kafka down (pid {info.pid}); removed {info.data_dir}")
        return 0
    raise AssertionError(action)  # pragma: no cover - argparse restricts choices


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (``python -m lab.kafka.command up``) for when the lab CLI lacks the hook."""
    import sys

    from ..errors import LabError

    parser = argparse.ArgumentParser(prog="lab")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["kafka", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except LabError as exc:
        print(f"lab: {exc.one_line()}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
