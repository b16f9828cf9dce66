"""Every MQTT message kind, in both directions, is checked against its schema before anyone acts on
it: not JSON, a wrong version, a missing field or a field of the wrong JSON type is a ProtocolError
(the control plane and the agent both decode with ``protocol.decode``; see test_broker_input.py for
what each does with the error)."""

from __future__ import annotations

import json

import pytest

from voicefleet import protocol as p

ENGINE = p.EngineDescriptor(name="espeak", version="1", model="m", sample_rate=22050)
SAMPLES: dict[str, list[p.Message]] = {
    "job": [p.JobAssign(job_id="j1", attempt=1, text="你好")],
    "cancel": [p.JobCancel(job_id="j1", attempt=1)],
    "reminder": [p.ReminderCommand(op="add", reminder_id="r1", text="开会", every_s=60)],
    "ota": [p.OtaCommand(op="rollback", command_id="c" * 8, model_id="zh-student", version="1")],
    "state": [p.DeviceState(device_id="d1", status="online")],
    "telemetry": [p.Telemetry(device_id="d1")],
    "event": [p.JobStarted(job_id="j1", attempt=1), p.JobReturned(job_id="j1", attempt=1),
              p.JobDone(job_id="j1", attempt=1, chunks=1, samples=10, sample_rate=22050, sha256="0" * 64,
                        engine=ENGINE),
              p.DeviceRecord(device_id="d1", record_id="r" * 8, seq=0, record="local_job", ts=1.0),
              p.OtaReport(device_id="d1", command_id="c" * 8, model_id="zh-student", version="1", stage="verified")],
}


def test_every_topic_kind_has_samples():
    assert set(SAMPLES) == set(p.TO_DEVICE + p.FROM_DEVICE)


@pytest.mark.parametrize("kind", sorted(SAMPLES))
def test_valid_messages_decode_and_bad_ones_are_refused(kind: str):
    for message in SAMPLES[kind]:
        decoded, _ = p.decode(kind, p.encode(message))
        assert decoded == message
        for bad in _corruptions(message):
            with pytest.raises(p.ProtocolError):
                p.decode(kind, json.dumps(bad).encode())
    for garbage in (b"", b"\xff\xfe", b"[]", b"null", b'"text"', b"{}", b'{"v": 1}', b'{"v": "1"}'):
        with pytest.raises(p.ProtocolError):
            p.decode(kind, garbage)


def _corruptions(message: p.Message):
    """The message with a wrong version, each required field dropped, each field of a wrong JSON type."""
    fields = json.loads(p.encode(message))
    yield {**fields, "v": 2}
    yield {**fields, "v": True}
    for name, info in type(message).model_fields.items():
        if info.is_required():
            yield {k: v for k, v in fields.items() if k != name}
        if name in fields and name != "v":
            yield {**fields, name: _wrong_type(fields[name])}


def _wrong_type(value):
    if isinstance(value, str):
        return 12345
    if isinstance(value, bool | int | float):
        return str(value)  # "1" for 1: strict, no coercion
    return "neither an object nor a list"
