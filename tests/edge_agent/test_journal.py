"""The offline journal: order, persistence, replay that survives a broken link, and its bound."""

from __future__ import annotations

from pathlib import Path

from edge_agent.journal import Journal


def test_replay_is_in_order_and_resumes_where_a_broken_link_stopped(tmp_path: Path):
    journal = Journal(tmp_path / "j.db")
    ids = [journal.append("local_job", 1000.0 + i, {"text": f"第{i}句"}) for i in range(5)]
    sent: list = []
    link_up = iter([True, True, False])
    assert journal.replay("hub", lambda msg: next(link_up, True) and (sent.append(msg) or True)) == 2
    reopened = Journal(tmp_path / "j.db")  # a reboot in between
    assert len(reopened) == 3
    assert reopened.replay("hub", lambda msg: sent.append(msg) or True) == 3
    assert [m.record_id for m in sent] == ids and [m.body["text"] for m in sent][-1] == "第4句"
    assert all(a.seq < b.seq for a, b in zip(sent, sent[1:], strict=False)) and len(reopened) == 0


def test_when_full_telemetry_goes_first_and_drops_are_reported(tmp_path: Path):
    journal = Journal(tmp_path / "j.db", max_entries=3)
    journal.append("telemetry", 1.0, {"cpu_percent": 10})
    journal.append("local_job", 2.0, {"text": "一"})
    journal.append("telemetry", 3.0, {"cpu_percent": 20})
    journal.append("local_job", 4.0, {"text": "二"})  # drops the oldest telemetry
    journal.append("local_job", 5.0, {"text": "三"})  # drops the other telemetry
    journal.append("local_job", 6.0, {"text": "四"})  # only phrases left: the oldest phrase goes
    assert journal.dropped() == {"telemetry": 2, "local_job": 1}
    sent: list = []
    journal.replay("hub", lambda msg: sent.append(msg) or True)
    assert [m.body.get("text") for m in sent if m.record == "local_job"] == ["二", "三", "四"]
    assert sent[-1].record == "telemetry" and sent[-1].body["journal_dropped"] == {"telemetry": 2, "local_job": 1}
    assert journal.dropped() == {}
