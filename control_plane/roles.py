"""Leader or follower, decided every second. With several replicas on one PostgreSQL, the leader (the
holder of the advisory lock, control_plane/leader.py) runs the dispatcher: it alone holds the MQTT
session for device traffic, places jobs and writes their transitions. The others serve the API:
reads from the database (their fleet view reloaded every second), every state-changing call
forwarded to the leader (control_plane/api/forward.py), events and audio wake-ups through the relay.

A follower that takes the lock starts the dispatcher; its MQTT client id is the cluster's
(VOICEFLEET_MQTT_CLIENT_ID), so the broker hands it the session the old leader held, with the
QoS 1 messages queued meanwhile, and cuts off an old leader that is only partitioned. A leader that
finds the lock taken by another replica shuts down (its supervisor starts it again, as a follower);
one that only lost the database keeps going, as a single control plane does through an outage.
On SQLite there is one control plane, and it leads."""

from __future__ import annotations

import logging
import os
import signal
import threading

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, select

from control_plane import fencing
from control_plane.core.db import is_postgres
from control_plane.dispatch import Dispatcher
from control_plane.leader import Leadership
from control_plane.models import Replica
from voicefleet.ids import now

log = logging.getLogger(__name__)
BEAT_S = 1.0
STALE_S = 5.0  # a replica not heard from for this long is gone


class Roles:
    def __init__(self, engine: Engine, leadership: Leadership, dispatcher: Dispatcher, *, replica: str, url: str):
        self.engine, self.leadership, self.dispatcher = engine, leadership, dispatcher
        self.replica, self.url = replica, url
        self.leading = False
        self._leader_url: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="roles", daemon=True)

    def start(self) -> None:
        """Decide once before the API answers (a lone replica leads at once), then every second."""
        self._turn()
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if self.leading:
            self.dispatcher.stop()

    def leader_url(self) -> str | None:
        """Where the leader is reached (None: this is it, or none is known now)."""
        return None if self.leading else self._leader_url

    def _run(self) -> None:
        while not self._stop.wait(BEAT_S):
            try:
                self._turn()
            except Exception:  # the loop must outlive any one turn
                log.exception("replica role check failed; trying again in %.0fs", BEAT_S)

    def _turn(self) -> None:
        leading = self.leadership.check()
        if leading and not self.leading:
            if is_postgres(self.engine):
                self.dispatcher.ctx.epoch = fencing.take(self.engine, self.replica)
            log.warning("replica %s leads (term %s): starting the dispatcher", self.replica,
                        self.dispatcher.ctx.epoch)
            self.leading = True
            self.dispatcher.start()
        elif self.leading and not leading and self.leadership.taken_elsewhere:
            log.error("replica %s lost the lead to another replica: shutting down to restart as a follower",
                      self.replica)
            os.kill(os.getpid(), signal.SIGTERM)
            return
        if not self.leading:
            self.dispatcher.refresh_view()
        self._beat()

    def _beat(self) -> None:
        """Our row, and the leader's address as the rows say; a database outage changes neither."""
        t = now()
        try:
            with Session(self.engine) as session:
                row = session.get(Replica, self.replica) or Replica(id=self.replica, url=self.url, seen_at=t)
                row.url, row.leading, row.seen_at = self.url, self.leading, t
                session.add(row)
                session.commit()
                leader = session.exec(select(Replica).where(Replica.leading, Replica.id != self.replica,
                                                            col(Replica.seen_at) > t - STALE_S)
                                      .order_by(col(Replica.seen_at).desc())).first()
                self._leader_url = leader.url if leader else None
        except SQLAlchemyError as exc:
            log.debug("replica heartbeat failed: %s", exc)

