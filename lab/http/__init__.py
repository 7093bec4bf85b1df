"""The real HTTP engine: scenario services as uvicorn processes on 127.0.0.1, driven by an
httpx orchestrator (open-model arrivals, shared resilience policies).

Public API: :func:`run_http` (what ``lab.run(..., engine="http")`` calls),
:func:`compare_engines` / :func:`compare_results` (engines side by side), and
:class:`ServiceFleet` (the process manager, usable on its own).
"""

from .compare import compare_engines, compare_results
from .engine import run_http
from .fleet import ServiceFleet

__all__ = ["ServiceFleet", "compare_engines", "compare_results", "run_http"]
