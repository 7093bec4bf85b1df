"""South Africa's real load-shedding record, cleaned into one stage timeline per scope.

The raw record (``data/eskom_stage_record.csv``, from eskom-calendar, CC BY-NC-SA 4.0: see
``data/README.md``) holds every announced interval as it was recorded over time; revisions of an
announcement overlap.  :func:`clean_record` applies the record's rule: where intervals of one
scope overlap, the one recorded later wins, and ``national`` and ``national_excl_coct`` are one
national timeline (``coct_only`` is Cape Town's own).

Times are **SAST wall-clock, tz-naive** ``datetime64`` values, like the raw file.  South Africa
has had no daylight saving since 1944, so naive SAST is unambiguous; convert with
``tz_localize("Africa/Johannesburg")`` if you need aware times.  Intervals are half-open
``[start, finish)``.  A cleaned timeline has non-overlapping intervals of stage 1..8; a gap means
stage 0 (no load-shedding).

Cleaning details (quirks found in the raw file):

- ``start``/``finish`` come in two formats (``2023-05-05 05:00:00`` and ``2023-05-05T05:00:00``).
- A finish on minute 59 (``15:59``, ``23:59``) is the last minute of the interval, so the
  half-open end is one minute later (``16:00``); other finishes are taken as written.
- A finish before its start on the same date (three ``coct_only`` rows, 2022-11-01..03,
  ``22:00 -> 04:59``) is an overnight interval: it finishes on the next day.
- ``recorded_at`` has mixed offsets (+01:00 and +02:00); it is compared in UTC.
- Ties in ``recorded_at`` (one revision holding two overlapping rows) go to
  ``national_excl_coct`` over ``national``, then to the row further down the file.
- Stage-0 rows (suspensions) win like any other row and then become gaps.
"""

from __future__ import annotations

import functools
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import LabError

log = logging.getLogger(__name__)

__all__ = [
    "PLACES",
    "SCOPES",
    "clean_record",
    "clip_timeline",
    "days_with_shedding",
    "hours_by_stage",
    "load_record",
    "record_span",
    "shedding_hours",
    "stage_at",
    "stage_hours",
    "stage_timeline",
]

#: scopes of the cleaned record
SCOPES: tuple[str, ...] = ("national", "coct_only")

#: place name (lower case) -> scope.  ``cape town`` uses Cape Town's own stage where the record
#: has one and falls back to the national timeline (Eskom's, Cape Town excepted) elsewhere.
PLACES: dict[str, str] = {
    "national": "national",
    "national_excl_coct": "national",
    "south africa": "national",
    "johannesburg": "national",
    "joburg": "national",
    "pretoria": "national",
    "tshwane": "national",
    "durban": "national",
    "ethekwini": "national",
    "gqeberha": "national",
    "port elizabeth": "national",
    "bloemfontein": "national",
    "cape town": "cape_town",
    "coct": "cape_town",
    "city of cape town": "cape_town",
    "coct_only": "coct_only",
}

_COLUMNS = ["scope", "start", "finish", "stage"]
_RAW_SCOPES = {"national", "national_excl_coct", "coct_only"}


def _default_path() -> Path:
    return Path(str(resources.files("lab.data").joinpath("eskom_stage_record.csv")))


def load_record(path: str | Path | None = None) -> pd.DataFrame:
    """Read the raw record and parse it (no overlap resolution yet).

    Returns the raw columns plus ``start``/``finish`` as naive SAST datetimes (with the fixes
    listed in the module docstring), ``recorded_at`` as UTC, ``group`` (``national`` or
    ``coct_only``) and ``row`` (the line order in the file).
    """
    path = Path(path) if path is not None else _default_path()
    try:
        raw = pd.read_csv(path, dtype=str)
    except FileNotFoundError:
        raise LabError("load-shedding record not found", source=str(path)) from None
    missing = set(_COLUMNS + ["recorded_at"]) - set(raw.columns)
    if missing:
        raise LabError(f"record lacks columns {sorted(missing)}", source=str(path))
    bad = set(raw["scope"]) - _RAW_SCOPES
    if bad:
        raise LabError(f"unknown scopes {sorted(bad)}", source=str(path), field="scope")
    df = raw.copy()
    df["row"] = np.arange(len(df))
    df["start"] = pd.to_datetime(raw["start"], format="ISO8601")
    finish = pd.to_datetime(raw["finish"], format="ISO8601")
    last_minute = (finish.dt.minute == 59) & (finish.dt.second == 0)
    finish = finish + pd.to_timedelta(last_minute.astype(int), unit="min")
    overnight = (finish <= df["start"]) & (finish + pd.Timedelta(days=1) > df["start"])
    if overnight.any():
        log.debug("%d overnight rows finish on the next day", int(overnight.sum()))
    finish = finish + pd.to_timedelta(overnight.astype(int), unit="D")
    df["finish"] = finish
    df["stage"] = raw["stage"].astype(int)
    if not df["stage"].between(0, 8).all():
        raise LabError("stages must be 0..8", source=str(path), field="stage")
    df["recorded_at"] = pd.to_datetime(raw["recorded_at"], utc=True, format="ISO8601")
    df["group"] = np.where(df["scope"] == "coct_only", "coct_only", "national")
    empty = df["finish"] <= df["start"]
    if empty.any():
        log.warning("dropping %d rows with finish <= start", int(empty.sum()))
        df = df[~empty]
    return df.reset_index(drop=True)


