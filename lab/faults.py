"""Faults: the scenario's ``faults:`` section and the outage calendar it generates.

Pure and clock-agnostic: a :class:`FaultCalendar` is a set of piecewise-constant step
functions of time (seconds from the start of the run), generated once per run from the
scenario and its seed, and queried by any engine (SimPy, HTTP, Kafka).  All intervals
are half-open ``[start, end)``.

Public API
----------
- :class:`Faults` - the section (crashes, latency spikes, error bursts, outages,
  partitions, load_shedding) with :meth:`Faults.validate_against`; :func:`parse_faults`.
- :func:`fault_calendar` - ``(faults, services, horizon_s, seed) -> FaultCalendar``; includes
  the load-shedding down time of every site (:mod:`lab.loadshedding`).
- :class:`FaultCalendar` - ``is_down``, ``down_mode``, ``next_change``,
  ``latency_multiplier``, ``extra_failure_prob``, ``partitioned``, ``down_fraction``,
  ``down_intervals``, ``to_frame``, ``timeline``.

Calendars are read-only after generation: safe to share between threads and processes.

Randomness: crash ``i`` of service ``s`` draws from the stream named
``faults.crash:<s>:<i>`` (:func:`lab.rng.spawn`, keyed by ``zlib.crc32``), so the same seed
gives the same calendar and services' streams do not depend on each other or on order.
"""

from __future__ import annotations

import bisect
import importlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from . import _validation
from .errors import LabError
from .rng import spawn

__all__ = [
    "BROKER",
    "ORCHESTRATOR",
    "Crash",
    "ErrorBurst",
    "FaultCalendar",
    "Faults",
    "LatencySpike",
    "Outage",
    "Partition",
    "fault_calendar",
    "load_shedding_sites",
    "parse_faults",
]

BROKER = "broker"
ORCHESTRATOR = "orchestrator"
#: more expected crashes than this in one run is a units mistake, not a scenario
MAX_CRASHES = 1e6

