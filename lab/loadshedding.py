"""Load-shedding: stage rules -> outage slots per area -> effective down time per site.

Pure and clock-agnostic: everything here works on seconds (floats) from a start time ``t0`` and
returns lists of ``(start_s, end_s)`` intervals; the SimPy engine and the real engines consume the
same calendar.  The scenario section is :class:`LoadShedding`; engines call
:func:`outage_calendar`.

The rules (Eskom and municipal publications, see ``data/README.md``)
-------------------------------------------------------------------
- Stages 1-4: an area is off 3N times in 4 days for 2 hours (or, with ``slot_hours: 4``, 3N
  times in 8 days for 4 hours: the same rotation on a 4-hour grid).
- Stages 5-8: 12 times in 4 days mixing 2 h and 4 h slots
  (5: 9x2h+3x4h, 6: 6x2h+6x4h, 7: 3x2h+9x4h, 8: 12x4h).
- Higher stages contain the lower ones (nested).
- Municipal slots add a 30-minute switching buffer (2 h -> 2 h 30, 4 h -> 4 h 30); switchable.
- The stage may differ by day and by night (e.g. stage 1 05:00-16:00, stage 3 16:00-05:00).

The rotation (this lab's deterministic table, in the shape of the municipal ones)
--------------------------------------------------------------------------------
16 areas, numbered 1..16.  Time is cut into 2-hour slots starting at even hours (SAST), counted
``j = 0, 1, 2, ...`` from :data:`ROTATION_EPOCH` (2024-01-01 00:00 SAST; earlier slots have
negative ``j``), so the table is tied to the calendar, not to the scenario's start.  In slot
``j`` area ``a`` has the *residue* ``r = (a - 1 - j) mod 16``; it is off at stage ``N`` when
``r`` is in ``OFF_RESIDUES[N]``:

- stage 1 adds residue 0, stage 2 adds 8, stage 3 adds 4, stage 4 adds 12 (the 2-hour slots);
- stage 5 adds 15 (= 0 - 1), stage 6 adds 7, stage 7 adds 3, stage 8 adds 11: residue ``L - 1``
  is the slot right after a residue-``L`` slot, so each added layer stretches the 2-hour slots of
  one of the stage 1-4 layers to 4 hours.

So the stage-1 area of slot ``j`` is ``j mod 16 + 1``: on each day (12 slots) the areas advance
by one per slot and the day's first slot shifts by 12 areas (-4 mod 16), so an area's slots move
through the hours of the day and the table repeats every 16 slots (32 hours; 4 days = 3 turns).
Consequences, all tested: at every instant exactly ``N`` of the 16 areas are off at stage ``N``
(the stage sheds N/16 of the load); in 4 days an area is off 3N times for 2 h at stages 1-4 and
12 times at stages 5-8 with the published 2 h / 4 h mix; stage N's off-set is contained in stage
N+1's (nested).  When the stage changes inside a slot, each part of the slot follows the stage in
force then.  The switching buffer is added to the end of each merged outage.

Backup power
------------
- ``battery`` (or UPS): full at t0, drains linearly over ``runtime_h`` while the grid is down,
  recharges linearly over ``recharge_h`` while it is up; the site is down when the grid is down
  and the battery is empty.  Cell towers: 6-12 h runtime, 12-18 h to recharge (``backup:
  cell_tower``); at stage 4 and above they stop recovering and later slots bite.
- ``generator``: starts ``start_delay_min`` after the grid goes down (the site is down
  meanwhile); with ``fuel_h`` it runs that many hours in total over the run (no refuelling).
- A ``[low, high]`` pair for ``runtime_h``/``recharge_h``/``start_delay_min``/``fuel_h`` is drawn
  uniformly per site from the seed (same seed, same calendar).

Time scale: the calendar is computed in real (calendar) seconds and divided by ``compress``
(calendar seconds per scenario second) so that days of load-shedding can play in minutes of a
scenario: ``compress: 1440`` plays one day in one scenario minute.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from . import _validation, eskom
from .errors import LabError
from .rng import spawn

log = logging.getLogger(__name__)

__all__ = [
    "AREAS",
    "Backup",
    "CELL_TOWER",
    "LoadShedding",
    "OFF_RESIDUES",
    "ROTATION_EPOCH",
    "Replay",
    "SLOT_S",
    "SiteArea",
    "area_outages",
    "areas_off",
    "battery_down",
    "calendar_frame",
    "generator_down",
    "is_off",
    "outage_calendar",
    "parse_load_shedding",
    "stage_pieces",
    "total_s",
]

#: where the lead mounts the section in the scenario (used in error messages)
FIELD = "faults.load_shedding"

SLOT_S = 7200.0
N_AREAS = 16
AREAS: tuple[int, ...] = tuple(range(1, N_AREAS + 1))
ROTATION_EPOCH = dt.datetime(2024, 1, 1, 0, 0)
#: residue added by each stage 1..8 (see the module docstring)
_LAYER = (0, 8, 4, 12)
_ADDED = _LAYER + tuple((x - 1) % N_AREAS for x in _LAYER)
OFF_RESIDUES: dict[int, frozenset[int]] = {n: frozenset(_ADDED[:n]) for n in range(0, 9)}
#: lead-in before t0 so that outages (and buffers) in progress at t0 are included
_LEAD_S = 4 * SLOT_S
_SAST = dt.timezone(dt.timedelta(hours=2))

Interval = tuple[float, float]


# --------------------------------------------------------------------------- rotation


def is_off(area: int, stage: int, slot: int) -> bool:
    """Is ``area`` (1..16) off at ``stage`` in 2-hour slot number ``slot`` (from the epoch)?"""
    return (area - 1 - slot) % N_AREAS in OFF_RESIDUES[stage]


def areas_off(stage: int, slot: int) -> list[int]:
    """The areas off at ``stage`` in slot number ``slot``."""
    return [a for a in AREAS if is_off(a, stage, slot)]


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    out: list[list[float]] = []
    for s, e in sorted(intervals):
        if e <= s:
            continue
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


def _clip(intervals: Iterable[Interval], lo: float, hi: float) -> list[Interval]:
    return [(max(s, lo), min(e, hi)) for s, e in intervals if e > lo and s < hi]


def total_s(intervals: Iterable[Interval]) -> float:
    """Total length of (non-overlapping) intervals."""
    return float(sum(e - s for s, e in intervals))


def area_outages(
    pieces: Sequence[tuple[float, float, int]],
    area: int,
    *,
    t0: dt.datetime = ROTATION_EPOCH,
    horizon_s: float | None = None,
    buffer_s: float = 1800.0,
    slot_s: float = SLOT_S,
) -> list[Interval]:
    """The grid outages of ``area`` under a stage timeline, in seconds from ``t0``.

    ``pieces`` are ``(start_s, end_s, stage)`` in calendar seconds from ``t0`` (naive SAST); they
    may start before 0 so that outages in progress at ``t0`` are found.  Off parts of slots are
    merged, ``buffer_s`` is added to the end of each merged outage, and the result is clipped to
    ``[0, horizon_s]`` (no clipping above when ``horizon_s`` is None).  ``slot_s=4 h`` uses the
    4-hour tables of stages 1-4 (3N times in 8 days for 4 hours; same rotation on a 4-hour grid).
    """
    if area not in AREAS:
        raise LabError(f"area {area} does not exist (areas are 1..{N_AREAS})", field=f"{FIELD}.areas")
    if buffer_s < 0:
        raise LabError("buffer must not be negative", field=f"{FIELD}.buffer_min")
    if slot_s not in (SLOT_S, 2 * SLOT_S):
        raise LabError("slots are 2 or 4 hours", field=f"{FIELD}.slot_hours")
    offset = (t0 - ROTATION_EPOCH).total_seconds()
    off: list[Interval] = []
    for ps, pe, stage in pieces:
        if stage <= 0 or pe <= ps:
            continue
        if slot_s != SLOT_S and stage > 4:
            raise LabError(
                f"the 4-hour tables define stages 1-4 only (the timeline reaches stage {stage})",
                field=f"{FIELD}.slot_hours",
            )
        residues = OFF_RESIDUES[int(stage)]
        j0 = math.floor((ps + offset) / slot_s)
        j1 = math.ceil((pe + offset) / slot_s)
        for j in range(j0, j1):
            if (area - 1 - j) % N_AREAS in residues:
                s = max(ps, j * slot_s - offset)
                e = min(pe, (j + 1) * slot_s - offset)
                if e > s:
                    off.append((s, e))
    merged = _merge(off)
    if buffer_s:
        merged = _merge((s, e + buffer_s) for s, e in merged)
    hi = math.inf if horizon_s is None else horizon_s
    return _clip(merged, 0.0, hi)


# --------------------------------------------------------------------------- backup power


def battery_down(
    outages: Sequence[Interval], runtime_s: float, recharge_s: float, *, initial: float = 1.0
) -> list[Interval]:
    """Down intervals of a site with a battery, given its grid outages (sorted, disjoint).

    The charge (0..1) starts at ``initial``, falls by ``1/runtime_s`` per second of outage and
    rises by ``1/recharge_s`` per second of grid (up to full).  The site is down while the grid is
    down and the battery is empty.  Time starts at 0.
    """
    if runtime_s <= 0 or recharge_s <= 0:
        raise LabError("battery runtime and recharge must be positive", field=f"{FIELD}.areas")
    q = min(max(initial, 0.0), 1.0)
    last = 0.0
    down: list[Interval] = []
    for s, e in _merge(outages):
        q = min(1.0, q + max(0.0, s - last) / recharge_s)
        covered = q * runtime_s
        if covered >= e - s:
            q -= (e - s) / runtime_s
        else:
            down.append((s + covered, e))
            q = 0.0
        last = e
    return down


def generator_down(
    outages: Sequence[Interval], start_delay_s: float, *, fuel_s: float | None = None
) -> list[Interval]:
    """Down intervals of a site with a generator: the first ``start_delay_s`` of each outage, and
    whatever is left of the outages once ``fuel_s`` seconds of running (over the run) are used."""
    if start_delay_s < 0 or (fuel_s is not None and fuel_s < 0):
        raise LabError("generator delay and fuel must not be negative", field=f"{FIELD}.areas")
    fuel = math.inf if fuel_s is None else fuel_s
    down: list[Interval] = []
    for s, e in _merge(outages):
        run_from = min(e, s + start_delay_s)
        if run_from > s:
            down.append((s, run_from))
        run = min(fuel, e - run_from)
        fuel -= run
        if run_from + run < e:
            down.append((run_from + run, e))
    return _merge(down)


# --------------------------------------------------------------------------- scenario section


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # an infinite time never ends a run


Range = float | tuple[float, float]


def _check_range(v: Any, name: str, *, positive: bool) -> Any:
    if v is None:
        return v
    vals = list(v) if isinstance(v, list | tuple) else [v]
    if len(vals) not in (1, 2):
        raise ValueError(f"{name} must be a number or a [low, high] pair")
    for x in vals:
        if not isinstance(x, int | float) or isinstance(x, bool) or not math.isfinite(x):
            raise ValueError(f"{name} must be a number")
        if x < 0 or (positive and x == 0):
            got = f" (got {x} in {vals})" if len(vals) == 2 else ""
            raise ValueError(f"{name} must be {'positive' if positive else 'non-negative'}{got}")
    if len(vals) == 2 and vals[0] > vals[1]:
        raise ValueError(f"{name} range [{vals[0]}, {vals[1]}] has low > high")
    return vals[0] if len(vals) == 1 else (float(vals[0]), float(vals[1]))


#: a cell tower's battery (data/README.md): 6-12 h runtime, 12-18 h to recharge
CELL_TOWER: dict[str, Any] = {"kind": "battery", "runtime_h": (6.0, 12.0), "recharge_h": (12.0, 18.0)}


class Backup(_Model):
    """Backup power of a site: ``none``, ``battery`` (runtime_h, recharge_h) or ``generator``
    (start_delay_min, optional fuel_h).  The string ``cell_tower`` means a 6-12 h battery that
    needs 12-18 h to recharge.  Numbers may be ``[low, high]`` ranges drawn per site from the seed."""

    kind: Literal["none", "battery", "generator"] = "none"
    runtime_h: Range | None = None
    recharge_h: Range | None = None
    initial_charge: float = Field(1.0, ge=0, le=1)
    start_delay_min: Range | None = None
    fuel_h: Range | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, v: Any) -> Any:
        if v is None:
            return {"kind": "none"}
        if isinstance(v, str):
            if v == "cell_tower":
                return dict(CELL_TOWER)
            return {"kind": v}
        return v

    @field_validator("runtime_h", "recharge_h", mode="before")
    @classmethod
    def _positive(cls, v: Any, info: Any) -> Any:
        return _check_range(v, info.field_name, positive=True)

    @field_validator("start_delay_min", "fuel_h", mode="before")
    @classmethod
    def _non_negative(cls, v: Any, info: Any) -> Any:
        return _check_range(v, info.field_name, positive=False)

    @model_validator(mode="after")
    def _needs(self) -> Backup:
        if self.kind == "battery" and (self.runtime_h is None or self.recharge_h is None):
            raise ValueError("a battery needs runtime_h and recharge_h")
        if self.kind == "generator" and self.start_delay_min is None:
            raise ValueError("a generator needs start_delay_min")
        if self.kind != "battery" and (self.runtime_h is not None or self.recharge_h is not None):
            raise ValueError(f"runtime_h/recharge_h belong to a battery, not to kind {self.kind!r}")
        if self.kind != "generator" and (self.start_delay_min is not None or self.fuel_h is not None):
            raise ValueError(f"start_delay_min/fuel_h belong to a generator, not to kind {self.kind!r}")
        return self


class SiteArea(_Model):
    """Where a site (service, broker, network link) sits: its area 1..16 and its backup power.
    A bare number is the area with no backup."""

    area: int
    backup: Backup = Field(default_factory=Backup)

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, v: Any) -> Any:
        if isinstance(v, int) and not isinstance(v, bool):
            return {"area": v}
        return v

    @field_validator("area", mode="before")
    @classmethod
    def _area(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower().removeprefix("area").strip().isdigit():
            v = int(v.strip().lower().removeprefix("area"))
        if not isinstance(v, int) or isinstance(v, bool) or v not in AREAS:
            raise ValueError(f"area {v!r} does not exist: areas are 1..{N_AREAS}")
        return v


class Replay(_Model):
    """A window of the real record: ``start`` (date or SAST datetime), ``days``, ``place``
    (``Johannesburg``, ``Cape Town``, ``national``, ``coct_only``...; ``scope`` is an alias)."""

    start: dt.datetime
    days: float = Field(7.0, gt=0)
    place: str = "national"

    @model_validator(mode="before")
    @classmethod
    def _alias(cls, v: Any) -> Any:
        if isinstance(v, Mapping) and "scope" in v:
            v = dict(v)
            if "place" in v:
                raise ValueError("give place or scope, not both")
            v["place"] = v.pop("scope")
        return v

    @field_validator("start", mode="before")
    @classmethod
    def _date(cls, v: Any) -> Any:
        if isinstance(v, dt.date) and not isinstance(v, dt.datetime):
            return dt.datetime(v.year, v.month, v.day)
        return v

    @field_validator("start", mode="after")
    @classmethod
    def _naive(cls, v: dt.datetime) -> dt.datetime:
        return _to_sast(v)

    @field_validator("place")
    @classmethod
    def _place(cls, v: str) -> str:
        try:
            eskom._resolve(v)
        except LabError as exc:
            raise ValueError(exc.message) from None
        return v

    @model_validator(mode="after")
    def _in_record(self) -> Replay:
        lo, hi = eskom.record_span()
        end = self.start + dt.timedelta(days=self.days)
        if self.start < lo.to_pydatetime().replace(hour=0, minute=0) or end > hi.to_pydatetime() + dt.timedelta(days=1):
            raise ValueError(
                f"replay window {self.start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M} lies outside the record "
                f"({lo:%Y-%m-%d}..{hi:%Y-%m-%d})"
            )
        return self


def _to_sast(v: dt.datetime) -> dt.datetime:
    if v.tzinfo is not None:
        v = v.astimezone(_SAST).replace(tzinfo=None)
    return v


def _check_stage(v: Any, name: str) -> Any:
    if v is None:
        return v
    if isinstance(v, bool) or not isinstance(v, int | float) or v != int(v):
        raise ValueError(f"{name} must be a whole number 0..8")
    if not 0 <= v <= 8:
        raise ValueError(f"stage {int(v)} does not exist: stages are 0..8")
    return int(v)


class LoadShedding(_Model):
    """The load-shedding section of a scenario (``faults.load_shedding``).

    Give exactly one of: ``stage`` (constant), ``day_stage`` + ``night_stage`` (day from
    ``day_start_h``, night from ``night_start_h``, SAST hours), or ``replay`` (a window of the
    real record; its start is t0).  ``start_at`` is the SAST date-time at scenario time 0 (default
    :data:`ROTATION_EPOCH`); ``compress`` is calendar seconds per scenario second; ``areas`` maps
    site names (services, ``broker``, network links...) to an area 1..16 and backup power.  Sites
    not listed are never shed.  ``slot_hours: 4`` uses the 4-hour tables (stages 1-4 only).
    """

    stage: int | None = None
    day_stage: int | None = None
    night_stage: int | None = None
    day_start_h: float = Field(5.0, ge=0, lt=24)
    night_start_h: float = Field(16.0, ge=0, lt=24)
    replay: Replay | None = None
    switching_buffer: bool = True
    buffer_min: float = Field(30.0, ge=0)
    slot_hours: Literal[2, 4] = 2
    start_at: dt.datetime | None = None
    compress: float = Field(1.0, gt=0)
    areas: dict[str, SiteArea] = Field(default_factory=dict)

    @field_validator("stage", "day_stage", "night_stage", mode="before")
    @classmethod
    def _stage(cls, v: Any, info: Any) -> Any:
        return _check_stage(v, info.field_name)

    @field_validator("start_at", mode="after")
    @classmethod
    def _start(cls, v: dt.datetime | None) -> dt.datetime | None:
        return None if v is None else _to_sast(v)

    @model_validator(mode="after")
    def _one_source(self) -> LoadShedding:
        day_night = self.day_stage is not None or self.night_stage is not None
        given = [n for n, ok in (("stage", self.stage is not None), ("day_stage/night_stage", day_night),
                                 ("replay", self.replay is not None)) if ok]
        if len(given) != 1:
            raise ValueError(
                "give exactly one of stage, day_stage + night_stage, or replay"
                + (f" (got {' and '.join(given)})" if given else "")
            )
        if day_night:
            if self.day_stage is None or self.night_stage is None:
                raise ValueError("day_stage and night_stage go together")
            if not self.day_start_h < self.night_start_h:
                raise ValueError(f"day_start_h ({self.day_start_h}) must be before night_start_h ({self.night_start_h})")
        if self.slot_hours == 4 and max(self.stage or 0, self.day_stage or 0, self.night_stage or 0) > 4:
            raise ValueError("the 4-hour tables (slot_hours: 4) define stages 1-4 only")
        if self.replay is not None and self.start_at is not None:
            raise ValueError("with replay, t0 is replay.start: leave start_at out")
        return self

    @property
    def t0(self) -> dt.datetime:
        """SAST date-time of scenario time 0."""
        if self.replay is not None:
            return self.replay.start
        return self.start_at or ROTATION_EPOCH

    def validate_sites(self, sites: Iterable[str], *, source: str = "<scenario>") -> None:
        """Raise :class:`LabError` (field ``faults.load_shedding.areas.<site>``) for a site in
        ``areas`` that is not among ``sites`` (services, ``broker``, ``orchestrator``, links)."""
        sites = list(sites)
        for name in self.areas:
            if name not in sites:
                shown = [x for x in sites if not x.startswith("link:")]
                if len(shown) < len(sites):
                    shown.append("link:<service>")
                raise LabError(
                    f"unknown site {name!r} (sites: {', '.join(shown) or 'none'})",
                    source=source,
                    field=f"{FIELD}.areas.{name}",
                )

    @property
    def buffer_s(self) -> float:
        return self.buffer_min * 60.0 if self.switching_buffer else 0.0


def parse_load_shedding(data: Mapping[str, Any] | LoadShedding, *, source: str = "<keywords>") -> LoadShedding:
    """Validate a mapping into :class:`LoadShedding`, or raise :class:`LabError` naming the field
    (``faults.load_shedding.<field>``)."""
    return _validation.parse(LoadShedding, data, prefix=FIELD, source=source)


# --------------------------------------------------------------------------- calendar


def stage_pieces(ls: LoadShedding, horizon_s: float) -> list[tuple[float, float, int]]:
    """The stage timeline as ``(start_s, end_s, stage)`` in calendar seconds from ``ls.t0``,
    covering ``[-lead-in, horizon_s]`` (stage-0 stretches left out)."""
    lo, hi = -_LEAD_S, float(horizon_s)
    t0 = ls.t0
    if ls.stage is not None:
        return [(lo, hi, ls.stage)] if ls.stage > 0 else []
    if ls.replay is not None:
        r = ls.replay
        end = r.start + dt.timedelta(days=r.days)
        tl = eskom.stage_timeline(r.place, t0 + dt.timedelta(seconds=lo), end)
        out = []
        for s, f, st in zip(tl["start"], tl["finish"], tl["stage"], strict=True):
            a = (s.to_pydatetime() - t0).total_seconds()
            b = (f.to_pydatetime() - t0).total_seconds()
            if b > lo and a < hi:
                out.append((max(a, lo), min(b, hi), int(st)))
        if hi > r.days * 86400:
            log.info("horizon beyond the replay window: stage 0 after %.1f days", r.days)
        return out
    out = []
    day0 = dt.datetime.combine((t0 + dt.timedelta(seconds=lo)).date(), dt.time()) - dt.timedelta(days=1)
    d = day0
    while (d - t0).total_seconds() < hi:
        for a_h, b_h, st in (
            (ls.day_start_h, ls.night_start_h, ls.day_stage),
            (ls.night_start_h, 24 + ls.day_start_h, ls.night_stage),
        ):
            a = (d - t0).total_seconds() + a_h * 3600
            b = (d - t0).total_seconds() + b_h * 3600
            if st and b > lo and a < hi:
                out.append((max(a, lo), min(b, hi), int(st)))
        d += dt.timedelta(days=1)
    return out


def _rng(seed: int | np.random.SeedSequence, site: str) -> np.random.Generator:
    return spawn(seed, f"loadshedding.backup:{site}")


def _draw(v: Range | None, rng: np.random.Generator) -> float | None:
    if v is None:
        return None
    if isinstance(v, tuple):
        return float(rng.uniform(v[0], v[1]))
    return float(v)


def outage_calendar(
    ls: LoadShedding | Mapping[str, Any],
    sites: Iterable[str],
    horizon_s: float,
    seed: int | np.random.SeedSequence = 0,
    *,
    grid_only: bool = False,
) -> dict[str, list[Interval]]:
    """Down intervals per site in **scenario seconds** ``[0, horizon_s]``.

    Every site in ``sites`` gets an entry (empty when it is not in ``ls.areas``); a site in
    ``ls.areas`` that is not in ``sites`` is a :class:`LabError`.  Backup power is applied unless
    ``grid_only``.  ``seed`` draws the ranged backup figures (same seed, same calendar).
    """
    ls = parse_load_shedding(ls) if not isinstance(ls, LoadShedding) else ls
    sites = list(sites)
    if horizon_s < 0:
        raise LabError(f"horizon must not be negative, got {horizon_s}", field="duration_s")
    ls.validate_sites(sites)
    cal_h = horizon_s * ls.compress
    pieces = stage_pieces(ls, cal_h)
    by_area: dict[int, list[Interval]] = {}
    out: dict[str, list[Interval]] = {}
    for site in sites:
        spec = ls.areas.get(site)
        if spec is None:
            out[site] = []
            continue
        if spec.area not in by_area:
            by_area[spec.area] = area_outages(
                pieces, spec.area, t0=ls.t0, horizon_s=cal_h, buffer_s=ls.buffer_s, slot_s=ls.slot_hours * 3600.0
            )
        grid = by_area[spec.area]
        b = spec.backup
        rng = _rng(seed, site)
        if grid_only or b.kind == "none":
            down = grid
        elif b.kind == "battery":
            down = battery_down(grid, _draw(b.runtime_h, rng) * 3600, _draw(b.recharge_h, rng) * 3600,
                                initial=b.initial_charge)
        else:
            fuel = _draw(b.fuel_h, rng)
            down = generator_down(grid, _draw(b.start_delay_min, rng) * 60, fuel_s=None if fuel is None else fuel * 3600)
        out[site] = [(s / ls.compress, e / ls.compress) for s, e in down]
    return out


def calendar_frame(calendar: Mapping[str, Sequence[Interval]]):
    """A tidy DataFrame ``(site, start_s, end_s)`` of a calendar, for tables and plots."""
    import pandas as pd

    rows = [(site, s, e) for site, ivs in calendar.items() for s, e in ivs]
    return pd.DataFrame(rows, columns=["site", "start_s", "end_s"])
