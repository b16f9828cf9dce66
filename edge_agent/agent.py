"""The agent runtime, one for both roles: edge boxes and cloud GPU workers differ only in their
engine and telemetry source.

It keeps an MQTT 5 persistent session under its device id, publishes a retained ``state``
(with a retained "offline" last will), telemetry every few seconds, and runs the jobs it is
given. SIGTERM drains: no new jobs, unstarted ones handed back, running ones finished.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import sys
import threading
import uuid
from collections.abc import Mapping

from edge_agent import enrolment
from edge_agent.config import AgentSettings
from edge_agent.engines import ENGINES, EngineFactory, load_engine
from edge_agent.engines.base import Engine
from edge_agent.hub import Hub
from edge_agent.image_status import image_report
from edge_agent.journal import Journal
from edge_agent.probes import Probes, ProbeServer
from edge_agent.recycle import recycle_guard
from edge_agent.runner import JobRunner
from edge_agent.slots import SlotStore, boot_engine
from edge_agent.telemetry import TelemetrySource, default_source
from edge_agent.updater import Updater
from voicefleet import __version__
from voicefleet import protocol as p
from voicefleet.mqtt import Inbound, MqttClient, Will

log = logging.getLogger(__name__)


class Agent:
    def __init__(self, settings: AgentSettings, engine: Engine | None = None,
                 telemetry: TelemetrySource | None = None, *, engines: Mapping[str, EngineFactory] = ENGINES,
                 ota_pause_after: str | None = None):
        """``engines``: the names ``settings.engine`` may list. ``ota_pause_after`` (tests only, through
        edge_agent/engines/benchmark_only.py): block an update for good after that step."""
        self.settings = settings
        self.device_id = settings.device_id
        # Model slots where the student runs (and no engine was handed in): it starts from the active slot.
        self.slots = SlotStore(settings.slots_dir()) if settings.slots_dir() and engine is None else None
        self.engine = engine or (boot_engine(settings, self.slots, engines) if self.slots
                                 else load_engine(settings.engine_spec(), settings, engines=engines))
        self.updater = self.slots and Updater(self.slots, self.device_id, lambda r: self._emit(r, None),
                                              self._restart_in_place, pause_after=ota_pause_after,
                                              settle_s=2 * settings.ota_mark_good_s + 10, engine_settings=settings)
        self._restart = False
        self._why: str | None = None  # why it drains or leaves, when it says (a recycle)
        self.telemetry = telemetry or default_source(settings.throttle_c)
        self.recycle = recycle_guard(settings.recycle_gpu_mb, settings.recycle_samples,
                                     self.telemetry.process_gpu_mb, self._recycle)
        self.boot_id = uuid.uuid4().hex
        self.runner = JobRunner(self.engine, self._emit, settings.concurrency())
        self.inbox: queue.Queue[Inbound] = queue.Queue()
        self._stopping = threading.Event()
        self.journal = Journal(settings.data_dir() / "journal.db", settings.journal_max_entries)
        self.hub = Hub(settings, self.engine, self.journal, connected=lambda: self.mqtt.connected.is_set())
        self.probes = Probes(interval_s=settings.telemetry_interval_s, connected=lambda: self.mqtt.connected.is_set(),
                             draining=self._stopping.is_set)
        self.probe_server = None if settings.health_port is None else \
            ProbeServer(self.probes, settings.health_host, settings.health_port)
        self._replaying = threading.Lock()
        will = Will(self._topic("state"), p.encode(p.DeviceState(device_id=self.device_id, status="offline")))
        self.mqtt = MqttClient(
            settings.mqtt_url, self.device_id, inbox=self.inbox,
            subscriptions=[(self._topic("job"), 1), (self._topic("cancel"), 1), (self._topic("reminder"), 1),
                           (self._topic("ota"), 1)],
            session_expiry_s=settings.mqtt_session_expiry_s, keepalive_s=settings.mqtt_keepalive_s,
            will=will, on_connected=self._on_connected, login=enrolment.mqtt_login(settings),
            login_help=enrolment.login_help(settings),
        )

    def _topic(self, kind: str) -> str:
        return p.device_topic(self.device_id, kind)

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> None:
        """Run until SIGTERM/SIGINT (or ``stop()``), then drain and leave cleanly."""
        signal.signal(signal.SIGTERM, lambda *_: self._stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self._stopping.set())
        self.start()
        # Timed waits: the kernel may deliver SIGTERM to another thread, and then only a main thread that
        # wakes on its own runs the handler (an untimed wait sleeps through it, as seen on a loaded box).
        while not self._stopping.wait(0.5):
            pass
        try:
            self.shutdown()
        finally:
            if self._restart:  # a new model slot, or a recycle: start again in place (broker or not)
                logging.shutdown()
                os.execv(sys.executable, sys.orig_argv)

    def start(self) -> None:
        if self.probe_server:  # first: a worker whose broker is slow to answer is alive, and not ready
            self.probe_server.start()
        self.hub.start()  # first: the hub speaks whether or not the broker answers
        self.runner.start()
        threading.Thread(target=self._consume, name="inbox", daemon=True).start()
        threading.Thread(target=self._telemetry_loop, name="telemetry", daemon=True).start()
        self.mqtt.start(require=not self.hub.enabled)  # a hub boots and speaks with the router unplugged
        if self.updater:
            self.updater.resume()
            if self.slots.on_trial():
                timer = threading.Timer(self.settings.ota_mark_good_s, self._mark_good)
                timer.daemon = True
                timer.start()
        log.info("agent %s (%s, engine %s, %d slots) is up", self.device_id, self.settings.role,
                 self.engine.descriptor.name, self.runner.concurrency)

    def stop(self) -> None:
        self._stopping.set()

    def _restart_in_place(self) -> None:
        """After a switch: drain and exec again, so every part (runner, hub, Wyoming voices, phrase cache
        keys) starts from the new slot through the same boot path that a power cut takes."""
        self._restart = True
        self._stopping.set()

    def _recycle(self, reason: str) -> None:
        """The recycle guard's call: the same drain and exec, which alone gives leaked GPU memory back;
        ``draining`` and ``offline`` carry the reason, so the control plane stops sending jobs and says why."""
        log.warning("%s: draining, then restarting in place", reason)
        self._why = reason
        self._restart_in_place()

    def _mark_good(self) -> None:
        if not self._stopping.is_set() and self.slots.mark_good():
            self.updater.checkpoint("marked_good")

    def shutdown(self) -> None:
        self._stopping.set()
        self._publish_state("draining")
        self.runner.drain(self.settings.drain_timeout_s)
        self.hub.stop()
        if self.mqtt.connected.is_set():  # offline (a hub without its broker) there is no one to tell
            try:
                self._publish_state("offline").wait_for_publish(5)
            except (RuntimeError, ValueError) as exc:  # the link dropped meanwhile: the last will says it
                log.warning("could not publish the offline state: %s", exc)
        self.mqtt.stop()
        if self.probe_server:
            self.probe_server.stop()
        log.info("agent %s stopped", self.device_id)

    # -- inbound ---------------------------------------------------------------------------

    def _consume(self) -> None:
        while True:
            msg = self.inbox.get()
            try:
                self._handle(msg)
            except p.ProtocolError as exc:
                log.warning("dropped message on %s: %s", msg.topic, exc)
            except Exception:  # whatever arrives, the agent keeps taking jobs
                log.exception("dropped message on %s that could not be handled", msg.topic)

    def _handle(self, msg: Inbound) -> None:
        _, kind = p.parse_device_topic(msg.topic)
        decoded, _ = p.decode(kind, msg.payload)
        if isinstance(decoded, p.JobAssign):
            self.runner.submit(decoded)
        elif isinstance(decoded, p.JobCancel):
            self.runner.cancel(decoded.job_id, decoded.attempt)
        elif isinstance(decoded, p.ReminderCommand):
            self.hub.apply(decoded)
        elif isinstance(decoded, p.OtaCommand):
            self._ota(decoded)

    def _ota(self, cmd: p.OtaCommand) -> None:
        if self.updater:
            self.updater.submit(cmd)
            return
        self._emit(p.OtaReport(device_id=self.device_id, command_id=cmd.command_id, rollout_id=cmd.rollout_id,
                               model_id=cmd.model_id, version=cmd.version, stage="failed",
                               error=p.ErrorInfo(code="no_slots", text="this agent runs no student engine, so it "
                                                 "has no model slots to update (VOICEFLEET_ENGINE)")), None)

    # -- outbound --------------------------------------------------------------------------

    def _on_connected(self) -> None:
        self._publish_state("online")
        self._kick_replay()

    def _kick_replay(self) -> None:
        threading.Thread(target=self._replay, name="journal-replay", daemon=True).start()

    def _replay(self) -> None:
        """Send the journal, oldest first; a record leaves it once the broker has it (QoS 1)."""
        if not self._replaying.acquire(blocking=False):
            return  # one replay at a time; a reconnection during it simply resumes later
        try:
            if not self.mqtt.connected.wait(5):  # on_connected runs just before the flag is set
                return
            sent = self.journal.replay(self.device_id, self._publish_record)
            if sent:
                log.info("replayed %d journal records", sent)
        finally:
            self._replaying.release()

    def _publish_record(self, record: p.DeviceRecord) -> bool:
        if not self.mqtt.connected.is_set():
            return False
        info = self.mqtt.publish(self._topic("event"), p.encode(record), qos=1)
        try:
            info.wait_for_publish(5)
        except (RuntimeError, ValueError):
            return False
        return info.is_published()

    def _emit(self, message: p.Message, data: bytes | None) -> None:
        self.mqtt.publish(self._topic("event"), p.encode(message, data))
        if self.recycle and isinstance(message, p.JobDone | p.JobFailed):
            # the runner still counts the ending job as running while it emits its end
            self.recycle.job_ended(idle=self.runner.inflight <= 1 and self.runner.queued == 0)

    def _publish_state(self, status: str):
        state = p.DeviceState(
            device_id=self.device_id, status=status, role=self.settings.role,
            engine=self.engine.descriptor, capabilities=self.engine.capabilities, engines=self.engine.offers(),
            max_concurrency=self.runner.concurrency, agent_version=__version__, boot_id=self.boot_id,
            model=self.slots.active_model() if self.slots else None, tags=self.settings.tags,
            image=image_report(self.settings.image_status_file), reason=None if status == "online" else self._why,
        )
        return self.mqtt.publish(self._topic("state"), p.encode(state), retain=True)

    def _telemetry_loop(self) -> None:
        # The first heartbeat goes out at once: the control plane gives a device that came back
        # no job until it has heard a live message from it.
        self.mqtt.connected.wait(self.settings.telemetry_interval_s)
        while not self._stopping.is_set():
            self.probes.tick()
            try:
                fields = self.telemetry.read()
            except Exception:  # a broken sensor must not silence the heartbeat
                log.exception("telemetry source %s failed", self.telemetry.name)
                fields = {}
            msg = p.Telemetry(device_id=self.device_id, source=self.telemetry.name, inflight=self.runner.inflight,
                              queued=self.runner.queued, rtf=self.runner.rtf, **fields)
            if self.mqtt.connected.is_set():
                self.mqtt.publish(self._topic("telemetry"), p.encode(msg), qos=0)
                if len(self.journal):  # what the hub said on its own since the last replay
                    self._kick_replay()
            else:  # offline: keep it for the control plane
                self.journal.append("telemetry", msg.ts, msg.model_dump(exclude={"v", "type", "device_id", "ts"}))
            self._stopping.wait(self.settings.telemetry_interval_s)
