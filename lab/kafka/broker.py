"""A single-node Apache Kafka broker (KRaft, combined broker + controller) run by the lab.

No Docker: the broker's jars come from Maven Central through ``mvn
dependency:copy-dependencies`` on the small ``pom.xml`` shipped next to this module, into a
cache directory outside the repository (``~/.cache/lab/kafka-<version>``, reused next time).
:func:`start` formats the storage with a generated cluster id (``kafka.tools.StorageTool
format --standalone``), writes a ``server.properties`` (replication factors 1,
``group.initial.rebalance.delay.ms=0``), starts ``kafka.Kafka`` detached with a bounded heap on
127.0.0.1, and waits until it accepts connections.  Its pid, ports and data directory are kept
in a state directory, so ``lab kafka status`` / ``down`` (and the Kafka engine's broker-restart
fault) find it from another process.

Users with their own cluster skip all this: :func:`resolve_bootstrap` prefers an explicit
``--bootstrap HOST:PORT``, then ``KAFKA_BOOTSTRAP_SERVERS``, then the lab's running broker.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

from ..errors import EngineUnavailable, LabError

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.4.0"
DEFAULT_HEAP = "512m"
ENV_BOOTSTRAP = "KAFKA_BOOTSTRAP_SERVERS"
HOST = "127.0.0.1"

_children: dict[int, subprocess.Popen] = {}
_log_offsets: dict[int, int] = {}  # where a broker we launched began writing its log


# -- places -------------------------------------------------------------------------------

def cache_root() -> Path:
    """Where downloaded jars live: ``$LAB_CACHE_DIR`` or ``$XDG_CACHE_HOME/lab`` or ``~/.cache/lab``."""
    if os.environ.get("LAB_CACHE_DIR"):
        return Path(os.environ["LAB_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "lab"


def jar_dir(version: str = KAFKA_VERSION) -> Path:
    return cache_root() / f"kafka-{version}" / "libs"


def state_dir() -> Path:
    """Where the running broker's state lives: ``$LAB_KAFKA_STATE_DIR`` or ``~/.local/state/lab/kafka``."""
    if os.environ.get("LAB_KAFKA_STATE_DIR"):
        return Path(os.environ["LAB_KAFKA_STATE_DIR"])
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "lab" / "kafka"


# -- tools --------------------------------------------------------------------------------

def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        what = {"java": "Java (a JDK or JRE 17+)", "mvn": "Maven (mvn)"}.get(name, name)
        raise EngineUnavailable(f"{what} is not installed or not on PATH; the lab's Kafka broker needs it")
    return path


def java_available() -> bool:
    return shutil.which("java") is not None


def ensure_jars(version: str = KAFKA_VERSION) -> Path:
    """The directory of the broker's jars, fetched with Maven on first use."""
    libs = jar_dir(version)
    marker = libs / ".complete"
    if marker.exists():
        return libs
    require_tool("java")
    mvn = require_tool("mvn")
    libs.mkdir(parents=True, exist_ok=True)
    pom = resources.files("lab.kafka").joinpath("pom.xml").read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="lab-kafka-mvn-") as tmp:
        Path(tmp, "pom.xml").write_text(pom, encoding="utf-8")
        cmd = [
            mvn, "-q", "-B", "dependency:copy-dependencies",
            f"-Dkafka.version={version}", f"-DoutputDirectory={libs}", "-DincludeScope=runtime",
        ]  # fmt: skip
        log.info("fetching Kafka %s jars with Maven into %s", version, libs)
        proc = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0 or not any(libs.glob("kafka_2.13-*.jar")):
        tail = " ".join((proc.stdout + proc.stderr).split()[-40:])
        raise EngineUnavailable(f"Maven could not fetch Kafka {version} jars: {tail}")
    marker.write_text(version, encoding="utf-8")
    return libs


def classpath(version: str = KAFKA_VERSION) -> str:
    return str(ensure_jars(version) / "*")


# -- state --------------------------------------------------------------------------------

@dataclass
class BrokerInfo:
    """A broker started by the lab."""

    pid: int
    port: int
    controller_port: int
    data_dir: str
    home: str
    version: str
    heap: str

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.port}"

    @property
    def log_file(self) -> Path:
        return Path(self.home) / "server.log"


def _state_file() -> Path:
    return state_dir() / "state.json"


def read_state() -> BrokerInfo | None:
    f = _state_file()
    if not f.exists():
        return None
    try:
        return BrokerInfo(**json.loads(f.read_text(encoding="utf-8")))
    except (ValueError, TypeError):
        return None


