"""The console's event stream: the bus (numbering, the ring, resumption, publishing only after a
commit) on its own, then GET /v1/events on a real control plane with real agents."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import httpx
import pytest
from services import ADMIN_TOKEN, http
from sqlalchemy import create_engine, text
from sqlmodel import Session

from control_plane.api.routes import events as events_route
from control_plane.events import EventBus, attach, stage
from control_plane.tokens import Principal, Role
from voicefleet.credentials import auth_headers
from voicefleet.processes import terminate
from voicefleet_cli.onebox import Cluster


@pytest.fixture
def database_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path}/voicefleet.db"


# -- the bus ----------------------------------------------------------------------------------------


def test_bus_numbers_events_and_resumes_from_its_ring():
    async def run():
        bus = EventBus(size=3, first_id=1)
        live = bus.subscribe()
        publisher = threading.Thread(target=lambda: [bus.publish("job", {"n": n}, owner="a") for n in range(2)])
        publisher.start()
        publisher.join()
        got = await live.next(5)
        assert [(e.id, e.kind, e.data, e.owner) for e in got] == [(1, "job", {"n": 0}, "a"), (2, "job", {"n": 1}, "a")]
        for n in range(2, 5):
            bus.publish("device", {"n": n})
        # Resuming after id 3 gives exactly 4 and 5; after 1, the ring (3 to 5) no longer holds 2: reset.
        assert [e.id for e in await bus.subscribe(after=3).next(5)] == [4, 5]
        reset = await bus.subscribe(after=1).next(5)
        assert [(e.id, e.kind) for e in reset] == [(5, "reset")] and "no longer kept" in reset[0].data["reason"]
        # An id this bus never gave out (its predecessor's, before a restart): reset too.
        assert [e.kind for e in await bus.subscribe(after=99).next(5)] == ["reset"]
        # ``live`` saw up to 2: 3 to 5 are all in the ring still. One more and it has fallen behind by
        # more than the ring holds: a reset (at the newest id), then it goes on from there.
        bus.publish("job", {"n": 5})
        assert [(e.id, e.kind) for e in await live.next(5)] == [(6, "reset")]
        bus.publish("job", {"n": 6})
        assert [e.id for e in await live.next(5)] == [7]
        assert (await bus.subscribe(after=6).next(5))[0].frame() == b'id: 7\nevent: job\ndata: {"n":6}\n\n'

    asyncio.run(run())


def test_a_waiting_subscriber_wakes_for_a_publish_from_another_thread_and_for_close():
    async def run():
        bus = EventBus(first_id=10)
        sub = bus.subscribe()
        assert await sub.next(0) == []  # nothing yet: answers at once
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, lambda: threading.Thread(target=bus.publish, args=("alarm", {})).start())
        assert [e.id for e in await sub.next(30)] == [10]
        loop.call_later(0.05, lambda: threading.Thread(target=bus.close).start())
        assert await sub.next(30) == [] and sub.closed
        sub.close()
        assert not bus._subscribers

    asyncio.run(run())


def test_staged_events_go_out_after_the_commit_and_never_after_a_rollback(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path}/staged.db")
    bus = EventBus(first_id=1)
    with attach(Session(engine), bus) as session:
        session.execute(text("select 1"))
        stage(session, "job", {"id": "a"})
        session.rollback()
        stage(session, "job", {"id": "b"}, owner="alice")
        assert bus.last_id == 0  # staged, not published: the transaction has not committed
        session.commit()
        assert bus.last_id == 1
        session.commit()  # nothing staged since: nothing more
    with Session(engine) as plain:
        stage(plain, "job", {"id": "c"})  # a session with no bus: nowhere to go
        plain.commit()
    assert bus.last_id == 1

    async def check():
        [event] = await bus.subscribe(after=0).next(5)
        assert (event.kind, event.data, event.owner) == ("job", {"id": "b"}, "alice")

    asyncio.run(check())


def test_the_stream_filters_for_a_client_pings_when_quiet_and_leaves_nothing_behind(monkeypatch):
    monkeypatch.setattr(events_route, "PING_S", 0.05)
    alice = Principal(token_id="t1", subject="alice", role=Role.client, rate=None)

    async def run():
        bus = EventBus(first_id=1)
        frames = events_route._stream(bus, None, alice)
        assert await anext(frames) == b"retry: 2000\nid: 0\n\n"
        assert await anext(frames) == b": ping\n\n"
        bus.publish("job", {"id": "a"}, owner="alice")
        bus.publish("job", {"id": "b"}, owner="bob")
        bus.publish("device", {"id": "d"})
        # Hers, then an id alone: her place moves past what she may not see.
        assert await anext(frames) == b'id: 1\nevent: job\ndata: {"id":"a"}\n\nid: 3\n\n'
        bus.close()
        with pytest.raises(StopAsyncIteration):
            await anext(frames)
        assert not bus._subscribers

        # A client that goes away: Starlette cancels the task reading the stream.
        frames = events_route._stream(bus := EventBus(), None, alice)
        await anext(frames)
        assert bus._subscribers
        reader = asyncio.create_task(anext(frames))
        await asyncio.sleep(0)  # let it start waiting
        reader.cancel()
        with pytest.raises(asyncio.CancelledError):
            await reader
        assert not bus._subscribers

    asyncio.run(run())


# -- the stream on a real control plane -----------------------------------------------------------------


class Stream:
    """A GET /v1/events read frame by frame: dicts with ``id``, ``event``, ``data`` (decoded), ``retry``
    or ``comment``, as the server sent them."""

    def __init__(self, response: httpx.Response):
        self.response = response
        self._lines = response.iter_lines()
        self.start_id = 0  # the id the stream started at (its first frame's)

    def frame(self) -> dict:
        frame: dict = {}
        for line in self._lines:
            if not line:
                if frame:
                    return frame
                continue
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "":
                frame["comment"] = value
            else:
                frame[field] = json.loads(value) if field == "data" else int(value) if field in ("id", "retry") \
                    else value
        raise EOFError("the stream ended")

    def until(self, done: Callable[[dict], bool], timeout_s: float = 60) -> list[dict]:
        """Frames up to and including the first that ``done`` accepts, within ``timeout_s`` (pings come
        every 15 s: the deadline is checked at least that often)."""
        deadline = time.monotonic() + timeout_s
        frames = []
        while not frames or not done(frames[-1]):
            assert time.monotonic() < deadline, f"no such frame within {timeout_s}s; got {frames[-5:]}"
            frames.append(self.frame())
        return frames


@contextmanager
def stream(c: Cluster, token: str = ADMIN_TOKEN, *, headers: dict | None = None, params: dict | None = None,
           read_timeout_s: float = 60) -> Iterator[Stream]:
    timeout = httpx.Timeout(10, read=read_timeout_s)
    with httpx.Client(timeout=timeout) as client, client.stream(
            "GET", f"{c.api}/v1/events", headers={**auth_headers(token), **(headers or {})}, params=params) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"].startswith("text/event-stream")
        s = Stream(r)
        first = s.frame()
        assert first["retry"] == 2000 and "id" in first
        s.start_id = first["id"]
        yield s


def events(frames: list[dict], kind: str | None = None) -> list[dict]:
    return [f for f in frames if "event" in f and (kind is None or f["event"] == kind)]


def job_done(job_id: str) -> Callable[[dict], bool]:
    return lambda f: f.get("event") == "job" and f["data"]["id"] == job_id and f["data"]["state"] == "done"


def new_token(c: Cluster, role: str) -> str:
    r = http.post(f"{c.api}/v1/tokens", json={"name": f"events {role}", "role": role})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def test_a_job_moves_through_the_stream_in_order_and_a_reconnect_gets_what_it_missed(cluster: Cluster):
    with stream(cluster) as s:
        job_id = http.post(f"{cluster.api}/v1/jobs", json={"text": "你好，今天天气很好"}).json()["id"]
        seen = s.until(job_done(job_id))
    ids = [f["id"] for f in events(seen)]
    assert ids == sorted(set(ids)) and ids[0] > s.start_id
    mine = [f["data"] for f in events(seen, "job") if f["data"]["id"] == job_id]
    assert [d["state"] for d in mine] == ["queued", "assigned", "running", "done"], mine
    assert mine[0]["device_id"] is None and mine[0]["engine"] is None and mine[0]["lang"] == "zh"
    done = mine[-1]
    assert done["device_id"] in (cluster.edge_id, cluster.cloud_id) and done["engine"] == "espeak-ng"
    assert done["error_code"] is None and done["at"] >= mine[0]["at"]
    # What the job's detail says once the done event came: the change was committed before it went out.
    assert http.get(f"{cluster.api}/v1/jobs/{job_id}").json()["state"] == "done"

    # Gone after "assigned": a reconnect replays exactly what came after it, by header or by query.
    assigned = next(f["id"] for f in events(seen, "job") if f["data"]["state"] == "assigned")
    missed = [f for f in events(seen) if f["id"] > assigned]
    for how in ({"headers": {"Last-Event-ID": str(assigned)}}, {"params": {"last_event_id": assigned}}):
        with stream(cluster, **how) as again:
            replay = events(again.until(lambda f, last=missed[-1]["id"]: f.get("id", 0) >= last))
        assert replay == missed

    refused = http.get(f"{cluster.api}/v1/events", headers={"Last-Event-ID": "yesterday"})
    assert refused.status_code == 422 and "Last-Event-ID" in refused.json()["error"]["text"]
    assert httpx.get(f"{cluster.api}/v1/events").status_code == 401


def test_a_client_sees_only_its_own_jobs_and_no_devices(cluster: Cluster):
    alice, bob = new_token(cluster, "client"), new_token(cluster, "client")
    with stream(cluster) as admin, stream(cluster, alice) as mine:
        # A device event and another client's job, both before alice's job: she must see neither.
        assert http.post(f"{cluster.api}/v1/devices/{cluster.cloud_id}/cordon").status_code == 200
        assert http.post(f"{cluster.api}/v1/devices/{cluster.cloud_id}/uncordon").status_code == 200
        theirs = httpx.post(f"{cluster.api}/v1/jobs", json={"text": "别人的工作"}, headers=auth_headers(bob),
                            timeout=30).json()["id"]
        own = httpx.post(f"{cluster.api}/v1/jobs", json={"text": "我的工作"}, headers=auth_headers(alice),
                         timeout=30).json()["id"]
        everything = events(admin.until(job_done(own)))
        seen = mine.until(job_done(own))
    steered = [f["data"] for f in events(everything, "device") if f["data"]["id"] == cluster.cloud_id]
    assert [(d["status"], d["gate"]) for d in steered] == [("online", "cordoned by an operator"), ("online", None)]
    assert theirs in {f["data"]["id"] for f in events(everything, "job")}
    assert {f["event"] for f in events(seen)} == {"job"}
    assert {f["data"]["id"] for f in events(seen)} == {own}
    # What she may not see still moves her place on (an id alone): a reconnect does not replay it.
    hidden = {f["id"] for f in everything if f["event"] == "device" or f["data"]["id"] == theirs}
    moved = {f["id"] for f in seen if set(f) == {"id"}}
    assert moved and moved <= hidden


def test_a_device_going_offline_gives_a_device_event_and_an_alarm(cluster: Cluster):
    with stream(cluster) as s:
        terminate(cluster.agents[cluster.edge_id], timeout=40)
        seen = s.until(lambda f: f.get("event") == "alarm")  # staged right after the device event
    alarm = next(f["data"] for f in events(seen, "alarm"))
    assert alarm["kind"] == "device_offline" and alarm["subject"] == cluster.edge_id
    assert cluster.edge_id in alarm["text"] and "offline" in alarm["text"]
    device = [f["data"] for f in events(seen, "device") if f["data"]["id"] == cluster.edge_id]
    assert device[-1]["status"] == "offline" and device[-1]["gate"] == "offline"
    assert http.get(f"{cluster.api}/v1/devices/{cluster.edge_id}").json()["status"] == "offline"


def test_stopping_the_control_plane_ends_open_streams(cluster: Cluster):
    with stream(cluster, read_timeout_s=30) as s:
        cluster.control.terminate()
        with pytest.raises(EOFError):
            s.until(lambda f: False, timeout_s=20)  # uvicorn waits for open responses before it shuts the app down
    assert cluster.control.wait(timeout=30) is not None
    assert "Application shutdown complete" in (cluster.home / "control-plane.log").read_text()


def test_a_rollout_that_halts_gives_its_progress_and_an_alarm(tmp_path, mqtt_broker):
    from test_rollouts import Plane  # a control plane, a registry and simulated devices

    pl = Plane(tmp_path, mqtt_broker.url, devices=2)
    try:
        pl.fleet.broken_versions.add("3.0.0")
        with stream(pl.cluster) as s:
            r = pl.start("3.0.0", plan={"canary": 1, "waves": [100], "soak_s": 0, "max_in_flight": 2})
            seen = s.until(lambda f: f.get("event") == "rollout" and f["data"]["state"] == "halted")
    finally:
        pl.stop()
    mine = [f["data"] for f in events(seen, "rollout") if f["data"]["id"] == r["id"]]
    assert [d["event"] for d in mine][:2] == ["created", "phase_started"] and mine[0]["state"] == "running"
    assert {d["phase"] for d in mine} == {0}  # the wave never started
    assert "halted" in [d["event"] for d in mine] and mine[-1]["event"] == "rollback_done"
    [alarm] = [f["data"] for f in events(seen, "alarm")]
    assert alarm["kind"] == "rollout_halted" and alarm["subject"] == r["id"] and "test synthesis" in alarm["text"]
    ids = [f["id"] for f in events(seen)]
    assert ids == sorted(set(ids))
