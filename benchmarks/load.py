"""Load generation for the cluster benchmarks: a lean keep-alive HTTP client and an open-loop
replay of timed arrivals."""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx

from benchmarks.report import AUTH
from benchmarks.stats import pct


class LeanPoster:
    """A keep-alive HTTP/1.1 connection that POSTs JSON and reads the reply: the submit load
    generator. httpx spends ~1.8 ms of CPU per request here, more than the control plane does,
    and on a 2-core box that CPU is taken from the system under test (wrk-style clients avoid it)."""

    def __init__(self, api: str):
        self.host, self.port = httpx.URL(api).host, httpx.URL(api).port

    async def __aenter__(self) -> LeanPoster:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()

    async def post(self, path: str, body: bytes) -> tuple[int, bytes]:
        self.writer.write(b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: %s\r\n"
                          b"Content-Length: %d\r\n\r\n%s" % (path.encode(), self.host.encode(),
                                                             AUTH["Authorization"].encode(), len(body), body))
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        return status, await self.reader.readexactly(length)


@dataclass(frozen=True)
class Arrival:
    at: float  # seconds after the run's start
    text: str


async def replay(api: str, trace: list[Arrival], start_mono: float, conns: int) -> dict[str, Any]:
    """Open loop: each job is posted at its time, whatever became of earlier ones (``conns``
    keep-alive connections, so a slow reply never holds the next arrival back)."""
    bodies = [json.dumps({"text": a.text, "lang": "zh"}, ensure_ascii=False).encode() for a in trace]
    pool: asyncio.Queue[LeanPoster] = asyncio.Queue()
    for _ in range(conns):
        pool.put_nowait(await LeanPoster(api).__aenter__())
    ids: list[str] = []
    statuses: Counter[str] = Counter()
    lags: list[float] = []

    async def submit(due: float, body: bytes) -> None:
        conn = await pool.get()
        lags.append(time.monotonic() - due)
        try:
            status, reply = await conn.post("/v1/jobs", body)
            statuses[str(status)] += 1
            if status == 201:
                ids.append(json.loads(reply)["id"])
        except (OSError, asyncio.IncompleteReadError) as exc:
            statuses[type(exc).__name__] += 1
            conn = await LeanPoster(api).__aenter__()
        pool.put_nowait(conn)

    tasks = []
    for arrival, body in zip(trace, bodies, strict=True):
        due = start_mono + arrival.at
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(submit(due, body)))
    await asyncio.gather(*tasks)
    while not pool.empty():
        await pool.get_nowait().__aexit__()
    return {"ids": ids, "statuses": dict(statuses), "lag_p99_ms": round(pct(lags, 99) * 1000, 2)}
