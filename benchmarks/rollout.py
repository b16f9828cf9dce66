#!/usr/bin/env python
"""Rollout benchmark: what a gated, staged rollout costs against the same rollout ungated.

A real control plane (child process, SQLite) and a fresh Mosquitto; ``--devices`` (200) simulated
devices in this process, each a real MQTT client that downloads the bundle from the control plane
over HTTP and checks every file's sha256 (``SimFleet``: a stand-in for the updater of edge devices
that cannot be here by the hundred; it skips the test synthesis, reporting fixed figures). A
``--mb`` (5) MB signed bundle is rolled out twice, side by side: with a canary and waves soaking
``--soak-s`` each, then (the next version) with every soak zero. Figures per run: time from
creating the rollout to every device activated, bytes served per device, control-plane CPU
seconds. One JSON object with ``--json``; progress on stderr.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import queue
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

import httpx  # noqa: E402
import paho.mqtt.client as paho  # noqa: E402

from benchmarks.fleet import CpuMeter  # noqa: E402
from benchmarks.report import AUTH, finite  # noqa: E402
from voicefleet import protocol as p  # noqa: E402
from voicefleet.broker import MosquittoBroker  # noqa: E402
from voicefleet.bundle import generate_signing_key, pack_archive, write_bundle  # noqa: E402
from voicefleet.ids import new_id  # noqa: E402
from voicefleet_cli.onebox import Cluster  # noqa: E402

MODEL_ID = "bench-student"
TEST_FIGURES = {"rtf": 0.05, "first_chunk_s": 0.08, "audio_s": 4.0}


def log(msg: str) -> None:
    print(f"[rollout] {msg}", file=sys.stderr, flush=True)


# -------------------------------------------------------------------------- simulated devices


class SimDevice:
    """One simulated edge device (a stand-in: real MQTT session, real HTTP downloads and hashes; no
    engine). Keeps two "slots" as version names; answers OtaCommands like the real updater, by
    ``command_id`` once (a repeat gets its last report again); answers jobs with a short tone-less
    audio chunk, or fails them when its version is in ``fleet.bad_job_versions``."""

    def __init__(self, fleet: SimFleet, device_id: str, version: str, tags: list[str]):
        self.fleet, self.id, self.tags = fleet, device_id, tags
        self.active, self.previous = version, None
        self.reports: dict[str, p.OtaReport] = {}  # last report per command id
        self.bytes = 0  # downloaded
        self.busy = threading.Lock()
        self.client: paho.Client | None = None

    # -- session ----------------------------------------------------------------------------

    def connect(self) -> None:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"sim-{self.id}", protocol=paho.MQTTv5)
        c.will_set(p.device_topic(self.id, "state"), p.encode(p.DeviceState(device_id=self.id, status="offline")),
                   qos=1, retain=True)
        c.on_connect = lambda client, *_: (client.subscribe([(p.device_topic(self.id, k), 1) for k in ("ota", "job")]),
                                           self.publish_state())
        c.on_message = lambda client, userdata, msg: self.fleet.work.put((self, msg.topic, msg.payload))
        self.client = c  # before connecting: on_connect publishes through it
        c.connect(self.fleet.host, self.fleet.port, keepalive=30)
        c.loop_start()

    def disconnect(self) -> None:
        """Go away abruptly (the broker publishes the will: offline)."""
        if self.client is not None:
            self.client._sock_close()  # noqa: SLF001  no DISCONNECT packet: like a power cut
            self.client.loop_stop()
            self.client = None

    def publish(self, kind: str, message: p.Message, data: bytes | None = None, retain: bool = False):
        if self.client is not None:
            return self.client.publish(p.device_topic(self.id, kind), p.encode(message, data), qos=1, retain=retain)

    def publish_state(self) -> None:
        model = p.ActiveModel(model_id=self.fleet.model_id, version=self.active, previous_version=self.previous)
        self.publish("state", p.DeviceState(
            device_id=self.id, status="online", role="edge", boot_id=self.fleet.boot_id, tags=self.tags, model=model,
            engine=p.EngineDescriptor(name="sim", version="0", model=self.active, sample_rate=16000),
            capabilities=p.Capabilities(languages=["zh"])), retain=True)

    # -- commands ---------------------------------------------------------------------------

    def handle(self, topic: str, payload: bytes) -> None:
        kind = topic.rsplit("/", 1)[1]
        msg, _ = p.decode(kind, payload)
        if isinstance(msg, p.OtaCommand):
            with self.busy:
                self.ota(msg)
        elif isinstance(msg, p.JobAssign):
            self.job(msg)

    def ota(self, cmd: p.OtaCommand) -> None:
        if cmd.command_id in self.reports:
            self.publish("event", self.reports[cmd.command_id])
            return
        if cmd.op == "rollback":
            if self.previous != cmd.version:
                error = p.ErrorInfo(code="no_such_version", text=f"the other slot holds {self.previous}")
                return self.report(cmd, "failed", error=error)
            self.active, self.previous = self.previous, self.active
            self.report(cmd, "rolled_back")
            return self.publish_state()
        if self.id in self.fleet.deaf_once:  # as if the command never arrived
            self.fleet.deaf_once.discard(self.id)
            return None
        if self.id in self.fleet.busy_once:  # as the updater answers while another update runs
            self.fleet.busy_once.discard(self.id)
            return self.report(cmd, "failed", error=p.ErrorInfo(code="busy", text="another update is running"))
        total = sum(f.size for f in cmd.files)
        self.report(cmd, "downloading", bytes_total=total)
        for f in cmd.files:
            digest = self.download(f"{cmd.base_url}/{f.name}", f.size)
            if digest != f.sha256:
                return self.report(cmd, "failed", error=p.ErrorInfo(code="checksum_mismatch", text=f.name))
        self.report(cmd, "verified", bytes_done=total, bytes_total=total)
        if cmd.version in self.fleet.broken_versions:
            return self.report(cmd, "failed", error=p.ErrorInfo(code="test_failed", text="the test phrase is silent"))
        self.report(cmd, "tested", test=self.fleet.figures.get(cmd.version, TEST_FIGURES))
        self.active, self.previous = cmd.version, self.active
        self.report(cmd, "activated")
        self.publish_state()

    def download(self, url: str, size: int, tries: int = 40) -> str:
        """The file's sha256, fetched again from the start when the link drops or the body ends short
        (http.client does not raise on a short body; the real updater resumes with Range instead).
        A control plane restarting mid-download is back within a few seconds."""
        for _ in range(tries - 1):
            try:
                got, digest = self._fetch(url)
                if got == size:
                    return digest
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.25)
        return self._fetch(url)[1]

    def _fetch(self, url: str) -> tuple[int, str]:
        h, got = hashlib.sha256(), 0
        with urllib.request.urlopen(url, timeout=60) as resp:  # noqa: S310 (the control plane's URL)
            while block := resp.read(1 << 16):
                h.update(block)
                got += len(block)
        self.bytes += got
        return got, h.hexdigest()

    def report(self, cmd: p.OtaCommand, stage: str, **fields) -> None:
        r = p.OtaReport(device_id=self.id, command_id=cmd.command_id, rollout_id=cmd.rollout_id,
                        model_id=cmd.model_id, version=cmd.version, stage=stage,
                        active=p.ActiveModel(model_id=cmd.model_id, version=self.active,
                                             previous_version=self.previous), **fields)
        self.reports[cmd.command_id] = r
        self.publish("event", r)

    def job(self, job: p.JobAssign) -> None:
        ids = {"job_id": job.job_id, "attempt": job.attempt}
        self.publish("event", p.JobStarted(**ids))
        if self.active in self.fleet.bad_job_versions:
            return self.publish("event", p.JobFailed(**ids, error=p.ErrorInfo(code="synthesis_failed",
                                                                              text="the model produced NaN")))
        pcm = b"\x01\x00" * 1600
        self.publish("event", p.AudioChunk(**ids, seq=0, sample_rate=16000), pcm)
        self.publish("event", p.JobDone(**ids, chunks=1, samples=1600, sample_rate=16000,
                                        sha256=hashlib.sha256(pcm).hexdigest(), synth_s=0.005, first_chunk_s=0.002,
                                        engine=p.EngineDescriptor(name="sim", version="0", model=self.active,
                                                                  sample_rate=16000)))


class SimFleet:
    """Simulated devices on one broker; their work runs on ``workers`` threads (downloads block)."""

    def __init__(self, mqtt_url: str, device_ids: list[str], *, model_id: str, version: str,
                 tags: Callable[[str], list[str]] = lambda d: [], workers: int = 16):
        from voicefleet.settings import mqtt_host_port

        self.host, self.port = mqtt_host_port(mqtt_url)
        self.model_id = model_id
        self.boot_id = new_id()
        self.broken_versions: set[str] = set()  # install fails its test synthesis
        self.bad_job_versions: set[str] = set()  # jobs fail on this version
        self.busy_once: set[str] = set()  # these devices answer their next install "busy"
        self.deaf_once: set[str] = set()  # these devices ignore their next command
        self.figures: dict[str, dict[str, float]] = {}  # test figures per version (default TEST_FIGURES)
        self.devices = {d: SimDevice(self, d, version, tags(d)) for d in device_ids}
        self.work: queue.Queue = queue.Queue()
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="sim")
        self._stop = threading.Event()
        threading.Thread(target=self._dispatch, daemon=True).start()
        threading.Thread(target=self._heartbeat, daemon=True).start()

    def start(self) -> SimFleet:
        for d in self.devices.values():
            d.connect()
        return self

    def stop(self) -> None:
        self._stop.set()
        for d in self.devices.values():
            if d.client is not None:  # leave no retained "online" behind on a shared broker
                d.publish("state", p.DeviceState(device_id=d.id, status="offline"), retain=True).wait_for_publish(5)
                d.client.disconnect()
                d.client.loop_stop()
        self._pool.shutdown(wait=False, cancel_futures=True)

    def versions(self) -> dict[str, str]:
        return {d.id: d.active for d in self.devices.values()}

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            try:
                device, topic, payload = self.work.get(timeout=0.2)
            except queue.Empty:
                continue
            self._pool.submit(self._safely, device, topic, payload)

    @staticmethod
    def _safely(device: SimDevice, topic: str, payload: bytes) -> None:
        try:
            device.handle(topic, payload)
        except Exception as exc:  # a simulated device must not die silently: say why
            log(f"{device.id}: {type(exc).__name__}: {exc}")

    def _heartbeat(self) -> None:
        while not self._stop.wait(3.0):
            for d in list(self.devices.values()):
                if d.client is not None:
                    d.client.publish(p.device_topic(d.id, "telemetry"), p.encode(p.Telemetry(device_id=d.id)), qos=0)


# ---------------------------------------------------------------------------------- bundles


def make_bundle(out_dir: Path, key, *, model_id: str, version: str, size: int) -> Path:
    """A signed bundle of ``size`` random bytes (one model file) packed as .tar.gz; returns the archive."""
    out_dir.mkdir(parents=True, exist_ok=True)
    blob = out_dir / f"{version}.bin"
    blob.write_bytes(os.urandom(size))
    folder = out_dir / f"{model_id}-{version}"
    write_bundle(folder, {"model.bin": blob}, {"model_id": model_id, "version": version, "engine": "student-onnx",
                                               "languages": ["zh"], "sample_rate": 16000, "licence": "test only"}, key)
    return pack_archive(folder, out_dir / f"{model_id}-{version}.tar.gz")


def signing_key(folder: Path):
    """A signing key made here (the project's is not available) and its public hex, to trust."""
    folder.mkdir(parents=True, exist_ok=True)
    key = generate_signing_key(folder / "bench.pem")
    return key, (folder / "bench.pem.pub").read_text().strip()


# -------------------------------------------------------------------------------- a rollout


def wait_rollout(api: httpx.Client, rollout_id: str, states: tuple[str, ...], timeout_s: float) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        r = api.get(f"/v1/rollouts/{rollout_id}").json()
        if r["state"] in states:
            return r
        if time.monotonic() > deadline:
            raise TimeoutError(f"rollout {rollout_id} still {r['state']} ({r['targets']}) after {timeout_s:.0f}s")
        time.sleep(0.1)


def roll(api: httpx.Client, fleet: SimFleet, cpu: CpuMeter, *, version: str, plan: dict, timeout_s: float) -> dict:
    before = sum(d.bytes for d in fleet.devices.values())
    cpu.start()
    t0 = time.perf_counter()
    created = api.post("/v1/rollouts", json={"model_id": fleet.model_id, "version": version, "plan": plan})
    created.raise_for_status()
    done = wait_rollout(api, created.json()["id"], ("completed", "halted", "rolled_back", "aborted"), timeout_s)
    took = time.perf_counter() - t0
    used = cpu.stop()
    on_version = sum(v == version for v in fleet.versions().values())
    served = sum(d.bytes for d in fleet.devices.values()) - before
    return {"state": done["state"], "devices_on_version": on_version, "time_to_full_s": round(took, 2),
            "bytes_per_device": round(served / len(fleet.devices)), "control_plane_cpu_s": used["control_plane"],
            "wall_s": used["wall_s"], "events": len(api.get(f"/v1/rollouts/{done['id']}/events",
                                                             params={"limit": 10_000}).json())}


def run(args) -> dict:
    with tempfile.TemporaryDirectory(prefix="vf-rollout-bench-") as tmp:
        tmp = Path(tmp)
        key, public = signing_key(tmp / "keys")
        archives = {v: make_bundle(tmp / "bundles", key, model_id=MODEL_ID, version=v, size=int(args.mb * 1e6))
                    for v in ("2.0.0", "3.0.0")}
        with MosquittoBroker(tmp / "broker") as broker:
            cluster = Cluster(tmp / "home", mqtt_url=broker.url,
                              env={"VOICEFLEET_TRUSTED_KEYS": public, "VOICEFLEET_HEARTBEAT_TIMEOUT_S": "60"})
            fleet = None
            try:
                cluster.start_control_plane()
                api = httpx.Client(base_url=cluster.api, headers=AUTH, timeout=60)
                for archive in archives.values():
                    api.post("/v1/models", content=archive.read_bytes()).raise_for_status()
                ids = [f"sim-{i:04d}" for i in range(args.devices)]
                fleet = SimFleet(broker.url, ids, model_id=MODEL_ID, version="1.0.0", workers=args.workers).start()
                deadline = time.monotonic() + 60
                while len(api.get(f"/v1/models/{MODEL_ID}/devices").json()) < args.devices:
                    if time.monotonic() > deadline:
                        raise TimeoutError("the simulated devices did not all register")
                    time.sleep(0.2)
                log(f"{args.devices} simulated devices online; rolling out {args.mb} MB, soak {args.soak_s}s")
                cpu = CpuMeter({"control_plane": [cluster.control.pid]})
                base = {"canary": args.canary, "waves": [10.0, 50.0, 100.0], "max_in_flight": args.max_in_flight}
                gated = roll(api, fleet, cpu, version="2.0.0", plan={**base, "soak_s": args.soak_s},
                             timeout_s=args.timeout_s)
                log(f"gated: {gated}")
                ungated = roll(api, fleet, cpu, version="3.0.0", plan={**base, "soak_s": 0}, timeout_s=args.timeout_s)
                log(f"soak 0: {ungated}")
            finally:
                if fleet is not None:
                    fleet.stop()
                cluster.stop()
    soaks = 1 + 3  # canary and three waves
    extra_s = gated["time_to_full_s"] - ungated["time_to_full_s"]
    return finite({
        "devices": args.devices, "bundle_mb": args.mb, "max_in_flight": args.max_in_flight, "canary": args.canary,
        "waves_percent": [10, 50, 100], "soak_s": args.soak_s, "gated": gated, "soak_zero": ungated,
        "gating_cost_s": round(extra_s, 2),
        "gating_cost_minus_soak_s": round(extra_s - soaks * args.soak_s, 2),
        "cpu_ratio_gated_vs_soak_zero": round(gated["control_plane_cpu_s"] / max(ungated["control_plane_cpu_s"], 0.01),
                                              2),
    })


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--mb", type=float, default=5.0)
    ap.add_argument("--soak-s", type=float, default=5.0)
    ap.add_argument("--canary", type=int, default=2)
    ap.add_argument("--max-in-flight", type=int, default=50)
    ap.add_argument("--workers", type=int, default=16, help="simulated devices' download threads")
    ap.add_argument("--timeout-s", type=float, default=600)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    report = run(args)
    if args.json:
        print(json.dumps(report))
    else:
        for name in ("gated", "soak_zero"):
            r = report[name]
            print(f"{name:>10}: {r['state']}, {r['devices_on_version']}/{report['devices']} devices in "
                  f"{r['time_to_full_s']} s, {r['bytes_per_device']} B/device, "
                  f"control plane {r['control_plane_cpu_s']} CPU s, {r['events']} events")
        print(f"gating cost: {report['gating_cost_s']} s ({report['gating_cost_minus_soak_s']} s beyond the soaks), "
              f"CPU x{report['cpu_ratio_gated_vs_soak_zero']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
