"""A broker's own upheaval is not a device's doing: what reaches the dispatcher while it reconnects
(last wills the broker fires as it restarts, states replayed from its retained store) hands a job
back without using up one of its attempts, and no device is judged silent while the dispatcher
itself could not hear it. A job still loses an attempt when its device alone goes away.

Real Mosquitto and a real database; the dispatcher's handlers are driven one message at a time so
that the order of events is the test's, not the broker's (whether a restarting broker's wills reach
a client before it drops that client is a race)."""

from __future__ import annotations

import queue
from pathlib import Path

import pytest
from services import wait_for
from sqlmodel import Session

from control_plane import jobs
from control_plane.app import build_dispatcher
from control_plane.audio_store import LocalAudioStore
from control_plane.core.config import Settings
from control_plane.core.db import make_engine, upgrade
from control_plane.dispatch import device_events, housekeeping
from control_plane.dispatch.context import Context
from control_plane.dispatch.outbox import Outbox
from control_plane.live import JobWatch
from control_plane.metrics import Metrics
from control_plane.models import Device, Job
from control_plane.models.jobs import JobCreate
from voicefleet import protocol as p
from voicefleet.broker import MosquittoBroker
from voicefleet.ids import now
from voicefleet.mqtt import Inbound, MqttClient

DEVICE = "edge-upheaval"


def test_what_follows_a_reconnection_is_marked_settling(own_broker: MosquittoBroker):
    inbox: queue.Queue[Inbound] = queue.Queue()
    listener = MqttClient(own_broker.url, "listener", inbox=inbox, subscriptions=[("upheaval/#", 1)])
    sender = MqttClient(own_broker.url, "sender", inbox=queue.Queue(), subscriptions=[])
    listener.start()
    sender.start()
    try:
        sender.publish("upheaval/a", b"first").wait_for_publish(5)
        first = inbox.get(timeout=10)
        assert (first.payload, first.settling) == (b"first", False), "a first connection follows no upheaval"
        assert listener.link_age() > 0

        own_broker.stop()
        wait_for(lambda: not listener.connected.is_set(), "the listener to see the broker go", 10)
        assert listener.link_age() == 0
        own_broker.start()
        wait_for(lambda: listener.connected.is_set() and sender.connected.is_set(), "both to reconnect", 30)
        sender.publish("upheaval/a", b"after").wait_for_publish(5)
        after = inbox.get(timeout=10)
        assert (after.payload, after.settling) == (b"after", True)
    finally:
        listener.stop()
        sender.stop()


@pytest.fixture
def ctx(tmp_path: Path, own_broker: MosquittoBroker) -> Context:
    """The dispatcher's context on its own SQLite database (the dispatcher thread is not started)."""
    settings = Settings(home=tmp_path, mqtt_url=own_broker.url)
    upgrade(settings.resolved_database_url())
    engine = make_engine(settings.resolved_database_url())
    dispatcher = build_dispatcher(settings, engine=engine, store=LocalAudioStore(tmp_path / "audio"),
                                  watch=JobWatch(), metrics=Metrics(dict), url_secret=b"upheaval")
    return dispatcher.ctx


def _running_job(ctx: Context) -> str:
    with ctx.session() as session:
        session.add(Device(id=DEVICE, status="online", last_seen_at=now()))
        job_id = jobs.add_job(session, spec=JobCreate(text="你好"), max_attempts=3)["id"]
        jobs.commit(session)
    with ctx.session() as session:
        job = session.get(Job, job_id)
        jobs.assign(session, job, device_id=DEVICE, lease_s=600, explain={})
        jobs.commit(session)
    return job_id


def _offline(ctx: Context, **delivery: bool) -> Outbox:
    will = p.encode(p.DeviceState(device_id=DEVICE, status="offline"))
    item = Inbound(p.device_topic(DEVICE, "state"), will, mid=1, qos=1, **delivery)
    out = Outbox()
    with ctx.session() as session:
        device_events.handle(ctx, session, device_events.decode(ctx, item), out)
        jobs.commit(session)
    return out


def _job(ctx: Context, job_id: str) -> tuple[Job, list[str]]:
    with Session(ctx.engine) as session:
        return session.get(Job, job_id), [e.kind for e in jobs.job_events(session, job_id=job_id)]


@pytest.mark.parametrize("delivery", [{"settling": True}, {"retained": True}], ids=["will-amid-reconnect", "replayed"])
def test_a_device_lost_to_the_brokers_upheaval_costs_its_job_no_attempt(ctx: Context, delivery: dict):
    job_id = _running_job(ctx)
    out = _offline(ctx, **delivery)
    job, kinds = _job(ctx, job_id)
    assert job.state == "queued" and "returned" in kinds and "attempt_failed" not in kinds, kinds
    assert job.error_code is None
    cancels = [topic for topic, _ in out.publish if topic == p.device_topic(DEVICE, "cancel")]
    assert cancels, "the device is told to drop the job when it is back, freeing its slot"


def test_a_device_that_alone_goes_away_costs_its_job_an_attempt(ctx: Context):
    job_id = _running_job(ctx)
    _offline(ctx)
    job, kinds = _job(ctx, job_id)
    assert job.state == "queued" and "attempt_failed" in kinds and job.error_code == "device_lost", kinds


def test_no_device_is_silent_while_the_dispatcher_could_not_hear_it(ctx: Context):
    job_id = _running_job(ctx)
    with ctx.session() as session:
        session.get(Device, DEVICE).last_seen_at = now() - 10 * ctx.settings.heartbeat_timeout_s
        jobs.commit(session)

    ctx.link_age = lambda: ctx.settings.heartbeat_timeout_s / 2  # reconnected a moment ago
    housekeeping.housekeeping(ctx, Outbox())
    with Session(ctx.engine) as session:
        assert session.get(Device, DEVICE).status == "online"
    assert _job(ctx, job_id)[0].state == "assigned"

    ctx.link_age = lambda: ctx.settings.heartbeat_timeout_s * 2  # heard nothing for a whole timeout since
    housekeeping.housekeeping(ctx, Outbox())
    with Session(ctx.engine) as session:
        assert session.get(Device, DEVICE).status == "offline"
    job, kinds = _job(ctx, job_id)
    assert job.state == "queued" and job.error_code == "device_lost", kinds
