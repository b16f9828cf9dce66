"""The follower's forwarding middleware, in process: its pooled connections to the leader close when
the app shuts down (the replica tests cover what it forwards, across real processes)."""

from __future__ import annotations

import asyncio

import httpx

from control_plane.api.forward import ForwardToLeader


async def _lifespan_app(scope, receive, send):
    assert scope["type"] == "lifespan"
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def test_the_connections_to_the_leader_close_when_the_app_shuts_down():
    async def run() -> httpx.AsyncClient:
        middleware = ForwardToLeader(_lifespan_app)
        client = middleware._client = httpx.AsyncClient()  # as the first forwarded request leaves it
        messages = iter([{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}])
        sent: list[str] = []

        async def receive():
            return next(messages)

        async def send(message):
            sent.append(message["type"])

        await middleware({"type": "lifespan"}, receive, send)
        assert sent == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
        assert middleware._client is None
        return client

    assert asyncio.run(run()).is_closed
