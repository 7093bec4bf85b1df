"""The real Kafka engine: a lab-run Apache Kafka broker and the event-driven style on it."""

from .broker import KAFKA_VERSION, BrokerInfo, resolve_bootstrap


def run_kafka(scenario, **kwargs):
    """Run a scenario's event-driven style on a real Kafka broker (see :func:`lab.kafka.engine.run_kafka`)."""
    from .engine import run_kafka as _run

    return _run(scenario, **kwargs)


__all__ = ["KAFKA_VERSION", "BrokerInfo", "resolve_bootstrap", "run_kafka"]
