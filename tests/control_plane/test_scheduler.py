"""control_plane.scheduler: capability filter, health gate, quality tiers, expected completion, the
comparison policies, explanations, and what the fleet learns online."""

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
from voicefleet.protocol import Capabilities, EngineDescriptor, EngineOffer, SpeechSpec, VoiceFigures

MANDARIN = Capabilities(languages=["zh", "en"], voices=["default"])
CANTONESE = Capabilities(languages=["zh", "en"], dialects=["yue"], voices=["default"])
CLOUD = Capabilities(languages=["zh", "en"], dialects=["yue", "sichuan"], voices=["default"], cloning=True,
                     instructions=True)
NOW = 1_000_000.0


def JobNeeds(**needs) -> SpeechSpec:  # named for what it stands for
    """What a job needs of an engine is its speech spec; the words do not matter here."""
    return SpeechSpec(text="今天下午三点提醒我开会", **needs)


ENGINE = "e"  # the one engine of a device made by ``device`` unless it is given offers


def offer(name: str = ENGINE, tier: str = "neural", caps: Capabilities = MANDARIN, rtf: float | None = None):
    return EngineOffer(engine=EngineDescriptor(name=name, version="1", model="m", sample_rate=16000),
                       capabilities=caps, tier=tier, figures=VoiceFigures(rtf=rtf))


def device(id: str, *, status: str = "online", caps: Capabilities = MANDARIN, slots: int = 1, inflight: int = 0,
           role: str = "edge", offers: list[EngineOffer] | None = None, **kw) -> DeviceView:
    return DeviceView(id=id, status=status, capabilities=caps, max_concurrency=slots, inflight=inflight, role=role,
                      offers=offers or [offer(caps=caps)], **kw)


def stats_with(rtf: dict[str, float], s_per_char: float = 0.1) -> FleetStats:
    """RTFs by device (its engine ``e``) or by (device, engine)."""
    stats = FleetStats()
    stats.rtf.update({key if isinstance(key, tuple) else (key, ENGINE): v for key, v in rtf.items()})
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
    assert stats.engine_rtf(d, ENGINE, NOW) == pytest.approx(0.299, abs=0.01)  # ran 3 s for 10 s of audio


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
    stats.observe_done("d", ENGINE, lang="zh", chars=10, audio_s=1.0, synth_s=0.2, rtt_s=0.004)
    assert stats.rtf["d", ENGINE] == pytest.approx(0.2)
    assert stats.audio_s("zh", 10) == pytest.approx(1.0)
    assert stats.rtt_of("d") == pytest.approx(0.004)
    stats.observe_done("d", ENGINE, lang="zh", chars=10, audio_s=1.0, synth_s=1.2, rtt_s=None)
    assert 0.2 < stats.rtf["d", ENGINE] < 1.2


# ----------------------------------------------------------------------------- quality tiers

STUDENT = offer("student", "neural")
ESPEAK = offer("espeak", "formant")


def tiered_fleet(*, student_inflight: int = 0, running: dict | None = None, status: str = "online"):
    """An edge box with a neural voice (slow) and a cloud box with a formant one (fast)."""
    return [device("edge", offers=[STUDENT], inflight=student_inflight, running=running or {}, status=status),
            device("cloud", role="cloud", offers=[ESPEAK])]


TIERED_RTF = {("edge", "student"): 0.3, ("cloud", "espeak"): 0.01}


def test_the_best_tier_wins_over_a_faster_worse_voice() -> None:
    decision = Planner(tiered_fleet(), stats_with(TIERED_RTF), now=NOW).place(job(50))
    assert (decision.device_id, decision.engine, decision.tier, decision.fallback) == \
        ("edge", "student", "neural", None)
    tiers = {c["engine"]: c["tier"] for c in decision.candidates}
    assert tiers == {"student": "neural", "espeak": "formant"}


def test_without_a_deadline_a_job_waits_for_the_busy_better_voice() -> None:
    running = {"r": Running("r", NOW, audio_s=10.0, engine="student")}
    decision = Planner(tiered_fleet(student_inflight=1, running=running), stats_with(TIERED_RTF),
                       now=NOW).place(job(50))
    assert decision.device_id is None and decision.reason.startswith("waiting for edge")
    assert decision.engine == "student"


