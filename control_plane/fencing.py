"""The leader's term, as a fencing token: taking the lead raises the epoch in the ``leaderterm`` row;
each transaction of the dispatcher then reads that row FOR SHARE before it commits and stops if the
epoch is no longer its own. The share lock makes the successor's raise wait for transactions already
past the check, and every later one sees the new epoch: an old leader that lost the lock during a
database outage (it cannot tell) never writes after the new one started."""

from __future__ import annotations

from sqlalchemy import Engine, event, text
from sqlmodel import Session

from control_plane.models import LeaderTerm
from voicefleet.ids import now


class LostLeadership(BaseException):  # noqa: N818 (not an error to handle: the dispatcher must stop)
    """Another replica leads now. A BaseException, so that no handler of ordinary errors retries
    the transaction: the dispatcher stops and the process restarts as a follower."""


def take(engine: Engine, replica: str) -> int:
    """Begin a new term (call only while holding the advisory lock); returns its epoch."""
    with Session(engine) as session:
        row = session.get(LeaderTerm, 1, with_for_update=True)
        if row is None:
            row = LeaderTerm(id=1, epoch=0, replica=replica, since=now())
        row.epoch, row.replica, row.since = row.epoch + 1, replica, now()
        session.add(row)
        session.commit()
        return row.epoch


def fence(session: Session, epoch: int) -> Session:
    """Check, before each commit of ``session``, that ``epoch`` is still the current term."""
    event.listen(session, "before_commit", lambda s: _check(s, epoch))
    return session


def _check(session: Session, epoch: int) -> None:
    current = session.execute(text("SELECT epoch FROM leaderterm WHERE id = 1 FOR SHARE")).scalar()
    if current != epoch:
        raise LostLeadership(f"the lead passed on: term {current} began after ours ({epoch})")
