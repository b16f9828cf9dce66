"""edge_agent.engines.benchmark_only.BenchmarkTimedEngine (benchmark-only): pacing, audio length, cancel, slowdown."""

from __future__ import annotations

import time
import time as real_time
from types import SimpleNamespace

import pytest

from edge_agent.engines.base import EngineError, EngineUnavailable, SynthesisRequest
from edge_agent.engines.benchmark_only import CHUNK_SAMPLES, SAMPLE_RATE, BenchmarkTimedEngine, TimedConfig, timed_pcm
from edge_agent.runner import JobRunner
from voicefleet import protocol as p

TOLERANCE_S = 1e-6  # on the test's clock the pacing is exact (up to float rounding of unix times)


class Clock:
    """The engine's clock, driven by the test: ``sleep`` moves time on at once (plus ``overshoot``,
    as a late wake-up on a busy machine would), so pacing is checked without depending on how fast
    or how busy this machine is."""

    def __init__(self, overshoot_s: float = 0.0) -> None:
        self.now, self.overshoot_s, self.sleeps = 1_700_000_000.0, overshoot_s, 0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps += 1
        self.now += max(0.0, seconds) + self.overshoot_s


def _timed_run(engine: BenchmarkTimedEngine, text: str, cancelled=lambda: False) -> tuple[float, list[bytes]]:
    t0 = time.monotonic()
    chunks = list(engine.synthesize(SynthesisRequest(text=text), cancelled))
    return time.monotonic() - t0, chunks


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """The timed engine's module sees this clock (and so does ``_timed_run`` here)."""
    from edge_agent.engines import benchmark_only

    fake = Clock()
    monkeypatch.setattr(benchmark_only, "time", fake)
    monkeypatch.setitem(globals(), "time", fake)
    return fake


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, clock: Clock):
    for key in ("RTF", "S_PER_CHAR", "SLOWDOWN", "SLOWDOWN_AT", "SLOWDOWN_AFTER_JOBS", "LANGUAGES", "DIALECTS"):
        monkeypatch.delenv(f"VOICEFLEET_TIMED_{key}", raising=False)
    return monkeypatch


def test_defaults_and_capabilities_from_env(env: pytest.MonkeyPatch) -> None:
    engine = BenchmarkTimedEngine()
    assert engine.config == TimedConfig()
    assert engine.descriptor.name == "timed-benchmark"
    assert engine.descriptor.sample_rate == SAMPLE_RATE
    assert engine.capabilities.languages == ["zh", "en"] and engine.capabilities.dialects == []
    env.setenv("VOICEFLEET_TIMED_LANGUAGES", "zh")
    env.setenv("VOICEFLEET_TIMED_DIALECTS", "yue, wuu")
    caps = BenchmarkTimedEngine().capabilities
    assert caps.languages == ["zh"] and caps.dialects == ["yue", "wuu"]


@pytest.mark.parametrize("value", ["fast", "-0.1"])
def test_bad_setting_says_which(env: pytest.MonkeyPatch, value: str) -> None:
    env.setenv("VOICEFLEET_TIMED_RTF", value)
    with pytest.raises(EngineUnavailable, match="VOICEFLEET_TIMED_RTF"):
        BenchmarkTimedEngine()


def test_duration_is_chars_times_s_per_char_times_rtf(env: pytest.MonkeyPatch) -> None:
    env.setenv("VOICEFLEET_TIMED_RTF", "0.1")
    env.setenv("VOICEFLEET_TIMED_S_PER_CHAR", "0.06")
    elapsed, _ = _timed_run(BenchmarkTimedEngine(), "字" * 60)  # 3.6 s of audio
    assert elapsed == pytest.approx(60 * 0.06 * 0.1, abs=TOLERANCE_S)
    assert elapsed >= 60 * 0.06 * 0.1 - 0.005  # never early


def test_late_wake_ups_do_not_accumulate(env: pytest.MonkeyPatch, clock: Clock) -> None:
    """Each chunk is due at an offset from one start: a late wake-up delays that chunk, not all after it."""
    env.setenv("VOICEFLEET_TIMED_RTF", "0.1")
    clock.overshoot_s = 0.02
    elapsed, chunks = _timed_run(BenchmarkTimedEngine(), "字" * 50)  # 6 chunks of 0.5 s, 0.3 s on time
    assert len(chunks) == clock.sleeps == 6
    assert elapsed == pytest.approx(0.3 + 0.02, abs=TOLERANCE_S)  # one overshoot, not six


def test_slowdown_spares_the_first_jobs_when_counted_by_jobs(env: pytest.MonkeyPatch) -> None:
    env.setenv("VOICEFLEET_TIMED_RTF", "0.05")
    env.setenv("VOICEFLEET_TIMED_SLOWDOWN", "4")
    env.setenv("VOICEFLEET_TIMED_SLOWDOWN_AFTER_JOBS", "2")
    engine, text = BenchmarkTimedEngine(), "字" * 50  # 3 s of audio: 0.15 s at RTF 0.05, 0.6 s slowed down
    elapsed = [_timed_run(engine, text)[0] for _ in range(4)]
    assert elapsed == [pytest.approx(x, abs=TOLERANCE_S) for x in (0.15, 0.15, 0.6, 0.6)]


