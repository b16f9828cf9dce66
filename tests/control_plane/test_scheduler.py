"""control_plane.scheduler: capability filter, health gate, least-loaded pick, explanations."""

from __future__ import annotations

import pytest

from control_plane.scheduler import POLICY, Decision, DeviceView, JobNeeds, pick_device, unservable_reason
from voicefleet.protocol import Capabilities

# ----------------------------------------------------------------------------- factories

MANDARIN = Capabilities(languages=["zh", "en"], voices=["default"])
CANTONESE = Capabilities(languages=["zh", "en"], dialects=["yue"], voices=["default"])
CLOUD = Capabilities(languages=["zh", "en", "ja"], dialects=["yue", "sichuan"], voices=["default"],
                     cloning=True, instructions=True)


def device(id: str, *, status: str = "online", caps: Capabilities = MANDARIN, slots: int = 2,
           inflight: int = 0) -> DeviceView:
    return DeviceView(id=id, status=status, capabilities=caps, max_concurrency=slots, inflight=inflight)


def verdicts(decision: Decision) -> dict[str, str]:
    return {c["device"]: c["verdict"] for c in decision.candidates}


# ----------------------------------------------------------------------------- DeviceView


@pytest.mark.parametrize("status, slots, inflight, free, load", [
    ("online", 2, 0, 2, 0.0),
    ("online", 2, 1, 1, 0.5),
    ("online", 4, 3, 1, 0.75),
    ("online", 2, 3, -1, 1.5),  # over-committed: free is negative, never eligible
    ("draining", 2, 0, 0, 0.0),
    ("offline", 2, 1, 0, 0.5),
    ("online", 0, 0, 0, 0.0),  # a zero-slot device does not divide by zero
])
def test_device_view_free_and_load(status: str, slots: int, inflight: int, free: int, load: float) -> None:
    d = device("d", status=status, slots=slots, inflight=inflight)
    assert d.free == free
    assert d.load == pytest.approx(load)


# ----------------------------------------------------------------------------- pick_device


def test_picks_the_least_loaded_capable_online_device() -> None:
    devices = [device("a", slots=2, inflight=1), device("b", slots=4, inflight=1), device("c", slots=1, inflight=0)]
    decision = pick_device(JobNeeds(lang="zh"), devices)
    assert decision.device_id == "c"
    assert decision.reason == "least loaded capable device (load 0.00)"
    assert verdicts(decision) == {"a": "eligible", "b": "eligible", "c": "eligible"}
    assert [c["load"] for c in decision.candidates] == [0.5, 0.25, 0.0]


def test_load_is_relative_to_the_device_slots() -> None:
    # 'big' runs more jobs but has the lower load: 3/8 < 1/2
    devices = [device("small", slots=2, inflight=1), device("big", slots=8, inflight=3)]
    decision = pick_device(JobNeeds(lang="zh"), devices)
    assert decision.device_id == "big"
    assert decision.reason == "least loaded capable device (load 0.38)"


@pytest.mark.parametrize("order", [["m", "b", "z"], ["z", "m", "b"], ["b", "z", "m"]])
def test_equal_load_is_broken_by_device_id(order: list[str]) -> None:
    devices = [device(i, slots=2, inflight=1) for i in order]
    decision = pick_device(JobNeeds(lang="zh"), devices)
    assert decision.device_id == "b"
    assert [c["device"] for c in decision.candidates] == order  # candidates keep the input order


def test_lower_load_beats_lower_id() -> None:
    devices = [device("a", inflight=1), device("z", inflight=0)]
    assert pick_device(JobNeeds(lang="zh"), devices).device_id == "z"


def test_skips_offline_draining_full_and_incapable_devices_with_verdicts() -> None:
    devices = [
        device("a-offline", status="offline", caps=CANTONESE),
        device("b-draining", status="draining", caps=CANTONESE),
        device("c-full", caps=CANTONESE, slots=2, inflight=2),
        device("d-overfull", caps=CANTONESE, slots=1, inflight=3),
        device("e-mandarin", caps=MANDARIN),
        device("f-zero-slots", caps=CANTONESE, slots=0),
        device("g-busy", caps=CANTONESE, slots=4, inflight=3),
    ]
    decision = pick_device(JobNeeds(lang="zh", dialect="yue"), devices)
    assert decision.device_id == "g-busy"
    assert verdicts(decision) == {
        "a-offline": "offline",
        "b-draining": "draining",
        "c-full": "no free slot",
        "d-overfull": "no free slot",
        "e-mandarin": "cannot serve dialect 'yue'",
        "f-zero-slots": "no free slot",
        "g-busy": "eligible",
    }


def test_capability_is_judged_before_health() -> None:
    # An offline device that could not serve the job anyway says so: that is the reason that lasts.
    decision = pick_device(JobNeeds(lang="ja"), [device("old", status="offline")])
    assert verdicts(decision) == {"old": "cannot serve language 'ja'"}


