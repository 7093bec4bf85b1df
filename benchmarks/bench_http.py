"""HTTP engine benchmark: client transports, server stacks, the lab's own overhead, and the
largest arrival rate the engine holds without falling behind its schedule.

Run:  .venv/bin/python benchmarks/bench_http.py [--requests 2000] [--sections clients,servers,overhead,rates] [--json out.json]

Every figure is measured in this run, against one uvicorn service process on 127.0.0.1
(the lab's own service app; ``GET /health`` is the trivial endpoint).  The machine's load
average is printed with the results: figures from a busy machine are lower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import math
import os
import subprocess
import sys
import time

import aiohttp
import httpx
import numpy as np
import uvloop
from httpx_aiohttp import AiohttpTransport

from lab.http import ServiceFleet, run_http
from lab.http.client import make_client
from lab.http.engine import call_policies
from lab.http.orchestrator import Orchestrator
from lab.records import Recorder
from lab.rng import spawn
from lab.scenario import load_scenario

#: the alternative server stack: aiohttp's own web server with uvloop, same trivial endpoint
AIOHTTP_SERVER = """
import socket, sys, uvloop
from aiohttp import web
async def health(request):
    return web.json_response({"ok": True})
app = web.Application()
app.router.add_get("/health", health)
sock = socket.socket(); sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvloop.install()
web.run_app(app, sock=sock, access_log=None, print=None)
"""

TRIVIAL = {"service": {"service_time": 0, "concurrency": 100000}, "network": {"latency_ms": 0}}


async def _hammer(get, url: str, n: int, conc: int) -> float:
    """``n`` GETs by ``conc`` closed-loop workers; returns requests per second."""
    left = n

    async def worker():
        nonlocal left
        while left > 0:
            left -= 1
            await get(url)

    await asyncio.gather(*(worker() for _ in range(conc)))  # warm-up: connections, code paths
    left = n
    t = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(conc)))
    return n / (time.perf_counter() - t)


async def client_rate(kind: str, url: str, n: int, conc: int) -> float:
    limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
    if kind == "aiohttp":
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=conc)) as s:

            async def get(u):
                async with s.get(u) as r:
                    await r.read()

            return await _hammer(get, url, n, conc)
    transport = AiohttpTransport(limits=limits) if kind == "httpx-aiohttp" else None
    async with httpx.AsyncClient(limits=limits, transport=transport, trust_env=False) as c:

        async def get(u):
            (await c.get(u)).raise_for_status()

        return await _hammer(get, url, n, conc)


async def interleaved_latency(urls: dict[str, str], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Latency (ms) of a direct POST /call and of the orchestrator's call path (policies,
    classification, records) to the same service, interleaved one by one with 10 ms gaps
    so that both see the same machine load."""
    sc = one_service(50.0, 1.0)
    async with make_client() as c:
        orch = Orchestrator(sc, "orchestration", urls, c, Recorder(), call_policies(sc), spawn(1, "bench"), time.monotonic())
        await c.post(urls["svc"] + "/control/start", json={"t0": time.monotonic()})
        direct, lab = np.empty(n), np.empty(n)
        for i in range(-20, n):  # 20 warm-up rounds
            t = time.perf_counter()
            (await c.post(urls["svc"] + "/call", json={"wf": i})).raise_for_status()
            d = time.perf_counter() - t
            await asyncio.sleep(0.01)
            t = time.perf_counter()
            outcome = await orch.call(i, "svc")
            o = time.perf_counter() - t
            await asyncio.sleep(0.01)
            if i >= 0:
                assert outcome == "ok"
                direct[i], lab[i] = 1000 * d, 1000 * o
    return direct, lab


def one_service(rate: float, duration: float, service_ms: float = 0.0):
    return load_scenario(
        {
            "name": "bench",
            "duration_s": duration,
            "workload": {"rate_per_s": rate, "arrivals": "poisson"},
            "network": {"latency_ms": 0},
            "services": {"svc": {"service_time": service_ms, "concurrency": 100000}},
            "flow": ["svc"],
            "allow_overload": True,
        }
    )


