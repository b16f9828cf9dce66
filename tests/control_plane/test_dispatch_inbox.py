"""The dispatcher's bounded inbox: a flood is refused at the door with an error that says to retry,
and what the loop drains comes out whole, in order, with wake-ups told apart."""

from __future__ import annotations

import pytest

from control_plane.api.errors import STATUS
from control_plane.dispatch.inbox import Inbox, InboxFull


def test_a_full_inbox_refuses_with_a_temporary_busy_error() -> None:
    inbox = Inbox(maxsize=3)
    for i in range(3):
        inbox.offer(i)
    with pytest.raises(InboxFull) as caught:
        inbox.offer(3)
    assert caught.value.code == "busy" and caught.value.retry_after_s == 1
    assert STATUS[caught.value.code] == 503
    assert "3 requests waiting" in caught.value.text
    inbox.wake()  # a full inbox drops a wake-up instead of blocking the waker
    assert inbox.drain(timeout=0.1) == ([0, 1, 2], False)


def test_drain_keeps_order_and_reports_a_wake_up() -> None:
    inbox = Inbox()
    inbox.offer("a")
    inbox.wake()
    inbox.offer("b")
    assert inbox.drain(timeout=0.1) == (["a", "b"], True)
    assert inbox.drain(timeout=0.01) == ([], False)
