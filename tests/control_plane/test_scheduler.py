"""control_plane.scheduler: capability filter, health gate, expected completion, the comparison
policies, explanations, and what the fleet learns online."""

from __future__ import annotations

import pytest

from control_plane.scheduler import (
    Decision,
    DeviceView,
    FleetStats,
    JobInfo,
    Planner,
    Running,
    unservable_reason,
)
from voicefleet.protocol import Capabilities, SpeechSpec

MANDARIN = Capabilities(languages=["zh", "en"], voices=["default"])
CANTONESE = Capabilities(languages=["zh", "en"], dialects=["yue"], voices=["default"])
CLOUD = Capabilities(languages=["zh", "en"], dialects=["yue", "sichuan"], voices=["default"], cloning=True,
                     instructions=True)
NOW = 1_000_000.0


def JobNeeds(**needs) -> SpeechSpec:  # named for what it stands for
    """What a job needs of an engine is its speech spec; the words do not matter here."""
    return SpeechSpec(text="今天下午三点提醒我开会", **needs)


def device(id: str, *, status: str = "online", caps: Capabilities = MANDARIN, slots: int = 1, inflight: int = 0,
           role: str = "edge", **kw) -> DeviceView:
    return DeviceView(id=id, status=status, capabilities=caps, max_concurrency=slots, inflight=inflight, role=role,
                      **kw)


def stats_with(rtf: dict[str, float], s_per_char: float = 0.1) -> FleetStats:
    stats = FleetStats()
    stats.rtf.update(rtf)
    stats.s_per_char["zh"] = s_per_char
    return stats


def job(chars: int = 20, *, deadline_in: float | None = None, **needs) -> JobInfo:
    return JobInfo(id=f"j{chars}", needs=JobNeeds(lang="zh", **needs), chars=chars,
                   deadline_at=None if deadline_in is None else NOW + deadline_in)


def verdicts(decision: Decision) -> dict[str, str]:
    return {c["device"]: c["verdict"] for c in decision.candidates}


# ----------------------------------------------------------------------------- health gate


@pytest.mark.parametrize("kw, gate", [
    ({}, None),
    ({"status": "offline"}, "offline"),
    ({"status": "draining"}, "draining"),
    ({"cordoned": True}, "cordoned by an operator"),
    ({"confirmed": False}, "awaiting a fresh heartbeat"),
    ({"telemetry": {"throttled": True}}, "thermal throttling"),
    ({"telemetry": {"mem_percent": 97.0}}, "memory pressure (97% used)"),
])
def test_health_gate(kw: dict, gate: str | None) -> None:
    d = device("d", slots=2, **kw)
    assert d.gate() == gate
    assert d.free == (2 if gate is None else 0)


def test_a_device_that_keeps_failing_is_gated_until_it_recovers() -> None:
    stats = FleetStats()
    for _ in range(3):
        stats.observe_outcome("d", ok=False)
    stats.observe_outcome("d", ok=True)
    assert stats.error_gate("d") is None  # 4 outcomes: too few to judge
    stats.observe_outcome("d", ok=False)
    assert stats.error_gate("d") == "4 of its last 5 attempts failed"
    for _ in range(6):
        stats.observe_outcome("d", ok=True)
    assert stats.error_gate("d") is None


# ----------------------------------------------------------------------------- latency policy


def test_picks_the_earliest_expected_completion_not_the_first_free_device() -> None:
    devices = [device("fast", role="cloud"), device("slow")]
    stats = stats_with({"fast": 0.03, "slow": 0.5})
    decision = Planner(devices, stats, now=NOW).place(job(100))  # 10 s of audio
    assert decision.device_id == "fast"
    assert decision.reason == "earliest expected completion"
    by_device = {c["device"]: c for c in decision.candidates}
    assert by_device["fast"]["service_s"] == pytest.approx(0.31, abs=0.01)
    assert by_device["slow"]["service_s"] == pytest.approx(5.01, abs=0.01)
    assert decision.expected_s == pytest.approx(0.32, abs=0.01)


def test_a_job_waits_for_a_busy_fast_device_rather_than_take_a_slow_free_one() -> None:
    running = {"r": Running("r", NOW - 0.1, audio_s=10.0)}  # expected to end at NOW + 0.21
    devices = [device("fast", role="cloud", inflight=1, running=running), device("slow")]
    stats = stats_with({"fast": 0.03, "slow": 0.5})
    decision = Planner(devices, stats, now=NOW).place(job(100))
    assert decision.device_id is None
    assert decision.reason.startswith("waiting for fast")
    # ... but a job the slow device finishes sooner than the fast one frees up goes there now
    planner = Planner(devices, stats, now=NOW)
    assert planner.place(job(2)).device_id == "slow"


def test_later_jobs_in_a_pass_see_the_work_given_to_earlier_ones() -> None:
    devices = [device("fast", role="cloud"), device("medium")]
    planner = Planner(devices, stats_with({"fast": 0.03, "medium": 0.05}), now=NOW)
    first, second = planner.place(job(100)), planner.place(job(100))
    assert (first.device_id, second.device_id) == ("fast", "medium")