NonNegFloat = Annotated[float, Field(ge=0)]
PosFloat = Annotated[float, Field(gt=0)]
DownMode = Literal["refuse", "hang"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an infinite time never ends a run


class Crash(_Model):
    """Random crashes of ``service`` (or ``broker``, ``orchestrator``): up-times ~ Exp(mean ``mtbf_s``), repair times ~
    Exp(mean ``mttr_s``), alternating from ``start_s`` (up before it).  While crashed the
    service refuses connections (``mode: refuse``) or accepts and never answers (``hang``).
    Long-run availability is ``mtbf_s / (mtbf_s + mttr_s)``."""

    service: str
    mtbf_s: PosFloat
    mttr_s: PosFloat
    start_s: NonNegFloat = 0.0
    mode: DownMode = "refuse"


class LatencySpike(_Model):
    """From ``start_s`` for ``duration_s``, ``service``'s service time is multiplied by
    ``multiplier`` (overlapping spikes multiply)."""

    service: str
    start_s: NonNegFloat
    duration_s: PosFloat
    multiplier: PosFloat


class ErrorBurst(_Model):
    """From ``start_s`` for ``duration_s``, each call to ``service`` also fails with
    ``failure_prob`` (independent of its base ``failure_prob``; overlaps combine as
    independent chances)."""

    service: str
    start_s: NonNegFloat
    duration_s: PosFloat
    failure_prob: Annotated[float, Field(ge=0, le=1)]


class Outage(_Model):
    """``service`` (or ``broker``, ``orchestrator``) is down from ``start_s`` for ``duration_s``:
    ``refuse`` fails calls at once, ``hang`` holds them until the caller's timeout."""

    service: str
    start_s: NonNegFloat
    duration_s: PosFloat
    mode: DownMode = "refuse"


class Partition(_Model):
    """The network between ``service`` and ``peer`` (``broker`` or ``orchestrator``) is cut
    from ``start_s`` for ``duration_s``; both ends stay up."""

    service: str
    peer: Literal["broker", "orchestrator"] = "broker"
    start_s: NonNegFloat
    duration_s: PosFloat


def _load_shedding_model() -> type[BaseModel] | None:
    """``lab.loadshedding.LoadShedding`` if that module exists (it is optional here)."""
    try:
        module = importlib.import_module("lab.loadshedding")
    except ModuleNotFoundError as exc:
        if exc.name == "lab.loadshedding":
            return None
        raise
    return getattr(module, "LoadShedding", None)


_LoadShedding = _load_shedding_model()
#: type of ``Faults.load_shedding``: the load-shedding model when lab.loadshedding provides
#: one (nested errors then name ``faults.load_shedding.<field>``), else a plain mapping
LoadSheddingSlot = (_LoadShedding | None) if _LoadShedding is not None else (dict[str, Any] | None)


class Faults(_Model):
    """The scenario's ``faults:`` section.  Empty by default (no faults)."""

    crashes: list[Crash] = Field(default_factory=list)
    latency_spikes: list[LatencySpike] = Field(default_factory=list)
    error_bursts: list[ErrorBurst] = Field(default_factory=list)
    outages: list[Outage] = Field(default_factory=list)
    partitions: list[Partition] = Field(default_factory=list)
    load_shedding: LoadSheddingSlot = None  # type: ignore[valid-type]

    @property
    def empty(self) -> bool:
        return not (
            self.crashes or self.latency_spikes or self.error_bursts or self.outages or self.partitions
        ) and self.load_shedding is None

    def check_crash_counts(self, horizon_s: float, source: str | None = None) -> None:
        """A crash rate that would give more than :data:`MAX_CRASHES` crashes over the run is
        a units mistake: refused (at validation, naming the file) instead of run."""
        for k, c in enumerate(self.crashes):
            cycles = (horizon_s - c.start_s) / (c.mtbf_s + c.mttr_s)
            if cycles > MAX_CRASHES:
                raise LabError(
                    f"about {cycles:.3g} crashes over {horizon_s:g} s: more than {MAX_CRASHES:g} "
                    "(check units: mtbf_s and mttr_s are seconds)",
                    source=source, field=f"faults.crashes[{k}]",
                )  # fmt: skip

    def validate_against(self, services: Iterable[str], *, source: str = "<scenario>") -> None:
        """Raise :class:`LabError` naming e.g. ``faults.crashes[0].service`` when a fault
        names a service the scenario does not have (crashes and outages may also name
        ``broker`` and ``orchestrator``)."""
        known = set(services)
        hosts = known | {BROKER, ORCHESTRATOR}
        lists: list[tuple[str, list[Any], set[str]]] = [
            ("crashes", self.crashes, hosts),
            ("latency_spikes", self.latency_spikes, known),
            ("error_bursts", self.error_bursts, known),
            ("outages", self.outages, hosts),
            ("partitions", self.partitions, known),
        ]
        for name, items, allowed in lists:
            for i, item in enumerate(items):
                if item.service not in allowed:
                    raise LabError(
                        f"unknown service {item.service!r} (known: {', '.join(sorted(allowed))})",
                        source=source,
                        field=f"faults.{name}[{i}].service",
                    )
        if self.load_shedding is not None and hasattr(self.load_shedding, "validate_sites"):
            self.load_shedding.validate_sites(load_shedding_sites(known), source=source)


#: load-shedding site of the shared network link (an ISP point of presence, a cell tower):
#: without power, every service is cut off from the broker and the orchestrator
NETWORK = "network"
#: prefix of a service's own network link as a load-shedding site (``link:<service>``)
LINK = "link:"


def load_shedding_sites(services: Iterable[str]) -> list[str]:
    """The sites load-shedding may name in ``areas``: the services, ``broker``,
    ``orchestrator``, the shared ``network`` link and each service's own ``link:<service>``.
    A link without power is a partition (calls hang, consumers cannot fetch), not an outage."""
    names = sorted(set(services))
    return names + [BROKER, ORCHESTRATOR, NETWORK] + [LINK + n for n in names]


def parse_faults(data: Mapping[str, Any] | Faults | None, *, source: str = "<keywords>") -> Faults:
    """Validate a ``faults:`` mapping, or raise :class:`LabError` naming ``faults.<field>``."""
    return _validation.parse(Faults, data, prefix="faults", source=source)


# -- step functions ------------------------------------------------------------------------------


def _merge(intervals: Iterable[tuple[float, float, int]]) -> list[tuple[float, float, int]]:
    """Sort and merge overlapping/touching ``(start, end, hang)`` intervals; a merged
    interval hangs if any part of it does."""
    out: list[list[float]] = []
    for s, e, h in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
            out[-1][2] = max(out[-1][2], h)
        else:
            out.append([s, e, h])
    return [(s, e, int(h)) for s, e, h in out]


@dataclass
class _Intervals:
    """Merged, sorted down intervals with fast lookup."""

    starts: list[float] = field(default_factory=list)
    ends: list[float] = field(default_factory=list)
    hang: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, items: Iterable[tuple[float, float, int]]) -> _Intervals:
        merged = _merge(items)
        return cls([m[0] for m in merged], [m[1] for m in merged], [m[2] for m in merged])

    def index(self, t: float) -> int:
        """Index of the interval containing ``t``, or -1."""
        i = bisect.bisect_right(self.starts, t) - 1
        return i if i >= 0 and t < self.ends[i] else -1

    def next_change(self, t: float) -> float:
        i = self.index(t)
        if i >= 0:
            return self.ends[i]
        j = bisect.bisect_right(self.starts, t)
        return self.starts[j] if j < len(self.starts) else math.inf

    def overlap(self, t0: float, t1: float) -> float:
        total = 0.0
        for s, e in zip(self.starts, self.ends, strict=True):
            if e <= t0:
                continue
            if s >= t1:
                break
            total += min(e, t1) - max(s, t0)
        return total


