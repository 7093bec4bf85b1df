"""The real Kafka engine: a lab-run Apache Kafka broker and the event-driven style on it."""

from .broker import KAFKA_VERSION, BrokerInfo, resolve_bootstrap

__all__ = ["KAFKA_VERSION", "BrokerInfo", "resolve_bootstrap"]
