"""The real HTTP engine: scenario services as uvicorn processes on 127.0.0.1, driven by an
httpx orchestrator (open-model arrivals, shared resilience policies).

Public API: :func:`run_http`, :func:`compare_engines`, :class:`ServiceFleet`.
"""

from .engine import run_http
from .fleet import ServiceFleet

__all__ = ["ServiceFleet", "run_http"]
