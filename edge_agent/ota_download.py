"""Downloading an update's files: HTTP Range resume after a cut connection, a restart or a power cut,
progress a few times a second, a refused (expired) link told apart from other failures."""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from edge_agent.ota_checks import UpdateFailed

log = logging.getLogger(__name__)
BLOCK = 64 * 1024
FETCH_TRIES = 6  # per file; each try continues from what the last one wrote
FETCH_TIMEOUT_S = 30.0
PROGRESS_EVERY_S = 0.25


class LinkRefused(UpdateFailed):
    def __init__(self, text: str):
        super().__init__("link_expired", text)


def file_url(base_url: str, name: str) -> str:
    """``{base_url}/{name}``, the name appended to the path; a signed query string stays as it is."""
    parts = urlsplit(base_url)
    return urlunsplit(parts._replace(path=f"{parts.path.rstrip('/')}/{quote(name)}"))


class Progress:
    """Bytes done, reported a few times a second at most (and first and last)."""

    def __init__(self, send: Callable[[int], None]):
        self.send, self.done, self._last = send, 0, 0.0

    def add(self, n: int) -> None:
        self.done += n
        if time.monotonic() - self._last >= PROGRESS_EVERY_S:
            self.flush()

    def flush(self) -> None:
        self._last = time.monotonic()
        self.send(self.done)


def fetch(url: str, part: Path, size: int, progress: Callable[[int], None],
          after_block: Callable[[], None] = lambda: None) -> None:
    """Get ``url`` into ``part`` until it holds ``size`` bytes, continuing from its length (HTTP Range)
    after a cut connection, a restart or a power cut. Errors a retry cannot fix fail at once."""
    for attempt in range(FETCH_TRIES):
        have = part.stat().st_size if part.exists() else 0
        if have > size:
            part.unlink()
            progress(-have)
            have = 0
        if have == size:
            return
        if attempt:
            time.sleep(min(0.2 * 2 ** (attempt - 1), 5.0))
        request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
        try:
            with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_S) as resp:  # noqa: S310 (control plane URL)
                if have and resp.status != 206:  # the server ignored Range: start over
                    progress(-have)
                    have = 0
                with open(part, "ab" if have else "wb", buffering=0) as out:
                    while have < size and (block := resp.read(min(BLOCK, size - have))):
                        out.write(block)
                        have += len(block)
                        progress(len(block))
                        after_block()
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403):
                raise LinkRefused(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            if exc.code not in (408, 429) and exc.code < 500:
                raise UpdateFailed("download_failed", f"{url}: HTTP {exc.code} {exc.reason}") from exc
            log.warning("%s: HTTP %s, retrying", url, exc.code)
        except (OSError, ValueError) as exc:  # refused, reset, timed out, cut short (http.client's errors)
            log.warning("%s: %s after %d bytes, resuming", url, exc, have)
    have = part.stat().st_size if part.exists() else 0
    if have != size:
        raise UpdateFailed("download_failed", f"{url}: {FETCH_TRIES} tries ended at {have} of {size} bytes")


def sha256(path: Path) -> str:
    from voicefleet.bundle import _digest

    return _digest(path)[1]
