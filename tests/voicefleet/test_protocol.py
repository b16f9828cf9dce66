"""voicefleet.protocol: message round trips, refusals with their codes, topic helpers, capabilities."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from voicefleet import protocol as p

# ----------------------------------------------------------------------------- factories

ENGINE = p.EngineDescriptor(name="espeak-ng", version="1.52", model="espeak-ng-yue", sample_rate=22050)
CAPS = p.Capabilities(languages=["zh", "en"], dialects=["yue"], voices=["default", "alto"],
                      streaming=True, cloning=False, instructions=True)
PCM = struct.pack("<6h", 0, 1000, -1000, 32767, -32768, 7)


def job_assign(**kw) -> p.JobAssign:
    fields = dict(job_id="job-1", attempt=2, text="今天下午三点提醒我开会", lang="zh", dialect="yue",
                  voice="alto", instruction="用开心的语气说", lease_s=30.0, sent_at=1_700_000_000.25)
    fields.update(kw)
    return p.JobAssign(**fields)


def _ids(**kw) -> dict:
    fields = dict(job_id="job-1", attempt=1, event_id="ev-1", ts=1_700_000_001.5)
    fields.update(kw)
    return fields


MESSAGES: dict[str, tuple[str, p.Message]] = {
    "job": ("job", job_assign()),
    "job_minimal": ("job", p.JobAssign(job_id="j", attempt=1, text="hi")),
    "cancel": ("cancel", p.JobCancel(job_id="job-1", attempt=3, reason="cancelled by client")),
    "cancel_all_attempts": ("cancel", p.JobCancel(job_id="job-1")),
    "state": ("state", p.DeviceState(device_id="hub-7", status="online", role="edge", engine=ENGINE,
                                     capabilities=CAPS, max_concurrency=2, agent_version="0.1.0",
                                     boot_id="b1", ts=1_700_000_000.0)),
    "state_offline": ("state", p.DeviceState(device_id="hub-7", status="offline")),
    "telemetry": ("telemetry", p.Telemetry(device_id="hub-7", ts=1_700_000_002.0, source="jetson-stats",
                                           cpu_percent=41.5, mem_percent=63.0, mem_available_mb=812.0,
                                           load1=1.25, temperature_c=55.5, throttled=True, gpu_percent=90.0,
                                           inflight=2, queued=5, rtf=0.31)),
    "started": ("event", p.JobStarted(**_ids())),
    "done": ("event", p.JobDone(chunks=3, samples=24000, sample_rate=22050, sha256="ab" * 32, engine=ENGINE,
                                synth_s=0.75, **_ids())),
    "failed": ("event", p.JobFailed(error=p.ErrorInfo(code="unsupported_text", text="no voice for ja"),
                                    retryable=True, **_ids())),
    "returned": ("event", p.JobReturned(reason="agent is shutting down", **_ids())),
}


def _chunk(**kw) -> p.AudioChunk:
    fields = dict(seq=4, sample_rate=22050, **_ids())
    fields.update(kw)
    return p.AudioChunk(**fields)


def _payload(**fields) -> bytes:
    return json.dumps(fields).encode()


def _assign_fields(**kw) -> dict:
    fields = {"v": 1, "type": "job", "job_id": "j", "attempt": 1, "text": "hello"}
    fields.update(kw)
    return fields


# ---------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("name", list(MESSAGES))
def test_every_message_type_round_trips(name: str) -> None:
    kind, message = MESSAGES[name]
    decoded, data = p.decode(kind, p.encode(message))
    assert type(decoded) is type(message)
    assert decoded == message
    assert data is None
    assert decoded.v == p.SCHEMA_VERSION


def test_audio_chunk_round_trips_with_its_pcm_bytes() -> None:
    chunk = _chunk()
    payload = p.encode(chunk, PCM)
    head, _, tail = payload.partition(b"\0")
    assert json.loads(head)["kind"] == "chunk"
    assert tail == PCM
    decoded, data = p.decode("event", payload)
    assert decoded == chunk
    assert data == PCM


def test_audio_chunk_pcm_may_contain_nul_bytes() -> None:
    pcm = b"\0\0\0\x01\0\0"  # silence is mostly NUL bytes; only the first NUL separates
    decoded, data = p.decode("event", p.encode(_chunk(seq=0), pcm))
    assert decoded.seq == 0
    assert data == pcm


def test_encode_leaves_out_unset_optional_fields() -> None:
    head = json.loads(p.encode(p.JobCancel(job_id="j")))
    assert head == {"v": 1, "type": "cancel", "job_id": "j", "reason": ""}


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    decoded, _ = p.decode("job", _payload(**_assign_fields(priority="high")))
    assert isinstance(decoded, p.JobAssign)
    assert decoded.text == "hello"
    assert not hasattr(decoded, "priority")


_TEXT = st.text(alphabet=st.characters(exclude_categories=("Cs",)), min_size=1, max_size=300)
_ID = st.from_regex(p.ID_PATTERN, fullmatch=True)


@pytest.mark.parametrize("job_id", ["../x", "a/b", "", "x" * 65, ".", "id with space"])
def test_ids_that_are_not_file_safe_are_refused_on_the_wire(job_id: str) -> None:
    raw = p.JobCancel(job_id="ok").model_dump() | {"job_id": job_id}
    with pytest.raises(p.ProtocolError, match="job_id"):
        p.decode("cancel", json.dumps(raw).encode())


@settings(max_examples=150, deadline=None)
@given(job_id=_ID, attempt=st.integers(min_value=1, max_value=2**31), text=_TEXT,
       voice=st.none() | _ID, instruction=st.none() | _TEXT,
       sent_at=st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_job_assign_round_trips_any_text_and_ids(job_id: str, attempt: int, text: str, voice: str | None,
                                                 instruction: str | None, sent_at: float) -> None:
    message = p.JobAssign(job_id=job_id, attempt=attempt, text=text, voice=voice, instruction=instruction,
                          sent_at=sent_at)
    payload = p.encode(message)
    assert b"\0" not in payload  # a NUL in the text is escaped, so it cannot split the payload
    decoded, data = p.decode("job", payload)
    assert decoded == message
    assert data is None


@settings(max_examples=100, deadline=None)
@given(job_id=_ID, seq=st.integers(min_value=0, max_value=10**6),
       pcm=st.binary(max_size=512).map(lambda b: b[: len(b) - len(b) % 2]))
def test_audio_chunk_round_trips_any_ids_and_pcm(job_id: str, seq: int, pcm: bytes) -> None:
    chunk = p.AudioChunk(job_id=job_id, attempt=1, seq=seq, sample_rate=16000)
    decoded, data = p.decode("event", p.encode(chunk, pcm))
    assert decoded == chunk
    assert data == pcm


def test_longest_allowed_text_round_trips_and_one_more_is_refused() -> None:
    text = "语" * (p.MAX_TEXT_CHARS - 1)
    decoded, _ = p.decode("job", p.encode(p.JobAssign(job_id="j", attempt=1, text=text)))
    assert decoded.text == text
    with pytest.raises(p.ProtocolError) as err:
        p.decode("job", _payload(**_assign_fields(text="a" * p.MAX_TEXT_CHARS)))
    assert err.value.code == "bad_message"
    assert "text" in err.value.text


# ------------------------------------------------------------------------------- refusals


def _refusal(kind: str, payload: bytes) -> p.ProtocolError:
    with pytest.raises(p.ProtocolError) as err:
        p.decode(kind, payload)
    exc = err.value
    assert isinstance(exc, ValueError)
    assert str(exc) == f"{exc.code}: {exc.text}"
    return exc


@pytest.mark.parametrize("pcm, sep", [(b"\x01\x02\x03", b"\0"), (b"\x01", b"\0"), (b"", b"")],
                         ids=["odd-3", "odd-1", "no-nul"])
def test_audio_chunk_with_odd_bytes_or_no_separator_is_bad_audio(pcm: bytes, sep: bytes) -> None:
    payload = p.encode(_chunk()) + sep + pcm
    exc = _refusal("event", payload)
    assert exc.code == "bad_audio"
    assert "even number of PCM bytes" in exc.text


@pytest.mark.parametrize("payload", [b"", b"not json", b"{\"v\": 1,", b"\xff\xfe{}", b"{'v': 1}"],
                         ids=["empty", "text", "truncated", "not-utf8", "single-quotes"])
def test_non_json_is_bad_json(payload: bytes) -> None:
    exc = _refusal("job", payload)
    assert exc.code == "bad_json"
    assert exc.text.startswith("payload is not JSON")


@pytest.mark.parametrize("payload", [b"[]", b"[{\"v\": 1}]", b"1", b"\"job\"", b"null"])
def test_json_that_is_not_an_object_is_bad_json(payload: bytes) -> None:
    exc = _refusal("job", payload)
    assert exc.code == "bad_json"
    assert exc.text == "payload must be a JSON object"


@pytest.mark.parametrize("payload", [b"[" * 100_000, b"{\"a\":" * 50_000], ids=["arrays", "objects"])
def test_deeply_nested_json_is_bad_json(payload: bytes) -> None:
    assert len(payload) < p.MAX_PAYLOAD_BYTES
    exc = _refusal("job", payload)
    assert exc.code == "bad_json"


@pytest.mark.parametrize("version", [2, 0, "1", None], ids=["2", "0", "string", "null"])
def test_wrong_schema_version_is_bad_version(version) -> None:
    exc = _refusal("job", _payload(**_assign_fields(v=version)))
    assert exc.code == "bad_version"
    assert exc.text == f"schema version {version!r}, expected 1"


def test_missing_schema_version_is_bad_version() -> None:
    fields = _assign_fields()
    del fields["v"]
    exc = _refusal("job", _payload(**fields))
    assert exc.code == "bad_version"
    assert exc.text == "schema version None, expected 1"


def test_boolean_schema_version_is_bad_version() -> None:
    exc = _refusal("job", _payload(**_assign_fields(v=True)))
    assert exc.code == "bad_version"


@pytest.mark.parametrize("missing", ["job_id", "attempt", "text"])
def test_missing_required_field_is_bad_message_naming_it(missing: str) -> None:
    fields = _assign_fields()
    del fields[missing]
    exc = _refusal("job", _payload(**fields))
    assert exc.code == "bad_message"
    assert exc.text == f"job: {missing}: Field required"


def test_missing_field_in_an_event_names_the_field() -> None:
    fields = json.loads(p.encode(MESSAGES["done"][1]))
    del fields["sha256"]
    exc = _refusal("event", _payload(**fields))
    assert exc.code == "bad_message"
    assert exc.text.startswith("event: done.sha256: ")
    assert "required" in exc.text


@pytest.mark.parametrize("field, value", [("attempt", 0), ("attempt", "two"), ("text", ""), ("job_id", None)])
def test_invalid_field_value_is_bad_message_naming_it(field: str, value) -> None:
    exc = _refusal("job", _payload(**_assign_fields(**{field: value})))
    assert exc.code == "bad_message"
    assert exc.text.startswith(f"job: {field}: ")


def test_message_on_the_wrong_topic_kind_is_bad_message() -> None:
    exc = _refusal("job", p.encode(MESSAGES["state"][1]))
    assert exc.code == "bad_message"
    assert exc.text.startswith("job: ")


def test_unknown_event_kind_is_bad_message() -> None:
    exc = _refusal("event", _payload(v=1, type="event", kind="exploded", job_id="j", attempt=1))
    assert exc.code == "bad_message"
    assert "exploded" in exc.text


def test_oversized_payload_is_too_large_before_it_is_parsed() -> None:
    payload = b"x" * (p.MAX_PAYLOAD_BYTES + 1)  # not JSON either: size is checked first
    exc = _refusal("event", payload)
    assert exc.code == "too_large"
    assert exc.text == f"{p.MAX_PAYLOAD_BYTES + 1} bytes exceeds {p.MAX_PAYLOAD_BYTES}"


def test_payload_of_exactly_the_limit_is_accepted() -> None:
    head = p.encode(_chunk()) + b"\0"
    pad = p.MAX_PAYLOAD_BYTES - len(head)
    pcm = b"\0" * (pad - pad % 2)
    payload = head + pcm
    if len(payload) < p.MAX_PAYLOAD_BYTES:  # keep the byte count even by growing the head instead
        payload = p.encode(_chunk(job_id="job-1x")) + b"\0" + pcm
    assert len(payload) == p.MAX_PAYLOAD_BYTES
    _, data = p.decode("event", payload)
    assert data == pcm
    assert _refusal("event", payload + b"\0\0").code == "too_large"


def test_unknown_topic_kind_is_bad_topic() -> None:
    exc = _refusal("ota-status", p.encode(MESSAGES["job"][1]))
    assert exc.code == "bad_topic"
    assert exc.text == "unknown topic kind 'ota-status'"


# --------------------------------------------------------------------------------- topics


@pytest.mark.parametrize("kind", p.TO_DEVICE + p.FROM_DEVICE)
def test_device_topic_and_parse_are_inverse(kind: str) -> None:
    topic = p.device_topic("hub-7.kitchen_A", kind)
    assert topic == f"vf/v1/dev/hub-7.kitchen_A/{kind}"
    assert p.parse_device_topic(topic) == ("hub-7.kitchen_A", kind)


@settings(max_examples=150, deadline=None)
@given(device_id=st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z"),
       kind=st.sampled_from(p.TO_DEVICE + p.FROM_DEVICE))
def test_any_valid_device_id_round_trips_through_topics(device_id: str, kind: str) -> None:
    assert p.parse_device_topic(p.device_topic(device_id, kind)) == (device_id, kind)


@pytest.mark.parametrize("device_id", ["a/b", "+", "#", "", "dev+1", "dev#", "-lead", ".hidden", "_x", "a b",
                                       "a" * 65, "dév", "hub/+/x"])
def test_device_topic_rejects_bad_ids(device_id: str) -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.device_topic(device_id, "job")
    assert err.value.code == "bad_device_id"
    assert repr(device_id) in err.value.text
    assert p.DEVICE_ID_PATTERN in err.value.text


def test_device_topic_accepts_the_longest_id() -> None:
    device_id = "a" * 64
    assert p.device_topic(device_id, "state") == f"vf/v1/dev/{device_id}/state"


def test_device_topic_rejects_trailing_newline() -> None:
    with pytest.raises(p.ProtocolError):
        p.device_topic("hub-1\n", "job")


def test_parse_device_topic_rejects_trailing_newline_in_id() -> None:
    with pytest.raises(p.ProtocolError):
        p.parse_device_topic("vf/v1/dev/hub-1\n/state")


@pytest.mark.parametrize("topic", [
    "vf/v2/dev/hub-1/state",  # other protocol version
    "xx/v1/dev/hub-1/state",
    "vf/v1/device/hub-1/state",
    "/vf/v1/dev/hub-1/state",  # leading slash adds a level
    "vf/v1/dev/hub-1",  # too shallow
    "vf/v1/dev/hub-1/state/extra",  # too deep
    "vf/v1/dev//state",  # empty id
    "vf/v1/dev/+/state",  # a wildcard is not an id
    "vf/v1/dev/#",
    "",
])
def test_parse_device_topic_rejects_wrong_prefix_or_depth(topic: str) -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.parse_device_topic(topic)
    assert err.value.code == "bad_topic"
    assert err.value.text == f"topic {topic!r} is not vf/v1/dev/<device>/<kind>"


@pytest.mark.parametrize("kind", ["status", "events", "", "STATE"])
def test_parse_device_topic_rejects_unknown_kind(kind: str) -> None:
    with pytest.raises(p.ProtocolError) as err:
        p.parse_device_topic(f"vf/v1/dev/hub-1/{kind}")
    assert err.value.code == "bad_topic"
    assert err.value.text == f"unknown topic kind {kind!r}"


def test_control_subscribes_to_every_device_to_control_kind() -> None:
    subs = p.control_subscriptions()
    assert subs == ["vf/v1/dev/+/state", "vf/v1/dev/+/telemetry", "vf/v1/dev/+/event"]


# --------------------------------------------------------------------------- capabilities


def _missing(caps: p.Capabilities, lang: str = "zh", dialect: str | None = None, voice: str | None = None,
             instruction: str | None = None) -> str | None:
    return caps.missing_for(p.SpeechSpec(text="你好", lang=lang, dialect=dialect, voice=voice, instruction=instruction))


@pytest.mark.parametrize("caps, job, expected", [
    (CAPS, dict(), None),
    (CAPS, dict(lang="en", voice="alto", instruction="whisper"), None),
    (CAPS, dict(dialect="yue"), None),
    (CAPS, dict(lang="ja"), "language 'ja'"),
    (CAPS, dict(dialect="sichuan"), "dialect 'sichuan'"),
    (CAPS, dict(voice="clone-42"), "voice 'clone-42' (not a preset here; a cloned voice needs an engine that clones)"),
    (p.Capabilities(languages=["zh"], cloning=True), dict(voice="clone-42"), None),
    (p.Capabilities(languages=["zh"]), dict(instruction="slowly"), "style instructions"),
    (p.Capabilities(), dict(lang="zh"), "language 'zh'"),
    # the first missing capability is named: language before dialect before voice before instructions
    (p.Capabilities(languages=["zh"]), dict(lang="en", dialect="yue", voice="v", instruction="i"), "language 'en'"),
    (p.Capabilities(languages=["zh"]), dict(dialect="yue", voice="v", instruction="i"), "dialect 'yue'"),
    (p.Capabilities(languages=["zh"], dialects=["yue"]), dict(dialect="yue", voice="v", instruction="i"),
     "voice 'v' (not a preset here; a cloned voice needs an engine that clones)"),
    # empty strings ask for nothing
    (p.Capabilities(languages=["zh"]), dict(dialect="", voice="", instruction=""), None),
], ids=lambda x: None if isinstance(x, p.Capabilities) else str(x))
def test_capabilities_missing_for(caps: p.Capabilities, job: dict, expected: str | None) -> None:
    assert _missing(caps, **job) == expected


# ------------------------------------------------------------------------- speech spec


def test_job_assign_carries_the_speech_spec_flat_in_its_wire_order() -> None:
    message = job_assign()
    assert list(json.loads(p.encode(message))) == ["v", "type", "job_id", "attempt", "text", "lang", "dialect",
                                                   "voice", "instruction", "lease_s", "sent_at"]
    spec = message.spec()
    assert type(spec) is p.SpeechSpec
    assert spec == p.SpeechSpec(text="今天下午三点提醒我开会", lang="zh", dialect="yue", voice="alto",
                                instruction="用开心的语气说")
    assert p.JobAssign(job_id="job-1", attempt=2, **spec.model_dump(), lease_s=30.0,
                       sent_at=1_700_000_000.25) == message


def test_the_dialect_catalog_is_the_one_source_of_dialect_codes() -> None:
    assert list(p.DIALECTS) == [d.code for d in p.DIALECT_CATALOG]
    assert p.DIALECTS["yue"] == "Cantonese"


def test_importing_the_protocol_pulls_in_no_io_or_heavy_library() -> None:
    code = ("import sys, voicefleet.protocol; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'paho', 'fastapi', 'starlette', 'sqlalchemy', "
            "'sqlmodel', 'numpy', 'onnxruntime', 'torch', 'httpx', 'requests'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_done_sha256_is_carried_verbatim() -> None:
    digest = hashlib.sha256(PCM).hexdigest()
    done = p.JobDone(chunks=1, samples=len(PCM) // 2, sample_rate=22050, sha256=digest, engine=ENGINE, **_ids())
    decoded, _ = p.decode("event", p.encode(done))
    assert decoded.sha256 == digest
    assert decoded.engine == ENGINE
