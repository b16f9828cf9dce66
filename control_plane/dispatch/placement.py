"""Binding queued jobs to free slots (late binding: only a device with a free slot now gets one),
and the assignment message each binding publishes after its commit."""

from __future__ import annotations

import hashlib
from pathlib import Path

from sqlmodel import Session

from control_plane import jobs
from control_plane.dispatch.context import Context
from control_plane.dispatch.outbox import Outbox
from control_plane.models import Job, Voice
from control_plane.scheduler import Decision, Planner
from control_plane.signed_urls import signed_query
from voicefleet import protocol as p


def schedule(ctx: Context, session: Session, out: Outbox) -> None:
    """Bind queued jobs to free slots, in the caller's transaction (published after commit)."""
    out.reschedule = False
    fleet, settings = ctx.fleet, ctx.settings
    views = fleet.views()
    planner = Planner(views, fleet.stats, policy=settings.scheduler_policy, prefer_edge=settings.prefer_edge,
                      rr_cursor=fleet.rr)
    free = sum(planner.free.values())
    if free <= 0 or fleet.total_queued <= 0:
        return
    slots = sum(v.max_concurrency for v in views if planner.gates[v.id] is None)
    # Enough jobs to fill every free slot even when some wait for a busier, faster device.
    claimed = jobs.claim_queued(session, ctx.engine, limit=2 * slots + 16, starve_s=settings.batch_starve_s)
    for job in claimed:
        decision = planner.place(jobs.info_of(job))
        if decision.device_id is not None:
            _assign(ctx, session, job, decision, out)
            free -= 1
        if free <= 0:
            break
    fleet.rr = planner.rr_cursor


def _assign(ctx: Context, session: Session, job: Job, decision: Decision, out: Outbox) -> None:
    device_id = decision.device_id
    offer = ctx.fleet.devices[device_id].offer(decision.engine)  # placement chose among its offers
    spoken_by = jobs.speaker(device_id, offer, job.voice, decision.fallback)
    jobs.assign(session, job, device_id=device_id, lease_s=ctx.settings.lease_s, explain=decision.explain(),
                spoken_by=spoken_by)
    ctx.fleet.took(job, device_id, decision.expected_s, decision.engine)
    assignment = jobs.assignment(job, prompt=_prompt(ctx, session, job.voice), lease_s=ctx.settings.lease_s,
                                 engine=decision.engine)
    out.publish.append((p.device_topic(device_id, "job"), p.encode(assignment)))
    out.notify.add(job.id)


def _prompt(ctx: Context, session: Session, voice_id: str | None) -> p.VoicePrompt | None:
    """The prompt of a cloned voice, for the engine that clones it (presets need none)."""
    voice = session.get(Voice, voice_id) if voice_id else None
    if voice is None or voice.kind != "prompt" or not voice.audio_key:
        return None
    digest = ctx.prompt_hashes.get(voice.audio_key)
    if digest is None:  # of the file as served (voices are immutable: hash once)
        path = Path(ctx.settings.resolved_audio_dir()) / voice.audio_key
        digest = ctx.prompt_hashes[voice.audio_key] = hashlib.sha256(path.read_bytes()).hexdigest()
    return p.VoicePrompt(voice_id=voice.id, transcript=voice.transcript or "", sha256=digest, language=voice.language,
                         audio_url=signed_url(ctx, f"/v1/voices/{voice.id}/audio"))


def signed_url(ctx: Context, path: str) -> str:
    """An absolute URL an agent may GET ``path`` from without a token, for a limited time."""
    return f"{ctx.settings.api_url()}{path}?{signed_query(ctx.url_secret, path)}"
