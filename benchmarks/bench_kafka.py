"""Throughput and latency of the lab's kafka-python path against Kafka's own Java tools.

On one broker in one run: producer throughput (messages/s) of the lab's producer settings
(kafka-python, acks=all, idempotent, linger 1 ms) against ``org.apache.kafka.tools.
ProducerPerformance`` with the same settings; consumer throughput of a kafka-python consumer
against ``org.apache.kafka.tools.ConsumerPerformance`` reading the same records; each for
100-byte and 1 KiB values, printed with the ratio lab / Java.  Then end-to-end latency
(publish to receipt, p50/p99) of the lab's path at a moderate, open-loop rate.

    .venv/bin/python -m lab kafka up          # or --bootstrap HOST:PORT / $KAFKA_BOOTSTRAP_SERVERS
    .venv/bin/python benchmarks/bench_kafka.py [--records 100000] [--rate 500] [--seconds 10]
"""

from __future__ import annotations

import argparse
import re
import subprocess
import threading
import time
import uuid

import numpy as np
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from lab.kafka import broker

PRODUCER_PROPS = {"acks": "all", "linger.ms": "1", "enable.idempotence": "true"}


def java(main: str, *args: str, timeout: float = 600) -> str:
    cmd = ["java", "-Xmx512m", "-cp", broker.classpath(), main, *args]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if out.returncode != 0:
        raise SystemExit(f"{main} failed: {out.stderr[-2000:]}")
    return out.stdout


def java_producer(bootstrap: str, topic: str, n: int, size: int) -> float:
    props = [f"{k}={v}" for k, v in PRODUCER_PROPS.items()]
    out = java("org.apache.kafka.tools.ProducerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
               "--num-records", str(n), "--record-size", str(size), "--throughput", "-1", "--producer-props", *props)  # fmt: skip
    # the final line: "N records sent, X records/sec (Y MB/sec), ..."
    last = [ln for ln in out.splitlines() if "records sent" in ln][-1]
    return float(re.search(r"records sent, ([\d.]+) records/sec", last).group(1))


def java_consumer(bootstrap: str, topic: str, n: int) -> float:
    out = java("org.apache.kafka.tools.ConsumerPerformance", "--bootstrap-server", bootstrap, "--topic", topic,
               "--num-records", str(n), "--group", f"bench-java-{uuid.uuid4().hex[:6]}", "--timeout", "60000")  # fmt: skip
    lines = [ln for ln in out.splitlines() if "," in ln]
    i = next(k for k, ln in enumerate(lines) if "nMsg.sec" in ln)
    header = [h.strip() for h in lines[i].split(",")]
    values = [v.strip() for v in lines[i + 1].split(",")]
    # fetch.nMsg.sec leaves out the group join, as the lab's timing (from the first record) does
    return float(values[header.index("fetch.nMsg.sec")])


def lab_producer(bootstrap: str, topic: str, n: int, size: int) -> float:
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    value = b"x" * size
    p.send(topic, value=value).get(30)  # connect and fetch metadata outside the timing
    t0 = time.perf_counter()
    for i in range(n):
        p.send(topic, key=str(i).encode(), value=value)
    p.flush()
    dt = time.perf_counter() - t0
    p.close()
    return n / dt


def lab_consumer(bootstrap: str, topic: str, n: int) -> float:
    c = KafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                      group_id=f"bench-lab-{uuid.uuid4().hex[:6]}", max_poll_records=2000)  # fmt: skip
    c.subscribe([topic])
    got = 0
    t0 = None
    deadline = time.time() + 120
    while got < n and time.time() < deadline:
        batch = c.poll(timeout_ms=500)
        for recs in batch.values():
            if t0 is None:
                t0 = time.perf_counter()
            got += len(recs)
    dt = time.perf_counter() - (t0 or time.perf_counter())
    c.close()
    return got / dt if dt > 0 else float("nan")


def lab_latency(bootstrap: str, topic: str, rate: float, seconds: float) -> tuple[float, float, int]:
    """Open loop: sends on a fixed schedule (never waiting for the consumer); latency from the
    scheduled send time carried in the value to receipt by the consumer."""
    c = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="latest", enable_auto_commit=False,
                      group_id=f"bench-e2e-{uuid.uuid4().hex[:6]}", fetch_max_wait_ms=10)  # fmt: skip
    while not c.assignment():
        c.poll(timeout_ms=100)
    c.seek_to_end()
    c.poll(timeout_ms=100)
    lat: list[float] = []
    n = int(rate * seconds)
    stop = threading.Event()

    def consume():
        while not stop.is_set() or len(lat) < n:
            for recs in c.poll(timeout_ms=100).values():
                now = time.time()
                lat.extend(now - float(r.value.decode()) for r in recs)
            if stop.is_set() and time.time() > stop_at[0]:
                break

    stop_at = [float("inf")]
    th = threading.Thread(target=consume, daemon=True)
    th.start()
    p = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=1)
    t0 = time.time() + 0.5
    for i in range(n):
        due = t0 + i / rate
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        p.send(topic, value=repr(due).encode())
    p.flush()
    stop_at[0] = time.time() + 10
    stop.set()
    th.join(timeout=15)
    p.close()
    c.close()
    a = np.array(lat)
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), a.size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--bootstrap", default=None, help="HOST:PORT (default: $KAFKA_BOOTSTRAP_SERVERS or the lab's broker)")
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--rate", type=float, default=500.0, help="messages/s for the latency run")
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    bootstrap = broker.resolve_bootstrap(args.bootstrap)
    if bootstrap is None:
        raise SystemExit("no broker: run `.venv/bin/python -m lab kafka up` first (or pass --bootstrap)")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    run = uuid.uuid4().hex[:6]
    topics = {name: f"bench-{run}-{name}" for name in ("lab100", "java100", "lab1k", "java1k", "e2e")}
    admin.create_topics({t: {"num_partitions": 3, "replication_factor": 1} for t in topics.values()}, wait_for_metadata=True)
    print(f"broker {bootstrap}, {args.records} records per case, acks=all, idempotent, linger 1 ms, 3 partitions")
    print(f"{'case':<22}{'lab (kafka-python)':>20}{'Kafka Java tool':>18}{'lab / Java':>12}")
    for size, lab_t, java_t in ((100, "lab100", "java100"), (1024, "lab1k", "java1k")):
        lp = lab_producer(bootstrap, topics[lab_t], args.records, size)
        jp = java_producer(bootstrap, topics[java_t], args.records, size)
        print(f"{f'produce {size} B msg/s':<22}{lp:>20,.0f}{jp:>18,.0f}{lp / jp:>12.3f}")
        lc = lab_consumer(bootstrap, topics[java_t], args.records)
        jc = java_consumer(bootstrap, topics[lab_t], args.records)
        print(f"{f'consume {size} B msg/s':<22}{lc:>20,.0f}{jc:>18,.0f}{lc / jc:>12.3f}")
    p50, p99, n = lab_latency(bootstrap, topics["e2e"], args.rate, args.seconds)
    print(f"end-to-end latency (lab path, {args.rate:.0f} msg/s open loop, {n} msgs): "
          f"p50 {p50 * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms")  # fmt: skip
    admin.delete_topics(list(topics.values()))
    admin.close()


if __name__ == "__main__":
    main()
