"""Telemetry sources: jetson-stats on a Jetson, psutil elsewhere (this machine is not a Jetson)."""

from __future__ import annotations

from types import SimpleNamespace

from edge_agent.telemetry import JetsonTelemetry, PsutilTelemetry, default_source, jetson_fields


def test_off_a_jetson_jtop_refuses_and_psutil_takes_over():
    assert JetsonTelemetry.open() is None  # jtop raises JtopException: its service is not here
    source = default_source()
    assert isinstance(source, PsutilTelemetry)
    fields = source.read()
    assert 0 <= fields["mem_percent"] <= 100 and fields["mem_available_mb"] > 0


class FakeJetsonStatsForTests:
    """Test double for jtop's ``stats`` on a Jetson Orin (no Jetson here): the real key names."""

    stats = {"CPU1": 40, "CPU2": 60, "GPU": 75, "Temp cpu": 61.5, "Temp gpu": 93.0, "Temp tj": -256,
             "Power TOT": 12500, "RAM": 0.5}


def test_jetson_stats_map_to_our_fields_and_hot_means_throttled():
    mem = SimpleNamespace(percent=50.0, available=4 * 2**30)
    fields = jetson_fields(FakeJetsonStatsForTests.stats, mem)
    assert fields["cpu_percent"] == 50.0 and fields["gpu_percent"] == 75
    assert fields["temperature_c"] == 93.0 and fields["power_w"] == 12.5
    assert fields["throttled"] is True  # 93 °C is past the 90 °C default
    cool = dict(FakeJetsonStatsForTests.stats, **{"Temp gpu": 70.0})
    assert jetson_fields(cool, mem)["throttled"] is False
