#!/usr/bin/env python
"""Hub benchmark: time to first audio for a 20-character Mandarin phrase through the hub's local
HTTP API and through Wyoming, from a cold phrase and from the phrase cache, and the hub process's
memory at idle and while speaking.

One real agent process (the edge defaults: the committed student, eSpeak behind it) with its local
API and Wyoming server, and no broker reachable (the router is unplugged: the hub must not care).
``python benchmarks/hub.py [--json] [--runs 20]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from voicefleet.broker import free_port  # noqa: E402
from voicefleet.processes import terminate  # noqa: E402

PHRASE = "今天下午三点提醒我开会，请记得带上笔记本"  # 20 characters
FILLERS = "一二三四五六七八九十"


def cold_phrase(i: int) -> str:
    """A 20-character phrase never spoken before (so no cache can answer it)."""
    return PHRASE[:17] + FILLERS[i % 10] + FILLERS[(i // 10) % 10] + FILLERS[(i // 100) % 10]


LOCAL_TOKEN = secrets.token_urlsafe(16)  # the local API's loopback port takes only requests that carry it


def rss_mb(pid: int, field: str = "VmRSS") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(status.split(f"{field}:")[1].split()[0]) / 1024


def start_hub(home: Path) -> tuple[subprocess.Popen, str, int]:
    http_port, wy_port = free_port(), free_port()
    env = {**os.environ, "VOICEFLEET_HOME": str(home), "VOICEFLEET_DEVICE_ID": "bench-hub", "VOICEFLEET_ROLE": "edge",
           "VOICEFLEET_MQTT_URL": f"mqtt://127.0.0.1:{free_port()}",  # nothing listens: offline
           "VOICEFLEET_LOCAL_API_PORT": str(http_port), "VOICEFLEET_LOCAL_API_TOKEN": LOCAL_TOKEN,
           "VOICEFLEET_WYOMING_URI": f"tcp://127.0.0.1:{wy_port}"}
    proc = subprocess.Popen([sys.executable, "-m", "voicefleet_cli", "agent"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=open(home / "hub.log", "w"))
    api = f"http://127.0.0.1:{http_port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if _CLIENT.get(f"{api}/healthz", timeout=1).status_code == 200:
                return proc, api, wy_port
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the hub did not start; see {home / 'hub.log'}")
        time.sleep(0.1)


# one client: making one costs ~15 ms (its TLS context), not the hub's time
_CLIENT = httpx.Client(timeout=30, headers={"Authorization": f"Bearer {LOCAL_TOKEN}"})


def http_first_chunk(api: str, text: str) -> tuple[float, str]:
    start, first, got = time.perf_counter(), None, 0
    with _CLIENT.stream("POST", f"{api}/v1/speak", json={"text": text}) as r:
        for block in r.iter_raw():  # the first bytes past the 44-byte WAV header are audio
            got += len(block)
            if first is None and got > 44:
                first = time.perf_counter() - start
        source = r.headers.get("X-Voicefleet-Source", "")
    return first * 1000, source


async def wyoming_first_chunk(port: int, text: str) -> float:
    from wyoming.audio import AudioChunk
    from wyoming.client import AsyncTcpClient
    from wyoming.tts import Synthesize

    async with AsyncTcpClient("127.0.0.1", port) as client:
        start = time.perf_counter()
        await client.write_event(Synthesize(text=text).event())
        first = None
        while True:
            event = await client.read_event()
            if event is None:
                break
            if first is None and AudioChunk.is_type(event.type):
                first = time.perf_counter() - start
            if event.type == "audio-stop":
                break
    return first * 1000


def summary(ms: list[float]) -> dict:
    return {"p50_ms": round(statistics.median(ms), 2), "max_ms": round(max(ms), 2), "n": len(ms)}


def run(runs: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc, api, wy_port = start_hub(Path(tmp))
        try:
            time.sleep(1.0)
            idle = rss_mb(proc.pid)
            http_first_chunk(api, cold_phrase(999))  # warm-up
            peak = [idle]
            sampling = threading.Event()

            def sample() -> None:
                while not sampling.is_set():
                    peak.append(rss_mb(proc.pid))
                    time.sleep(0.01)

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            cold = [http_first_chunk(api, cold_phrase(i)) for i in range(runs)]
            http_first_chunk(api, PHRASE)
            cached = [http_first_chunk(api, PHRASE) for _ in range(runs)]
            wy = [asyncio.run(wyoming_first_chunk(wy_port, cold_phrase(500 + i))) for i in range(runs)]
            asyncio.run(wyoming_first_chunk(wy_port, PHRASE))  # in the cache already (spoken over HTTP)
            wy_cached = [asyncio.run(wyoming_first_chunk(wy_port, PHRASE)) for _ in range(runs)]
            sampling.set()
            sampler.join()
            return {"phrase_chars": len(PHRASE), "runs": runs, "broker": "unreachable (offline hub)",
                    "http_cold": summary([ms for ms, _ in cold]), "http_cached": summary([ms for ms, _ in cached]),
                    "http_cached_sources": sorted({s for _, s in cached}),
                    "wyoming_cold": summary(wy), "wyoming_cached": summary(wy_cached),
                    "rss_idle_mb": round(idle, 1), "rss_speaking_max_mb": round(max(peak), 1),
                    "vm_hwm_mb": round(rss_mb(proc.pid, "VmHWM"), 1)}
        finally:
            terminate(proc, 10)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args(argv)
    report = run(args.runs)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"hub benchmark: {report['phrase_chars']}-character Mandarin phrase, {args.runs} runs each, "
          f"broker {report['broker']}")
    for name in ("http_cold", "http_cached", "wyoming_cold", "wyoming_cached"):
        r = report[name]
        print(f"  first audio, {name:<14} p50 {r['p50_ms']:7.2f} ms   max {r['max_ms']:7.2f} ms")
    print(f"  hub RSS idle {report['rss_idle_mb']} MB, while speaking up to {report['rss_speaking_max_mb']} MB "
          f"(VmHWM {report['vm_hwm_mb']} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
