"""The console's one live connection: GET /v1/events, a server-sent event stream of what changed
(the bus and the event kinds: control_plane/events.py)."""

from __future__ import annotations

import asyncio
import signal
import threading
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse

from control_plane.api.auth import PrincipalDep
from control_plane.api.deps import ServicesDep
from control_plane.events import Event, EventBus
from control_plane.tokens import Principal

router = APIRouter(prefix="/v1/events", tags=["events"])
PING_S = 15.0  # a comment this often keeps proxies from closing an idle stream, and finds dead clients
RETRY_MS = 2000  # how long a browser waits before reconnecting

DESCRIPTION = f"""A `text/event-stream` of what changes, for a console to stay live on one connection
(browsers: `EventSource`). Each event is small: re-fetch details through the REST API.

- `event: job`, data `{{id, state, device_id, dialect, lang, engine, error_code, at}}`: a job changed
  state (queued, assigned, running, done, failed, cancelled; a retried attempt goes back to queued
  with its `error_code`). `engine`: what speaks or spoke it, while it has a device.
- `event: device`, data `{{id, status, gate, at}}`: a device went online, draining or offline, or was
  cordoned, uncordoned or drained. `gate`: why the scheduler gives it no new jobs (null: it does).
- `event: rollout`, data `{{id, state, phase, event, device_id, at}}`: a rollout moved (`event`: what
  happened, as in its event log; `device_id` when it concerns one device; `phase` 0 is the canary).
- `event: alarm`, data `{{kind, subject, text, at}}`: `device_offline` (subject: the device) or
  `rollout_halted` (subject: the rollout).
- `event: reset`, data `{{reason}}`: events were missed (the id asked for is no longer kept, the
  control plane restarted, or the client fell too far behind): reload every view.

Every event has an `id:`; a client that reconnects sends the last one it saw in `Last-Event-ID` (or
`?last_event_id=`) and gets what it missed first. The stream starts with `retry: {RETRY_MS}` and the
current id, and sends a `: ping` comment every {PING_S:.0f} s. A client token sees only the `job`
events of its own jobs; viewers, operators and admins see everything. `at`: seconds since the epoch."""

_EXAMPLE = 'retry: 2000\nid: 41\n\nid: 42\nevent: job\ndata: {"id":"...","state":"done",...}\n\n: ping\n\n'
_STREAM = {200: {"description": "the event stream (it does not end on its own)",
                 "content": {"text/event-stream": {"schema": {"type": "string"}, "example": _EXAMPLE}}}}


@router.get("", summary="Follow what changes (server-sent events)", description=DESCRIPTION,
            response_class=StreamingResponse, responses=_STREAM)
async def follow_events(
    services: ServicesDep, who: PrincipalDep,
    last_event_id: Annotated[int | None, Header(alias="Last-Event-ID", ge=0,
                                                description="resume after this event id")] = None,
    last_event_id_query: Annotated[int | None, Query(alias="last_event_id", ge=0,
                                                     description="as Last-Event-ID, for clients that cannot "
                                                                 "set headers")] = None,
) -> StreamingResponse:
    after = last_event_id if last_event_id is not None else last_event_id_query
    return StreamingResponse(_stream(services.events, after, who), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


async def _stream(bus: EventBus, after: int | None, who: Principal) -> AsyncIterator[bytes]:
    """Frames until the client goes away (Starlette cancels this) or the bus closes. Subscribed
    here, not in the route: a client gone before the first frame leaves nothing behind."""
    sub = bus.subscribe(after)
    loop = asyncio.get_running_loop()
    try:
        yield f"retry: {RETRY_MS}\nid: {sub.cursor}\n\n".encode()
        quiet_since = loop.time()
        while not sub.closed:
            events = await sub.next(max(0.0, quiet_since + PING_S - loop.time()))
            frames = b"".join(e.frame() for e in events if _visible(e, who))
            if events and not _visible(events[-1], who):
                # An id alone moves the client's Last-Event-ID past what it may not see, so that a
                # reconnect neither replays it nor resets for want of it.
                frames += f"id: {events[-1].id}\n\n".encode()
            if frames:
                yield frames
                quiet_since = loop.time()
            elif loop.time() - quiet_since >= PING_S and not sub.closed:
                yield b": ping\n\n"
                quiet_since = loop.time()
    finally:
        sub.close()


def _visible(event: Event, who: Principal) -> bool:
    """A client sees its own jobs' events (and a reset); every other role sees everything."""
    return who.sees_everything or event.kind == "reset" or event.kind == "job" and event.owner == who.subject


def end_streams_on_exit(bus: EventBus) -> None:
    """Close ``bus`` when the server is told to stop. Uvicorn waits for open responses to finish
    before it runs the app's shutdown, and a stream never finishes on its own: without this, a
    console left open would hold the control plane up. Chained before the server's own handlers
    (installed by then, in the main thread); the close runs on the loop, not in the handler."""
    if threading.current_thread() is not threading.main_thread():
        return  # an embedded server (tests): the app's shutdown closes the bus
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous = signal.getsignal(sig)
        if not callable(previous):
            continue

        def handler(signum, frame, previous=previous):
            loop.call_soon_threadsafe(bus.close)
            previous(signum, frame)

        signal.signal(sig, handler)
