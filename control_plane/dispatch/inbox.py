"""The dispatcher's one inbox: device messages (from the MQTT callback) and commands (from HTTP
handlers), bounded so that a flood waits at the door instead of growing memory without end."""

from __future__ import annotations

import queue
import time
from typing import Any

from voicefleet.errors import CodedError

MAX_ITEMS = 50_000  # far above what one batch drains (BATCH); a full inbox means the loop is stuck
BATCH = 500
LINGER_S = 0.0005
WAKE = object()  # put on the inbox to make the loop run a scheduling pass at once


class InboxFull(CodedError):
    """The dispatcher is not keeping up; the request was not taken (nothing was written)."""

    retry_after_s = 1

    def __init__(self, waiting: int):
        super().__init__("busy", f"the control plane has {waiting} requests waiting; try again shortly")


class Inbox(queue.Queue):
    def __init__(self, maxsize: int = MAX_ITEMS):
        super().__init__(maxsize)

    def wake(self) -> None:
        try:
            self.put_nowait(WAKE)
        except queue.Full:
            pass  # a full inbox wakes the loop by itself

    def offer(self, item: Any) -> None:
        """Put without blocking the caller (an HTTP event loop must never block)."""
        try:
            self.put_nowait(item)
        except queue.Full:
            raise InboxFull(self.qsize()) from None

    def drain(self, timeout: float) -> tuple[list, bool]:
        """Wait for the first item, then linger briefly for more: messages that come in bursts
        (an agent's "started" and first chunk, 0.1 ms apart) share one transaction. Returns the
        items and whether a WAKE was among them."""
        batch: list = []
        woken = False
        try:
            item = self.get(timeout=timeout)
            linger_until = time.monotonic() + LINGER_S
            while True:
                if item is WAKE:
                    woken = True
                else:
                    batch.append(item)
                if len(batch) >= BATCH:
                    break
                try:
                    item = self.get_nowait()
                except queue.Empty:
                    wait = linger_until - time.monotonic()
                    if wait <= 0:
                        break
                    item = self.get(timeout=wait)
        except queue.Empty:
            pass
        return batch, woken
