"""Runs jobs on the engine with a concurrency cap and reports each step as a protocol event.

Worker threads take assignments from a local queue; network callbacks never synthesise.
An assignment seen before (QoS 1 redelivery) is ignored by its ``(job_id, attempt)``.
"""

from __future__ import annotations

import hashlib
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edge_agent.engines.base import Engine, EngineError, SynthesisRequest
from voicefleet import protocol as p
from voicefleet.audio import pcm_seconds

log = logging.getLogger(__name__)
Emit = Callable[[p.Message, bytes | None], None]
MAX_CHUNK_BYTES = 256 * 1024  # keep each MQTT message far below the 1 MiB limit
SEEN_LIMIT = 10_000
STARTED_AFTER_S = 0.05  # a first chunk sooner than this says "started" by itself


class _StartNotices:
    """Sends "started" for jobs whose first audio is slow in coming (a GPU model's first chunk
    can take a second). A fast first chunk makes it redundant: the control plane marks the job
    running on its first chunk, so skipping it saves one message and one transition per job."""

    def __init__(self, emit: Emit, after_s: float):
        self._emit = emit
        self._after_s = after_s
        self._due: dict[tuple[str, int], float] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._loop, name="start-notices", daemon=True).start()

    def arm(self, key: tuple[str, int]) -> None:
        with self._cond:
            self._due[key] = time.monotonic() + self._after_s
            self._cond.notify()

    def disarm(self, key: tuple[str, int]) -> None:
        with self._cond:
            self._due.pop(key, None)

    def _loop(self) -> None:
        while True:
            with self._cond:
                now = time.monotonic()
                ready = [k for k, due in self._due.items() if due <= now]
                for k in ready:
                    del self._due[k]
                if not ready:
                    self._cond.wait(min(self._due.values()) - now if self._due else None)
                    continue
            for job_id, attempt in ready:  # outside the lock: emit does network I/O
                self._emit(p.JobStarted(job_id=job_id, attempt=attempt), None)


