"""Prometheus metrics, one registry per app (no process-global state).

Counters and histograms are observed by the dispatcher; gauges that live in the database
(jobs by state, queue depth, per-device load) are read at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self, snapshot: Callable[[], dict]):
        self.registry = CollectorRegistry()
        self.first_chunk = Histogram("voicefleet_job_first_chunk_seconds",
                                     "Submit to first audio chunk at the control plane",
                                     buckets=LATENCY_BUCKETS, registry=self.registry)
        self.total = Histogram("voicefleet_job_total_seconds", "Submit to done",
                               buckets=LATENCY_BUCKETS, registry=self.registry)
        self.dropped = Counter("voicefleet_mqtt_dropped_messages", "Malformed or oversized MQTT messages dropped",
                               ["reason"], registry=self.registry)
        self.finished = Counter("voicefleet_jobs_finished", "Jobs reaching a final state", ["state"],
                                registry=self.registry)
        # who spoke what was delivered (a cloned voice is counted as "cloned")
        self.spoken = Counter("voicefleet_jobs_spoken", "Jobs done, by the engine, voice and quality tier that spoke "
                              "them", ["engine", "voice", "tier"], registry=self.registry)
        self.hedged = Counter("voicefleet_jobs_hedged", "Jobs taken off a device that ran far over the estimate",
                              registry=self.registry)
        self.forwarded = Counter("voicefleet_forwarded_requests", "Changes a follower replica forwarded to the "
                                 "leader", registry=self.registry)
        self.leader = Gauge("voicefleet_leader", "1 on the replica that runs the singletons (lease expiry, "
                            "heartbeats, hedging, rollouts), else 0", registry=self.registry)
        self.registry.register(_DatabaseGauges(snapshot))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DatabaseGauges:
    def __init__(self, snapshot: Callable[[], dict]):
        self._snapshot = snapshot

    def collect(self):
        snap = self._snapshot()
        states = GaugeMetricFamily("voicefleet_jobs", "Jobs by state", labels=["state"])
        for state, n in sorted(snap["jobs_by_state"].items()):
            states.add_metric([state], n)
        yield states
        yield GaugeMetricFamily("voicefleet_queue_depth", "Jobs waiting for a device",
                                value=snap["jobs_by_state"].get("queued", 0))
        load = GaugeMetricFamily("voicefleet_device_inflight", "Jobs assigned or running per device",
                                 labels=["device", "status"])
        cap = GaugeMetricFamily("voicefleet_device_slots", "Concurrency cap per device", labels=["device"])
        for dev in snap["devices"]:
            load.add_metric([dev["id"], dev["status"]], dev["inflight"])
            cap.add_metric([dev["id"]], dev["max_concurrency"])
        yield load
        yield cap
        # read from the database: the same total on every replica, and it survives restarts
        yield CounterMetricFamily("voicefleet_rollouts_halted", "Rollouts halted by a gate (and rolled back)",
                                  value=snap["rollouts_halted"])
