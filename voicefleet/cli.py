"""The ``voicefleet`` command: run the pieces, submit speech, look at jobs and devices.

Client commands use only the standard library, so they work from an edge install too.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from voicefleet.audio import WAV_HEADER_BYTES, wav_header
from voicefleet.credentials import api_token, auth_headers

DEFAULT_API = "http://127.0.0.1:8750"


class ApiError(Exception):
    pass


# ------------------------------------------------------------------------------- HTTP client


def _api(args) -> str:
    return (args.api or os.environ.get("VOICEFLEET_API_URL") or DEFAULT_API).rstrip("/")


def _request(method: str, url: str, body: dict | None = None, timeout: float = 30):
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **auth_headers(api_token())}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        return urllib.request.urlopen(req, timeout=timeout)
    except urllib.error.HTTPError as exc:
        hint = " (set VOICEFLEET_TOKEN to an API token)" if exc.code == 401 else ""
        raise ApiError(f"{exc.code}: {_error_text(exc.read())}{hint}") from None
    except urllib.error.URLError as exc:
        raise ApiError(f"cannot reach the control plane at {url}: {exc.reason} "
                       "(start it with `voicefleet up` or set VOICEFLEET_API_URL)") from None


def _error_text(body: bytes) -> str:
    try:
        doc = json.loads(body)
    except ValueError:
        return body.decode(errors="replace")
    err = doc.get("error") or {}
    return err.get("text") or str(doc.get("detail") or doc)


def _json(method: str, url: str, body: dict | None = None) -> Any:
    with _request(method, url, body) as resp:
        return json.loads(resp.read())


# ---------------------------------------------------------------------------------- commands


def cmd_say(args) -> int:
    api = _api(args)
    spec = {"text": args.text, "lang": args.lang, "dialect": args.dialect, "voice": args.voice,
            "instruction": args.instruction}
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


def cmd_jobs(args) -> int:
    api = _api(args)
    if args.job_id:
        print(json.dumps(_json("GET", f"{api}/v1/jobs/{args.job_id}"), indent=2, ensure_ascii=False))
        return 0
    query = f"?limit={args.limit}" + (f"&state={args.state}" if args.state else "")
    for j in _json("GET", f"{api}/v1/jobs{query}"):
        print(f"{j['id']}  {j['state']:<9} {j['device_id'] or '-':<16} {j['lang']}/{j['dialect'] or '-':<4} "
              f"{j['text'][:40]}")
    return 0


def cmd_devices(args) -> int:
    for d in _json("GET", f"{_api(args)}/v1/devices"):
        caps = d.get("capabilities") or {}
        engine = (d.get("engine") or {}).get("name", "-")
        print(f"{d['id']:<20} {d['status']:<9} {d['role'] or '-':<6} {engine:<16} "
              f"{d['inflight']}/{d['max_concurrency']}  langs={','.join(caps.get('languages', []))} "
              f"dialects={','.join(caps.get('dialects', [])) or '-'}")
    return 0


def cmd_control_plane(args) -> int:
    import uvicorn

    from control_plane.app import create_app
    from control_plane.core.config import Settings

    settings = Settings()
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port,
                log_level=settings.log_level.lower(), access_log=False,
                ssl_certfile=settings.tls_cert_file, ssl_keyfile=settings.tls_key_file)
    return 0


def cmd_agent(args) -> int:
    from edge_agent.agent import Agent
    from edge_agent.config import AgentSettings

    Agent(AgentSettings()).run()
    return 0


def cmd_up(args) -> int:
    from voicefleet.onebox import run_one_box

    return run_one_box(port=args.port)


# ------------------------------------------------------------------------------------ parser


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="voicefleet", description=__doc__)
    ap.add_argument("--api", help=f"control plane URL (default $VOICEFLEET_API_URL or {DEFAULT_API})")
    sub = ap.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run broker, control plane and an edge and a cloud agent on this box")
    up.add_argument("--port", type=int, default=None, help="HTTP port (default $VOICEFLEET_HTTP_PORT or 8750)")
    up.set_defaults(func=cmd_up)
    sub.add_parser("control-plane", help="run the control plane (HTTP API + dispatcher)").set_defaults(
        func=cmd_control_plane)
    sub.add_parser("agent", help="run an agent (role, engine, device id from VOICEFLEET_*)").set_defaults(
        func=cmd_agent)

    say = sub.add_parser("say", help="speak a text into a WAV file")
    say.add_argument("text")
    say.add_argument("-o", "--output", default="speech.wav")
    say.add_argument("--lang", default="zh", help="zh (default), en, ...")
    say.add_argument("--dialect", help="a Chinese dialect, e.g. yue (Cantonese)")
    say.add_argument("--voice")
    say.add_argument("--instruction", help="a style instruction, e.g. 'say it sadly'")
    say.add_argument("--timeout", type=float, default=300)
    say.set_defaults(func=cmd_say)

    jobs = sub.add_parser("jobs", help="list jobs, or show one")
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--state")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.set_defaults(func=cmd_jobs)
    sub.add_parser("devices", help="list devices").set_defaults(func=cmd_devices)
    sub.add_parser("distill", help="teacher -> student distillation (see `voicefleet distill --help`)")
    sub.add_parser("image", help="signed RAUC device images (see `voicefleet image --help`)")
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["distill"]:  # its own parser (models/distill/pipeline.py); needs the distill extra
        from models.distill.pipeline import main as distill

        return distill(argv[1:])
    if argv[:1] == ["image"]:  # its own parser (firmware_images/cli.py); needs rauc and squashfs-tools
        from firmware_images.cli import main as image

        return image(argv[1:])
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=os.environ.get("VOICEFLEET_LOG_LEVEL", "INFO").upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return args.func(args)
    except ApiError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
