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
    for style in _styles(done):
        v = np.sort(values_all[done["style"] == style].to_numpy())
        if v.size == 0:
            continue
        y = np.arange(1, v.size + 1) / v.size
        colour = style_colour(style)
        ax.plot(np.maximum(v, 1e-6), y, label=style, color=colour, lw=1.8)
        for q in marks:
            x = np.percentile(v, q)
            ax.plot([max(x, 1e-6)], [q / 100], marker="o", ms=4, color=colour)
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
    ax.set_ylabel("changes x subscribers")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title)
    return ax
