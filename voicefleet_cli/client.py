"""The API commands (say, jobs, devices): a small HTTP client of the control plane.

Standard library only, so they work from an edge install too.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from voicefleet.api_errors import ApiError, error_text
from voicefleet.audio import WAV_HEADER_BYTES, wav_header
from voicefleet.credentials import api_token, auth_headers
from voicefleet_cli import show
from voicefleet_cli.settings import DEFAULT_API, CliSettings


def api_url(args, settings: CliSettings) -> str:
    return (args.api or settings.api_url or DEFAULT_API).rstrip("/")


def _request(method: str, url: str, body: dict | None = None, timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **auth_headers(api_token())}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        hint = (" (set VOICEFLEET_TOKEN to an API token; on the control plane's box `voicefleet admin-token` "
                "writes a new admin token to VOICEFLEET_HOME/admin.token)") if exc.code == 401 else ""
        raise ApiError(f"{error_text(exc.read())}{hint}", exc.code) from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach the control plane at {url}: {exc.reason} "
                       "(start it with `voicefleet up` or set VOICEFLEET_API_URL)") from None


def _json(method: str, url: str, body: dict | None = None) -> Any:
    with _request(method, url, body) as resp:
        return json.loads(resp.read())


def cmd_say(args, settings: CliSettings) -> int:
    api = api_url(args, settings)
    spec = {"text": args.text, "lang": args.lang, "dialect": args.dialect, "voice": args.voice,
            "instruction": args.instruction, "quality": args.quality, "deadline_s": args.deadline}
    job = _json("POST", f"{api}/v1/jobs", {k: v for k, v in spec.items() if v is not None})
    out = Path(args.output)
    with _request("GET", f"{api}/v1/jobs/{job['id']}/audio", timeout=args.timeout) as resp, open(out, "wb") as f:
        while block := resp.read(1 << 15):
            f.write(block)
    _fix_stream_header(out)
    final = _json("GET", f"{api}/v1/jobs/{job['id']}")
    if final["state"] != "done":
        print(f"job {job['id']} ended {final['state']}: {final.get('error_text')}", file=sys.stderr)
        return 1
    print(f"{out}: job {job['id']} on {final['device_id']}, {out.stat().st_size - WAV_HEADER_BYTES} bytes "
          f"at {final['sample_rate']} Hz")
    print(show.spoken_by(final))
    return 0


def _fix_stream_header(path: Path) -> None:
    """A WAV streamed while the job ran has 'unknown length' in its header: write the real one."""
    size = path.stat().st_size
    if size < WAV_HEADER_BYTES:
        return
    with open(path, "r+b") as f:
        head = f.read(WAV_HEADER_BYTES)
        rate = int.from_bytes(head[24:28], "little")
        f.seek(0)
        f.write(wav_header(rate, size - WAV_HEADER_BYTES))


def cmd_jobs(args, settings: CliSettings) -> int:
    api = api_url(args, settings)
    if args.job_id:
        job = _json("GET", f"{api}/v1/jobs/{args.job_id}")
        print(json.dumps(job, indent=2, ensure_ascii=False) if args.json else show.job_summary(job))
        return 0
    query = f"?limit={args.limit}" + (f"&state={args.state}" if args.state else "")
    for j in _json("GET", f"{api}/v1/jobs{query}"):
        print(f"{j['id']}  {j['state']:<9} {j['device_id'] or '-':<16} {j['lang']}/{j['dialect'] or '-':<4} "
              f"{j['text'][:40]}")
    return 0


def cmd_devices(args, settings: CliSettings) -> int:
    for d in _json("GET", f"{api_url(args, settings)}/v1/devices"):
        caps = d.get("capabilities") or {}
        engine = (d.get("engine") or {}).get("name", "-")
        print(f"{d['id']:<20} {d['status']:<9} {d['role'] or '-':<6} {engine:<16} "
              f"{d['inflight']}/{d['max_concurrency']}  {_takes_jobs(d):<10} "
              f"langs={','.join(caps.get('languages', []))} dialects={','.join(caps.get('dialects', [])) or '-'}"
              + ("" if d.get("eligible") else f"  gate: {d.get('gate') or '-'}"))
        for line in show.engines(d):
            print(line)
        if gpu := _gpu_now(d.get("telemetry") or {}):
            print(gpu)
    return 0


def _gpu_now(t: dict) -> str | None:
    """A GPU worker's latest figures (NVML): ``    gpu 87%  memory 11.5/160.0 GB  71 °C  400.5 W``."""
    if t.get("gpu_mem_total_mb") is None:
        return None

    def fig(value, unit: str, scale: float = 1, fmt: str = ".0f") -> str:
        return "-" if value is None else f"{value / scale:{fmt}}{unit}"

    return (f"    gpu {fig(t.get('gpu_percent'), '%')}  memory {fig(t.get('gpu_mem_used_mb'), '', 1024, '.1f')}/"
            f"{fig(t['gpu_mem_total_mb'], ' GB', 1024, '.1f')}  {fig(t.get('gpu_temperature_c'), ' °C')}  "
            f"{fig(t.get('power_w'), ' W', fmt='.1f')}")


def _takes_jobs(device: dict) -> str:
    """Whether the scheduler gives it new jobs: ``eligible``, ``cordoned`` (an operator's or a
    revocation's; ``voicefleet uncordon`` lifts it) or ``gated`` (the gate says why)."""
    if device.get("cordoned"):
        return "cordoned"
    return "eligible" if device.get("eligible") else "gated"


def cmd_uncordon(args, settings: CliSettings) -> int:
    d = _json("POST", f"{api_url(args, settings)}/v1/devices/{args.device_id}/uncordon")
    print(f"{d['id']}: {_takes_jobs(d)}" + ("" if d.get("eligible") else f" (gate: {d.get('gate') or '-'})"))
    return 0