def _paint(rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Painter's algorithm: later-recorded rows overwrite earlier ones.

    Returns the elementary boundaries ``b`` (datetime64[ns]) and, per segment ``[b[i], b[i+1])``,
    the winning stage (-1 where no row covers it).
    """
    order = rows.assign(tie=(rows["scope"] == "national_excl_coct").astype(int)).sort_values(
        ["recorded_at", "tie", "row"], kind="stable"
    )
    starts = order["start"].to_numpy("datetime64[ns]")
    finishes = order["finish"].to_numpy("datetime64[ns]")
    b = np.unique(np.concatenate([starts, finishes]))
    seg = np.full(len(b) - 1, -1, dtype=int)
    lo = np.searchsorted(b, starts)
    hi = np.searchsorted(b, finishes)
    for i, j, s in zip(lo, hi, order["stage"].to_numpy(), strict=True):
        seg[i:j] = s
    return b, seg


def _segments(b: np.ndarray, seg: np.ndarray, scope: str, *, keep_zero: bool) -> pd.DataFrame:
    """Merge runs of equal stage into intervals; drop uncovered (and stage-0) segments."""
    if len(seg) == 0:
        return pd.DataFrame(columns=_COLUMNS)
    change = np.flatnonzero(np.diff(seg) != 0) + 1
    first = np.concatenate([[0], change])
    last = np.concatenate([change, [len(seg)]])
    out = pd.DataFrame(
        {"scope": scope, "start": b[first], "finish": b[last], "stage": seg[first]}
    )
    keep = out["stage"] >= (0 if keep_zero else 1)
    return out[keep].reset_index(drop=True)


def clean_record(raw: pd.DataFrame | None = None, *, keep_zero: bool = False) -> pd.DataFrame:
    """One non-overlapping stage timeline per scope: tidy ``(scope, start, finish, stage)``.

    ``scope`` is ``national`` or ``coct_only``.  Gaps mean stage 0; with ``keep_zero=True`` the
    explicitly announced suspensions (stage 0) are kept as rows.  Without an argument the
    shipped record is used (cached).
    """
    if raw is None:
        return _clean_default(keep_zero).copy()
    parts = []
    for scope in SCOPES:
        rows = raw[raw["group"] == scope]
        if len(rows):
            b, seg = _paint(rows)
            parts.append(_segments(b, seg, scope, keep_zero=keep_zero))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=_COLUMNS)


@functools.lru_cache(maxsize=2)
def _clean_default(keep_zero: bool) -> pd.DataFrame:
    return clean_record(load_record(), keep_zero=keep_zero)


@functools.lru_cache(maxsize=1)
def _cape_town_default() -> pd.DataFrame:
    return _cape_town(load_record())


def _cape_town(raw: pd.DataFrame) -> pd.DataFrame:
    """Cape Town: ``coct_only`` wherever a coct row covers the instant, else the national stage."""
    coct = raw[raw["group"] == "coct_only"]
    nat = raw[raw["group"] == "national"]
    b1, s1 = _paint(coct)
    b2, s2 = _paint(nat)
    b = np.unique(np.concatenate([b1, b2]))
    mid = b[:-1]

    def lookup(bb: np.ndarray, ss: np.ndarray) -> np.ndarray:
        i = np.searchsorted(bb, mid, side="right") - 1
        inside = (i >= 0) & (i < len(ss))
        out = np.full(len(mid), -1, dtype=int)
        out[inside] = ss[i[inside]]
        return out

    c, n = lookup(b1, s1), lookup(b2, s2)
    seg = np.where(c >= 0, c, n)
    return _segments(b, seg, "cape_town", keep_zero=False)


def _resolve(place: str) -> str:
    key = place.strip().lower().replace("-", " ")
    key = key if key in PLACES else key.replace(" ", "_")
    if key not in PLACES:
        raise LabError(
            f"unknown place {place!r}; known: {', '.join(sorted(PLACES))}", field="replay.place"
        )
    return PLACES[key]


def record_span() -> tuple[pd.Timestamp, pd.Timestamp]:
    """First start and last finish in the shipped record (naive SAST)."""
    tl = clean_record(keep_zero=True)
    return tl["start"].min(), tl["finish"].max()


def stage_timeline(
    place: str = "national",
    start: str | pd.Timestamp | None = None,
    end: str | pd.Timestamp | None = None,
    *,
    raw: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """The cleaned stage timeline of ``place`` clipped to ``[start, end)``.

    ``place`` is a scope (``national``, ``coct_only``) or a place name: Johannesburg and the
    other Eskom/metro areas map to ``national``; ``Cape Town`` uses ``coct_only`` where the record
    has it and the national timeline elsewhere.  Dates are naive SAST (``"2023-06-08"`` is
    midnight).  Returns tidy ``(scope, start, finish, stage)`` with stage >= 1.
    """
    scope = _resolve(place)
    if scope == "cape_town":
        tl = _cape_town(raw) if raw is not None else _cape_town_default()
    else:
        full = clean_record(raw)
        tl = full[full["scope"] == scope]
    lo = pd.Timestamp(start) if start is not None else pd.Timestamp.min
    hi = pd.Timestamp(end) if end is not None else pd.Timestamp.max
    if hi <= lo:
        raise LabError(f"window end {hi} is not after its start {lo}", field="replay")
    return clip_timeline(tl, lo, hi)


def stage_at(timeline: pd.DataFrame, when: str | pd.Timestamp) -> int:
    """The stage in force at ``when`` (0 in a gap)."""
    t = pd.Timestamp(when)
    hit = timeline[(timeline["start"] <= t) & (timeline["finish"] > t)]
    return int(hit["stage"].iloc[0]) if len(hit) else 0


def _hours(timeline: pd.DataFrame) -> pd.Series:
    return (timeline["finish"] - timeline["start"]).dt.total_seconds() / 3600.0


def hours_by_stage(timeline: pd.DataFrame) -> pd.Series:
    """Hours spent at each stage 1..8 (index ``stage``)."""
    h = _hours(timeline).groupby(timeline["stage"]).sum()
    return h.reindex(range(1, 9), fill_value=0.0).rename_axis("stage").rename("hours")


def shedding_hours(timeline: pd.DataFrame) -> float:
    """Hours with any load-shedding (stage >= 1)."""
    return float(_hours(timeline[timeline["stage"] > 0]).sum())


def stage_hours(timeline: pd.DataFrame) -> float:
    """Stage-hours: the sum of stage x hours (stage 4 for 2 h = 8 stage-hours)."""
    return float((_hours(timeline) * timeline["stage"]).sum())


def days_with_shedding(timeline: pd.DataFrame, start: str | pd.Timestamp, end: str | pd.Timestamp) -> int:
    """Number of calendar days in ``[start, end)`` touched by load-shedding."""
    tl = clip_timeline(timeline, start, end)
    days: set[pd.Timestamp] = set()
    for s, f in zip(tl["start"], tl["finish"], strict=True):
        days.update(pd.date_range(s.normalize(), (f - pd.Timedelta(1, "ns")).normalize(), freq="D"))
    return len(days)


def clip_timeline(timeline: pd.DataFrame, start: str | pd.Timestamp, end: str | pd.Timestamp) -> pd.DataFrame:
    """Clip an already-built timeline to ``[start, end)``."""
    lo, hi = pd.Timestamp(start), pd.Timestamp(end)
    tl = timeline[(timeline["finish"] > lo) & (timeline["start"] < hi)].copy()
    tl["start"] = tl["start"].clip(lower=lo)
    tl["finish"] = tl["finish"].clip(upper=hi)
    return tl.reset_index(drop=True)
