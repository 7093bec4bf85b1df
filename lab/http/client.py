"""The orchestrator's HTTP client: httpx as the interface, its transport chosen by
measurement, and what a failed call means (error, refused, timeout).

Transport: ``aiohttp`` (httpx over the ``httpx-aiohttp`` transport, the default) or
``httpx`` (httpx's own httpcore pool).  On this machine httpx's own pool is the slower
one at concurrency (see README, "HTTP engine"), so the engine uses aiohttp's connection
pool underneath httpx.

Pool limits, chosen deliberately: the orchestrator must not add a hidden queue in front
of the services (that would be a bottleneck the scenario does not describe), so the pool
allows ``max_connections`` (default 1,000, capped by the open-file limit) connections in
total and no per-host cap; the services' own ``concurrency``/``queue_limit`` and the
orchestrator's ``max_in_flight`` are the only limits.  Idle connections are kept for
``keepalive_expiry`` = 15 s (the servers keep them 60 s, so the client always closes
first and never writes on a connection the server has just dropped).  Proxies from the
environment are ignored (``trust_env=False``): everything is on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import resource

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

OK, ERROR, REFUSED, TIMEOUT = "ok", "error", "refused", "timeout"

KEEPALIVE_EXPIRY_S = 15.0


def default_max_connections() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return max(64, min(1000, soft // 2 - 32)) if soft > 0 else 1000


def make_client(transport: str = "aiohttp", *, max_connections: int | None = None) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` for loopback calls with the lab's pool limits."""
    n = max_connections or default_max_connections()
    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=KEEPALIVE_EXPIRY_S)
    if transport == "aiohttp":
        return httpx.AsyncClient(transport=AiohttpTransport(limits=limits), trust_env=False, timeout=None)
    if transport == "httpx":
        return httpx.AsyncClient(limits=limits, trust_env=False, timeout=None)
    raise ValueError(f"unknown transport {transport!r} (aiohttp or httpx)")


def classify_status(code: int) -> str:
    if 200 <= code < 300:
        return OK
    if code in (429, 503):
        return REFUSED
    return ERROR


def classify_exception(exc: BaseException) -> str:
    """``refused`` when no connection could be made, ``timeout``, else ``error`` (reset...)."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 6:
        chain.append(e)
        e = e.__cause__ or e.__context__
    # httpx-aiohttp maps every aiohttp connection error (refused, reset, server gone) to
    # httpx.ConnectTimeout: look at the aiohttp exception underneath first
    for e in chain:
        if isinstance(e, aiohttp.ClientConnectorError | ConnectionRefusedError):
            return REFUSED
        if isinstance(e, aiohttp.ServerTimeoutError):
            return TIMEOUT
        if isinstance(e, aiohttp.ClientError | ConnectionResetError):
            return ERROR
    for e in chain:
        if isinstance(e, httpx.ConnectError):
            return REFUSED
    for e in chain:
        if isinstance(e, TimeoutError | asyncio.TimeoutError | httpx.TimeoutException | aiohttp.ServerTimeoutError):
            return TIMEOUT
    return ERROR
