"""One scenario service as a real HTTP server process (Starlette under uvicorn).

Run as ``python -m lab.http.service``: the process reads one JSON line of
configuration on stdin, binds ``127.0.0.1`` (port 0 = a free port chosen by the kernel),
prints ``LISTENING <port>`` on stdout and serves until stdin closes (the parent died or
stopped it), SIGTERM or SIGINT.  The server stack is uvicorn with httptools and uvloop
(measured faster than h11/asyncio and than aiohttp's server at concurrency: see README).

Behaviour, from the scenario's ``Service`` entry:

- ``POST /call``: a network hop (``network.latency_ms`` each way, emulated by a sleep, so
  real runs compare with the simulation's hops), then queue for one of ``concurrency``
  slots (an ``asyncio.Semaphore``; with ``queue_limit`` a request that finds that many
  waiting is refused with 503), hold it for a ``service_time`` draw, fail with 500 with
  probability ``failure_prob``.  A service with a ``job`` answers 202 and a job id; the
  job runs for a ``job`` draw on ``job_concurrency`` workers and ``GET /jobs/{id}`` (which
  costs ``poll_time_ms`` of a slot) reports it.
- Faults: ``faults`` is a list of windows in *scenario* seconds; the scenario clock is
  ``(monotonic() - t0) * compress``.  ``outage`` windows either close the listening socket
  and abort open connections (``mode: refuse``: clients see connection refused, like a
  machine without power), answer 503 (``mode: 503``) or accept and never answer what
  arrives in the window (``mode: hang``: the caller's timeout decides); ``spike`` windows multiply the
  service time; ``errors`` windows add to the failure probability.
- Change propagation: ``POST /change`` records a change at the source (and, with
  ``push_to``, POSTs it to each subscriber's ``/webhook``, retrying until delivered);
  ``GET /changes?since=N`` is the change feed (costs a service-time draw); a subscriber
  with ``poll`` set polls the source's feed every ``interval_ms`` and applies what is new.
  ``GET /report`` returns what a subscriber applied and its polls.

Times exchanged with the parent are seconds since ``t0`` on ``time.monotonic()`` (one
system-wide clock on Linux, so parent and children agree).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import numpy as np
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..distributions import Sampler, Uniforms
from ..rng import spawn
from ..scenario import Dist, Service

log = logging.getLogger(__name__)

OK_BODY = b'{"ok":true}'


def bind_socket(port: int = 0) -> socket.socket:
    """A listening-ready TCP socket on 127.0.0.1 (``port`` 0: the kernel picks a free one)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.set_inheritable(False)
    return sock


class Windows:
    """Fault windows of one service, in scenario seconds."""

    def __init__(self, windows: list[dict[str, Any]]):
        self.outages = [(w["start_s"], w["end_s"], w.get("mode", "refuse")) for w in windows if w["kind"] == "outage"]
        self.spikes = [(w["start_s"], w["end_s"], float(w["multiplier"])) for w in windows if w["kind"] == "spike"]
        self.errors = [(w["start_s"], w["end_s"], float(w["failure_prob"])) for w in windows if w["kind"] == "errors"]

    def outage(self, t: float) -> str | None:
        for a, b, mode in self.outages:
            if a <= t < b:
                return mode
        return None

    def multiplier(self, t: float) -> float:
        m = 1.0
        for a, b, x in self.spikes:
            if a <= t < b:
                m *= x
        return m

    def extra_failure_prob(self, t: float) -> float:
        p = 0.0
        for a, b, x in self.errors:
            if a <= t < b:
                p = 1.0 - (1.0 - p) * (1.0 - x)
        return p


