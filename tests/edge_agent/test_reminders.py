"""Reminders: due times, at-most-once firing across restarts, the catch-up window, the thread."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from edge_agent.reminders import ReminderScheduler, ReminderStore, next_daily


class FakeClock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def setup(path: Path, clock: FakeClock, **kw) -> tuple[ReminderStore, ReminderScheduler, list[str]]:
    spoken: list[str] = []
    store = ReminderStore(path, clock=clock)
    return store, ReminderScheduler(store, spoken.append, clock=clock, **kw), spoken


def test_one_off_fires_once_at_its_time(tmp_path: Path) -> None:
    clock = FakeClock()
    store, sched, spoken = setup(tmp_path / "r.json", clock)
    rem = store.add("开会", at=clock.now + 60)
    clock.now += 59
    assert sched.run_due() == [] and spoken == []
    clock.now += 1
    sched.run_due()
    clock.now += 1
    sched.run_due()
    assert spoken == ["开会"]
    done = store.get(rem.id)
    assert done.next_due is None and done.last_fired_at == clock.now - 1 and done.fired == 1


def test_interval_fires_repeatedly_without_bursts(tmp_path: Path) -> None:
    clock = FakeClock()
    store, sched, spoken = setup(tmp_path / "r.json", clock)
    store.add("喝水", every_s=30)
    for _ in range(4):
        clock.now += 30
        sched.run_due()
    assert spoken == ["喝水"] * 4
    clock.now += 95  # three due times passed while busy: one catch-up, then back on the grid
    sched.run_due()
    assert len(spoken) == 5
    assert store.list()[0].next_due == 1_800_000_000.0 + 30 * 8


def test_daily_time_is_the_next_local_occurrence() -> None:
    noon = time.mktime((2026, 3, 10, 12, 0, 0, 0, 0, -1))
    assert time.localtime(next_daily("07:30", noon))[:5] == (2026, 3, 11, 7, 30)
    assert time.localtime(next_daily("18:05", noon))[:5] == (2026, 3, 10, 18, 5)


def test_daily_reminder_fires_each_day(tmp_path: Path) -> None:
    clock = FakeClock(time.mktime((2026, 3, 10, 12, 0, 0, 0, 0, -1)))
    store, sched, spoken = setup(tmp_path / "r.json", clock)
    store.add("吃药", time="13:00")
    for _ in range(3):
        clock.now = store.next_due()
        sched.run_due()
    assert spoken == ["吃药"] * 3 and time.localtime(store.next_due())[:5] == (2026, 3, 13, 13, 0)


def test_restart_never_fires_the_same_due_time_twice(tmp_path: Path) -> None:
    clock = FakeClock()
    store, sched, spoken = setup(tmp_path / "r.json", clock)
    store.add("开会", at=clock.now + 10)
    store.add("喝水", every_s=10)
    clock.now += 10
    sched.run_due()
    assert sorted(spoken) == ["喝水", "开会"]
    _, sched2, spoken2 = setup(tmp_path / "r.json", clock)  # the hub restarts at the same instant
    assert sched2.run_due() == [] and spoken2 == []
    clock.now += 10
    sched2.run_due()
    assert spoken2 == ["喝水"]


def test_missed_while_down_catch_up_policy(tmp_path: Path) -> None:
    clock = FakeClock()
    store, _, _ = setup(tmp_path / "r.json", clock)
    soon = store.add("稍晚也要说", at=clock.now + 60)
    stale = store.add("太晚就别说了", at=clock.now + 60 - 15 * 60)
    clock.now += 60 + 5 * 60  # the hub comes back 5 minutes after `soon` was due
    _, sched, spoken = setup(tmp_path / "r.json", clock)
    sched.run_due()
    assert spoken == ["稍晚也要说"]
    saved = {r["id"]: r for r in json.loads((tmp_path / "r.json").read_text())["reminders"]}
    assert saved[stale.id]["missed"] == 1 and saved[stale.id]["next_due"] is None
    assert saved[soon.id]["fired"] == 1

    _, strict, spoken = setup(tmp_path / "r2.json", clock, catch_up_s=60)
    strict.store.add("x", at=clock.now - 120)
    strict.run_due()
    assert spoken == []


def test_deleted_reminder_never_fires(tmp_path: Path) -> None:
    clock = FakeClock()
    store, sched, spoken = setup(tmp_path / "r.json", clock)
    rem = store.add("取消的", every_s=5)
    assert store.delete(rem.id) and not store.delete(rem.id)
    clock.now += 10
    sched.run_due()
    assert spoken == [] and ReminderStore(tmp_path / "r.json").list() == []


@pytest.mark.parametrize("kwargs, says", [
    ({}, "give at"), ({"every_s": 0}, "greater than 0"), ({"time": "7:30"}, "HH:MM"),
    ({"every_s": 5, "time": "07:30"}, "not both"), ({"at": "soon"}, "number"),
])
def test_invalid_reminders_say_what_to_fix(tmp_path: Path, kwargs: dict, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        ReminderStore(tmp_path / "r.json").add("text", **kwargs)


def test_scheduler_thread_with_real_time(tmp_path: Path) -> None:
    spoken: list[str] = []
    store = ReminderStore(tmp_path / "r.json")
    sched = ReminderScheduler(store, spoken.append, poll_s=0.05)
    sched.start()
    try:
        store.add("一次", at=time.time() + 0.2)
        store.add("重复", every_s=0.15)
        deadline = time.time() + 5
        while (spoken.count("重复") < 3 or "一次" not in spoken) and time.time() < deadline:
            time.sleep(0.02)
    finally:
        sched.stop()
    assert spoken.count("一次") == 1 and spoken.count("重复") >= 3
