"""The lab's broker module without a broker: configuration, addresses, missing tools."""

from __future__ import annotations

import pytest

from lab.errors import EngineUnavailable, LabError
from lab.kafka import broker


def test_server_properties_single_node_kraft():
    text = broker.server_properties(19092, 19093, "/tmp/x")
    props = dict(line.split("=", 1) for line in text.splitlines())
    assert props["process.roles"] == "broker,controller"
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:19092,CONTROLLER://127.0.0.1:19093"
    assert props["offsets.topic.replication.factor"] == "1"
    assert props["transaction.state.log.replication.factor"] == "1"
    assert props["group.initial.rebalance.delay.ms"] == "0"
    assert props["log.dirs"] == "/tmp/x"


def test_cluster_id_is_22_url_safe_chars():
    ids = {broker.cluster_id() for _ in range(20)}
    assert len(ids) == 20
    assert all(len(i) == 22 and "=" not in i and "/" not in i and "+" not in i for i in ids)


def test_bootstrap_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_KAFKA_STATE_DIR", str(tmp_path))
    monkeypatch.delenv(broker.ENV_BOOTSTRAP, raising=False)
    assert broker.resolve_bootstrap(None) is None
    monkeypatch.setenv(broker.ENV_BOOTSTRAP, "127.0.0.1:9999")
    assert broker.resolve_bootstrap(None) == "127.0.0.1:9999"
    assert broker.resolve_bootstrap("localhost:1234") == "localhost:1234"


@pytest.mark.parametrize("bad", ["nohost", "host:", "host:99999", ":9092"])
def test_bad_bootstrap_is_a_lab_error(bad):
    with pytest.raises(LabError, match="HOST:PORT"):
        broker.validate_bootstrap(bad)


def test_missing_java_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setenv("LAB_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(EngineUnavailable) as err:
        broker.ensure_jars()
    msg = err.value.one_line()
    assert "Java" in msg and "\n" not in msg


def test_status_when_nothing_runs(monkeypatch, tmp_path):
    monkeypatch.setenv("LAB_KAFKA_STATE_DIR", str(tmp_path))
    st = broker.status()
    assert not st.running and st.line() == "kafka: not running"


def test_stale_state_with_a_reused_pid_is_not_a_broker(monkeypatch, tmp_path):
    import json
    import os

    monkeypatch.setenv("LAB_KAFKA_STATE_DIR", str(tmp_path))
    state = {"pid": os.getpid(), "port": 1, "controller_port": 2, "data_dir": str(tmp_path / "data"),
             "home": str(tmp_path), "version": broker.KAFKA_VERSION, "heap": "512m"}  # fmt: skip
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert broker.running() is None  # this pid is pytest, not kafka.Kafka
