"""An agent's health probes (edge_agent/probes.py), as an orchestrator sees them: liveness fails only
when the agent's own loop stalls, readiness follows the broker and a drain."""

from __future__ import annotations

import json
import signal
import urllib.error
import urllib.request
from pathlib import Path

from services import new_cluster, wait_for

from edge_agent.probes import STALL_INTERVALS, Probes, ProbeServer
from voicefleet.broker import MosquittoBroker, free_port


def probe(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}  # not listening (yet, or any more)


class Flags:
    connected = True
    draining = False
    now = 100.0


def test_liveness_fails_on_a_stalled_heartbeat_only_and_readiness_on_the_broker_or_a_drain():
    f = Flags()
    probes = Probes(interval_s=5, connected=lambda: f.connected, draining=lambda: f.draining, clock=lambda: f.now)
    server = ProbeServer(probes, "127.0.0.1", 0)
    server.start()
    try:
        assert probe(server.port, "/healthz")[0] == 200 and probe(server.port, "/readyz")[0] == 200
        f.now += STALL_INTERVALS * 5 + 1  # no tick for more than three heartbeats
        status, doc = probe(server.port, "/healthz")
        assert status == 503 and "stalled" in doc["checks"]["heartbeat"], doc
        probes.tick()
        assert probe(server.port, "/healthz")[0] == 200
        f.connected = False  # a broker outage: not ready, still alive (a restart would not bring it back)
        status, doc = probe(server.port, "/readyz")
        assert (status, doc["checks"]["broker"]) == (503, "not connected")
        assert probe(server.port, "/healthz")[0] == 200
        f.connected, f.draining = True, True  # draining: no new jobs, and the heartbeat loop has ended
        f.now += 100
        assert probe(server.port, "/readyz")[0] == 503 and probe(server.port, "/healthz")[0] == 200
        status, doc = probe(server.port, "/metrics")
        assert status == 404 and "/healthz" in doc["error"]["text"]
    finally:
        server.stop()


def test_a_worker_is_ready_while_its_broker_answers_and_alive_throughout(tmp_path: Path, own_broker: MosquittoBroker):
    cluster = new_cluster(tmp_path, own_broker.url)
    device, port = f"gpu-{cluster.tag}", free_port()
    try:
        cluster.start_control_plane()
        agent = cluster.start_agent(device, role="cloud", VOICEFLEET_HEALTH_PORT=str(port),
                                    VOICEFLEET_HEALTH_HOST="127.0.0.1", VOICEFLEET_TELEMETRY_INTERVAL_S="0.5")
        assert probe(port, "/readyz")[0] == 200 and probe(port, "/healthz")[0] == 200
        own_broker.stop()
        status, doc = wait_for(lambda: (r := probe(port, "/readyz"))[0] == 503 and r, "readiness to fail")
        assert doc["checks"]["broker"] == "not connected", doc
        assert probe(port, "/healthz")[0] == 200  # alive: the heartbeat loop goes on without the broker
        own_broker.start()
        wait_for(lambda: probe(port, "/readyz")[0] == 200, "readiness once the broker is back")
        agent.send_signal(signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
        assert probe(port, "/healthz")[0] == 0  # gone with the process
    finally:
        cluster.stop()