def test_audio_length_and_chunking(env: pytest.MonkeyPatch) -> None:
    env.setenv("VOICEFLEET_TIMED_RTF", "0")
    _, chunks = _timed_run(BenchmarkTimedEngine(), "今" * 37)  # 37 x 0.06 = 2.22 s
    assert sum(len(c) for c in chunks) == 2 * round(37 * 0.06 * SAMPLE_RATE)
    assert [len(c) for c in chunks] == [2 * CHUNK_SAMPLES] * 4 + [2 * 220]
    audio = b"".join(chunks)
    assert audio == timed_pcm("今" * 37, 0, len(audio) // 2)  # the job's own pattern, in order
    assert audio != timed_pcm("明" * 37, 0, len(audio) // 2) and audio != bytes(len(audio))  # another job's differs
    assert audio[:1000] != audio[1000:2000]  # and so does another position in the same job


def test_empty_text_fails(env: pytest.MonkeyPatch) -> None:
    with pytest.raises(EngineError) as exc:
        BenchmarkTimedEngine().synthesize(SynthesisRequest(text="  "))
    assert exc.value.code == "empty_text"


def test_cancellation_stops_early(env: pytest.MonkeyPatch) -> None:
    env.setenv("VOICEFLEET_TIMED_RTF", "0.1")  # 40 chunks of 50 ms each: 2 s if never cancelled
    chunks: list[bytes] = []
    t0 = time.monotonic()
    for chunk in BenchmarkTimedEngine().synthesize(SynthesisRequest(text="字" * 400), lambda: len(chunks) >= 3):
        chunks.append(chunk)
    assert len(chunks) == 3
    # seen while waiting for the fourth chunk: it is never paced out
    assert time.monotonic() - t0 == pytest.approx(3 * CHUNK_SAMPLES / SAMPLE_RATE * 0.1, abs=TOLERANCE_S)


def test_slowdown_applies_only_after_slowdown_at(env: pytest.MonkeyPatch) -> None:
    env.setenv("VOICEFLEET_TIMED_RTF", "0.05")
    env.setenv("VOICEFLEET_TIMED_SLOWDOWN", "4")
    text = "字" * 50  # 3 s of audio: 0.15 s at RTF 0.05, 0.6 s slowed down
    env.setenv("VOICEFLEET_TIMED_SLOWDOWN_AT", str(time.time() + 3600))
    before, _ = _timed_run(BenchmarkTimedEngine(), text)
    env.setenv("VOICEFLEET_TIMED_SLOWDOWN_AT", str(time.time() - 1))
    after, _ = _timed_run(BenchmarkTimedEngine(), text)
    assert before == pytest.approx(0.15, abs=TOLERANCE_S)
    assert after == pytest.approx(0.6, abs=TOLERANCE_S)


def test_slowdown_starting_mid_job(env: pytest.MonkeyPatch) -> None:
    env.setenv("VOICEFLEET_TIMED_RTF", "0.05")
    env.setenv("VOICEFLEET_TIMED_SLOWDOWN", "3")
    env.setenv("VOICEFLEET_TIMED_SLOWDOWN_AT", str(time.time() + 0.2))
    elapsed, _ = _timed_run(BenchmarkTimedEngine(), "字" * 200)  # 12 s: 0.2 s fast (4 s), 8 s x 0.15 = 1.2 s
    assert elapsed == pytest.approx(1.4, abs=2 * TOLERANCE_S)


def test_runner_learns_the_configured_rtf(env: pytest.MonkeyPatch, clock: Clock) -> None:
    """What the agent reports in telemetry (and a latency-aware scheduler may read) is the set RTF.
    The runner times synthesis on the engine's clock; everything else here waits in real time."""
    from edge_agent import runner as runner_module

    env.setattr(runner_module, "time", SimpleNamespace(monotonic=real_time.monotonic, perf_counter=clock.monotonic))
    env.setitem(globals(), "time", real_time)
    env.setenv("VOICEFLEET_TIMED_RTF", "0.2")
    events: list[p.Message] = []
    runner = JobRunner(BenchmarkTimedEngine(), lambda msg, _data: events.append(msg), 1)
    runner.start()
    runner.submit(p.JobAssign(job_id="j1", attempt=1, text="字" * 10, lang="zh", lease_s=60))
    deadline = time.monotonic() + 5
    while not any(isinstance(e, p.JobDone) for e in events) and time.monotonic() < deadline:
        time.sleep(0.01)
    done = next(e for e in events if isinstance(e, p.JobDone))
    assert done.samples == 600 and done.sample_rate == SAMPLE_RATE and done.chunks == 2
    assert runner.rtf == pytest.approx(0.2, abs=TOLERANCE_S)


def test_agents_load_it_as_timed(env: pytest.MonkeyPatch) -> None:
    from edge_agent.engines.benchmark_only import load_engine

    assert isinstance(load_engine("timed"), BenchmarkTimedEngine)
