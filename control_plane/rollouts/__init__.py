"""Staged rollouts of model bundles (docs/rollouts.md).

A rollout sends one registry version to the devices its selector picks, phase by phase: a canary
set, then waves that each bring the updated share of the targets up to a percentage. Each phase
sends at most ``max_in_flight`` installs at a time, to online devices only; when every online
device of the phase is updated, the phase soaks, and the next one starts once the soak is over
with every gate still green. Gates are evaluated on the devices already updated, all the time:
install/activation failures, test-synthesis failures, the job error rate since activation, the
test synthesis' RTF and first-chunk latency against what the same device measured for the
version it ran before, and whether a speech recogniser understands the test phrase the first
devices spoke (a phase waits for those verdicts). A breach halts the rollout and rolls every updated device back.

Everything lives in the database (``Rollout``, ``RolloutTarget``, ``RolloutEvent``,
``DeviceModel``) and every change runs on the dispatcher's thread, inside its transactions:
``on_state`` and ``on_report`` for device messages, one method per operator's request (``create``,
``pause``, ``resume``, ``abort``, ``rollback``, ``pin``), ``tick`` from its housekeeping. Commands
go out only after the transaction that decided them committed (appended to the dispatcher's
publish list), so a control plane that restarts simply carries on: a command it sent whose report
never came is sent again (same ``command_id``: harmless).
Devices that are offline keep their place and are updated when they come back; a rollout waits
in its last phase for them (abort stops the waiting).

Modules: ``plans`` (what an operator asks for), ``machine`` (the state machine), ``gates`` (when to
halt), ``records`` (the tables and their events), ``states`` (the states and the refusal),
``listening`` (the test phrases judged by ear, on a thread of its own).
"""

from control_plane.rollouts.machine import Rollouts, files_path
from control_plane.rollouts.plans import Gates, Plan, RolloutCreate, Selector, phases_of
from control_plane.rollouts.states import Publish, RolloutError

__all__ = ["Gates", "Plan", "Publish", "RolloutCreate", "RolloutError", "Rollouts", "Selector", "files_path",
           "phases_of"]