def test_a_deadline_only_the_worse_voice_meets_falls_back_and_says_why() -> None:
    # 50 chars x 0.1 s = 5 s of audio: the student needs 1.5 s, eSpeak 0.05 s
    decision = Planner(tiered_fleet(), stats_with(TIERED_RTF), now=NOW).place(job(50, deadline_in=0.5))
    assert (decision.device_id, decision.engine, decision.tier) == ("cloud", "espeak", "formant")
    assert decision.fallback["from_tier"] == "neural" and decision.fallback["to_tier"] == "formant"
    assert decision.fallback["reason"].startswith("no neural voice can meet the deadline: the soonest, student on edge")
    explain = decision.explain()
    assert explain["fallback"] == decision.fallback and explain["engine"] == "espeak"
    # a deadline the better voice meets keeps it
    assert Planner(tiered_fleet(), stats_with(TIERED_RTF), now=NOW).place(job(50, deadline_in=3)).engine == "student"


def test_a_deadline_nobody_meets_keeps_the_best_voice() -> None:
    decision = Planner(tiered_fleet(), stats_with(TIERED_RTF), now=NOW).place(job(50, deadline_in=0.01))
    assert decision.engine == "student" and decision.fallback is None
    assert decision.reason.startswith("no device meets the deadline")


def test_the_caller_may_ask_for_the_fastest_voice_or_name_one() -> None:
    fastest = JobInfo(id="f", needs=JobNeeds(lang="zh"), chars=50, quality="fastest")
    decision = Planner(tiered_fleet(), stats_with(TIERED_RTF), now=NOW).place(fastest)
    assert decision.engine == "espeak"
    assert decision.fallback == {"from_tier": "neural", "to_tier": "formant",
                                 "reason": "the caller asked for the fastest voice"}
    named = job(50, voice="espeak:default")  # one engine's voice: nothing else could serve it
    decision = Planner(tiered_fleet(), stats_with(TIERED_RTF), now=NOW).place(named)
    assert (decision.engine, decision.fallback) == ("espeak", None)
    both = Capabilities(languages=["zh"], voices=["default", "female"])
    fleet = [device("edge", offers=[offer("student", "neural", both)]),
             device("cloud", role="cloud", offers=[offer("espeak", "formant", both)])]
    decision = Planner(fleet, stats_with(TIERED_RTF), now=NOW).place(job(50, voice="female"))
    assert decision.engine == "espeak" and decision.fallback["reason"] == "the caller named voice 'female'"
    # "default" names no voice: the best tier still wins
    assert Planner(tiered_fleet(), stats_with(TIERED_RTF), now=NOW).place(job(50, voice="default")).engine == "student"


def test_a_better_voice_that_cannot_take_jobs_is_named_in_the_fallback() -> None:
    decision = Planner(tiered_fleet(status="offline"), stats_with(TIERED_RTF), now=NOW).place(job(50))
    assert decision.engine == "espeak"
    assert decision.fallback == {"from_tier": "neural", "to_tier": "formant",
                                 "reason": "no neural voice can take jobs now: student on edge (offline)"}


def test_rtf_is_learned_per_engine_and_the_prior_comes_from_the_bundle() -> None:
    box = device("box", offers=[offer("student", "neural", rtf=0.02), offer("espeak", "formant")])
    stats = FleetStats()
    assert stats.engine_rtf(box, "student", NOW) == pytest.approx(0.02)  # the bundle's measured figure
    assert stats.engine_rtf(box, "espeak", NOW) == pytest.approx(0.3)  # no figure: the edge role's prior
    stats.observe_done("box", "espeak", lang="zh", chars=10, audio_s=2.0, synth_s=0.02, rtt_s=None)
    assert stats.engine_rtf(box, "espeak", NOW) == pytest.approx(0.01)
    assert stats.engine_rtf(box, "student", NOW) == pytest.approx(0.02)  # eSpeak's speed is not the student's
    decision = Planner([box], stats, now=NOW).place(job(50))
    assert (decision.device_id, decision.engine) == ("box", "student")


def test_least_conn_takes_the_device_by_connections_and_its_best_engine() -> None:
    box = device("box", offers=[offer("espeak", "formant"), offer("student", "neural")])
    decision = Planner([box], FleetStats(), policy="least_conn", now=NOW).place(job())
    assert (decision.device_id, decision.engine, decision.tier) == ("box", "student", "neural")
