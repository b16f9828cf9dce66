"""Listening to the test phrase a device's new model spoke: can a speech recogniser understand it?

A ``tested`` report may carry the phrase's audio (``OtaReport.test_audio``). The dispatcher keeps it
as a WAV under ``VOICEFLEET_HOME/rollouts/<rollout>/`` (an operator can play what a canary said) and
marks the target's ``cer`` as awaited; its tick asks the ``Listener`` for every verdict still awaited.
Recognition takes seconds, so it runs here, on one worker thread of its own, never on the dispatcher's;
the verdict goes back as a dispatcher command (``HeardTestPhrase``) and only that command changes the
rollout. Nothing is lost in a restart: the WAV is on disk and the awaited ``cer`` in the database, so
the next control plane's tick asks again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import queue
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from voicefleet.audio import WAV_HEADER_BYTES, wav_header
from voicefleet.files import write_atomic
from voicefleet.protocol import SAFE_ID_RE
from voicefleet.protocol.ota import TestAudio

log = logging.getLogger(__name__)
DELIVER_TIMEOUT_S = 30.0  # a verdict the dispatcher has not taken by then is offered again
RETRY_S = 1.0


@dataclass(frozen=True)
class Phrase:
    """One device's test phrase to judge, named by the install command that made it speak."""

    rollout_id: str
    device_id: str
    command_id: str


@dataclass(frozen=True)
class Verdict:
    """What the recogniser made of a Phrase: ``cer`` (character error rate against the text the device
    spoke) and what it ``heard``, or ``error``: why it could not judge."""

    phrase: Phrase
    cer: float | None = None
    heard: str = ""
    error: str | None = None


class Listener:
    """Keeps test phrases on disk (``keep``, on the dispatcher thread) and judges them on its own thread
    (``want``); each verdict is handed to ``deliver`` (set at wiring: a coroutine that asks the dispatcher
    to record it, awaited on this thread), again until the dispatcher has taken it."""

    def __init__(self, root: Path, deliver: Callable[[Verdict], Awaitable] | None = None):
        self.root = Path(root)
        self.deliver = deliver
        self._queue: queue.Queue[Phrase | None] = queue.Queue()
        self._wanted: set[Phrase] = set()  # queued or being judged
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopped = threading.Event()

    def path(self, phrase: Phrase) -> Path:
        for part in (phrase.rollout_id, phrase.device_id, phrase.command_id):
            if not SAFE_ID_RE.match(part):
                raise ValueError(f"{part!r} cannot name a file")
        return self.root / phrase.rollout_id / f"{phrase.device_id}-{phrase.command_id}.wav"

    def keep(self, phrase: Phrase, audio: TestAudio) -> None:
        """Write the phrase's audio (WAV) and its text (JSON beside it) before the report's transaction."""
        pcm = audio.samples()
        wav = self.path(phrase)
        wav.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(wav.with_suffix(".json"), json.dumps({"text": audio.text}, ensure_ascii=False))
        write_atomic(wav, wav_header(audio.sample_rate, len(pcm)) + pcm, durable=True)

    def want(self, phrase: Phrase) -> None:
        """Judge ``phrase`` unless it is already queued or being judged (never blocks)."""
        with self._lock:
            if phrase in self._wanted:
                return
            self._wanted.add(phrase)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="listener", daemon=True)
                self._thread.start()
        self._queue.put(phrase)

    def stop(self) -> None:
        """Stop offering verdicts (the dispatcher is going away); the one being judged is dropped."""
        self._stopped.set()
        self._queue.put(None)  # wakes the worker to see it

    # -- the worker ----------------------------------------------------------------------------

    def _work(self) -> None:
        # One loop for the thread's life, never closed: the dispatcher settles an answer on it after the
        # commit, possibly after a wait here timed out (a closed loop would refuse it, in the dispatcher).
        loop = asyncio.new_event_loop()
        while not self._stopped.is_set():
            phrase = self._queue.get()
            if phrase is None:
                return
            try:
                self._hand_over(loop, self.judge(phrase))
            except Exception:  # a bug must not stop the listening; the next tick asks again
                log.exception("judging %s failed", phrase)
            finally:
                with self._lock:
                    self._wanted.discard(phrase)

    def judge(self, phrase: Phrase) -> Verdict:
        """Transcribe the kept phrase and score it; a Verdict with ``error`` when that cannot be done."""
        try:
            from voicefleet.intelligibility import char_error_rate, shared_recogniser

            wav = self.path(phrase)
            text = json.loads(wav.with_suffix(".json").read_text())["text"]
            data = wav.read_bytes()
            rate = int.from_bytes(data[24:28], "little")
            heard = shared_recogniser().transcribe(data[WAV_HEADER_BYTES:], rate, lang="zh")
        except FileNotFoundError as exc:
            return Verdict(phrase, error=f"the test phrase's audio is gone ({exc.filename})")
        except Exception as exc:  # RecogniserUnavailable (a CodedError) included: say why, never pass
            log.warning("cannot judge %s: %s", phrase, exc)
            return Verdict(phrase, error=getattr(exc, "text", None) or f"{type(exc).__name__}: {exc}")
        cer = round(char_error_rate(text, heard), 4)
        log.info("device %s's test phrase: cer %.3f, heard %r", phrase.device_id, cer, heard)
        return Verdict(phrase, cer=cer, heard=heard[:200])

    def _hand_over(self, loop: asyncio.AbstractEventLoop, verdict: Verdict) -> None:
        """Give the verdict to the dispatcher, waiting for the commit; again while it is away or busy."""
        while not self._stopped.is_set():
            try:
                loop.run_until_complete(asyncio.wait_for(self.deliver(verdict), DELIVER_TIMEOUT_S))
                return
            except Exception as exc:
                log.warning("the dispatcher did not take a verdict (%s); offering it again", exc)
                self._stopped.wait(RETRY_S)


def awaits_verdict(target) -> bool:
    """A RolloutTarget whose test phrase was kept and is not judged yet (``cer`` present but None)."""
    test = target.test or {}
    return target.state in ("tested", "activated") and "cer" in test and test["cer"] is None


def heard_cer(target) -> float | None:
    cer = (target.test or {}).get("cer")
    return float(cer) if isinstance(cer, int | float) else None