class JobRunner:
    def __init__(self, engine: Engine, emit: Emit, concurrency: int, *, started_after_s: float = STARTED_AFTER_S):
        """``started_after_s`` 0 sends "started" for every job before synthesis begins."""
        self.engine = engine
        self.emit = emit
        self.concurrency = concurrency
        self._notices = _StartNotices(emit, started_after_s) if started_after_s > 0 else None
        self._queue: queue.Queue[p.JobAssign | None] = queue.Queue()
        self._seen: OrderedDict[tuple[str, int], None] = OrderedDict()
        # Keyed by (job_id, attempt): cancelling one attempt never touches a later one.
        self._active: set[tuple[str, int]] = set()  # queued or running here
        self._running: set[tuple[str, int]] = set()
        self._cancelled: set[tuple[str, int]] = set()
        self._lock = threading.Lock()
        self._accepting = True
        self.rtf: float | None = None  # exponentially weighted, reported in telemetry
        self._workers = [threading.Thread(target=self._work, name=f"job-{i}", daemon=True)
                         for i in range(concurrency)]

    def start(self) -> None:
        for w in self._workers:
            w.start()

    @property
    def inflight(self) -> int:
        return len(self._running)

    @property
    def queued(self) -> int:
        return self._queue.qsize()

    def submit(self, job: p.JobAssign) -> None:
        key = (job.job_id, job.attempt)
        with self._lock:
            if key in self._seen:
                return
            self._seen[key] = None
            if len(self._seen) > SEEN_LIMIT:
                self._seen.popitem(last=False)
            if self._accepting:
                self._active.add(key)
        if not self._accepting:
            self.emit(p.JobReturned(job_id=job.job_id, attempt=job.attempt, reason="agent is shutting down"), None)
            return
        self._queue.put(job)

    def cancel(self, job_id: str, attempt: int | None = None) -> None:
        """Cancel one attempt (or, with None, every attempt) that is queued or running here;
        a cancel for anything else is ignored, so nothing lingers."""
        with self._lock:
            self._cancelled |= {k for k in self._active if k[0] == job_id and attempt in (None, k[1])}

    def drain(self, timeout_s: float) -> None:
        """Stop taking jobs, hand back the unstarted ones, let running ones finish."""
        self._accepting = False
        while True:
            try:
                job = self._queue.get_nowait()
            except queue.Empty:
                break
            if job is not None:
                self.emit(p.JobReturned(job_id=job.job_id, attempt=job.attempt, reason="agent is shutting down"),
                          None)
        for _ in self._workers:
            self._queue.put(None)
        deadline = time.monotonic() + timeout_s
        for w in self._workers:
            w.join(max(0.0, deadline - time.monotonic()))

    # -- workers ---------------------------------------------------------------------------

    def _work(self) -> None:
        while (job := self._queue.get()) is not None:
            key = (job.job_id, job.attempt)
            with self._lock:
                skip = key in self._cancelled
                if not skip:
                    self._running.add(key)
            try:
                if not skip:
                    self._run(job)
            except Exception as exc:  # an engine bug must not kill the worker
                log.exception("job %s crashed the engine", job.job_id)
                self.emit(p.JobFailed(job_id=job.job_id, attempt=job.attempt,
                                      error=p.ErrorInfo(code="engine_crash", text=str(exc)), retryable=True), None)
            finally:
                with self._lock:
                    self._running.discard(key)
                    self._cancelled.discard(key)
                    self._active.discard(key)

    def _run(self, job: p.JobAssign) -> None:
        ids = {"job_id": job.job_id, "attempt": job.attempt}
        key = (job.job_id, job.attempt)
        if self._notices is None:
            self.emit(p.JobStarted(**ids), None)
        else:
            self._notices.arm(key)
        try:
            self._synthesize(job, key, ids)
        finally:
            if self._notices is not None:
                self._notices.disarm(key)

    def _synthesize(self, job: p.JobAssign, key: tuple[str, int], ids: dict) -> None:
        """Speak with the engine placement chose; if it cannot read the text (``bad_text``) or speak the
        request (``unsupported``, as CosyVoice3 without a default voice) before any audio, the next engine
        here that can speak the request takes over, and ``done`` says why."""
        request = SynthesisRequest(**job.spec_fields(), prompt=job.prompt)
        out, fell_back = _Output(), None
        try:
            engines = self._engines_for(request, job.engine)
            for i, engine in enumerate(engines):
                try:
                    self._stream(engine, request, key, ids, out)
                    break
                except EngineError as exc:
                    if out.seq or exc.code not in (p.BAD_TEXT, p.UNSUPPORTED) or i == len(engines) - 1:
                        raise
                    fell_back = f"{engine.descriptor.name} could not {_CANNOT[exc.code]}: {exc.text}"
        except EngineError as exc:
            self.emit(p.JobFailed(error=p.ErrorInfo(code=exc.code, text=exc.text), retryable=exc.retryable,
                                  **ids), None)
            return
        if key in self._cancelled:
            return  # the control plane already knows; a result would be ignored anyway
        synth_s = time.perf_counter() - out.t0
        rate = engine.descriptor.sample_rate  # an EngineChain's members differ in sample rate
        self._learn_rtf(synth_s, pcm_seconds(out.total, rate))
        self.emit(p.JobDone(chunks=out.seq, samples=out.total // 2, sample_rate=rate, sha256=out.digest.hexdigest(),
                            engine=engine.descriptor, voice=request.voice or _default_voice(engine),
                            fallback=fell_back, synth_s=round(synth_s, 6),
                            first_chunk_s=None if out.first_chunk_s is None else round(out.first_chunk_s, 6),
                            **ids), None)

    def _engines_for(self, request: SynthesisRequest, chosen: str | None) -> list:
        """The chosen engine (or the first that can), then the others here that can speak ``request``."""
        first = self.engine.select(request, chosen)
        return [first, *(m for m in self.engine.members()
                         if m is not first and m.capabilities.missing_for(request) is None)]

    def _stream(self, engine, request: SynthesisRequest, key: tuple[str, int], ids: dict, out: _Output) -> None:
        rate = engine.descriptor.sample_rate
        for pcm in engine.synthesize(request, cancelled=lambda: key in self._cancelled):
            if key in self._cancelled:
                break  # also for an engine that does not check often
            if out.seq == 0:
                out.first_chunk_s = time.perf_counter() - out.t0
                if self._notices is not None:
                    self._notices.disarm(key)
            for piece in _split(pcm):
                out.digest.update(piece)
                out.total += len(piece)
                self.emit(p.AudioChunk(seq=out.seq, sample_rate=rate, **ids), piece)
                out.seq += 1

    def _learn_rtf(self, synth_s: float, audio_s: float) -> None:
        if audio_s > 0:
            rtf = synth_s / audio_s
            self.rtf = rtf if self.rtf is None else 0.8 * self.rtf + 0.2 * rtf


@dataclass
class _Output:
    """What one attempt has sent so far: the chunks' count, bytes and digest, and when the first went."""

    t0: float = field(default_factory=lambda: time.perf_counter())  # the module's clock at call time
    digest: Any = field(default_factory=hashlib.sha256)
    seq: int = 0
    total: int = 0
    first_chunk_s: float | None = None


_CANNOT = {p.BAD_TEXT: "read the text", p.UNSUPPORTED: "speak it"}  # the faults another engine here may not have


def _default_voice(engine) -> str | None:
    """The preset an engine speaks when a job names none: its first."""
    return next(iter(engine.capabilities.voices), None)


def _split(pcm: bytes) -> list[bytes]:
    return [pcm[i:i + MAX_CHUNK_BYTES] for i in range(0, len(pcm), MAX_CHUNK_BYTES)] if pcm else []