def _write_state(info: BrokerInfo) -> None:
    f = _state_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    tmp = f.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info), indent=2), encoding="utf-8")
    tmp.replace(f)


def pid_alive(pid: int) -> bool:
    child = _children.get(pid)
    if child is not None:
        return child.poll() is None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie is not alive
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _is_kafka(pid: int) -> bool:
    """Whether ``pid`` runs ``kafka.Kafka`` (a stale state file's pid may have been reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return True  # no /proc here: trust the pid
    return b"kafka.Kafka" in cmdline


def running() -> BrokerInfo | None:
    """The lab's broker if its process is alive, else None."""
    info = read_state()
    if info is not None and pid_alive(info.pid) and _is_kafka(info.pid):
        return info
    return None


# -- config -------------------------------------------------------------------------------

def cluster_id() -> str:
    """A random Kafka cluster id: 16 bytes, URL-safe base64 without padding (like ``random-uuid``)."""
    return base64.urlsafe_b64encode(os.urandom(16)).decode("ascii").rstrip("=")


def server_properties(port: int, controller_port: int, data_dir: str) -> str:
    props = {
        "process.roles": "broker,controller",
        "node.id": "1",
        "controller.quorum.bootstrap.servers": f"{HOST}:{controller_port}",
        "listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "advertised.listeners": f"PLAINTEXT://{HOST}:{port},CONTROLLER://{HOST}:{controller_port}",
        "inter.broker.listener.name": "PLAINTEXT",
        "controller.listener.names": "CONTROLLER",
        "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "log.dirs": data_dir,
        "num.partitions": "1",
        "default.replication.factor": "1",
        "offsets.topic.replication.factor": "1",
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": "1",
        "transaction.state.log.min.isr": "1",
        "share.coordinator.state.topic.replication.factor": "1",
        "share.coordinator.state.topic.min.isr": "1",
        "group.initial.rebalance.delay.ms": "0",
        # short sessions allowed, so tests and crash faults do not stall on group membership
        "group.min.session.timeout.ms": "500",
        # a restarted broker re-registers quickly instead of waiting out its old session
        "broker.session.timeout.ms": "3000",
        "broker.heartbeat.interval.ms": "500",
        "delete.topic.enable": "true",
        "auto.create.topics.enable": "true",
    }
    return "".join(f"{k}={v}\n" for k, v in props.items())


LOG4J2 = """\
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
logger.kafka.name = org.apache.kafka
logger.kafka.level = warn
logger.k.name = kafka
logger.k.level = warn
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = info
"""


def _java_cmd(home: Path, version: str, heap: str, main: str, *args: str) -> list[str]:
    return [
        require_tool("java"), f"-Xmx{heap}", f"-Xms{min_heap(heap)}", "-XX:+UseG1GC",
        "-Djava.awt.headless=true", f"-Dlog4j2.configurationFile={home / 'log4j2.properties'}",
        "-cp", classpath(version), main, *args,
    ]  # fmt: skip


def min_heap(heap: str) -> str:
    return "128m" if heap.endswith("m") and int(heap[:-1]) >= 128 else heap


# -- lifecycle ----------------------------------------------------------------------------

def start(
    *, port: int | None = None, version: str = KAFKA_VERSION, heap: str = DEFAULT_HEAP, wait_s: float = 90.0
) -> BrokerInfo:
    """Start the lab's broker (or return the one already running)."""
    current = running()
    if current is not None:
        if port_open(HOST, current.port):
            return current
        return _wait_ready(current, wait_s)
    require_tool("java")
    ensure_jars(version)
    home = state_dir()
    home.mkdir(parents=True, exist_ok=True)
    data_dir = home / "data"
    if data_dir.exists():
        shutil.rmtree(data_dir)
    port = port or free_port()
    controller_port = free_port()
    while controller_port == port:
        controller_port = free_port()
    if port_open(HOST, port):
        raise LabError(f"port {port} on {HOST} is already in use", source="lab kafka up", field="--port")
    (home / "server.properties").write_text(server_properties(port, controller_port, str(data_dir)), encoding="utf-8")
    (home / "log4j2.properties").write_text(LOG4J2, encoding="utf-8")
    cmd = _java_cmd(home, version, "256m", "kafka.tools.StorageTool", "format", "--standalone",
                    "-t", cluster_id(), "-c", str(home / "server.properties"))  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    if proc.returncode != 0:
        tail = " ".join((proc.stdout + proc.stderr).split()[-40:])
        raise EngineUnavailable(f"formatting Kafka storage failed: {tail}")
    info = BrokerInfo(pid=0, port=port, controller_port=controller_port, data_dir=str(data_dir),
                      home=str(home), version=version, heap=heap)  # fmt: skip
    return _launch(info, wait_s)