@dataclass
class _Steps:
    """A piecewise-constant function: ``values[i]`` on ``[bounds[i], bounds[i+1])``,
    ``default`` before the first bound and after the last."""

    bounds: list[float] = field(default_factory=list)
    values: list[float] = field(default_factory=list)
    default: float = 0.0

    @classmethod
    def of(cls, windows: Iterable[tuple[float, float, float]], combine: str, default: float) -> _Steps:
        windows = [w for w in windows if w[1] > w[0]]
        if not windows:
            return cls(default=default)
        bounds = sorted({b for s, e, _ in windows for b in (s, e)})
        values = []
        for i, b in enumerate(bounds):
            nxt = bounds[i + 1] if i + 1 < len(bounds) else math.inf
            active = [v for s, e, v in windows if s <= b and nxt <= e]
            if combine == "product":
                values.append(float(np.prod(active)) if active else default)
            else:  # independent chances of failure
                values.append(1.0 - float(np.prod([1.0 - v for v in active])) if active else default)
        return cls(bounds, values, default)

    def at(self, t: float) -> float:
        i = bisect.bisect_right(self.bounds, t) - 1
        return self.values[i] if i >= 0 else self.default

    def next_change(self, t: float) -> float:
        j = bisect.bisect_right(self.bounds, t)
        while j < len(self.bounds):
            if self.values[j] != self.at(t):
                return self.bounds[j]
            j += 1
        return math.inf


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


