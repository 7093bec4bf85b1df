"""The scenario: one typed, validated description of *what* runs.

A scenario is loaded from YAML (a preset name or a file) or built from Python keywords.
Validation lives here, in one place, and every problem becomes a :class:`LabError` that
names the file and the dotted field.  Times carry their unit in the field name
(``duration_s``, ``mean_ms``, ``rate_per_s``).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import LabError
from .faults import Faults
from .policies import Resilience

Style = Literal["orchestration", "events", "hybrid"]
STYLES: tuple[str, ...] = ("orchestration", "events", "hybrid")

#: names a service may not take: the sites faults and load-shedding name themselves
RESERVED_SITES = ("broker", "orchestrator", "network")

PosFloat = Annotated[float, Field(gt=0)]
NonNegFloat = Annotated[float, Field(ge=0)]

#: z-score of the 99th percentile of the standard normal distribution
Z99 = 2.3263478740408408


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=False, validate_assignment=False, allow_inf_nan=False)


class Dist(_Model):
    """A service-time (or job-time) distribution, in milliseconds.

    ``exponential`` and ``deterministic`` take ``mean_ms``; ``lognormal`` takes ``mean_ms``
    with either ``p99_ms`` or ``sigma`` (of the underlying normal); ``uniform`` takes
    ``low_ms`` and ``high_ms``.  A bare number means ``deterministic`` with that mean.
    """

    dist: Literal["exponential", "deterministic", "lognormal", "uniform"] = "deterministic"
    mean_ms: NonNegFloat | None = None
    p99_ms: PosFloat | None = None
    sigma: PosFloat | None = None
    low_ms: NonNegFloat | None = None
    high_ms: NonNegFloat | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_number(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return {"dist": "deterministic", "mean_ms": value}
        return value

    @model_validator(mode="after")
    def _check(self) -> Dist:
        d = self.dist
        if d in ("exponential", "deterministic", "lognormal") and self.mean_ms is None:
            raise ValueError(f"{d} needs mean_ms")
        if d == "exponential" and self.mean_ms <= 0:
            raise ValueError("exponential needs mean_ms > 0")
        if d == "lognormal":
            if (self.p99_ms is None) == (self.sigma is None):
                raise ValueError("lognormal needs exactly one of p99_ms or sigma besides mean_ms")
            if self.mean_ms <= 0:
                raise ValueError("lognormal needs mean_ms > 0")
            if self.p99_ms is not None:
                ratio = self.p99_ms / self.mean_ms
                if ratio <= 1:
                    raise ValueError("lognormal p99_ms must be larger than mean_ms")
                if math.log(ratio) > Z99**2 / 2:
                    raise ValueError(
                        f"lognormal p99_ms/mean_ms = {ratio:.1f} is impossible (at most {math.exp(Z99**2 / 2):.1f})"
                    )
        if d == "uniform":
            if self.low_ms is None or self.high_ms is None:
                raise ValueError("uniform needs low_ms and high_ms")
            if self.high_ms < self.low_ms:
                raise ValueError("uniform needs low_ms <= high_ms")
        return self

    @property
    def mean_s(self) -> float:
        if self.dist == "uniform":
            return (self.low_ms + self.high_ms) / 2000.0
        return self.mean_ms / 1000.0

    def lognormal_params(self) -> tuple[float, float]:
        """(mu, sigma) of the underlying normal, for values in milliseconds."""
        if self.sigma is not None:
            s = self.sigma
        else:
            d = math.log(self.p99_ms / self.mean_ms)
            s = Z99 - math.sqrt(Z99 * Z99 - 2.0 * d)
        mu = math.log(self.mean_ms) - s * s / 2.0
        return mu, s


class Burst(_Model):
    """A window in which the arrival rate is multiplied."""

    start_s: NonNegFloat
    duration_s: PosFloat
    multiplier: NonNegFloat


class Workload(_Model):
    """The arrival process: ``poisson`` or ``constant`` at ``rate_per_s``, optionally
    shaped in time by ``bursts`` and a ``daily_curve`` (24 hourly multipliers over a day
    of ``day_length_s`` simulated seconds, so a day can be compressed)."""

    arrivals: Literal["poisson", "constant"] = "poisson"
    rate_per_s: PosFloat = 10.0
    bursts: list[Burst] = Field(default_factory=list)
    daily_curve: list[NonNegFloat] | None = None
    day_length_s: PosFloat = 86400.0

    @field_validator("daily_curve")
    @classmethod
    def _curve(cls, v: list[float] | None) -> list[float] | None:
        if v is not None and (len(v) != 24 or max(v) <= 0):
            raise ValueError("daily_curve needs 24 hourly multipliers, not all zero")
        return v

    def multiplier(self, t: float) -> float:
        m = 1.0
        if self.daily_curve is not None:
            hour = int((t % self.day_length_s) / self.day_length_s * 24) % 24
            m *= self.daily_curve[hour]
        for b in self.bursts:
            if b.start_s <= t < b.start_s + b.duration_s:
                m *= b.multiplier
        return m

    def max_multiplier(self) -> float:
        m = max(self.daily_curve) if self.daily_curve is not None else 1.0
        for b in self.bursts:
            m *= max(1.0, b.multiplier)
        return m

    @property
    def time_varying(self) -> bool:
        return bool(self.bursts) or self.daily_curve is not None


class Network(_Model):
    """One-way latency of every network hop (caller to service, service to broker...).
    The default is a realistic same-region figure; set ``latency_ms: 0`` for pure
    queueing models.  ``jitter_ms`` adds an exponential extra with that mean."""

    latency_ms: NonNegFloat = 1.0
    jitter_ms: NonNegFloat = 0.0


class Service(_Model):
    """A service: how long a call takes, how many it serves at once, how often it fails.

    A service with ``job`` is an *asynchronous job*: the call (``service_time``) accepts
    the job, which then runs for ``job`` on the service's job workers; an orchestrator
    polls its status endpoint every ``poll_interval_ms`` (each poll costs ``poll_time_ms``
    of the service's capacity); under events the service pushes a completion event.
    """

    service_time: Dist = Field(default_factory=lambda: Dist(dist="deterministic", mean_ms=10))
    concurrency: Annotated[int, Field(ge=1)] = 1
    queue_limit: Annotated[int, Field(ge=0)] | None = None
    failure_prob: Annotated[float, Field(ge=0, lt=1)] = 0.0
    job: Dist | None = None
    job_concurrency: Annotated[int, Field(ge=1)] | None = None
    poll_interval_ms: PosFloat = 1000.0
    poll_time_ms: NonNegFloat = 1.0
    consumers: Annotated[int, Field(ge=1)] | None = None


class Orchestration(_Model):
    """Knobs of the synchronous style: per-call timeout, retries with backoff, and the
    orchestrator's pool of workflow slots (threads/connections held while waiting).

    ``mode: central``: one orchestrator calls every service in turn.  ``mode: chain``:
    each service calls the next one synchronously and holds its own worker while it
    waits (A -> B -> C), so a slow or dead service backs up every caller above it.
    (``resilience:`` holds the full set of call patterns; these fields are shorthands.)
    """

    mode: Literal["central", "chain"] = "central"

    timeout_ms: PosFloat | None = None
    retries: Annotated[int, Field(ge=0)] = 0
    backoff_ms: NonNegFloat = 100.0
    backoff_multiplier: Annotated[float, Field(ge=1)] = 2.0
    jitter: Literal["none", "full", "equal"] = "none"
    max_in_flight: Annotated[int, Field(ge=1)] | None = None


class Broker(_Model):
    """The simulated broker: publish-to-delivery latency, partitions per topic, and
    consumers per subscribing service (default: the service's ``consumers``, else its
    ``concurrency``); ``retention_s`` after which an unconsumed event expires (lost);
    consumers commit offsets every ``commit_interval_ms`` (Kafka's auto-commit), so a
    consumer that dies redelivers what it processed since its last commit."""

    latency_ms: NonNegFloat = 5.0
    partitions: Annotated[int, Field(ge=1)] = 6
    consumers: Annotated[int, Field(ge=1)] | None = None
    retention_s: PosFloat | None = None
    commit_interval_ms: NonNegFloat = 5000.0


class Hybrid(_Model):
    """``core_steps`` flow elements are orchestrated (the transactional core, the
    caller's answer); the remaining elements react to the core's event."""

    core_steps: Annotated[int, Field(ge=1)] | None = None


class Propagation(_Model):
    """Change propagation (polling vs push): the workload's arrivals are changes at
    ``source``; each of ``subscribers`` learns of them by polling every
    ``poll_interval_ms`` (orchestration) or by a pushed change event (events)."""

    source: str
    subscribers: list[str] = Field(min_length=1)
    poll_interval_ms: PosFloat = 5000.0


FlowItem = str | list[str]


class Scenario(_Model):
    """What runs: services, flow, workload, style and its knobs, duration and seed."""

    name: str = "scenario"
    description: str = ""
    duration_s: PosFloat = 600.0
    warmup_s: NonNegFloat = 0.0
    seed: int = Field(1, ge=0)
    workload: Workload = Field(default_factory=Workload)
    network: Network = Field(default_factory=Network)
    services: dict[str, Service] = Field(default_factory=dict)
    flow: list[FlowItem] = Field(default_factory=list)
    style: Style | list[Style] = "orchestration"
    orchestration: Orchestration = Field(default_factory=Orchestration)
    broker: Broker = Field(default_factory=Broker)
    hybrid: Hybrid = Field(default_factory=Hybrid)
    propagation: Propagation | None = None
    faults: Faults = Field(default_factory=Faults)
    resilience: Resilience = Field(default_factory=Resilience)
    allow_overload: bool = False
    series_interval_s: PosFloat | None = None

    @field_validator("style")
    @classmethod
    def _style(cls, v: Any) -> Any:
        if isinstance(v, list):
            if not v:
                raise ValueError("style list is empty")
            if len(set(v)) != len(v):
                raise ValueError("style list repeats a style")
        return v

    @field_validator("flow", mode="before")
    @classmethod
    def _flow_shape(cls, v: Any) -> Any:
        if isinstance(v, list):
            for k, item in enumerate(v):
                if isinstance(item, list) and any(isinstance(x, list | dict) for x in item):
                    raise ValueError(
                        f"item {k}: a parallel branch lists services by name; branches inside branches "
                        "are not supported (split the flow into stages instead)"
                    )
        return v

    @field_validator("flow")
    @classmethod
    def _flow(cls, v: list[FlowItem]) -> list[FlowItem]:
        for item in v:
            if isinstance(item, list) and not item:
                raise ValueError("a parallel branch is empty")
        return v

    @model_validator(mode="after")
    def _check(self) -> Scenario:
        if self.warmup_s >= self.duration_s:
            raise ValueError(
                f"warmup_s: ({self.warmup_s:g}) must be shorter than duration_s ({self.duration_s:g}); "
                f"for a short run also set warmup_s, e.g. --set warmup_s={self.duration_s / 10:g}"
            )
        if not self.services:
            raise ValueError("services: at least one service is needed")
        for name in self.services:
            if name in RESERVED_SITES or ":" in name:
                raise ValueError(f"services: {name!r} is the name of a site the lab models itself; rename the service")
        if self.propagation is None:
            if not self.flow:
                raise ValueError("flow: is empty; name at least one service")
            seen = set()
            for name in self.steps:
                if name not in self.services:
                    raise ValueError(f"flow: names unknown service {name!r}")
                if name in seen:
                    raise ValueError(f"flow: service {name!r} appears twice")
                seen.add(name)
        else:
            p = self.propagation
            for name in [p.source, *p.subscribers]:
                if name not in self.services:
                    raise ValueError(f"propagation: names unknown service {name!r}")
            if p.source in p.subscribers:
                raise ValueError("propagation.subscribers: the source cannot subscribe to itself")
        if "hybrid" in self.styles and self.propagation is None:
            core = self.core_steps
            if core >= len(self.flow):
                raise ValueError(
                    f"hybrid.core_steps: {core} leaves no downstream step in a flow of {len(self.flow)}"
                )
        if self.orchestration.mode == "chain" and self.propagation is None:
            for k, stage in enumerate(self.stages[:-1]):
                if len(stage) > 1:
                    raise ValueError(f"orchestration.mode: chain needs single services before the last stage (stage {k} is a branch)")
        if not self.allow_overload:
            for name, rho in self.offered_utilisation().items():
                if rho >= 10:
                    raise ValueError(
                        f"services.{name}: offered utilisation {rho:.1f} makes no sense "
                        "(check units: mean_ms, rate_per_s); set allow_overload: true to run it anyway"
                    )
        return self

    # -- derived views -------------------------------------------------------------
    @property
    def horizon_s(self) -> float:
        """How long a run may last: arrivals stop at ``duration_s``, then in-flight work drains."""
        return self.duration_s + max(60.0, 0.5 * self.duration_s)

    @property
    def styles(self) -> list[str]:
        return list(self.style) if isinstance(self.style, list) else [self.style]

    @property
    def steps(self) -> list[str]:
        """Every service of the flow, in order, branches flattened."""
        out: list[str] = []
        for item in self.flow:
            out.extend(item if isinstance(item, list) else [item])
        return out

    @property
    def stages(self) -> list[list[str]]:
        """The flow as stages; a stage with several services runs them in parallel."""
        return [list(item) if isinstance(item, list) else [item] for item in self.flow]

    @property
    def core_steps(self) -> int:
        if self.hybrid.core_steps is not None:
            return self.hybrid.core_steps
        return max(1, len(self.flow) - 1)

    def consumers_of(self, service: str) -> int:
        svc = self.services[service]
        if svc.consumers is not None:
            return svc.consumers
        if self.broker.consumers is not None:
            return self.broker.consumers
        return svc.concurrency

    def offered_utilisation(self) -> dict[str, float]:
        """Offered load per service (arrival rate x mean service time / concurrency)."""
        w = self.workload
        lam = w.rate_per_s * (max(w.daily_curve) if w.daily_curve is not None else 1.0)  # bursts are transient
        names = self.steps if self.propagation is None else [self.propagation.source, *self.propagation.subscribers]
        return {
            n: lam * self.services[n].service_time.mean_s / self.services[n].concurrency
            for n in names
        }

    def replace(self, **overrides: Any) -> Scenario:
        """A copy with overrides: nested dicts merge, dotted keys address nested fields."""
        return build_scenario(deep_merge(self.model_dump(exclude_unset=False), _expand(overrides)), source="<overrides>")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(mode="json", exclude_defaults=True), sort_keys=False)


# -- loading ---------------------------------------------------------------------------

PRESET_PACKAGE = "lab.presets"


def preset_names() -> list[str]:
    files = resources.files(PRESET_PACKAGE).iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def preset_text(name: str) -> str:
    return resources.files(PRESET_PACKAGE).joinpath(f"{name}.yaml").read_text(encoding="utf-8")


def preset_summary(name: str) -> str:
    """The first comment line of a preset: what it teaches."""
    for line in preset_text(name).splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def _expand(overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Turn ``{"workload.rate_per_s": 5}`` into ``{"workload": {"rate_per_s": 5}}``."""
    out: dict[str, Any] = {}
    for key, value in overrides.items():
        parts = key.split(".")
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise LabError("conflicting overrides", source="<overrides>", field=key)
        leaf = parts[-1]
        if isinstance(value, Mapping) and isinstance(node.get(leaf), dict):
            node[leaf] = deep_merge(node[leaf], value)
        else:
            node[leaf] = value
    return out


def deep_merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(dict(base))
    for k, v in extra.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_set(items: Iterable[str], source: str = "--set") -> dict[str, Any]:
    """Parse ``dotted.key=value`` strings; values are read as YAML scalars/lists."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise LabError(f"expected dotted.key=value, got {item!r}", source=source)
        key, text = item.split("=", 1)
        try:
            out[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise LabError(f"cannot read value {text!r}: {exc}", source=source, field=key) from None
    return out


def _format_loc(loc: tuple[Any, ...]) -> str:
    parts: list[str] = []
    for p in loc:
        if isinstance(p, int):
            parts.append(f"[{p}]")
        elif p in ("function-after[_check(), Dist]", "function-before[_from_number(), Dist]") or isinstance(p, str) and ("[" in p or p in ("str", "list[str]", "float", "int")):
            continue
        else:
            parts.append(("." if parts else "") + str(p))
    return "".join(parts) or "(top level)"


def build_scenario(data: Mapping[str, Any], *, source: str = "<keywords>") -> Scenario:
    """Validate a mapping into a :class:`Scenario`, or raise :class:`LabError`."""
    if not isinstance(data, Mapping):
        raise LabError("a scenario must be a mapping of fields", source=source)
    try:
        sc = Scenario.model_validate(dict(data))
        sc.faults.validate_against(sc.services, source=source)
        sc.faults.check_crash_counts(sc.horizon_s, source=source)
        sc.resilience.validate_against(sc.services, source=source)
        return sc
    except ValidationError as exc:
        err = exc.errors()[0]
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        field = _format_loc(tuple(err["loc"]))
        if not err["loc"] and ": " in msg and " " not in msg.split(": ", 1)[0]:
            field, msg = msg.split(": ", 1)  # a cross-field check names its field first
        inp = err.get("input")
        if err["type"] not in ("extra_forbidden", "missing") and not isinstance(inp, dict | list):
            msg = f"{msg} (got {inp!r})"
        raise LabError(msg, source=source, field=field) from None


def read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise LabError("file not found", source=str(path)) from None
    except (IsADirectoryError, PermissionError, UnicodeDecodeError) as exc:
        raise LabError(f"cannot read: {exc.__class__.__name__}", source=str(path)) from None
    return parse_yaml(text, str(path))


def parse_yaml(text: str, source: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f"line {mark.line + 1}" if mark is not None else None
        problem = getattr(exc, "problem", None) or "YAML syntax error"
        raise LabError(f"YAML syntax error: {problem}", source=source, field=line) from None


def load_scenario(name_or_path: str | Path | Scenario | Mapping[str, Any] = "mm1-teaching", /, **overrides: Any) -> Scenario:
    """Load a preset by name or a YAML file by path, apply keyword overrides.

    Overrides are field names (``duration_s=100``), nested mappings
    (``workload={"rate_per_s": 5}``) or, through ``**{"workload.rate_per_s": 5}``,
    dotted keys.  Raises :class:`LabError` for any bad input.
    """
    if isinstance(name_or_path, Scenario):
        data: Any = name_or_path.model_dump()
        source = f"<scenario {name_or_path.name}>"
    elif isinstance(name_or_path, Mapping):
        data, source = dict(name_or_path), "<keywords>"
    else:
        text = str(name_or_path)
        path = Path(text)
        if text in preset_names() and not path.exists():
            data, source = parse_yaml(preset_text(text), f"preset {text}"), f"preset {text}"
        elif path.suffix in (".yaml", ".yml", ".json") or path.exists() or "/" in text:
            data, source = read_yaml(path), str(path)
        else:
            raise LabError(
                f"unknown preset (known: {', '.join(preset_names())}) and no such file", source=text
            )
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise LabError("a scenario must be a mapping of fields", source=source)
    if overrides:
        data = deep_merge(data, _expand(overrides))
    return build_scenario(data, source=source)