class ServiceState:
    """Everything one service process knows; the Starlette handlers are its methods."""

    def __init__(self, cfg: dict[str, Any]):
        self.cfg = cfg
        self.name: str = cfg["name"]
        self.svc = Service.model_validate(cfg["service"])
        seed = int(cfg.get("seed", 1))
        self.service_time = Sampler(self.svc.service_time, spawn(seed, f"http-svc:{self.name}"))
        self.coin = Uniforms(spawn(seed, f"http-fail:{self.name}"))
        self.job_time = Sampler(self.svc.job, spawn(seed, f"http-job:{self.name}")) if self.svc.job is not None else None
        net = cfg.get("network", {}) or {}
        self.hop_s = float(net.get("latency_ms", 0.0)) / 1000.0
        jitter_ms = float(net.get("jitter_ms", 0.0))
        self.hop_jitter = (
            Sampler(Dist(dist="exponential", mean_ms=jitter_ms), spawn(seed, f"http-net:{self.name}"))
            if jitter_ms > 0
            else None
        )
        self.compress = float(cfg.get("compress", 1.0))
        self.windows = Windows(cfg.get("faults", []))
        self.t0: float | None = None
        self.slots = asyncio.Semaphore(self.svc.concurrency)
        self.waiting = 0
        self.job_slots = asyncio.Semaphore(self.svc.job_concurrency) if self.svc.job_concurrency else None
        self.jobs: dict[int, float | None] = {}  # id -> done_at (None while running)
        self.next_job = 0
        self.counters: dict[str, int] = {}
        self.server: uvicorn.Server | None = None
        self.sock_port = 0
        self.listening = True
        self.tasks: set[asyncio.Task] = set()
        # change propagation
        self.changes: list[tuple[int, float, dict]] = []  # (seq, time recorded, subscribers' draws)
        self.push_to: list[str] = cfg.get("push_to", [])
        self.poll: dict[str, Any] | None = cfg.get("poll")
        self.applied: list[tuple[int, float, float]] = []  # (seq, change time, applied time)
        self.polls: list[tuple[float, bool]] = []
        self.expect: int | None = None
        self.client = None

    # -- clocks and faults --------------------------------------------------------
    def now(self) -> float:
        """Wall seconds since t0 (before the run starts: negative or since process start)."""
        return time.monotonic() - (self.t0 if self.t0 is not None else 0.0)

    def scenario_now(self) -> float:
        return self.now() * self.compress if self.t0 is not None else -1.0

    def count(self, key: str) -> None:
        self.counters[key] = self.counters.get(key, 0) + 1

    async def hop(self) -> None:
        d = self.hop_s + (self.hop_jitter() if self.hop_jitter is not None else 0.0)
        if d > 0:
            await asyncio.sleep(d)

    def _spawn(self, coro) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _serve(self, seconds: float, then=None) -> bool:
        """Queue for a slot and hold it ``seconds`` (then run ``then()`` still holding it:
        chain mode calls onward); False if refused by the queue bound."""
        limit = self.svc.queue_limit
        if limit is not None and self.slots.locked() and self.waiting >= limit:
            self.count("refused")
            return False
        self.waiting += 1
        try:
            await self.slots.acquire()
        finally:
            self.waiting -= 1
        try:
            if seconds > 0:
                await asyncio.sleep(seconds)
            if then is not None:
                await then()
        finally:
            self.slots.release()
        return True

    # -- chain mode: call the next stage while holding this service's slot ----------------
    async def _onward(self, wid: int, chain: list[list[dict[str, Any]]]) -> dict[str, Any]:
        """Call the next stage (a parallel stage: all of it, not further); returns
        ``{"outcome", "where", "steps"}`` with every nested call as a step row."""
        stage, rest = chain[0], chain[1:]
        if len(stage) == 1:
            results = [await self._hop_call(wid, stage[0], rest)]
        else:
            results = await asyncio.gather(*(self._hop_call(wid, hop, []) for hop in stage))
        steps = [row for r in results for row in r["steps"]]
        for r in results:
            if r["outcome"] != "ok":
                return {"outcome": "downstream", "where": r["where"], "steps": steps}
        return {"outcome": "ok", "where": "", "steps": steps}

    async def _hop_call(self, wid: int, hop: dict[str, Any], rest: list) -> dict[str, Any]:
        started = self.now()
        steps: list[list[Any]] = []
        attempt = 0
        delay = float(hop.get("backoff_s", 0.0))
        while True:
            attempt += 1
            where = hop["name"]
            try:
                async with asyncio.timeout(float(hop["timeout_s"])):
                    body = {"wf": wid, "chain": rest}
                    if hop.get("draw"):
                        body["draw"] = hop["draw"]
                    r = await self.client.post(hop["url"], json=body)
                    info = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
                steps.extend(info.get("steps", []))
                if r.status_code in (200, 202):
                    outcome = "ok"
                elif r.status_code == 502:
                    outcome, where = "downstream", info.get("where", hop["name"])
                else:
                    outcome = "refused" if r.status_code == 503 else "error"
            except Exception as exc:  # noqa: BLE001 - any failure of the hop is the hop's outcome
                outcome = "timeout" if isinstance(exc, TimeoutError) else "error"
            if outcome == "ok" or outcome == "downstream" or attempt > int(hop.get("retries", 0)):
                status = "completed" if outcome == "ok" else "failed"
                steps.append([hop["name"], started, self.now(), status, attempt])
                return {"outcome": outcome, "where": where, "steps": steps}
            await asyncio.sleep(delay)
            delay *= float(hop.get("multiplier", 2.0))

    async def _down_response(self) -> Response | None:
        """503 during an outage window (``hang``: only once the window is over)."""
        t = self.scenario_now()
        mode = self.windows.outage(t)
        if mode is None:
            return None
        self.count("down")
        if mode == "hang":  # the request is gone: nothing ever answers (the caller's timeout decides)
            await asyncio.Event().wait()
        return JSONResponse({"error": "outage"}, status_code=503)

    # -- handlers -----------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        return JSONResponse({"name": self.name, "pid": os.getpid(), "port": self.sock_port})

    async def control_start(self, request: Request) -> Response:
        body = await request.json()
        self.t0 = float(body["t0"])
        self.counters.clear()
        if self.windows.outages:
            self._spawn(self._outage_monitor())
        if self.poll is not None:
            self._spawn(self._poller(float(body.get("poll_phase_s", 0.0))))
        return JSONResponse({"ok": True})

    async def control_links(self, request: Request) -> Response:
        """Where to push changes / which feed to poll, once every port is known."""
        body = await request.json()
        self.push_to = list(body.get("push_to", self.push_to))
        self.poll = body.get("poll", self.poll)
        return JSONResponse({"ok": True})

    async def control_expect(self, request: Request) -> Response:
        self.expect = int((await request.json())["changes"])
        return JSONResponse({"ok": True})

    async def call(self, request: Request) -> Response:
        down = await self._down_response()
        if down is not None:
            return down
        chain, wid, draw = None, 0, None
        if request.method == "POST":
            try:
                body = await request.json()
                chain, wid, draw = body.get("chain"), body.get("wf", 0), body.get("draw")
            except ValueError:
                pass
        await self.hop()
        t = self.scenario_now()
        # the caller's dice (common random numbers with the simulation) or our own stream
        base = float(draw["s"]) if draw else self.service_time()
        seconds = base * self.windows.multiplier(t)
        onward: dict[str, Any] = {}
        then = None
        if chain:

            async def then():
                onward.update(await self._onward(wid, chain))

        if not await self._serve(seconds, then):
            await self.hop()
            return JSONResponse({"error": "queue full"}, status_code=503)
        if chain and onward.get("outcome") != "ok":
            await self.hop()
            self.count("downstream")
            return JSONResponse({"where": onward["where"], "steps": onward["steps"]}, status_code=502)
        p = self.svc.failure_prob
        extra = self.windows.extra_failure_prob(t)
        if extra:
            p = 1.0 - (1.0 - p) * (1.0 - extra)
        failed = (float(draw["u"]) if draw else self.coin()) < p
        await self.hop()
        if failed:
            self.count("error")
            return JSONResponse({"error": "failed"}, status_code=500)
        self.count("ok")
        if chain:
            return JSONResponse({"ok": True, "steps": onward["steps"]})
        if self.job_time is not None:
            jid = self.next_job
            self.next_job += 1
            self.jobs[jid] = None
            self._spawn(self._run_job(jid, float(draw["j"]) if draw and self.svc.job is not None else self.job_time()))
            return JSONResponse({"job": jid}, status_code=202)
        return Response(OK_BODY, media_type="application/json")

    async def _run_job(self, jid: int, seconds: float) -> None:
        if self.job_slots is not None:
            async with self.job_slots:
                await asyncio.sleep(seconds)
        else:
            await asyncio.sleep(seconds)
        self.jobs[jid] = self.now()

    async def job_status(self, request: Request) -> Response:
        down = await self._down_response()
        if down is not None:
            return down
        await self.hop()
        jid = int(request.path_params["jid"])
        if jid not in self.jobs:
            await self.hop()
            return JSONResponse({"error": "no such job"}, status_code=404)
        if not await self._serve(self.svc.poll_time_ms / 1000.0):
            await self.hop()
            return JSONResponse({"error": "queue full"}, status_code=503)
        done_at = self.jobs[jid]  # the answer as of when the poll was served
        await self.hop()
        if done_at is None:
            return JSONResponse({"status": "running"})
        return JSONResponse({"status": "done", "done_at": done_at})

    async def stats(self, request: Request) -> Response:
        return JSONResponse({"counters": self.counters, "waiting": self.waiting, "jobs": len(self.jobs)})

    # -- change propagation -------------------------------------------------------
    async def change(self, request: Request) -> Response:
        down = await self._down_response()
        if down is not None:
            return down
        body = await request.json()
        seq = int(body["seq"])
        t = float(body.get("t", self.now()))
        draws = body.get("draws") or {}  # per subscriber: its apply time (common random numbers)
        self.changes.append((seq, t, draws))
        for url in self.push_to:
            self._spawn(self._push(url, seq, t, draws))
        return JSONResponse({"ok": True, "at": self.now()})

    async def _push(self, url: str, seq: int, t: float, draws: dict) -> None:
        """Deliver one change to one subscriber, retrying (at least once) until it lands."""
        delay = 0.05
        while True:
            try:
                r = await self.client.post(url, json={"seq": seq, "t": t, "draws": draws})
                if r.status_code == 200:
                    return
            except Exception as exc:  # noqa: BLE001 - any transport failure means: try again
                log.debug("push %s to %s failed: %s", seq, url, exc)
            self.count("push_retry")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    async def changes_feed(self, request: Request) -> Response:
        down = await self._down_response()
        if down is not None:
            return down
        await self.hop()
        since = int(request.query_params.get("since", "0"))
        if not await self._serve(self.service_time()):
            await self.hop()
            return JSONResponse({"error": "queue full"}, status_code=503)
        new = [[s, t, d] for s, t, d in self.changes if s >= since]  # as of when it was served
        await self.hop()
        return JSONResponse({"changes": new})

    async def webhook(self, request: Request) -> Response:
        down = await self._down_response()
        if down is not None:
            return down
        body = await request.json()
        await self.hop()
        mine = (body.get("draws") or {}).get(self.name)
        if not await self._serve(float(mine) if mine is not None else self.service_time()):
            await self.hop()
            return JSONResponse({"error": "queue full"}, status_code=503)
        self.applied.append((int(body["seq"]), float(body["t"]), self.now()))
        await self.hop()
        return Response(OK_BODY, media_type="application/json")

    async def _poller(self, phase_s: float) -> None:
        """Poll the source's feed on a fixed timer; apply new changes one by one."""
        poll = self.poll
        url = poll["url"]
        interval = float(poll["interval_ms"]) / 1000.0
        timeout = float(poll.get("timeout_ms", 10000.0)) / 1000.0
        seen = 0
        await asyncio.sleep(phase_s)
        next_at = time.monotonic()
        while self.expect is None or seen < self.expect:
            new: list[list[float]] = []
            try:
                r = await self.client.get(url, params={"since": seen}, timeout=timeout)
                if r.status_code == 200:
                    new = r.json()["changes"]
            except Exception as exc:  # noqa: BLE001 - a failed poll is a wasted poll
                log.debug("poll failed: %s", exc)
            self.polls.append((self.now(), bool(new)))
            if new:
                seen = int(new[-1][0]) + 1
                self._spawn(self._apply(new))
            next_at += interval
            wait = next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)

    async def _apply(self, new: list[list[float]]) -> None:
        async with self.slots:
            for seq, t, *rest in new:
                mine = (rest[0] if rest else {}).get(self.name)
                s = float(mine) if mine is not None else self.service_time()
                if s > 0:
                    await asyncio.sleep(s)
                self.applied.append((int(seq), float(t), self.now()))

    async def report(self, request: Request) -> Response:
        return JSONResponse({"applied": self.applied, "polls": self.polls, "counters": self.counters})

    # -- outages that stop the listener ---------------------------------------------
    async def _outage_monitor(self) -> None:
        while True:
            mode = self.windows.outage(self.scenario_now())
            if mode == "refuse" and self.listening:
                self._stop_listening()
            elif mode != "refuse" and not self.listening:
                await self._start_listening()
            await asyncio.sleep(0.005)

    def _stop_listening(self) -> None:
        server = self.server
        for srv in server.servers:
            srv.close()
        server.servers = []
        for conn in list(server.server_state.connections):
            transport = getattr(conn, "transport", None)
            if transport is not None:
                transport.abort()
        self.listening = False
        self.count("outages")
        log.info("%s: stopped listening (outage)", self.name)

    async def _start_listening(self) -> None:
        server = self.server
        config = server.config
        sock = bind_socket(self.sock_port)

        def factory(_loop=None):
            return config.http_protocol_class(
                config=config, server_state=server.server_state, app_state=server.lifespan.state, _loop=_loop
            )

        srv = await asyncio.get_running_loop().create_server(factory, sock=sock, backlog=config.backlog)
        server.servers.append(srv)
        self.listening = True
        log.info("%s: listening again", self.name)

    def app(self) -> Starlette:
        import httpx
        from httpx_aiohttp import AiohttpTransport

        async def lifespan(app):
            self.client = httpx.AsyncClient(
                transport=AiohttpTransport(limits=httpx.Limits(max_connections=64, keepalive_expiry=15.0)),
                timeout=10.0,
                trust_env=False,
            )
            yield
            for task in list(self.tasks):
                task.cancel()
            await self.client.aclose()

        routes = [
            Route("/health", self.health),
            Route("/call", self.call, methods=["POST", "GET"]),
            Route("/jobs/{jid:int}", self.job_status),
            Route("/stats", self.stats),
            Route("/control/start", self.control_start, methods=["POST"]),
            Route("/control/links", self.control_links, methods=["POST"]),
            Route("/control/expect", self.control_expect, methods=["POST"]),
            Route("/change", self.change, methods=["POST"]),
            Route("/changes", self.changes_feed),
            Route("/webhook", self.webhook, methods=["POST"]),
            Route("/report", self.report),
        ]
        return Starlette(routes=routes, lifespan=lifespan)