def test_an_overrunning_job_raises_the_device_rtf_before_it_finishes() -> None:
    stats = stats_with({"d": 0.03})
    d = device("d", role="cloud", inflight=1, running={"r": Running("r", NOW - 3.0, audio_s=10.0)})
    assert stats.device_rtf(d, NOW) == pytest.approx(0.299, abs=0.01)  # ran 3 s for 10 s of audio


def test_deadline_and_prefer_edge() -> None:
    devices = [device("gpu", role="cloud"), device("hub", role="edge")]
    stats = stats_with({"gpu": 0.03, "hub": 0.2})
    assert Planner(devices, stats, now=NOW).place(job(50, deadline_in=5)).device_id == "gpu"
    decision = Planner(devices, stats, now=NOW, prefer_edge=True).place(job(50, deadline_in=5))
    assert decision.device_id == "hub" and "prefer_edge" in decision.reason
    decision = Planner(devices, stats, now=NOW, prefer_edge=True).place(job(50, deadline_in=0.5))
    assert decision.device_id == "gpu"  # the hub would miss it
    decision = Planner(devices, stats, now=NOW).place(job(500, deadline_in=0.1))
    assert decision.device_id == "gpu" and decision.reason.startswith("no device meets the deadline")


def test_capabilities_and_gates_are_explained() -> None:
    devices = [device("mandarin"), device("cantonese-off", caps=CANTONESE, status="offline"),
               device("cantonese", caps=CANTONESE, cordoned=True), device("cloud", caps=CLOUD, role="cloud")]
    decision = Planner(devices, FleetStats(), now=NOW).place(job(10, dialect="yue"))
    assert decision.device_id == "cloud"
    assert verdicts(decision) == {"cantonese": "cordoned by an operator", "cantonese-off": "offline",
                                  "cloud": "candidate", "mandarin": "cannot serve dialect 'yue'"}
    explain = decision.explain()
    assert explain["policy"] == "latency" and explain["picked"] == "cloud" and explain["expected_s"] > 0


# ----------------------------------------------------------------------------- comparison policies


def test_least_conn_takes_the_fewest_in_flight_whatever_the_speed() -> None:
    devices = [device("fast", slots=2, inflight=1, role="cloud"), device("slow", slots=1)]
    decision = Planner(devices, stats_with({"fast": 0.03, "slow": 0.5}), policy="least_conn", now=NOW).place(job())
    assert decision.device_id == "slow" and decision.reason == "fewest jobs in flight"


def test_round_robin_takes_turns_over_free_capable_devices() -> None:
    devices = [device("a", slots=5), device("b", slots=5), device("c", slots=5, caps=CANTONESE)]
    planner = Planner(devices, FleetStats(), policy="round_robin", now=NOW)
    picks = [planner.place(job(dialect="yue" if i == 2 else None)).device_id for i in range(4)]
    assert picks == ["a", "b", "c", "a"]


def test_unknown_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="least_conn"):
        Planner([], FleetStats(), policy="fastest")


# ----------------------------------------------------------------------------- submit check


def test_unservable_says_what_is_missing_or_who_is_down() -> None:
    assert unservable_reason(JobNeeds(lang="zh"), []) == "no device has registered yet"
    fleet = [device("m"), device("c", caps=CANTONESE, status="offline")]
    assert unservable_reason(JobNeeds(lang="zh", instruction="sadly"), fleet) == \
        "no device in the fleet offers style instructions"
    assert unservable_reason(JobNeeds(lang="zh", dialect="yue"), fleet) == \
        "language 'zh', dialect 'yue' is served only by devices that cannot take jobs now: c (offline)"
    busy = [device("m", inflight=1)]
    assert unservable_reason(JobNeeds(lang="zh"), busy) is None  # busy is fine: it queues


def test_a_device_away_for_less_than_the_grace_still_counts() -> None:
    """A broker restart makes every device look away for seconds: submit keeps accepting."""
    yue = JobNeeds(lang="zh", dialect="yue")
    away = [device("c", caps=CANTONESE, status="offline", last_seen_at=100.0)]
    assert unservable_reason(yue, away, grace_s=60, at=130) is None
    assert "c (offline)" in unservable_reason(yue, away, grace_s=60, at=161)
    assert "c (offline)" in unservable_reason(yue, away, grace_s=0, at=100.5)
    unconfirmed = [device("c", caps=CANTONESE, confirmed=False, last_seen_at=100.0)]
    assert unservable_reason(yue, unconfirmed, grace_s=60, at=101) is None
    cordoned = [device("c", caps=CANTONESE, status="offline", cordoned=True, last_seen_at=100.0)]
    assert unservable_reason(yue, cordoned, grace_s=60, at=101) is not None


# ----------------------------------------------------------------------------- learning


def test_stats_learn_rtf_round_trip_and_audio_per_character() -> None:
    stats = FleetStats()
    assert stats.audio_s("zh", 10) == pytest.approx(2.5)  # the prior
    stats.observe_done("d", lang="zh", chars=10, audio_s=1.0, synth_s=0.2, rtt_s=0.004)
    assert stats.rtf["d"] == pytest.approx(0.2)
    assert stats.audio_s("zh", 10) == pytest.approx(1.0)
    assert stats.rtt_of("d") == pytest.approx(0.004)
    stats.observe_done("d", lang="zh", chars=10, audio_s=1.0, synth_s=1.2, rtt_s=None)
    assert 0.2 < stats.rtf["d"] < 1.2