@dataclass
class FaultCalendar:
    """Every fault of one run, as step functions of time (seconds from the start).

    Names are service names, ``broker`` and ``orchestrator``; a name without faults is
    always up, at multiplier 1 and extra failure probability 0.
    """

    horizon_s: float
    down: dict[str, _Intervals] = field(default_factory=dict)
    latency: dict[str, _Steps] = field(default_factory=dict)
    errors: dict[str, _Steps] = field(default_factory=dict)
    partitions: dict[tuple[str, str], _Intervals] = field(default_factory=dict)

    # -- down / up -------------------------------------------------------------------------------
    def is_down(self, service: str, t: float) -> bool:
        iv = self.down.get(service)
        return iv is not None and iv.index(t) >= 0

    def down_mode(self, service: str, t: float) -> DownMode | None:
        """``None`` when up, else ``refuse`` or ``hang``."""
        iv = self.down.get(service)
        if iv is None:
            return None
        i = iv.index(t)
        if i < 0:
            return None
        return "hang" if iv.hang[i] else "refuse"

    def down_intervals(self, service: str) -> list[tuple[float, float]]:
        iv = self.down.get(service)
        return [] if iv is None else list(zip(iv.starts, iv.ends, strict=True))

    def down_fraction(self, service: str, t0: float = 0.0, t1: float | None = None) -> float:
        """Share of ``[t0, t1)`` (default: the whole horizon) during which ``service`` is down."""
        t1 = self.horizon_s if t1 is None else t1
        if t1 <= t0:
            raise ValueError("down_fraction needs t1 > t0")
        iv = self.down.get(service)
        return 0.0 if iv is None else iv.overlap(t0, t1) / (t1 - t0)

    # -- degradations ------------------------------------------------------------------------------
    def latency_multiplier(self, service: str, t: float) -> float:
        s = self.latency.get(service)
        return 1.0 if s is None else s.at(t)

    def extra_failure_prob(self, service: str, t: float) -> float:
        s = self.errors.get(service)
        return 0.0 if s is None else s.at(t)

    def partitioned(self, a: str, b: str, t: float) -> bool:
        """Is the link between ``a`` and ``b`` cut at ``t``?  (symmetric)"""
        iv = self.partitions.get(_pair(a, b))
        return iv is not None and iv.index(t) >= 0

    # -- scheduling ----------------------------------------------------------------------------------
    def next_change(
        self, service: str, t: float, kind: Literal["down", "latency", "errors", "any"] = "down"
    ) -> float:
        """The first time after ``t`` at which ``service``'s state of ``kind`` changes
        (``down``: goes down or comes back; ``any`` also counts latency, error windows and
        partitions involving it); ``inf`` when nothing changes any more."""
        times = [math.inf]
        if kind in ("down", "any") and service in self.down:
            times.append(self.down[service].next_change(t))
        if kind in ("latency", "any") and service in self.latency:
            times.append(self.latency[service].next_change(t))
        if kind in ("errors", "any") and service in self.errors:
            times.append(self.errors[service].next_change(t))
        if kind == "any":
            times.extend(iv.next_change(t) for pair, iv in self.partitions.items() if service in pair)
        return min(times)

    def timeline(self, names: Iterable[str], bucket_s: float, horizon_s: float | None = None):
        """Fault state per name and time bucket, for failure-propagation pictures: columns
        ``name, t_s`` (bucket start), ``down_share`` (share of the bucket down),
        ``latency_multiplier`` and ``extra_failure_prob`` (at the bucket start),
        ``partitioned`` (cut from broker or orchestrator at the bucket start) and ``state``:
        ``down`` (down at least half the bucket), ``degraded`` (partly down, slowed, erroring
        or cut off) or ``up``.  Engines join their queue, lag and failure counts on it."""
        import pandas as pd

        if bucket_s <= 0:
            raise ValueError("bucket_s must be > 0")
        horizon = self.horizon_s if horizon_s is None else horizon_s
        starts = np.arange(0.0, horizon, bucket_s)
        rows = []
        for name in names:
            for t in starts.tolist():
                t1 = min(t + bucket_s, horizon)
                down = self.down_fraction(name, t, t1)
                mult = self.latency_multiplier(name, t)
                p = self.extra_failure_prob(name, t)
                cut = any(self.partitioned(name, peer, t) for peer in (BROKER, ORCHESTRATOR) if peer != name)
                if down >= 0.5:
                    state = "down"
                elif down > 0 or mult != 1.0 or p > 0 or cut:
                    state = "degraded"
                else:
                    state = "up"
                rows.append((name, t, down, mult, p, cut, state))
        cols = ["name", "t_s", "down_share", "latency_multiplier", "extra_failure_prob", "partitioned", "state"]
        return pd.DataFrame(rows, columns=cols)

    def to_frame(self):
        """Every interval as a tidy table: kind, service, peer, start_s, end_s, value."""
        import pandas as pd

        rows = []
        for name, iv in self.down.items():
            for s, e, h in zip(iv.starts, iv.ends, iv.hang, strict=True):
                rows.append(("down", name, "", s, e, "hang" if h else "refuse"))
        for kind, table in (("latency", self.latency), ("errors", self.errors)):
            for name, st in table.items():
                for i, b in enumerate(st.bounds[:-1]):
                    if st.values[i] != st.default:
                        rows.append((kind, name, "", b, st.bounds[i + 1], st.values[i]))
        for (a, b), iv in self.partitions.items():
            for s, e in zip(iv.starts, iv.ends, strict=True):
                rows.append(("partition", a, b, s, e, ""))
        return pd.DataFrame(rows, columns=["kind", "service", "peer", "start_s", "end_s", "value"])