def serve(cfg: dict[str, Any], *, announce=print) -> None:
    """Bind, announce the port, serve until told to stop (blocking)."""
    state = ServiceState(cfg)
    sock = bind_socket(int(cfg.get("port", 0)))
    state.sock_port = sock.getsockname()[1]
    config = uvicorn.Config(
        state.app(),
        http=cfg.get("http", "httptools"),
        loop=cfg.get("loop", "uvloop"),
        lifespan="on",
        log_level="warning",
        access_log=False,
        timeout_keep_alive=60,
        timeout_graceful_shutdown=1,
        backlog=2048,
    )
    server = uvicorn.Server(config)
    state.server = server
    sock.listen(2048)
    announce(f"LISTENING {state.sock_port}", flush=True)
    server.run(sockets=[sock])


def _watch_stdin(on_eof) -> None:
    """Stop when the parent goes away: its end of our stdin closes."""

    def run():
        try:
            while sys.stdin.buffer.read(4096):
                pass
        except (OSError, ValueError):
            pass
        on_eof()

    threading.Thread(target=run, daemon=True, name="stdin-watch").start()


def main() -> None:
    logging.basicConfig(level=os.environ.get("LAB_SERVICE_LOG", "WARNING"), stream=sys.stderr)
    line = sys.stdin.readline()
    cfg = json.loads(line)
    # the parent closing our stdin (normally or because it died) stops us
    _watch_stdin(lambda: os.kill(os.getpid(), signal.SIGTERM))
    np.seterr(all="ignore")
    serve(cfg)


if __name__ == "__main__":
    main()
