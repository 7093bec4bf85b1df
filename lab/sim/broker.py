"""A simulated publish/subscribe broker: topics, partitions, consumer groups, offsets.

Each consumer group (one per subscribing service) has a number of consumers; the
partitions of the topics it reads are assigned to its consumers round-robin (consumers
beyond the number of partitions stay idle, as in Kafka).  Delivery is pushed: an event
lands in its consumer's queue after the publish delay, and the consumer handles its
events one at a time, in partition order.  Lag = delivered to the group, not yet committed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator
from typing import Any

import simpy

KNUTH = 2654435761


def partition_of(key: int, partitions: int) -> int:
    """A stable, well-spread partition for an integer key (multiplicative hashing)."""
    return ((key * KNUTH) & 0xFFFFFFFF) % partitions


class Message:
    __slots__ = ("topic", "partition", "offset", "key", "payload", "published_s")

    def __init__(self, topic: str, partition: int, offset: int, key: int, payload: Any, published_s: float):
        self.topic = topic
        self.partition = partition
        self.offset = offset
        self.key = key
        self.payload = payload
        self.published_s = published_s


Handler = Callable[[Message], Generator[Any, Any, Any]]


class ConsumerGroup:
    """A group of consumers sharing the partitions of the topics it subscribes to."""

    def __init__(self, env: simpy.Environment, name: str, consumers: int, partitions: int, handler: Handler):
        self.env = env
        self.name = name
        self.handler = handler
        self.partitions = partitions
        self.n_consumers = consumers
        self.n_active = active = min(consumers, partitions)
        self.queues: list[deque[Message]] = [deque() for _ in range(active)]
        self.wakeups: list[simpy.Event | None] = [None] * active
        self.delivered = 0
        self.committed = 0
        self.paused = False
        self.resume_event: simpy.Event | None = None
        self.on_commit: Callable[[Message, float], None] | None = None
        #: returns 0 when the consumers may fetch, else seconds to wait (faults)
        self.gate: Callable[[], float] | None = None
        self.procs = [env.process(self._consume(i)) for i in range(active)]

    @property
    def lag(self) -> int:
        return self.delivered - self.committed

    def consumer_of(self, partition: int) -> int:
        return partition % len(self.queues)

    def deliver(self, msg: Message) -> None:
        i = msg.partition % self.n_active
        self.queues[i].append(msg)
        self.delivered += 1
        ev = self.wakeups[i]
        if ev is not None:
            self.wakeups[i] = None
            ev.succeed()

    def redeliver(self, msg: Message, *, front: bool = False, duplicate: bool = False) -> None:
        """Hand an event to its consumer again: a failed event retried (``front``: in
        place, blocking its partition) or, with ``duplicate``, one processed but not
        committed before its consumer died (at-least-once)."""
        if duplicate:
            msg = Message(msg.topic, msg.partition, msg.offset, msg.key, "redelivery", msg.published_s)
        i = self.consumer_of(msg.partition)
        if front:
            self.queues[i].appendleft(msg)
        else:
            self.queues[i].append(msg)
        self.delivered += 1
        ev = self.wakeups[i]
        if ev is not None:
            self.wakeups[i] = None
            ev.succeed()

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        ev, self.resume_event = self.resume_event, None
        if ev is not None:
            ev.succeed()

    def _consume(self, i: int):
        env = self.env
        queue = self.queues[i]
        handler = self.handler
        wakeups = self.wakeups
        while True:
            if not (self.paused or self.gate is not None or self.on_commit is not None):
                # the short path while nothing can stop the consumer: same order, fewer checks
                if not queue:
                    ev = wakeups[i] = env.event()
                    yield ev
                    continue
                yield from handler(queue.popleft())
                self.committed += 1
                continue
            if self.paused:
                if self.resume_event is None:
                    self.resume_event = env.event()
                yield self.resume_event
                continue
            if self.gate is not None:
                wait = self.gate()
                if wait > 0:
                    yield env.timeout(wait)
                    continue
            if not queue:
                ev = self.wakeups[i] = env.event()
                yield ev
                continue
            msg = queue.popleft()
            yield from handler(msg)
            self.committed += 1
            if self.on_commit is not None:
                self.on_commit(msg, env.now)


class Broker:
    """Topics with partitions and offsets; publishing fans out to every subscribed group."""

    def __init__(self, env: simpy.Environment, partitions: int, delay: Callable[[], float]):
        self.env = env
        self.partitions = partitions
        self.delay = delay
        self.subscribers: dict[str, list[ConsumerGroup]] = {}
        self.offsets: dict[str, list[int]] = {}  # next offset per topic and partition
        self.groups: dict[str, ConsumerGroup] = {}
        self.published = 0

    def group(self, name: str, topics: list[str], consumers: int, handler: Handler) -> ConsumerGroup:
        g = ConsumerGroup(self.env, name, consumers, self.partitions, handler)
        self.groups[name] = g
        for t in topics:
            self.subscribers.setdefault(t, []).append(g)
        return g

    def publish(self, topic: str, key: int, payload: Any = None) -> Message:
        """Append to the topic's partition now; deliver to each group after the delay."""
        p = ((key * KNUTH) & 0xFFFFFFFF) % self.partitions
        offsets = self.offsets.get(topic)
        if offsets is None:
            offsets = self.offsets[topic] = [0] * self.partitions
        off = offsets[p]
        offsets[p] = off + 1
        self.published += 1
        msg = Message(topic, p, off, key, payload, self.env.now)
        groups = self.subscribers.get(topic)
        if groups:
            d = self.delay()
            if d > 0:
                ev = self.env.timeout(d)
                ev.callbacks.append(lambda _ev: [g.deliver(msg) for g in groups])
            else:
                for g in groups:
                    g.deliver(msg)
        return msg