def _launch(info: BrokerInfo, wait_s: float) -> BrokerInfo:
    home = Path(info.home)
    cmd = _java_cmd(home, info.version, info.heap, "kafka.Kafka", str(home / "server.properties"))
    log_file = home / "server.log"
    offset = log_file.stat().st_size if log_file.exists() else 0
    with open(log_file, "ab") as out:
        child = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                 start_new_session=True, cwd=home)  # fmt: skip
    _children[child.pid] = child
    _log_offsets[child.pid] = offset
    info.pid = child.pid
    _write_state(info)
    log.info("started Kafka %s (pid %d) on %s", info.version, info.pid, info.bootstrap)
    return _wait_ready(info, wait_s)


def _wait_ready(info: BrokerInfo, wait_s: float) -> BrokerInfo:
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if not pid_alive(info.pid):
            raise EngineUnavailable(f"the Kafka broker exited during start-up; see {info.log_file}: {_log_tail(info)}")
        if port_open(HOST, info.port) and _log_says_started(info):
            return info
        time.sleep(0.2)
    raise EngineUnavailable(f"the Kafka broker did not accept connections within {wait_s:.0f} s; see {info.log_file}")


def _log_says_started(info: BrokerInfo) -> bool:
    try:
        with open(info.log_file, "rb") as f:
            f.seek(_log_offsets.get(info.pid, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        return False
    return "Kafka Server started" in text


def _log_tail(info: BrokerInfo, n: int = 5) -> str:
    try:
        lines = info.log_file.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    errs = [ln for ln in lines if " ERROR " in ln or "Exception" in ln]
    return " | ".join((errs or lines)[-n:])


def _terminate(pid: int, timeout_s: float = 30.0) -> None:
    if not pid_alive(pid):
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            break
        time.sleep(0.1)
    else:
        log.warning("Kafka broker pid %d ignored SIGTERM for %.0f s; killing it", pid, timeout_s)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=10)


def stop(*, remove_data: bool = True) -> BrokerInfo | None:
    """Stop the lab's broker (controlled shutdown) and remove its data directory."""
    info = read_state()
    if info is None:
        return None
    _terminate(info.pid)
    if remove_data:
        shutil.rmtree(info.data_dir, ignore_errors=True)
        _state_file().unlink(missing_ok=True)
    log.info("stopped Kafka broker pid %d", info.pid)
    return info


def restart(*, down_s: float = 0.0, wait_s: float = 90.0) -> BrokerInfo:
    """Stop the lab's broker, keep its data, wait ``down_s``, start it again on the same ports."""
    info = read_state()
    if info is None or not pid_alive(info.pid):
        raise EngineUnavailable("no broker started by the lab is running (see `lab kafka up`)")
    _terminate(info.pid)
    if down_s > 0:
        time.sleep(down_s)
    return _launch(info, wait_s)


@dataclass
class Status:
    running: bool
    bootstrap: str | None
    pid: int | None
    data_dir: str | None
    version: str | None
    accepting: bool

    def line(self) -> str:
        if not self.running:
            return "kafka: not running"
        state = "accepting connections" if self.accepting else "not accepting connections"
        return f"kafka {self.version}: running, pid {self.pid}, {self.bootstrap}, {state}, data {self.data_dir}"


def status() -> Status:
    info = running()
    if info is None:
        return Status(False, None, None, None, None, False)
    return Status(True, info.bootstrap, info.pid, info.data_dir, info.version, port_open(HOST, info.port))


def resolve_bootstrap(bootstrap: str | None = None) -> str | None:
    """An explicit address, else ``$KAFKA_BOOTSTRAP_SERVERS``, else the lab's running broker, else None."""
    if bootstrap:
        return validate_bootstrap(bootstrap)
    env = os.environ.get(ENV_BOOTSTRAP)
    if env:
        return validate_bootstrap(env, source=ENV_BOOTSTRAP)
    info = running()
    return info.bootstrap if info is not None else None


def validate_bootstrap(text: str, *, source: str = "--bootstrap") -> str:
    for part in text.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise LabError(f"expected HOST:PORT[,HOST:PORT...], got {text!r}", source=source)
    return text.strip()


def owns(bootstrap: str) -> bool:
    """Whether ``bootstrap`` is the lab's own broker (so it may be stopped and restarted)."""
    info = running()
    return info is not None and bootstrap.strip() == info.bootstrap