def engine_run(rate: float, duration: float, transport: str = "aiohttp") -> dict:
    res = run_http(one_service(rate, duration), seed=1, transport=transport, drain_s=10.0)
    row = res.summary.iloc[0]
    meta = res.meta["styles"]["orchestration"]
    lat = (res.records.finished_s - res.records.started_s).dropna().to_numpy()
    return {
        "rate": rate,
        "started": int(row.started),
        "completed": int(row.completed),
        "throughput_per_s": float(row.throughput_per_s),
        "lateness_p99_ms": 1000 * meta["start_lateness_p99_s"],
        "latency_p50_ms": 1000 * float(np.percentile(lat, 50)) if lat.size else float("nan"),
        "latency_p99_ms": 1000 * float(np.percentile(lat, 99)) if lat.size else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=2000, help="requests per client measurement")
    ap.add_argument("--rates", default="100,250,500,1000,1500,2000,3000", help="arrival rates to try (per s)")
    ap.add_argument("--duration", type=float, default=4.0, help="seconds per engine run")
    ap.add_argument("--json", help="also write the figures to this file")
    ap.add_argument("--sections", default="clients,servers,overhead,rates", help="which parts to run (comma-separated)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    out: dict = {"cpus": os.cpu_count(), "loadavg_start": os.getloadavg()}
    n = args.requests

    print(f"# HTTP engine benchmark ({os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f})")
    sections = set(args.sections.split(","))
    with ServiceFleet({"svc": TRIVIAL}) as fleet:
        direct, via_lab = uvloop.run(interleaved_latency(fleet.urls, 500))
        direct_rate = uvloop.run(client_rate("httpx-aiohttp", fleet.urls["svc"] + "/call", n, 32))
    # 1. clients against uvicorn+httptools+uvloop
    with ServiceFleet({"svc": TRIVIAL}) as fleet:
        url = fleet.urls["svc"] + "/health"
        rows = {}
        if "clients" not in sections:
            url = None
        for kind in ("httpx", "httpx-aiohttp", "aiohttp"):
            for conc in (1, 32):
                rows[f"{kind}@{conc}"] = uvloop.run(client_rate(kind, url, n, conc)) if url else math.nan
        out["clients"] = rows
        print("\n## client -> uvicorn(httptools, uvloop), GET /health, requests/s")
        print("| client | concurrency 1 | concurrency 32 |\n|---|---:|---:|")
        base = rows["httpx@32"]
        for kind in ("httpx", "httpx-aiohttp", "aiohttp"):
            print(f"| {kind} | {rows[f'{kind}@1']:,.0f} | {rows[f'{kind}@32']:,.0f} ({rows[f'{kind}@32'] / base:.1f}x httpx) |")
    # 2. server stacks
    servers = {}
    for stack in ("h11", "httptools"):
        if "servers" not in sections:
            servers[stack] = math.nan
            continue
        cfg = {**TRIVIAL, "http": stack, "loop": "asyncio" if stack == "h11" else "uvloop"}
        with ServiceFleet({"svc": cfg}) as fleet:
            servers[stack] = uvloop.run(client_rate("aiohttp", fleet.urls["svc"] + "/health", n, 32))
    if "servers" in sections:
        proc = subprocess.Popen([sys.executable, "-c", AIOHTTP_SERVER], stdout=subprocess.PIPE, text=True)
        try:
            port = int(proc.stdout.readline())
            time.sleep(0.5)
            servers["aiohttp"] = uvloop.run(client_rate("aiohttp", f"http://127.0.0.1:{port}/health", n, 32))
            servers["aiohttp@1"] = uvloop.run(client_rate("aiohttp", f"http://127.0.0.1:{port}/health", n, 1))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    out["servers"] = servers
    print("\n## server stack (aiohttp client, concurrency 32), requests/s")
    print(f"| uvicorn h11 + asyncio | {servers['h11']:,.0f} |\n| uvicorn httptools + uvloop | {servers['httptools']:,.0f} "
          f"({servers['httptools'] / servers['h11']:.2f}x) |")  # fmt: skip
    if "aiohttp" in servers:
        print(f"| aiohttp web server + uvloop | {servers['aiohttp']:,.0f} ({servers['aiohttp'] / servers['h11']:.2f}x) |")
    # 3. the lab's overhead per hop at low load
    low = engine_run(50.0, args.duration)
    d50, d99 = np.percentile(direct, 50), np.percentile(direct, 99)
    l50, l99 = np.percentile(via_lab, 50), np.percentile(via_lab, 99)
    out["overhead"] = {"direct_p50_ms": d50, "direct_p99_ms": d99, "lab_p50_ms": l50, "lab_p99_ms": l99,
                       **{f"engine50_{k}": v for k, v in low.items()}}  # fmt: skip
    print("\n## per-hop latency, one service with 0 ms service time (500 calls each, interleaved)")
    print("| | p50 ms | p99 ms |\n|---|---:|---:|")
    print(f"| direct POST /call (httpx over aiohttp) | {d50:.2f} | {d99:.2f} |")
    print(f"| the orchestrator's call path (policies, classification, records) | {l50:.2f} | {l99:.2f} |")
    print(f"| added by the lab per hop | {l50 - d50:+.2f} | {l99 - d99:+.2f} |")
    print(f"| whole workflow at 50/s open-model, from its scheduled start | {low['latency_p50_ms']:.2f} "
          f"| {low['latency_p99_ms']:.2f} |")  # fmt: skip
    # 4. the largest arrival rate held
    print("\n## open-model arrival rate held (one service, 0 ms, 2 cores shared with it)")
    print("| offered /s | started | completed | throughput /s | start lateness p99 ms | latency p50 ms | p99 ms | holds |")
    print("|---:|---:|---:|---:|---:|---:|---:|:---:|")
    held = 0.0
    runs = []
    misses = 0
    for rate in [float(r) for r in args.rates.split(",")] if "rates" in sections else []:
        r = engine_run(rate, args.duration)
        ok = r["lateness_p99_ms"] < 20.0 and r["completed"] >= 0.99 * r["started"] and r["throughput_per_s"] >= 0.95 * rate
        r["holds"] = ok
        runs.append(r)
        print(f"| {rate:,.0f} | {r['started']} | {r['completed']} | {r['throughput_per_s']:,.0f} | {r['lateness_p99_ms']:.1f} "
              f"| {r['latency_p50_ms']:.1f} | {r['latency_p99_ms']:.1f} | {'yes' if ok else 'no'} |")  # fmt: skip
        if ok:
            held = max(held, rate)
            misses = 0
        else:
            misses += 1
            if misses == 2:
                break
    out["rates"] = runs
    out["max_rate_held_per_s"] = held
    out["direct_rate_per_s"] = direct_rate
    best = max((r["throughput_per_s"] for r in runs), default=math.nan)
    print(f"\ndirect closed loop (32 workers, POST /call through the engine's client): {direct_rate:,.0f} req/s")
    print(f"largest rate held: {held:,.0f}/s; best orchestrated throughput {best:,.0f}/s vs the same service hit "
          f"directly by a closed loop of 32: {direct_rate:,.0f} req/s ({best / direct_rate:.2f}x)")  # fmt: skip
    out["loadavg_end"] = os.getloadavg()
    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
