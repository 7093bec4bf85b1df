"""Plots: ``plot_x(df, *, ax=None) -> Axes``.  They draw; they never simulate or show.

Colours are fixed per style across every figure (:data:`STYLE_COLOURS`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STYLE_COLOURS = {
    "orchestration": "#d95f02",  # orange: synchronous, pull
    "events": "#1b9e77",  # green: asynchronous, push
    "hybrid": "#7570b3",  # purple: both
}
STYLE_ORDER = ["orchestration", "events", "hybrid"]
#: line styles per style, so curves that coincide (events and hybrid often do) stay visible
STYLE_LINES = {"orchestration": "-", "events": "--", "hybrid": ":"}


def _axes(ax):
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.gca()
    return ax


def style_colour(style: str) -> str:
    return STYLE_COLOURS.get(style, "#666666")


def _styles(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df["style"]))
    return [s for s in STYLE_ORDER if s in present] + [s for s in present if s not in STYLE_ORDER]


def plot_latency_cdf(records: pd.DataFrame, *, ax=None, column: str = "latency", title: str | None = None, marks=(50, 95, 99)):
    """Empirical CDF of end-to-end latency (``column="latency"``) or of the caller's
    response time (``column="response"``) per style, with p50/p95/p99 marked."""
    ax = _axes(ax)
    done = records[records["status"] == "completed"]
    end = done["finished_s"] if column == "latency" else done["response_s"]
    values_all = end - done["started_s"]
    positive = values_all[values_all > 0]
    # on a log axis 0 has no place: zeros (an immediate answer) are drawn at a floor just left
    # of the smallest positive value, and the legend says so
    floor = max(float(positive.min()) / 2, 1e-6) if len(positive) else 1e-6
    for style in _styles(done):
        v = np.sort(values_all[done["style"] == style].to_numpy())
        if v.size == 0:
            continue
        y = np.arange(1, v.size + 1) / v.size
        colour = style_colour(style)
        zeros = float(np.mean(v <= 0))
        label = style if zeros < 0.5 else f"{style} (0 s, drawn at {floor:.2g} s)"
        ax.plot(np.maximum(v, floor), y, label=label, color=colour, lw=1.8, ls=STYLE_LINES.get(style, "-"))
        for q in marks:
            x = np.percentile(v, q)
            ax.plot([max(x, floor)], [q / 100], marker="o", ms=4, color=colour)
    ax.set_xscale("log")
    ax.set_xlabel(("end-to-end latency" if column == "latency" else "response time") + " (s, log scale)")
    ax.set_ylabel("share of completed workflows")
    ax.set_ylim(0, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(title="style (dots: p50, p95, p99)", fontsize=8)
    if title:
        ax.set_title(title)
    return ax


def plot_staleness(steps: pd.DataFrame, *, ax=None, title: str | None = None, bins: int = 40):
    """Distribution of staleness (change made -> subscriber knows) per style."""
    ax = _axes(ax)
    s = steps.dropna(subset=["staleness_s"])
    hi = max(float(s["staleness_s"].max()), 1e-3) if len(s) else 1.0
    edges = np.logspace(-3, np.log10(hi * 1.05), bins)
    for style in _styles(s):
        v = s.loc[s["style"] == style, "staleness_s"].clip(lower=1e-3)
        ax.hist(v, bins=edges, alpha=0.6, color=style_colour(style), label=f"{style} (mean {v.mean():.3g} s)")
    ax.set_xscale("log")
    ax.set_xlabel("staleness: change to awareness (s, log scale)")
    ax.set_ylabel("count (changes x subscribers)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


# -- shared helpers ---------------------------------------------------------------------------

#: colours of a service's state in the failure-propagation picture
STATE_COLOURS = {"up": "#d9ead3", "degraded": "#f6b26b", "down": "#cc0000"}

#: columns that can hold the offered load, the poll interval, the chain length (first found wins)
RATE_COLUMNS = ("workload.rate_per_s", "rate_per_s", "offered_per_s")
POLL_COLUMNS = ("propagation.poll_interval_ms", "poll_interval_ms", "poll_interval_s")
CHAIN_COLUMNS = ("chain_length", "n_services", "stages")


def _pick(df: pd.DataFrame, candidates, what: str, given: str | None = None) -> str:
    from .errors import LabError

    if given is not None:
        if given not in df.columns:
            raise LabError(f"no column {given!r} in the table", field=what)
        return given
    for c in candidates:
        if c in df.columns:
            return c
    raise LabError(f"the table needs one of the columns {', '.join(candidates)}", field=what)


def _wide(df: pd.DataFrame, keys: list[str], metrics: list[str]) -> pd.DataFrame:
    """Mean of each metric per ``keys``: from a runs table (one row per run, replications
    averaged) or from a :func:`lab.sweep.sweep_ci` table (``metric``/``mean`` columns)."""
    if "metric" in df.columns and "mean" in df.columns and not set(metrics) <= set(df.columns):
        sub = df[df["metric"].isin(metrics)]
        out = sub.pivot_table(index=keys, columns="metric", values="mean", aggfunc="mean").reset_index()
        out.columns.name = None
        return out
    present = [m for m in metrics if m in df.columns]
    ok = df[df["error"].isna()] if "error" in df.columns else df
    return ok.groupby(keys, sort=True)[present].mean(numeric_only=True).reset_index()


def _finish(ax, title: str | None, legend_title: str | None = None):
    ax.grid(alpha=0.3)
    handles, _ = ax.get_legend_handles_labels()
    if handles:
        ax.legend(title=legend_title, fontsize=8)
    if title:
        ax.set_title(title)
    return ax


# -- bars of the summary ------------------------------------------------------------------------


def plot_summary_bars(summary: pd.DataFrame, *, ax=None, metric: str = "latency_p95_s", label: str | None = None,
                      title: str | None = None):
    """One bar per style of a summary metric (``RunResult.summary`` or several concatenated)."""
    ax = _axes(ax)
    styles = _styles(summary)
    values = [float(summary.loc[summary["style"] == s, metric].mean()) for s in styles]
    bars = ax.bar(styles, values, color=[style_colour(s) for s in styles])
    for b, v in zip(bars, values, strict=True):
        ax.annotate(f"{v:.3g}", (b.get_x() + b.get_width() / 2, v), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel(label or _label(metric))
    ax.set_xlabel("integration style")
    ax.grid(alpha=0.3, axis="y")
    if title:
        ax.set_title(title)
    return ax


# -- offered load: throughput and latency, the saturation knee --------------------------------------


def saturation_knee(df: pd.DataFrame, *, rate: str | None = None, tolerance: float = 0.05) -> pd.DataFrame:
    """Per style, the highest offered load still served within ``tolerance`` (throughput
    >= (1 - tolerance) x offered): one row ``style, knee_rate_per_s``."""
    rcol = _pick(df, RATE_COLUMNS, "rate", rate)
    w = _wide(df, ["style", rcol], ["throughput_per_s"])
    rows = []
    for style, g in w.groupby("style", sort=False):
        served = g[g["throughput_per_s"] >= (1 - tolerance) * g[rcol]]
        rows.append({"style": style, "knee_rate_per_s": float(served[rcol].max()) if len(served) else float("nan")})
    return pd.DataFrame(rows, columns=["style", "knee_rate_per_s"])


def plot_throughput_vs_load(df: pd.DataFrame, *, ax=None, rate: str | None = None, title: str | None = None,
                            mark_knee: bool = True):
    """Throughput against offered load per style, with the ``served = offered`` diagonal;
    the knee (last load still served) is marked with a vertical dotted line.

    ``df``: one row per run (or per point) with ``style``, the offered load
    (``workload.rate_per_s``, ``rate_per_s``) and ``throughput_per_s``; replications are
    averaged.  A :func:`lab.sweep.sweep_ci` table works too."""
    ax = _axes(ax)
    rcol = _pick(df, RATE_COLUMNS, "rate", rate)
    w = _wide(df, ["style", rcol], ["throughput_per_s"])
    hi = float(w[rcol].max()) if len(w) else 1.0
    ax.plot([0, hi], [0, hi], ls="--", color="#999999", lw=1, label="served = offered")
    knees = saturation_knee(df, rate=rcol) if mark_knee else None
    for style in _styles(w):
        g = w[w["style"] == style].sort_values(rcol)
        ax.plot(g[rcol], g["throughput_per_s"], marker="o", ms=4, color=style_colour(style), label=style)
        if knees is not None:
            k = knees.loc[knees["style"] == style, "knee_rate_per_s"]
            if len(k) and k.iloc[0] == k.iloc[0]:
                ax.axvline(float(k.iloc[0]), color=style_colour(style), ls=":", lw=1)
    ax.set_xlabel("offered load (workflows per s)")
    ax.set_ylabel("throughput (completed workflows per s)")
    return _finish(ax, title, "style (dotted: knee)" if mark_knee else "style")


def plot_latency_vs_load(df: pd.DataFrame, *, ax=None, rate: str | None = None, metric: str = "latency_p95_s",
                         title: str | None = None, log: bool = True):
    """A latency percentile (``latency_p95_s`` by default) against offered load per style:
    flat, then the knee where queues build and it climbs steeply."""
    ax = _axes(ax)
    rcol = _pick(df, RATE_COLUMNS, "rate", rate)
    w = _wide(df, ["style", rcol], [metric])
    for style in _styles(w):
        g = w[w["style"] == style].sort_values(rcol)
        ax.plot(g[rcol], g[metric], marker="o", ms=4, color=style_colour(style), label=style)
    if log:
        ax.set_yscale("log")
    ax.set_xlabel("offered load (workflows per s)")
    label = _label(metric)
    ax.set_ylabel(label[:-1] + ", log scale)" if log and label.endswith(")") else label)
    return _finish(ax, title, "style")


# -- polling trade-off ------------------------------------------------------------------------------


def plot_polling_tradeoff(df: pd.DataFrame, *, ax=None, interval: str | None = None, title: str | None = None,
                          wasted: str | None = None):
    """The polling trade-off: mean staleness (left axis) and wasted polls (right axis, dashed)
    against the poll interval, for the polling style; push (``events``) is the horizontal
    reference line of staleness.

    ``df``: rows with ``style``, a poll-interval column (``propagation.poll_interval_ms``,
    ``poll_interval_ms`` or ``poll_interval_s``), ``staleness_mean_s`` and ``wasted_polls``
    (or ``wasted_polls_per_s``, used when present).  Returns the left Axes; the right one is
    ``ax.right_ax``."""
    ax = _axes(ax)
    icol = _pick(df, POLL_COLUMNS, "interval", interval)
    wcol = wasted or ("wasted_polls_per_s" if "wasted_polls_per_s" in df.columns else "wasted_polls")
    w = _wide(df, ["style", icol], ["staleness_mean_s", wcol])
    scale = 1000.0 if icol.endswith("_ms") else 1.0
    pollers = [s for s in _styles(w) if s != "events"]
    right = ax.twinx()
    for style in pollers:
        g = w[w["style"] == style].sort_values(icol)
        x = g[icol] / scale
        c = style_colour(style)
        ax.plot(x, g["staleness_mean_s"], marker="o", ms=4, color=c, label=f"{style}: staleness")
        if wcol in g.columns:
            right.plot(x, g[wcol], marker="s", ms=3, ls="--", color=c, alpha=0.8, label=f"{style}: wasted polls")
    push = w.loc[w["style"] == "events", "staleness_mean_s"].dropna()
    if len(push):
        ax.axhline(float(push.mean()), color=style_colour("events"), lw=1.5,
                   label=f"events (push): staleness {float(push.mean()):.3g} s")
    ax.set_xlabel("poll interval (s)")
    ax.set_ylabel("mean staleness (s)")
    right.set_ylabel("wasted polls" + (" per s" if wcol.endswith("_per_s") else " (count)"))
    right.set_ylim(bottom=0)
    ax.set_ylim(bottom=0)
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = right.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, fontsize=8, loc="upper left")
    ax.grid(alpha=0.3)
    ax.right_ax = right
    if title:
        ax.set_title(title)
    return ax


# -- coupling: availability against chain length ------------------------------------------------------


def plot_availability_vs_chain(df: pd.DataFrame, *, ax=None, chain: str | None = None, title: str | None = None,
                               service_availability: float | None = None):
    """Availability (completed / started) against the number of services in the chain, per
    style; with ``service_availability`` the theory of a synchronous chain, ``a ** n``, is
    drawn dashed.  ``ci_low``/``ci_high`` columns (or a sweep_ci table) draw bands."""
    ax = _axes(ax)
    ccol = _pick(df, CHAIN_COLUMNS, "chain", chain)
    if "metric" in df.columns and "mean" in df.columns:
        w = df[df["metric"] == "availability"].rename(columns={"mean": "availability"})
    else:
        w = _wide(df, ["style", ccol], ["availability", "ci_low", "ci_high"])
    for style in _styles(w):
        g = w[w["style"] == style].sort_values(ccol)
        c = style_colour(style)
        ax.plot(g[ccol], g["availability"], marker="o", ms=4, color=c, label=style)
        if {"ci_low", "ci_high"} <= set(g.columns) and g["ci_low"].notna().any():
            ax.fill_between(g[ccol], g["ci_low"], g["ci_high"], color=c, alpha=0.2, lw=0)
    if service_availability is not None and len(w):
        n = np.arange(int(w[ccol].min()), int(w[ccol].max()) + 1)
        ax.plot(n, service_availability**n, ls="--", color="#555555",
                label=f"theory, synchronous chain: {service_availability:g}^n")
    ax.set_xlabel("services in the chain (n)")
    ax.set_ylabel("availability (completed / started)")
    return _finish(ax, title, "style")


# -- the failure-propagation picture ------------------------------------------------------------------


def _timeline_columns(tl: pd.DataFrame) -> tuple[str, str]:
    tcol = _pick(tl, ("time_s", "t_s"), "time")
    scol = _pick(tl, ("service", "name"), "service")
    return tcol, scol


STATE_RANK = {"up": 0, "degraded": 1, "down": 2}
#: the timeline's whole-system rows (failed/completed workflows per bucket)
SYSTEM_ROW = "*"


def _rebin(tl: pd.DataFrame, tcol: str, scol: str, width: float, bucket_s: float) -> tuple[pd.DataFrame, float]:
    """Coarser buckets: the worst state, the peak queue and lag, the summed counts."""
    if bucket_s <= width * 1.0001:
        return tl, width
    d = tl.copy()
    d[tcol] = np.floor(d[tcol] / bucket_s + 1e-9) * bucket_s
    d["_rank"] = d["state"].map(STATE_RANK).fillna(0)
    keys = [c for c in ("style",) if c in d.columns] + [tcol, scol]
    agg = {"_rank": "max"}
    agg.update({c: "max" for c in ("queue", "lag") if c in d.columns})
    agg.update({c: "sum" for c in ("failures", "failed_workflows", "completed_workflows") if c in d.columns})
    out = d.groupby(keys, sort=False).agg(agg).reset_index()
    inverse = {v: k for k, v in STATE_RANK.items()}
    out["state"] = out.pop("_rank").map(inverse)
    return out, bucket_s


def plot_failure_propagation(timeline: pd.DataFrame, *, ax=None, style: str | None = None, title: str | None = None,
                             bucket_s: float | None = None):
    """Services x time: each service's state per bucket (``up``, ``degraded``, ``down``) as
    coloured bands, with failed workflows per bucket (solid, right axis ``ax.right_ax``) and
    the backlog (dashed: queue + consumer lag summed over services, outer right axis
    ``ax.backlog_ax``) per style over it.

    ``timeline``: long format, one row per (style,) time bucket and service: ``time_s`` (or
    ``t_s``, the bucket start), ``service`` (or ``name``), ``state`` and, when known,
    ``queue``, ``lag``, ``failures`` (failed steps).  Rows of service ``*`` carry
    ``failed_workflows`` for the whole system; without them failed steps are drawn.  This is
    the shape of ``RunResult.timeline`` and of :meth:`lab.faults.FaultCalendar.timeline`.
    A service's band shows its worst state over the styles (a broker exists only where
    events flow).  ``style`` keeps one style; ``bucket_s`` re-buckets more coarsely."""
    from matplotlib.patches import Patch

    ax = _axes(ax)
    tcol, scol = _timeline_columns(timeline)
    tl = timeline
    if style is not None and "style" in tl.columns:
        tl = tl[tl["style"] == style]
    times = np.sort(tl[tcol].unique())
    width = float(np.min(np.diff(times))) if times.size > 1 else 1.0
    if bucket_s is not None:
        tl, width = _rebin(tl, tcol, scol, width, bucket_s)
        times = np.sort(tl[tcol].unique())
    system = tl[tl[scol] == SYSTEM_ROW]
    per_service = tl[tl[scol] != SYSTEM_ROW]
    services = list(dict.fromkeys(per_service[scol]))
    worst = (per_service.assign(_rank=per_service["state"].map(STATE_RANK).fillna(0))
             .groupby([scol, tcol], sort=False)["_rank"].max().reset_index())
    inverse = {v: k for k, v in STATE_RANK.items()}
    for i, svc in enumerate(services):
        rows = worst[worst[scol] == svc]
        for rank, colour in ((r, STATE_COLOURS[s]) for s, r in STATE_RANK.items()):
            starts = rows.loc[rows["_rank"] == rank, tcol].to_numpy(dtype=float)
            if starts.size:
                ax.broken_barh([(s, width) for s in starts], (i - 0.4, 0.8), facecolors=colour, edgecolor="none",
                               label=f"_{svc}:{inverse[rank]}")
    ax.set_yticks(range(len(services)), services)
    ax.set_ylim(-0.6, len(services) - 0.4)
    ax.invert_yaxis()
    ax.set_xlabel("time (s)")
    ax.set_ylabel("service")
    if times.size:
        ax.set_xlim(float(times.min()), float(times.max()) + width)
    right = ax.twinx()
    outer = ax.twinx()
    outer.spines["right"].set_position(("axes", 1.1))
    styles = _styles(tl) if "style" in tl.columns else [None]
    use_system = "failed_workflows" in system.columns and len(system) > 0
    fail_label = "failed workflows" if use_system else "failed steps"
    for st in styles:
        colour = style_colour(st) if st else "#333333"
        name = st or "all"
        svc_rows = per_service if st is None else per_service[per_service["style"] == st]
        if use_system:
            sys_rows = system if st is None else system[system["style"] == st]
            fails = sys_rows.groupby(tcol)["failed_workflows"].sum()
        elif "failures" in svc_rows.columns:
            fails = svc_rows.groupby(tcol)["failures"].sum()
        else:
            fails = None
        if fails is not None:
            right.plot(fails.index.to_numpy(dtype=float) + width / 2, fails.to_numpy(), color=colour, lw=1.8,
                       label=f"{name}: {fail_label}")
        backlog_cols = [c for c in ("queue", "lag") if c in svc_rows.columns]
        if backlog_cols:
            backlog = svc_rows.groupby(tcol)[backlog_cols].sum().sum(axis=1)
            outer.plot(backlog.index.to_numpy(dtype=float) + width / 2, backlog.to_numpy(), color=colour, lw=1.2,
                       ls="--", label=f"{name}: backlog (queue + lag)")
    right.set_ylabel(f"{fail_label} per {width:g} s (solid)")
    outer.set_ylabel("backlog: queued + unconsumed (messages, dashed)")
    right.set_ylim(bottom=0)
    outer.set_ylim(bottom=0)
    handles = [Patch(facecolor=c, label=s) for s, c in STATE_COLOURS.items()]
    h2, _ = right.get_legend_handles_labels()
    h3, _ = outer.get_legend_handles_labels()
    outer.legend(handles + h2 + h3, [h.get_label() for h in handles + h2 + h3], fontsize=7, loc="upper left",
                 bbox_to_anchor=(1.2, 1.0), borderaxespad=0)
    ax.right_ax = right
    ax.backlog_ax = outer
    if title:
        ax.set_title(title)
    return ax


# -- backlog / consumer lag through a load-shedding day -----------------------------------------------


def _intervals(outages) -> list[tuple[float, float]]:
    if outages is None:
        return []
    if isinstance(outages, pd.DataFrame):
        return list(zip(outages["start_s"].astype(float), outages["end_s"].astype(float), strict=True))
    return [(float(s), float(e)) for s, e in outages]


def plot_backlog(series: pd.DataFrame, *, ax=None, metric: str | tuple[str, ...] = ("lag", "queue"),
                 entity: str | None = None, outages=None, time_unit: str = "s", title: str | None = None):
    """Backlog over time per style from ``RunResult.series`` (long format: style, time_s,
    metric, entity, value): the sum over entities of ``metric`` (``lag``, ``queue`` or both),
    or one ``entity``.  ``outages`` (a DataFrame with ``start_s``/``end_s`` such as
    :func:`lab.loadshedding.calendar_frame`, or ``(start, end)`` pairs) are shaded grey, so
    the build-up during load-shedding and the drain after it are visible.
    ``time_unit``: ``s``, ``min`` or ``h`` for the x axis."""
    ax = _axes(ax)
    metrics = (metric,) if isinstance(metric, str) else tuple(metric)
    div = {"s": 1.0, "min": 60.0, "h": 3600.0}[time_unit]
    s = series[series["metric"].isin(metrics)]
    if entity is not None:
        s = s[s["entity"] == entity]
    for lo, hi in _intervals(outages):
        ax.axvspan(lo / div, hi / div, color="#999999", alpha=0.25, lw=0)
    if _intervals(outages):
        ax.axvspan(0, 0, color="#999999", alpha=0.25, lw=0, label="outage (no power)")
    for style in _styles(s):
        g = s[s["style"] == style].groupby("time_s")["value"].sum().sort_index()
        ax.plot(g.index / div, g.to_numpy(), color=style_colour(style), lw=1.5, label=style)
    what = " + ".join("consumer lag" if m == "lag" else "queued requests" if m == "queue" else m for m in metrics)
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel(f"backlog: {what}" + (f" at {entity}" if entity else "") + " (messages)")
    ax.set_ylim(bottom=0)
    return _finish(ax, title, "style")


# -- sweeps with confidence bands -----------------------------------------------------------------------


def plot_sweep_ci(ci: pd.DataFrame, *, ax=None, x: str | None = None, metric: str | None = None,
                  title: str | None = None, xlabel: str | None = None, ylabel: str | None = None,
                  logx: bool = False, logy: bool = False):
    """Mean and confidence band per style against one swept parameter, from a
    :func:`lab.sweep.sweep_ci` table (columns ``style``, the parameter, ``metric``,
    ``mean``, ``ci_low``, ``ci_high``) or any table with those three value columns.

    ``x``: the parameter column (default: the first parameter that varies); ``metric``:
    which metric (required when the table holds several)."""
    from .errors import LabError

    ax = _axes(ax)
    d = ci
    if "metric" in d.columns:
        metrics = list(dict.fromkeys(d["metric"]))
        if metric is None:
            if len(metrics) > 1:
                raise LabError(f"the table holds several metrics; choose one of {', '.join(metrics)}", field="metric")
            metric = metrics[0]
        d = d[d["metric"] == metric]
    if x is None:
        skip = {"point_id", "style", "scenario", "engine", "metric", "n", "mean", "std", "ci_low", "ci_high",
                "half_width", "level"}
        varying = [c for c in d.columns if c not in skip and d[c].nunique() > 1]
        if not varying:
            raise LabError("no varying parameter column to put on the x axis", field="x")
        x = varying[0]
    for style in _styles(d):
        g = d[d["style"] == style].groupby(x)[["mean", "ci_low", "ci_high"]].mean().sort_index()
        c = style_colour(style)
        ax.plot(g.index, g["mean"], marker="o", ms=4, color=c, label=style)
        if g["ci_low"].notna().any():
            ax.fill_between(g.index, g["ci_low"], g["ci_high"], color=c, alpha=0.2, lw=0)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel or _label(x))
    ax.set_ylabel(ylabel or _label(metric or "value"))
    level = ci["level"].iloc[0] if "level" in ci.columns and len(ci) else 0.95
    return _finish(ax, title, f"style (band: {level:.0%} CI)")


_UNITS = (("_per_s", " (per s)"), ("_ms", " (ms)"), ("_s", " (s)"))


def _label(name: str) -> str:
    """``workload.rate_per_s`` -> ``workload rate (per s)``; ``latency_p95_s`` -> ``latency p95 (s)``."""
    base = name
    unit = ""
    for suffix, text in _UNITS:
        if base.endswith(suffix):
            base, unit = base[: -len(suffix)], text
            break
    return base.replace(".", " ").replace("_", " ") + unit


# -- load-shedding calendars ----------------------------------------------------------------------------


def plot_outages(calendar: pd.DataFrame, *, ax=None, time_unit: str = "h", title: str | None = None,
                 horizon_s: float | None = None):
    """Sites x time: each site's down intervals (from :func:`lab.loadshedding.calendar_frame`:
    ``site, start_s, end_s``) as red bars; sites without outages are listed too when the
    frame holds them with no rows (pass ``horizon_s`` to fix the time axis)."""
    ax = _axes(ax)
    div = {"s": 1.0, "min": 60.0, "h": 3600.0}[time_unit]
    sites = list(dict.fromkeys(calendar["site"]))
    for i, site in enumerate(sites):
        rows = calendar[calendar["site"] == site]
        bars = [(s / div, (e - s) / div) for s, e in zip(rows["start_s"], rows["end_s"], strict=True) if e > s]
        if bars:
            ax.broken_barh(bars, (i - 0.35, 0.7), facecolors=STATE_COLOURS["down"], edgecolor="none")
    ax.set_yticks(range(len(sites)), sites)
    ax.set_ylim(-0.6, len(sites) - 0.4)
    ax.invert_yaxis()
    if horizon_s is not None:
        ax.set_xlim(0, horizon_s / div)
    ax.set_xlabel(f"time ({time_unit})")
    ax.set_ylabel("site")
    ax.grid(alpha=0.3, axis="x")
    if title:
        ax.set_title(title)
    return ax


def plot_stage_timeline(timeline: pd.DataFrame, *, ax=None, title: str | None = None):
    """The load-shedding stage over calendar time, from :func:`lab.eskom.stage_timeline`
    (``start, finish, stage``; gaps are stage 0), as a step line."""
    ax = _axes(ax)
    tl = timeline.sort_values("start")
    xs, ys = [], []
    for s, f, st in zip(tl["start"], tl["finish"], tl["stage"], strict=True):
        if xs and xs[-1] < s:  # a gap: stage 0
            xs += [xs[-1], s]
            ys += [0, 0]
        xs += [s, f]
        ys += [st, st]
    ax.plot(xs, ys, color="#cc0000", lw=1.5, label="stage")
    ax.fill_between(xs, ys, color="#cc0000", alpha=0.15, lw=0)
    ax.set_ylim(0, 8.5)
    ax.set_yticks(range(0, 9))
    ax.set_xlabel("date and time (SAST)")
    ax.set_ylabel("load-shedding stage")
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


VERDICT_COLOURS = {"supported": "#1a9850", "not supported": "#d73027", "depends": "#fc8d59"}


def plot_claims(table: pd.DataFrame, *, ax=None, title: str | None = None):
    """The claims table (:func:`lab.check_claims`) as a dot chart: one row per claim, each
    style's figure as a share of the row's largest (the rows have different units: the
    figure itself is printed beside its dot), and the verdict on the right."""
    ax = _axes(ax)
    rows = table.reset_index(drop=True)
    n = len(rows)
    styles = [s for s in STYLE_ORDER if s in rows.columns]
    for i, r in rows.iterrows():
        y = n - 1 - i
        values = {s: float(r[s]) for s in styles if pd.notna(r[s])}
        top = max((abs(v) for v in values.values()), default=0.0) or 1.0
        ax.plot([0, 1], [y, y], color="#dddddd", lw=0.8, zorder=0)
        for k, (style, v) in enumerate(values.items()):
            x = abs(v) / top
            ax.plot([x], [y], "o", ms=7, color=style_colour(style), label=style)
            ax.annotate(f"{v:.3g}", (x, y), xytext=(0, 6 + 8 * k), textcoords="offset points", ha="center",
                        fontsize=7, color=style_colour(style))
        ax.text(1.04, y, r["verdict"], va="center", fontsize=8, color=VERDICT_COLOURS.get(r["verdict"], "#444444"),
                transform=ax.get_yaxis_transform())
    ax.set_yticks(range(n))
    ax.set_yticklabels([f"{r.aspect}: {r.measure}" for r in rows.itertuples()][::-1], fontsize=8)
    ax.set_xlim(-0.05, 1.05)
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("figure as a share of the row's largest (units differ by row; value printed)")
    handles, labels = ax.get_legend_handles_labels()
    once = dict(zip(labels, handles, strict=True))  # one legend entry per style
    ax.legend(once.values(), once.keys(), title="style", fontsize=8, loc="lower left")
    if title:
        ax.set_title(title)
    return ax
