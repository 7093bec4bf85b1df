"""The result of a run: tidy DataFrames built at the edge from the records."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import LabError
from .records import Recorder, summarize_style, summary_frame
from .scenario import Scenario

TABLES = ("records", "steps", "polls", "events", "series", "summary", "timeline")


class RunResult:
    """What a run produced, in the same schema for every engine.

    ``records``: one row per workflow (style, workflow_id, started_s, finished_s, status,
    reason, response_s); ``steps``, ``polls``, ``events``: one row per step, poll, event;
    ``series``: long-format time series (style, time_s, metric, entity, value);
    ``summary``: one row per style (see :data:`lab.records.SUMMARY_COLUMNS`; fault
    metrics are defined in :mod:`lab.metrics`); ``timeline``: per style, service and time
    bucket, the state (up/degraded/down), queue, lag and failures - the failure-propagation
    picture.

    The tables are built from the engine's plain records the first time they are read
    (pandas only at the edge): a sweep that keeps only the summary never pays for them.
    """

    def __init__(
        self, scenario: Scenario, engine: str, seed: int, summary: pd.DataFrame, *,
        recorder: Recorder | None = None, tables: dict[str, pd.DataFrame] | None = None,
        timeline: pd.DataFrame | Callable[[], pd.DataFrame] | None = None, meta: dict | None = None,
    ):  # fmt: skip
        self.scenario = scenario
        self.engine = engine
        self.seed = seed
        self.summary = summary
        self.meta = meta or {}
        self._recorder = recorder
        self._tables: dict[str, pd.DataFrame] = dict(tables or {})
        self._timeline = timeline

    def _frame(self, name: str) -> pd.DataFrame:
        if name not in self._tables:
            if self._recorder is None:
                raise LabError(f"this result has no {name} table")
            frames = self._recorder.frames()
            self._tables.update(records=frames["workflows"], **{k: v for k, v in frames.items() if k != "workflows"})
        return self._tables[name]

    records = property(lambda self: self._frame("records"), doc="one row per workflow")
    steps = property(lambda self: self._frame("steps"), doc="one row per step")
    polls = property(lambda self: self._frame("polls"), doc="one row per poll")
    events = property(lambda self: self._frame("events"), doc="one row per event and consumer group")
    series = property(lambda self: self._frame("series"), doc="time series, long format")

    @property
    def timeline(self) -> pd.DataFrame:
        if callable(self._timeline):
            self._timeline = self._timeline()
        return self._timeline if self._timeline is not None else pd.DataFrame()

    def __repr__(self) -> str:
        return f"RunResult({self.scenario.name!r}, engine={self.engine!r}, seed={self.seed}, styles={list(self.summary['style'])})"

    @classmethod
    def from_recorder(
        cls, scenario: Scenario, rec: Recorder, *, engine: str, seed: int, styles: list[str], end_s: dict[str, float],
        extra: dict[str, dict] | None = None, timeline: pd.DataFrame | Callable[[], pd.DataFrame] | None = None,
    ) -> RunResult:
        rows = []
        for style in styles:
            row = summarize_style(
                rec, scenario=scenario.name, style=style, engine=engine, seed=seed,
                warmup_s=scenario.warmup_s, end_s=min(scenario.duration_s, end_s.get(style, scenario.duration_s)),
            )
            row.update(_extras(rec, scenario, style))
            if extra and style in extra:
                row.update(extra[style])
            rows.append(row)
        return cls(scenario, engine, seed, summary_frame(rows), recorder=rec, timeline=timeline)  # fmt: skip

    def table(self, name: str) -> pd.DataFrame:
        return getattr(self, name)

    def save(self, out_dir: str | Path, fmt: str = "parquet") -> Path:
        """Write every table and the scenario to ``out_dir`` (Parquet or CSV)."""
        out = Path(out_dir)
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise LabError(f"cannot create output directory: {exc.strerror}", source=str(out)) from None
        for name in TABLES:
            df = self.table(name)
            path = out / f"{name}.{fmt}"
            if fmt == "parquet":
                df.to_parquet(path, index=False)
            elif fmt == "csv":
                df.to_csv(path, index=False)
            else:
                raise LabError("format must be parquet or csv", source="--format", field=fmt)
        (out / "scenario.yaml").write_text(self.scenario.to_yaml(), encoding="utf-8")
        (out / "meta.json").write_text(json.dumps({"engine": self.engine, "seed": self.seed, **self.meta}), encoding="utf-8")
        return out

    @classmethod
    def load(cls, out_dir: str | Path) -> RunResult:
        """Read back what :meth:`save` wrote."""
        from .scenario import load_scenario

        out = Path(out_dir)
        meta = json.loads((out / "meta.json").read_text(encoding="utf-8"))
        tables = {}
        for name in TABLES:
            pq, csv = out / f"{name}.parquet", out / f"{name}.csv"
            if pq.exists():
                tables[name] = pd.read_parquet(pq)
            elif csv.exists():
                tables[name] = pd.read_csv(csv)
            else:
                raise LabError(f"missing {name} table", source=str(out))
        sc = load_scenario(out / "scenario.yaml")
        extra_meta = {k: v for k, v in meta.items() if k not in ("engine", "seed")}
        summary = tables.pop("summary")
        timeline = tables.pop("timeline")
        return cls(sc, meta["engine"], meta["seed"], summary, tables=tables, timeline=timeline, meta=extra_meta)


def _extras(rec: Recorder, sc: Scenario, style: str) -> dict[str, float]:
    """Columns beyond the required summary: caller's response time, load on the source."""
    resp = np.array(
        [w.response_s - w.started_s for w in rec.workflows if w.style == style and w.started_s >= sc.warmup_s and w.status != "failed" and w.response_s == w.response_s],
        dtype=float,
    )
    window = sc.duration_s - sc.warmup_s
    out = {
        "response_mean_s": float(resp.mean()) if resp.size else float("nan"),
        "response_p95_s": float(np.percentile(resp, 95)) if resp.size else float("nan"),
    }
    if sc.propagation is not None:
        src = sc.propagation.source
        out["source_load_per_s"] = sum(1 for p in rec.polls if p.style == style and p.target == src and p.time_s >= sc.warmup_s) / window
        out["source_utilisation"] = rec.counters.get((style, f"busy_s:{src}"), 0.0) / sc.duration_s / sc.services[src].concurrency
    return out
