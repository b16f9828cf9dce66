"""NVML telemetry (nvidia-ml-py): fields and units from what NVML returns, the GPUs CUDA_VISIBLE_DEVICES
leaves the process, this process's GPU memory, psutil where NVML cannot start (this machine: no driver);
and a real agent's GPU figures on a real control plane's device API.

There is no NVIDIA GPU here: ``NvmlStandIn`` replaces pynvml's calls (monkeypatched) and answers with
pynvml's own structures and errors, as the driver would on a two-GPU box.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pynvml
import pytest
from fastapi.testclient import TestClient
from services import ADMIN_TOKEN, http, new_cluster, wait_for

from control_plane.app import create_app
from control_plane.console.browser import launch
from control_plane.core.config import Settings
from edge_agent.agent import Agent
from edge_agent.config import AgentSettings
from edge_agent.engines.benchmark_only import WITH_BENCHMARKS
from edge_agent.telemetry import NvmlTelemetry, PsutilTelemetry, default_source
from voicefleet import protocol as p
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers

GIB = 2**30


class NvmlStandIn:
    """pynvml's functions over made-up GPUs (no NVIDIA driver here). Each GPU: utilisation %, memory used
    and total in bytes, temperature °C, power in mW (None: the board does not report it), clock-event
    reasons and its compute processes as (pid, bytes)."""

    def __init__(self, gpus: list[dict]):
        self.gpus = gpus

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        def handle(i: int) -> dict:
            if not 0 <= i < len(self.gpus):
                raise pynvml.NVMLError(pynvml.NVML_ERROR_INVALID_ARGUMENT)
            return self.gpus[i]

        def by_uuid(value: str) -> dict:
            return next((g for g in self.gpus if g["uuid"] == value), None) or _raise(pynvml.NVML_ERROR_NOT_FOUND)

        def power(g: dict) -> int:
            return g["power_mw"] if g["power_mw"] is not None else _raise(pynvml.NVML_ERROR_NOT_SUPPORTED)

        def procs(g: dict) -> list:
            return [pynvml.nvmlFriendlyObject({"pid": pid, "usedGpuMemory": used}) for pid, used in g["procs"]]

        calls = {
            "nvmlInit": lambda: None,
            "nvmlDeviceGetCount": lambda: len(self.gpus),
            "nvmlDeviceGetHandleByIndex": handle,
            "nvmlDeviceGetHandleByUUID": by_uuid,
            "nvmlDeviceGetUtilizationRates": lambda g: pynvml.c_nvmlUtilization_t(gpu=g["util"], memory=0),
            "nvmlDeviceGetMemoryInfo": lambda g: pynvml.c_nvmlMemory_t(total=g["total"], free=g["total"] - g["used"],
                                                                       used=g["used"]),
            "nvmlDeviceGetTemperature": lambda g, sensor: g["temp"] if sensor == pynvml.NVML_TEMPERATURE_GPU
            else _raise(pynvml.NVML_ERROR_INVALID_ARGUMENT),
            "nvmlDeviceGetPowerUsage": power,
            "nvmlDeviceGetCurrentClocksEventReasons": lambda g: g["reasons"],
            "nvmlDeviceGetComputeRunningProcesses": procs,
        }
        for name, fn in calls.items():
            monkeypatch.setattr(pynvml, name, fn)


def _raise(code: int):
    raise pynvml.NVMLError(code)


def h100(index: int, *, util: int, used_gib: float, temp: int, power_mw: int | None, reasons: int = 0,
         procs: list[tuple[int, int]] = ()) -> dict:
    return {"uuid": f"GPU-{index:08d}-0000-0000-0000-000000000000", "util": util, "used": int(used_gib * GIB),
            "total": 80 * GIB, "temp": temp, "power_mw": power_mw, "reasons": reasons, "procs": list(procs)}


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> NvmlStandIn:
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    nvml = NvmlStandIn([
        h100(0, util=87, used_gib=9.5, temp=64, power_mw=312_500, procs=[(os.getpid(), 9 * GIB), (4242, GIB // 2)]),
        h100(1, util=12, used_gib=2.0, temp=71, power_mw=88_000, reasons=pynvml.nvmlClocksEventReasonSwThermalSlowdown,
             procs=[(os.getpid(), GIB)]),
    ])
    nvml.install(monkeypatch)
    return nvml


def _nvml_starts() -> bool:
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return False
    pynvml.nvmlShutdown()
    return True


@pytest.mark.skipif(_nvml_starts(), reason="an NVIDIA driver is here: NVML starts (the stand-in tests cover it)")
def test_without_an_nvidia_driver_nvml_refuses_once_and_psutil_takes_over(caplog: pytest.LogCaptureFixture,
                                                                           monkeypatch: pytest.MonkeyPatch):
    with caplog.at_level(logging.INFO, "edge_agent.telemetry"):
        assert NvmlTelemetry.open() is None  # the real pynvml: NVMLError_LibraryNotFound on this machine
        source = default_source()
    assert isinstance(source, PsutilTelemetry) and source.process_gpu_mb() is None
    said = [r for r in caplog.records if r.message.startswith("no NVIDIA GPU")]
    assert [(r.levelname, r.message) for r in said] == [("INFO", "no NVIDIA GPU (NVML: NVML Shared Library Not "
                                                         "Found); telemetry from psutil")] * 2  # once per try
    assert "gpu_mem_used_mb" not in source.read()
    monkeypatch.setitem(sys.modules, "pynvml", None)  # nvidia-ml-py not installed (an edge box)
    assert NvmlTelemetry.open() is None


def test_nvml_readings_map_to_our_fields_and_units(two_gpus: NvmlStandIn):
    source = default_source()
    assert isinstance(source, NvmlTelemetry) and source.name == "nvml"
    fields = source.read()
    assert fields["gpu_percent"] == 87.0  # the busiest GPU
    assert fields["gpu_mem_used_mb"] == 11.5 * 1024 and fields["gpu_mem_total_mb"] == 160 * 1024  # summed, MB
    assert fields["gpu_temperature_c"] == 71.0  # the hottest
    assert fields["power_w"] == 400.5  # summed, W
    assert fields["throttled"] is True  # GPU 1 slows its clocks for heat
    assert 0 <= fields["mem_percent"] <= 100 and fields["mem_available_mb"] > 0  # the host's, from psutil
    msg = p.Telemetry(device_id="gpu-1", source=source.name, **fields)
    assert p.decode("telemetry", p.encode(msg))[0].gpu_mem_total_mb == 163840.0
    assert source.process_gpu_mb() == 10 * 1024  # this pid on both GPUs; the other process not counted


def test_cuda_visible_devices_picks_the_gpus_by_index_or_uuid(two_gpus: NvmlStandIn,
                                                              monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    fields = NvmlTelemetry.open().read()
    assert (fields["gpu_percent"], fields["gpu_mem_used_mb"], fields["power_w"]) == (12.0, 2048.0, 88.0)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", two_gpus.gpus[0]["uuid"])
    fields = NvmlTelemetry.open().read()
    assert (fields["gpu_temperature_c"], fields["throttled"]) == (64.0, False)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,7,1")  # CUDA stops at the first invalid entry
    assert NvmlTelemetry.open().read()["gpu_mem_total_mb"] == 80 * 1024
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "-1")  # no GPU for this process
    assert isinstance(default_source(), PsutilTelemetry)


def test_a_figure_the_board_does_not_report_is_none_and_the_rest_stay(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    NvmlStandIn([h100(0, util=40, used_gib=1, temp=50, power_mw=None,
                      reasons=pynvml.nvmlClocksEventReasonHwSlowdown)]).install(monkeypatch)
    fields = NvmlTelemetry.open().read()
    assert fields["power_w"] is None and fields["gpu_percent"] == 40.0 and fields["gpu_mem_used_mb"] == 1024.0
    assert fields["throttled"] is False  # a power brake alone slows the clocks but is no heat


def test_in_a_pid_namespace_the_gpus_used_memory_stands_for_the_process(monkeypatch: pytest.MonkeyPatch,
                                                                        caplog: pytest.LogCaptureFixture):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    NvmlStandIn([h100(0, util=40, used_gib=6.25, temp=50, power_mw=70_000, procs=[(777_777, 6 * GIB)])]
                ).install(monkeypatch)  # NVML lists the host's pid for us
    source = NvmlTelemetry.open()
    with caplog.at_level(logging.INFO, "edge_agent.telemetry"):
        assert source.process_gpu_mb() == source.process_gpu_mb() == 6.25 * 1024
    assert sum("NVML lists no GPU process with pid" in r.message for r in caplog.records) == 1


def gpu_agent(tmp_path: Path, broker: MosquittoBroker, device: str, **settings) -> Agent:
    """A GPU worker with the benchmark-only tone engine: its telemetry from NVML."""
    return Agent(AgentSettings(home=tmp_path, device_id=device, mqtt_url=broker.url, role="cloud", engine="tone",
                               telemetry_interval_s=0.5, **settings), engines=WITH_BENCHMARKS)


def control_plane(tmp_path: Path, broker: MosquittoBroker) -> TestClient:
    """A real control plane (dispatcher and API; SQLite) on the broker."""
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/voicefleet.db", mqtt_url=broker.url,
                        redis_url=None, control_id=f"cp-{uuid.uuid4().hex[:8]}")
    return TestClient(create_app(settings), headers=auth_headers(ADMIN_TOKEN))


def test_a_gpu_agents_figures_reach_the_control_plane_device_api(two_gpus: NvmlStandIn, tmp_path: Path,
                                                                  mqtt_broker: MosquittoBroker):
    """A real agent (NVML telemetry on the stand-in) on the real broker, a real control plane (its
    dispatcher writes what the device says): GET /v1/devices/{id} has the GPU figures as sent."""
    device = f"gpu-{uuid.uuid4().hex[:6]}"
    agent = gpu_agent(tmp_path, mqtt_broker, device)
    assert isinstance(agent.telemetry, NvmlTelemetry)
    with control_plane(tmp_path, mqtt_broker) as client:
        agent.start()
        try:
            def gpu_figures():
                r = client.get(f"/v1/devices/{device}")
                return r.status_code == 200 and (r.json().get("telemetry") or {}).get("gpu_mem_used_mb") and r.json()

            body = wait_for(gpu_figures, "the agent's GPU telemetry in the device API")
            points = wait_for(lambda: client.get(f"/v1/devices/{device}/telemetry").json(), "a telemetry sample")
        finally:
            agent.shutdown()
    assert (points[0]["gpu_mem_used_mb"], points[0]["gpu_mem_total_mb"], points[0]["gpu_temperature_c"]) == (
        11776.0, 163840.0, 71.0)  # the history keeps them too
    t = body["telemetry"]
    assert t["source"] == "nvml" and t["gpu_percent"] == 87.0 and t["power_w"] == 400.5
    assert (t["gpu_mem_used_mb"], t["gpu_mem_total_mb"], t["gpu_temperature_c"]) == (11776.0, 163840.0, 71.0)


def test_gpu_memory_growing_over_real_jobs_recycles_the_agent(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              mqtt_broker: MosquittoBroker):
    """Jobs through a real control plane to an agent on NVML (its real per-process reading, over the stand-in)
    whose process holds more GPU memory after each: the third reading past the bound recycles it, and its
    draining and offline states say why."""
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    gpu = h100(0, util=30, used_gib=12, temp=60, power_mw=200_000)
    NvmlStandIn([gpu]).install(monkeypatch)
    device = f"gpu-{uuid.uuid4().hex[:6]}"
    agent = gpu_agent(tmp_path, mqtt_broker, device, recycle_gpu_mb=10 * 1024)
    with control_plane(tmp_path, mqtt_broker) as client:
        agent.start()
        try:
            wait_for(lambda: client.get(f"/v1/devices/{device}").json().get("eligible"), "the agent eligible")
            for held_gib in (10.5, 11, 11.5):
                gpu["procs"] = [(os.getpid(), int(held_gib * GIB)), (4242, GIB)]  # another process's GiB: not ours
                job = client.post("/v1/jobs", json={"text": "你好"}).json()
                wait_for(lambda job=job: client.get(f"/v1/jobs/{job['id']}").json()["state"] == "done", "the job")
            wait_for(lambda: agent.recycle.fired, "the recycle")
        finally:
            agent.shutdown()  # what Agent.run does next, before it executes itself again
        changes = wait_for(lambda: [c for c in client.get(f"/v1/devices/{device}/status-history").json()
                                    if c["kind"] == "offline"], "the agent offline")
        draining = [c for c in client.get(f"/v1/devices/{device}/status-history").json() if c["kind"] == "draining"]
    assert agent._restart and agent._why == ("recycling: GPU memory 11.5 GB > 10 GB bound, grew from 10.5 GB over "
                                            "3 idle samples, after 3 jobs")
    assert [c["reason"] for c in draining + changes] == [agent._why] * 2  # the console's offline history shows it


def test_the_console_device_page_shows_a_gpu_workers_figures(two_gpus: NvmlStandIn, tmp_path: Path,
                                                              mqtt_broker: MosquittoBroker):
    """The same agent on a real control plane's console in Debian's Chromium: the GPU's figures now, and its
    own chart, in English and Chinese; and in `voicefleet devices`."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (make test-setup)")
    cluster, device = new_cluster(tmp_path, mqtt_broker.url), f"gpu-{uuid.uuid4().hex[:6]}"
    agent = gpu_agent(tmp_path, mqtt_broker, device)
    try:
        cluster.start_control_plane()
        agent.start()
        wait_for(lambda: http.get(f"{cluster.api}/v1/devices/{device}/telemetry").json(), "a telemetry sample")
        with sync_api.sync_playwright() as pw:
            chromium = launch(pw)
            page = chromium.new_page(locale="en-GB", viewport={"width": 1280, "height": 900})
            page.goto(f"{cluster.api}/console")
            page.fill("#token", ADMIN_TOKEN)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_selector("header.top nav")
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{cluster.api}/console#/devices/{device}")
            now = page.locator("p.gpu-now")
            now.wait_for()
            assert now.inner_text() == "Now: GPU 87 % · memory 11.5 / 160.0 GB · 71 °C · 401 W"
            legend = page.locator("#tele-gpu .u-legend")
            legend.wait_for()
            assert {"GPU %", "power W"} <= set(legend.locator(".u-label").all_inner_texts())
            assert "GPU %" not in page.locator("#tele .u-legend").inner_text()  # the host's chart: host figures
            page.get_by_role("button", name="Language").click()
            page.locator("p.gpu-now", has_text="当前").wait_for()
            assert now.inner_text() == "当前：GPU 87 % · 显存 11.5 / 160.0 GB · 71 °C · 401 W"
            chromium.close()
        assert errors == []
        listing = subprocess.run([sys.executable, "-m", "voicefleet_cli", "--api", cluster.api, "devices"],
                                 capture_output=True, text=True, timeout=60)
        lines = listing.stdout.splitlines()
        at = next(i for i, line in enumerate(lines) if line.startswith(device))
        assert lines[at + 2] == "    gpu 87%  memory 11.5/160.0 GB  71 °C  400.5 W", listing.stdout  # after its engine
    finally:
        agent.shutdown()
        cluster.stop()
