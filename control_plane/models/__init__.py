"""SQLModel tables and their public API shapes, one module per entity family: jobs, devices,
voices, access (API tokens, enrolment, broker logins), rollouts (the model registry included).

Times are Unix seconds (float): portable across SQLite and PostgreSQL and cheap to subtract
for latency figures. Alembic migrations in control_plane/migrations must match these tables
(a test checks it). Importing this package registers every table on ``SQLModel.metadata``.
"""

from __future__ import annotations

from control_plane.models.access import (
    ApiToken,
    ApiTokenCreate,
    ApiTokenPublic,
    EnrolmentToken,
    EnrolmentTokenCreate,
    EnrolmentTokenPublic,
    EnrolRequest,
    EnrolResponse,
    MqttUser,
    MqttUserPublic,
)
from control_plane.models.console import AuditEntry, AuditEntryPublic, ConsoleSession, SessionCreate, SessionPublic
from control_plane.models.device_history import DeviceStatusChange, StatusChangePublic
from control_plane.models.devices import Device, DeviceBase, DevicePublic, DeviceRecord
from control_plane.models.jobs import (
    ACTIVE_STATES,
    MAX_BATCH_JOBS,
    TERMINAL_STATES,
    AudioArtifact,
    Job,
    JobBase,
    JobBatch,
    JobCreate,
    JobDetail,
    JobEvent,
    JobEventPublic,
    JobPublic,
    JobState,
)
from control_plane.models.replicas import LeaderTerm, Replica
from control_plane.models.rollouts import (
    DeviceModel,
    DeviceModelPublic,
    ModelVersion,
    ModelVersionPublic,
    Rollout,
    RolloutEvent,
    RolloutEventPublic,
    RolloutPublic,
    RolloutTarget,
    RolloutTargetPublic,
)
from control_plane.models.telemetry import TelemetryPoint, TelemetrySample
from control_plane.models.voices import Voice, VoicePublic, VoiceSimilar

__all__ = [
    "ACTIVE_STATES", "MAX_BATCH_JOBS", "TERMINAL_STATES",
    "ApiToken", "ApiTokenCreate", "ApiTokenPublic", "AudioArtifact", "AuditEntry", "AuditEntryPublic",
    "ConsoleSession", "SessionCreate", "SessionPublic", "Device", "DeviceBase", "DeviceModel",
    "DeviceModelPublic", "DevicePublic", "DeviceRecord", "EnrolRequest", "EnrolResponse", "EnrolmentToken",
    "EnrolmentTokenCreate", "EnrolmentTokenPublic", "Job", "JobBase", "JobBatch", "JobCreate", "JobDetail",
    "JobEvent", "JobEventPublic", "JobPublic", "JobState", "ModelVersion", "ModelVersionPublic", "MqttUser",
    "MqttUserPublic", "Rollout", "RolloutEvent", "RolloutEventPublic", "RolloutPublic", "RolloutTarget",
    "RolloutTargetPublic", "TelemetryPoint", "TelemetrySample", "Voice", "VoicePublic", "VoiceSimilar",
    "DeviceStatusChange", "StatusChangePublic", "Replica", "LeaderTerm",
]
