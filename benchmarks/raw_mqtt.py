#!/usr/bin/env python
"""The raw broker round trip that the dispatch benchmark measures the job path against: a
requester publishes QoS 1 to topic A, an echo client in its own process (like an agent)
republishes to topic B, the requester receives on B.

``python benchmarks/raw_mqtt.py URL [--nodelay]`` is that echo client (until stdin closes).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import paho.mqtt.client as paho  # noqa: E402
from paho.mqtt.packettypes import PacketTypes  # noqa: E402
from paho.mqtt.properties import Properties  # noqa: E402

from benchmarks.stats import dist_ms  # noqa: E402
from voicefleet.settings import mqtt_host_port  # noqa: E402

TOPIC_A, TOPIC_B = "bench/rtt/a", "bench/rtt/b"
INFLIGHT = 1000  # as voicefleet.mqtt.MqttClient sets it (receive maximum and paho's inflight cap)

def _mqtt_client(url: str, client_id: str, nodelay: bool) -> paho.Client:
    """paho 2.x, MQTT 5, connected and looping in its own thread; same flow control as the wrapper.
    paho leaves Nagle on; ``nodelay`` sets TCP_NODELAY on the socket (Mosquitto sets it on its side)."""
    host, port = mqtt_host_port(url)
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv5)
    if nodelay:
        c.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    c.max_inflight_messages_set(INFLIGHT)
    c.max_queued_messages_set(0)
    props = Properties(PacketTypes.CONNECT)
    props.ReceiveMaximum = INFLIGHT
    connected = threading.Event()
    c.on_connect = lambda *_: connected.set()
    c.connect(host, port, keepalive=30, clean_start=True, properties=props)
    c.loop_start()
    if not connected.wait(10):
        raise RuntimeError(f"no MQTT broker answered at {url}")
    return c


def _subscribe(c: paho.Client, topic: str) -> None:
    done = threading.Event()
    c.on_subscribe = lambda *_: done.set()
    c.subscribe(topic, qos=1)
    if not done.wait(10):
        raise RuntimeError(f"no SUBACK for {topic}")


def echo_main(url: str, nodelay: bool) -> None:
    """Child process: republish everything from A to B (QoS 1) until stdin closes."""
    c = _mqtt_client(url, f"bench-echo-{os.getpid()}", nodelay)
    c.on_message = lambda client, _u, msg: client.publish(TOPIC_B, msg.payload, qos=1)
    _subscribe(c, TOPIC_A)
    print("ready", flush=True)
    sys.stdin.read()
    c.disconnect()
    c.loop_stop()


def raw_broker(url: str, *, nodelay: bool, count: int, window: int, samples: int,
               payload_bytes: int) -> dict[str, Any]:
    echo = subprocess.Popen([sys.executable, __file__, url, *(["--nodelay"] * nodelay)],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT)
    req = None
    try:
        assert echo.stdout is not None
        if echo.stdout.readline().strip() != b"ready":
            raise RuntimeError("the echo client did not start")
        req = _mqtt_client(url, "bench-requester", nodelay)
        slots = threading.Semaphore(window)
        got = threading.Event()
        state = {"left": 0}
        lock = threading.Lock()

        def on_message(_c, _u, _msg) -> None:
            slots.release()
            with lock:
                state["left"] -= 1
                if state["left"] == 0:
                    got.set()

        req.on_message = on_message
        _subscribe(req, TOPIC_B)
        payload = b'{"v":1,"type":"bench","pad":"'.ljust(payload_bytes - 2, b"x") + b'"}'  # JSON, like a JobAssign

        def run(n: int, w: int) -> float:
            nonlocal slots
            slots = threading.Semaphore(w)
            got.clear()
            state["left"] = n
            t0 = time.perf_counter()
            for _ in range(n):
                if not slots.acquire(timeout=10):
                    raise RuntimeError("raw round trip timed out")
                req.publish(TOPIC_A, payload, qos=1)
            if not got.wait(30):
                raise RuntimeError("raw round trips did not all come back")
            return time.perf_counter() - t0

        run(min(500, count), window)  # warm-up
        elapsed = run(count, window)
        rtts = [run(1, 1) for _ in range(samples)]  # one at a time
        return {"tcp_nodelay": nodelay, "payload_bytes": len(payload), "window": window, "round_trips": count,
                "round_trips_per_s": round(count / elapsed, 1), "latency": dist_ms(rtts)}
    finally:
        if req is not None:
            req.disconnect()
            req.loop_stop()
        if echo.stdin:
            echo.stdin.close()
        try:
            echo.wait(5)
        except subprocess.TimeoutExpired:
            echo.kill()
            echo.wait()



if __name__ == "__main__":
    echo_main(sys.argv[1], "--nodelay" in sys.argv[2:])
