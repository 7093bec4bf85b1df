"""The process manager: start every service process a run needs, wait until each is
ready, stop them all at the end, also on Ctrl-C, SIGTERM or an exception.

Each service runs in its own session (its own process group), so stopping it kills the
group.  A child learns its configuration from one JSON line on stdin and keeps reading
stdin: if the parent dies, even by SIGKILL, stdin closes and the child stops itself.
Stopping is SIGTERM to the group, then SIGKILL after ``grace_s``; an ``atexit`` hook
stops fleets still running at interpreter exit.  No port is chosen by the parent: each
child binds port 0 and announces the port the kernel gave it (no race for free ports).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from pathlib import Path
from typing import Any

import httpx

from ..errors import LabError

log = logging.getLogger(__name__)

#: the child's entry point: import lab.http.service without running the package
#: ``__init__`` files (they pull in pandas and the engines: a second of start-up per process)
_BOOT = """
import sys, types
root = sys.argv[1]
for name, sub in (("lab", "/lab"), ("lab.http", "/lab/http")):
    m = types.ModuleType(name)
    m.__path__ = [root + sub]
    sys.modules[name] = m
from lab.http.service import main
main()
"""

_LIVE: weakref.WeakSet[ServiceFleet] = weakref.WeakSet()


@atexit.register
def _stop_all_at_exit() -> None:
    for fleet in list(_LIVE):
        fleet.stop()


class ServiceStartError(LabError):
    """A service process did not come up (the message carries its stderr tail)."""


class _Proc:
    def __init__(self, name: str, popen: subprocess.Popen, errfile: Any):
        self.name = name
        self.popen = popen
        self.errfile = errfile
        self.port: int | None = None
        self.expected_exit = False

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            self.errfile.flush()
            self.errfile.seek(0)
            return self.errfile.read()[-n:].decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""


class ServiceFleet:
    """One OS process per service.  Use as a context manager::

        with ServiceFleet({"a": cfg_a, "b": cfg_b}) as fleet:
            fleet.urls["a"]  # http://127.0.0.1:PORT

    ``configs`` maps a service name to the JSON-able configuration its process reads
    (see :mod:`lab.http.service`).
    """

    def __init__(self, configs: dict[str, dict[str, Any]], *, ready_timeout_s: float = 20.0, grace_s: float = 3.0):
        self.configs = configs
        self.ready_timeout_s = ready_timeout_s
        self.grace_s = grace_s
        self.procs: dict[str, _Proc] = {}
        self.urls: dict[str, str] = {}
        self._old_sigterm: Any = None
        self._stopped = False

    # -- lifecycle ----------------------------------------------------------------
    def __enter__(self) -> ServiceFleet:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        _LIVE.add(self)
        self._install_sigterm()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # the child imports this very lab package, installed or not
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        for name, cfg in self.configs.items():
            errfile = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
            popen = subprocess.Popen(
                [sys.executable, "-c", _BOOT, root],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errfile,
                start_new_session=True,
                env=env,
                close_fds=True,
            )
            self.procs[name] = _Proc(name, popen, errfile)
            popen.stdin.write((json.dumps({"name": name, **cfg}) + "\n").encode())
            popen.stdin.flush()
        deadline = time.monotonic() + self.ready_timeout_s
        for name, proc in self.procs.items():
            proc.port = self._read_port(proc, deadline)
            self.urls[name] = f"http://127.0.0.1:{proc.port}"
        with httpx.Client(trust_env=False, timeout=2.0) as client:
            for name, url in self.urls.items():
                self._wait_healthy(client, name, url, deadline)
        log.info("fleet up: %s", ", ".join(f"{n}={u}" for n, u in self.urls.items()))

    def _read_port(self, proc: _Proc, deadline: float) -> int:
        out = proc.popen.stdout
        buf = b""
        while b"\n" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or proc.popen.poll() is not None:
                raise ServiceStartError(
                    f"service process did not start: {proc.stderr_tail()!r}", source="http engine", field=proc.name
                )
            ready, _, _ = select.select([out], [], [], min(left, 0.2))
            if ready:
                chunk = os.read(out.fileno(), 256)
                if not chunk:
                    continue
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode()
        if not line.startswith("LISTENING "):
            raise ServiceStartError(f"unexpected announcement {line!r}", source="http engine", field=proc.name)
        return int(line.split()[1])

    def _wait_healthy(self, client: httpx.Client, name: str, url: str, deadline: float) -> None:
        while True:
            try:
                if client.get(url + "/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or self.procs[name].popen.poll() is not None:
                raise ServiceStartError(
                    f"service not healthy in time: {self.procs[name].stderr_tail()!r}", source="http engine", field=name
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Stop every process (SIGTERM to its group, SIGKILL after the grace period)."""
        if self._stopped:
            return
        self._stopped = True
        for proc in self.procs.values():
            proc.expected_exit = True
            with contextlib.suppress(OSError, ValueError):
                proc.popen.stdin.close()
            self._signal(proc, signal.SIGTERM)
        deadline = time.monotonic() + self.grace_s
        for proc in self.procs.values():
            try:
                proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("service %s ignored SIGTERM; killing it", proc.name)
            self._signal(proc, signal.SIGKILL)  # the group: also any grandchild left over
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(timeout=5)
            with contextlib.suppress(OSError, ValueError):
                proc.popen.stdout.close()
                proc.errfile.close()
        _LIVE.discard(self)
        self._restore_sigterm()

    @staticmethod
    def _signal(proc: _Proc, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, sig)

    # -- SIGTERM becomes an exception, so `with` blocks clean up as on Ctrl-C -------------
    def _install_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        current = signal.getsignal(signal.SIGTERM)
        if current in (signal.SIG_DFL, None):
            self._old_sigterm = current

            def on_term(signum, frame):
                raise KeyboardInterrupt("SIGTERM")

            signal.signal(signal.SIGTERM, on_term)

    def _restore_sigterm(self) -> None:
        if self._old_sigterm is not None and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._old_sigterm)
            self._old_sigterm = None

    # -- health ---------------------------------------------------------------------------
    def pids(self) -> dict[str, int]:
        return {n: p.popen.pid for n, p in self.procs.items()}

    def ports(self) -> dict[str, int]:
        return {n: p.port for n, p in self.procs.items() if p.port is not None}

    def dead(self) -> dict[str, int]:
        """Services whose process exited while it should be running: name -> exit code."""
        return {
            n: p.popen.returncode
            for n, p in self.procs.items()
            if not p.expected_exit and p.popen.poll() is not None
        }

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Kill one service (tests and crash scenarios); :meth:`dead` will report it."""
        self._signal(self.procs[name], sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.procs[name].popen.wait(timeout=5)
