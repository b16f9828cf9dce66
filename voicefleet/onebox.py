"""``voicefleet up``: the whole system on one box, with no configuration.

Starts Mosquitto (unless VOICEFLEET_MQTT_URL names a broker), the control plane and two agents
(one edge, one cloud) as child processes, waits until they are all up, prints the address,
and stops them in order (agents drain first) on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from voicefleet.broker import MosquittoBroker
from voicefleet.settings import CommonSettings

AGENTS = (("edge-1", "edge"), ("cloud-1", "cloud"))
READY_TIMEOUT_S = 60.0


def run_one_box(port: int | None = None) -> int:
    common = CommonSettings()
    home = common.home
    home.mkdir(parents=True, exist_ok=True)
    port = port or int(os.environ.get("VOICEFLEET_HTTP_PORT", "8750"))
    host = os.environ.get("VOICEFLEET_HTTP_HOST", "127.0.0.1")
    broker = None
    if "VOICEFLEET_MQTT_URL" not in os.environ:
        broker = MosquittoBroker(home / "broker").start()
    env = {**os.environ, "VOICEFLEET_HOME": str(home), "VOICEFLEET_HTTP_PORT": str(port),
           "VOICEFLEET_HTTP_HOST": host, "VOICEFLEET_MQTT_URL": broker.url if broker else common.mqtt_url}
    children: list[subprocess.Popen] = []
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        children.append(_spawn(["control-plane"], env, home / "control-plane.log"))
        api = f"http://{host}:{port}"
        _wait(lambda: _get(f"{api}/readyz").get("ready"), "the control plane", children)
        for device_id, role in AGENTS:
            agent_env = {**env, "VOICEFLEET_DEVICE_ID": device_id, "VOICEFLEET_ROLE": role}
            children.append(_spawn(["agent"], agent_env, home / f"agent-{device_id}.log"))
        _wait(lambda: _online(api) >= len(AGENTS), "the agents", children)
        print(f"voicefleet is up: API and console at {api} (docs at {api}/docs)\n"
              f"  broker {env['VOICEFLEET_MQTT_URL']}, data and logs in {home}\n"
              f"  try: voicefleet say \"今天下午三点提醒我开会\" -o reminder.wav", flush=True)
        while not stop.wait(1.0):
            dead = [c for c in children if c.poll() is not None]
            if dead:
                print(f"a child process exited ({dead[0].args}); see the logs in {home}", file=sys.stderr)
                return 1
        return 0
    finally:
        for child in reversed(children):  # agents first, so they can hand back their jobs
            _terminate(child)
        if broker:
            broker.stop()


def _spawn(args: list[str], env: dict, log: Path) -> subprocess.Popen:
    with open(log, "ab") as out:
        return subprocess.Popen([sys.executable, "-m", "voicefleet.cli", *args], env=env, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def _terminate(child: subprocess.Popen, timeout: float = 40.0) -> None:
    if child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _get(url: str):
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())
    except (OSError, ValueError):
        return {}


def _online(api: str) -> int:
    devices = _get(f"{api}/v1/devices") or []
    return sum(1 for d in devices if d.get("status") == "online" and d.get("id") in dict(AGENTS))


def _wait(check, what: str, children: list[subprocess.Popen]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while not check():
        if any(c.poll() is not None for c in children):
            raise SystemExit(f"{what} failed to start; see the logs in {CommonSettings().home}")
        if time.monotonic() > deadline:
            raise SystemExit(f"{what} did not come up within {READY_TIMEOUT_S:.0f}s")
        time.sleep(0.2)