def crash_intervals(crash: Crash, horizon_s: float, rng: np.random.Generator) -> list[tuple[float, float]]:
    """Alternating Exp(mtbf) up-times and Exp(mttr) down-times from ``crash.start_s`` to
    ``horizon_s``; the down intervals, clipped to the horizon."""
    out: list[tuple[float, float]] = []
    t = crash.start_s
    cycle = crash.mtbf_s + crash.mttr_s
    while t < horizon_s:
        n = int((horizon_s - t) / cycle * 1.2) + 16
        ups = rng.exponential(crash.mtbf_s, n)
        downs = rng.exponential(crash.mttr_s, n)
        ends = t + np.cumsum(ups + downs)
        starts = ends - downs
        for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
            if s >= horizon_s:
                return out
            out.append((s, min(e, horizon_s)))
        t = float(ends[-1])
    return out


def fault_calendar(
    faults: Faults | Mapping[str, Any] | None,
    services: Iterable[str],
    horizon_s: float,
    seed: int,
    *,
    extra_down: Mapping[str, Iterable[tuple[float, float]]] | None = None,
) -> FaultCalendar:
    """Generate the fault calendar of one run.

    ``services`` are the scenario's service names (checked with
    :meth:`Faults.validate_against`); ``horizon_s`` is the run's duration; ``seed`` the
    run's seed.  ``extra_down`` adds down intervals (``refuse`` mode) computed elsewhere,
    for other sources of down time.

    Load-shedding (``faults.load_shedding``, :mod:`lab.loadshedding`) adds each site's down
    intervals after its backup power (sites: services, ``broker``, ``orchestrator``) in
    ``hang`` mode: a site without power answers nothing, so callers wait for their timeout.
    """
    f = parse_faults(faults)
    names = list(services)
    f.validate_against(names)
    if horizon_s <= 0:
        raise LabError("horizon_s must be > 0", field="duration_s")
    f.check_crash_counts(horizon_s)
    down: dict[str, list[tuple[float, float, int]]] = {}
    per_service_index: dict[str, int] = {}
    for c in f.crashes:
        i = per_service_index.get(c.service, 0)
        per_service_index[c.service] = i + 1
        rng = spawn(seed, f"faults.crash:{c.service}:{i}")
        hang = int(c.mode == "hang")
        down.setdefault(c.service, []).extend((s, e, hang) for s, e in crash_intervals(c, horizon_s, rng))
    for o in f.outages:
        down.setdefault(o.service, []).append((o.start_s, o.start_s + o.duration_s, int(o.mode == "hang")))
    for name, intervals in (extra_down or {}).items():
        down.setdefault(name, []).extend((float(s), float(e), 0) for s, e in intervals)
    link_cuts: dict[tuple[str, str], list[tuple[float, float, int]]] = {}
    if f.load_shedding is not None and _LoadShedding is not None:
        from .loadshedding import outage_calendar

        shed = outage_calendar(f.load_shedding, load_shedding_sites(names), horizon_s, seed)
        for name, intervals in shed.items():
            if not intervals:
                continue
            cut = names if name == NETWORK else [name[len(LINK):]] if name.startswith(LINK) else None
            if cut is None:
                down.setdefault(name, []).extend((float(s), float(e), 1) for s, e in intervals)
                continue
            for svc in cut:  # a dark link: the service is up but reaches neither peer
                for peer in (BROKER, ORCHESTRATOR):
                    link_cuts.setdefault(_pair(svc, peer), []).extend((float(s), float(e), 0) for s, e in intervals)

    spikes: dict[str, list[tuple[float, float, float]]] = {}
    for sp in f.latency_spikes:
        spikes.setdefault(sp.service, []).append((sp.start_s, sp.start_s + sp.duration_s, sp.multiplier))
    bursts: dict[str, list[tuple[float, float, float]]] = {}
    for b in f.error_bursts:
        bursts.setdefault(b.service, []).append((b.start_s, b.start_s + b.duration_s, b.failure_prob))
    parts: dict[tuple[str, str], list[tuple[float, float, int]]] = link_cuts
    for p in f.partitions:
        parts.setdefault(_pair(p.service, p.peer), []).append((p.start_s, p.start_s + p.duration_s, 0))

    return FaultCalendar(
        horizon_s=float(horizon_s),
        down={k: _Intervals.of(v) for k, v in down.items()},
        latency={k: _Steps.of(v, "product", 1.0) for k, v in spikes.items()},
        errors={k: _Steps.of(v, "chance", 0.0) for k, v in bursts.items()},
        partitions={k: _Intervals.of(v) for k, v in parts.items()},
    )
