"""On a follower replica, every state-changing call under /v1 but the submissions (which a follower
writes itself: Dispatcher.ask) goes to the leader, which runs the dispatcher (control_plane/roles.py):
the request as it came (method, path, query, headers, body), the leader's answer as it gave it. The
leader authenticates, limits, audits and answers it; the follower adds only ``X-Forwarded-For``. With
no leader known (one is being chosen), 503 with Retry-After. Reads are served where they arrive."""

from __future__ import annotations

import logging

import httpx

from control_plane.api.errors import error_response

log = logging.getLogger(__name__)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
# Written by the follower itself, the leader told by NOTIFY (Dispatcher.ask): the hot path stays local.
LOCAL = frozenset({("POST", "/v1/jobs"), ("POST", "/v1/jobs/batch"), ("POST", "/v1/pronounce")})
HOP_BY_HOP = frozenset({"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
                        "proxy-authorization", "proxy-authenticate", "content-length"})
TIMEOUT_S = 120.0  # a voice upload is checked (and embedded) before the answer


class ForwardToLeader:
    def __init__(self, app):
        self.app = app
        self._client: httpx.AsyncClient | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] == "lifespan":  # returns once the app has shut down: the leader's connections go with it
            try:
                return await self.app(scope, receive, send)
            finally:
                if self._client is not None:
                    await self._client.aclose()
                    self._client = None
        if scope["type"] != "http" or scope["method"] not in WRITES or not scope["path"].startswith("/v1/") \
                or (scope["method"], scope["path"].rstrip("/")) in LOCAL:
            return await self.app(scope, receive, send)
        services = getattr(scope["app"].state, "services", None)
        if services is None or services.roles.leading:
            return await self.app(scope, receive, send)
        leader = services.roles.leader_url()
        if leader is None:
            return await error_response("no_leader", "no control-plane replica leads right now (one is being "
                                        "chosen): try again in a few seconds", status=503,
                                        headers={"Retry-After": "2"})(scope, receive, send)
        services.metrics.forwarded.inc()
        await self._forward(leader, scope, receive, send)

    async def _forward(self, leader: str, scope, receive, send) -> None:
        body = bytearray()
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]
                   if k.decode("latin-1").lower() not in HOP_BY_HOP]
        client = scope.get("client")
        if client:
            headers.append(("x-forwarded-for", client[0]))
        url = leader + scope["path"] + (f"?{scope['query_string'].decode()}" if scope["query_string"] else "")
        self._client = self._client or httpx.AsyncClient(timeout=TIMEOUT_S)
        try:
            answer = await self._client.request(scope["method"], url, headers=headers, content=bytes(body))
        except httpx.HTTPError as exc:
            log.warning("could not forward %s %s to the leader at %s: %s", scope["method"], scope["path"], leader, exc)
            return await error_response("no_leader", f"the leading replica ({leader}) did not answer: try again in a "
                                        "few seconds", status=503, headers={"Retry-After": "2"})(scope, receive, send)
        out = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in answer.headers.multi_items()
               if k.lower() not in HOP_BY_HOP and k.lower() != "content-encoding"]
        out.append((b"content-length", str(len(answer.content)).encode()))
        await send({"type": "http.response.start", "status": answer.status_code, "headers": out})
        await send({"type": "http.response.body", "body": answer.content})
