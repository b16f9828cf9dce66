"""What a batch announces once it has committed: publications, broker acks, answers to HTTP
handlers and wake-ups of audio followers. Nothing here goes out before the commit it announces."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from control_plane.dispatch.commands import Ask
from control_plane.live import JobWatch
from voicefleet.mqtt import Inbound, MqttClient


@dataclass
class Outbox:
    publish: list[tuple[str, bytes]] = field(default_factory=list)
    retained: list[tuple[str, bytes]] = field(default_factory=list)
    notify: set[str] = field(default_factory=set)
    acks: list[Inbound] = field(default_factory=list)
    answers: list[tuple[Ask, Any, BaseException | None]] = field(default_factory=list)
    reschedule: bool = False
    handled: int = 0  # items of the batch, from its start, whose transaction committed

    def answer(self, ask: Ask, result: Any = None, error: BaseException | None = None) -> None:
        self.answers.append((ask, result, error))

    def forget(self) -> None:
        """Drop what a rolled-back transaction would have announced (acks and reschedule stay)."""
        self.publish.clear()
        self.retained.clear()
        self.notify.clear()
        self.answers.clear()
        self.handled = 0

    def merge(self, other: Outbox) -> None:
        self.publish += other.publish
        self.retained += other.retained
        self.notify |= other.notify
        self.answers += other.answers
        self.reschedule |= other.reschedule


def announce(out: Outbox, mqtt: MqttClient, watch: JobWatch) -> None:
    for topic, payload in out.publish:
        mqtt.publish(topic, payload)
    for topic, payload in out.retained:
        mqtt.publish(topic, payload, retain=True)
    for msg in out.acks:
        if msg.qos:
            mqtt.ack(msg.mid, msg.qos)
    by_loop: dict[asyncio.AbstractEventLoop, list] = {}
    for answer in out.answers:
        by_loop.setdefault(answer[0].loop, []).append(answer)
    for loop, answers in by_loop.items():
        loop.call_soon_threadsafe(_settle, answers)
    for job_id in out.notify:
        watch.notify(job_id)


def _settle(answers: list[tuple[Ask, Any, BaseException | None]]) -> None:
    """Runs on the HTTP event loop: answer a batch's commands in one wake-up of the loop."""
    for ask, result, error in answers:
        if ask.future.done():  # the client went away
            continue
        if error is not None:
            ask.future.set_exception(error)
        else:
            ask.future.set_result(result)