@pytest.mark.parametrize("needs, verdict", [
    (JobNeeds(lang="ja"), "cannot serve language 'ja'"),
    (JobNeeds(lang="zh", dialect="sichuan"), "cannot serve dialect 'sichuan'"),
    (JobNeeds(lang="zh", voice="clone-7"), "cannot serve voice 'clone-7'"),
    (JobNeeds(lang="zh", instruction="sound happy"), "cannot serve style instructions"),
])
def test_cloud_only_needs_go_to_the_cloud_device(needs: JobNeeds, verdict: str) -> None:
    devices = [device("edge-1", caps=MANDARIN), device("gpu-1", caps=CLOUD, slots=2, inflight=1)]
    decision = pick_device(needs, devices)
    assert decision.device_id == "gpu-1"
    assert verdicts(decision) == {"edge-1": verdict, "gpu-1": "eligible"}


def test_no_eligible_device_gives_no_pick_and_every_verdict() -> None:
    devices = [device("x", status="offline"), device("y", inflight=2), device("z", caps=MANDARIN)]
    decision = pick_device(JobNeeds(lang="zh", dialect="yue"), devices)
    assert decision.device_id is None
    assert decision.reason == "no capable device has a free slot"
    assert verdicts(decision) == {"x": "cannot serve dialect 'yue'", "y": "cannot serve dialect 'yue'",
                                  "z": "cannot serve dialect 'yue'"}


def test_online_capable_devices_all_full_gives_no_pick() -> None:
    devices = [device("x", status="offline"), device("y", inflight=2), device("z", slots=1, inflight=1)]
    decision = pick_device(JobNeeds(lang="zh"), devices)
    assert decision.device_id is None
    assert verdicts(decision) == {"x": "offline", "y": "no free slot", "z": "no free slot"}


def test_empty_device_list_gives_no_pick() -> None:
    decision = pick_device(JobNeeds(lang="zh"), [])
    assert decision.device_id is None
    assert decision.candidates == []
    assert decision.reason == "no capable device has a free slot"


def test_pick_does_not_change_the_views() -> None:
    devices = [device("a", inflight=1), device("b")]
    pick_device(JobNeeds(lang="zh"), devices)
    assert [(d.id, d.inflight, d.status) for d in devices] == [("a", 1, "online"), ("b", 0, "online")]


def test_filling_slots_moves_the_pick() -> None:
    """The dispatcher bumps ``inflight`` after each pick; the next job then goes elsewhere."""
    devices = [device("a", slots=2), device("b", slots=1)]
    picks = []
    for _ in range(4):
        decision = pick_device(JobNeeds(lang="zh"), devices)
        picks.append(decision.device_id)
        if decision.device_id:
            next(d for d in devices if d.id == decision.device_id).inflight += 1
    assert picks == ["a", "b", "a", None]


# -------------------------------------------------------------------------------- explain


def test_explain_structure() -> None:
    devices = [device("a", slots=3, inflight=1), device("b", status="draining")]
    explained = pick_device(JobNeeds(lang="zh"), devices).explain()
    assert explained == {
        "policy": POLICY,
        "picked": "a",
        "reason": "least loaded capable device (load 0.33)",
        "candidates": [
            {"device": "a", "load": 0.333, "verdict": "eligible"},
            {"device": "b", "load": 0.0, "verdict": "draining"},
        ],
    }
    assert POLICY == "least_loaded/v1"


def test_explain_when_nothing_is_picked() -> None:
    explained = pick_device(JobNeeds(lang="zh"), [device("a", inflight=2)]).explain()
    assert explained["picked"] is None
    assert explained["reason"] == "no capable device has a free slot"
    assert explained["candidates"] == [{"device": "a", "load": 1.0, "verdict": "no free slot"}]


# ------------------------------------------------------------------------ unservable_reason


def test_unservable_when_no_device_ever_registered() -> None:
    assert unservable_reason(JobNeeds(lang="zh"), []) == "no device has registered yet"


def test_unservable_when_no_device_offers_the_dialect() -> None:
    reason = unservable_reason(JobNeeds(lang="zh", dialect="wuu"), [MANDARIN, CANTONESE])
    assert reason == "no device in the fleet offers dialect 'wuu'"


def test_unservable_when_no_device_offers_the_language() -> None:
    assert unservable_reason(JobNeeds(lang="ko"), [MANDARIN]) == "no device in the fleet offers language 'ko'"


@pytest.mark.parametrize("needs", [
    JobNeeds(lang="zh"),
    JobNeeds(lang="zh", dialect="yue"),
    JobNeeds(lang="ja", voice="clone-1", instruction="calm"),
])
def test_servable_when_one_device_could_serve(needs: JobNeeds) -> None:
    assert unservable_reason(needs, [MANDARIN, CANTONESE, CLOUD]) is None


def test_servable_needs_only_one_capable_device_in_any_position() -> None:
    needs = JobNeeds(lang="zh", dialect="yue")
    assert unservable_reason(needs, [MANDARIN, MANDARIN, CANTONESE]) is None
    assert unservable_reason(needs, [CANTONESE, MANDARIN]) is None
