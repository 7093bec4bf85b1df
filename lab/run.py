"""Entry points that run a scenario on an engine: :func:`simulate` and :func:`run`."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .errors import LabError
from .records import Recorder
from .result import RunResult
from .scenario import Scenario, load_scenario

log = logging.getLogger(__name__)

ENGINES = ("sim", "http", "kafka")


def _as_scenario(scenario: Scenario | str, overrides: dict[str, Any]) -> Scenario:
    if isinstance(scenario, Scenario) and not overrides:
        return scenario
    return load_scenario(scenario, **overrides)


def simulate(
    scenario: Scenario | str, *, seed: int | None = None, styles: Iterable[str] | None = None, **overrides: Any
) -> RunResult:
    """Run every style of ``scenario`` in SimPy on common random numbers.

    ``seed`` defaults to the scenario's ``seed``.  Returns a :class:`RunResult` whose
    summary has one row per style.
    """
    import pandas as pd

    from .metrics import fault_metrics, timeline
    from .sim import SimEngine

    sc = _as_scenario(scenario, overrides)
    seed = sc.seed if seed is None else int(seed)
    chosen = list(styles) if styles is not None else sc.styles
    rec = Recorder()
    end_s: dict[str, float] = {}
    extra: dict[str, dict] = {}
    lines = []
    names = list(sc.services)
    bucket = sc.series_interval_s or max(0.1, sc.duration_s / 200.0)
    for style in chosen:
        if style not in ("orchestration", "events", "hybrid"):
            raise LabError(f"unknown style {style!r}", source=sc.name, field="style")
        engine = SimEngine(sc, style, seed, rec)
        engine.run()
        end_s[style] = engine.end_s
        extra[style] = fault_metrics(rec, style, engine.cal, names, sc.warmup_s, sc.duration_s)
        lines.append((style, engine.cal, engine.end_s))
        log.debug("simulated %s/%s seed=%s until t=%.1f", sc.name, style, seed, engine.end_s)
    return RunResult.from_recorder(
        sc, rec, engine="sim", seed=seed, styles=chosen, end_s=end_s, extra=extra,
        timeline=lambda: pd.concat([timeline(rec, st, cal, names, bucket, end) for st, cal, end in lines], ignore_index=True),
    )  # fmt: skip


def run(scenario: Scenario | str, *, engine: str = "sim", seed: int | None = None, **options: Any) -> RunResult:
    """Run ``scenario`` on ``engine`` (``sim``, ``http`` or ``kafka``)."""
    if engine == "sim":
        return simulate(scenario, seed=seed, **options)
    if engine not in ENGINES:
        raise LabError(f"unknown engine (choose from {', '.join(ENGINES)})", source="--engine", field=engine)
    sc = _as_scenario(scenario, {})
    if engine == "http":
        from .http import run_http  # noqa: PLC0415 - optional heavy import

        return run_http(sc, seed=sc.seed if seed is None else seed, **options)
    from .kafka import run_kafka  # noqa: PLC0415

    return run_kafka(sc, seed=sc.seed if seed is None else seed, **options)
