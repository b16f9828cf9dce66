"""The ``voicefleet`` command: run the pieces, submit speech, look at jobs and devices.

Client commands use only the standard library, so they work from an edge install too.
"""

from __future__ import annotations

import argparse
import os
import sys

from voicefleet import logs
from voicefleet.api_errors import ApiError
from voicefleet.errors import CodedError
from voicefleet_cli.client import cmd_devices, cmd_jobs, cmd_say, cmd_uncordon
from voicefleet_cli.pronounce import cmd_pronounce
from voicefleet_cli.settings import DEFAULT_API, CliSettings

# Each command imports its application when it runs: the edge install has no fastapi, sqlmodel or torch.


def cmd_control_plane(args, settings: CliSettings) -> int:
    from control_plane.core.config import Settings

    cp = Settings()
    logs.set_replica(cp.control_id)  # before the imports below, which log already

    import uvicorn

    from control_plane.app import create_app

    # log_config=None: uvicorn's lines go through our handler, in VOICEFLEET_LOG_FORMAT, like the rest
    uvicorn.run(create_app(cp), host=cp.http_host, port=cp.http_port, log_level=cp.log_level.lower(), log_config=None,
                access_log=False, ssl_certfile=cp.tls_cert_file, ssl_keyfile=cp.tls_key_file)
    return 0


def cmd_agent(args, settings: CliSettings) -> int:
    from edge_agent.agent import Agent
    from edge_agent.config import AgentSettings

    agent_settings = AgentSettings()
    logs.set_replica(agent_settings.device_id)
    Agent(agent_settings).run()
    return 0


def cmd_up(args, settings: CliSettings) -> int:
    from voicefleet_cli.onebox import run_one_box

    if args.replicas == 1:
        return run_one_box(settings, port=args.port)
    from functools import partial

    from voicefleet_cli.replicaset import ReplicaSet

    make = partial(ReplicaSet, replicas=args.replicas, database_url=os.environ.get("VOICEFLEET_DATABASE_URL", ""))
    return run_one_box(settings, port=args.port, make_cluster=make, replicas=args.replicas)


def cmd_admin_token(args, settings: CliSettings) -> int:
    from voicefleet_cli.onebox_repair import renew_admin_token

    path = renew_admin_token(settings.home, name="admin (made on the box)")
    print(f"a new admin token is in {path}; the CLI on this box uses it (revoke the old one if it leaked)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="voicefleet", description=__doc__)
    ap.add_argument("--api", help=f"control plane URL (default $VOICEFLEET_API_URL or {DEFAULT_API})")
    sub = ap.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run broker, control plane and an edge and a cloud agent on this box")
    up.add_argument("--port", type=int, default=None, help="HTTP port (default $VOICEFLEET_HTTP_PORT or 8750)")
    up.add_argument("--replicas", type=int, default=1, choices=range(1, 10), metavar="N",
                    help="N control planes behind HAProxy (needs VOICEFLEET_DATABASE_URL naming a PostgreSQL and "
                         "Debian's haproxy); default 1")
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
    say.add_argument("--voice", help="a preset (default, female, ...), ENGINE:PRESET for one engine's "
                     "(espeak-ng:female; `voicefleet devices` lists them), or a cloned voice's id")
    say.add_argument("--quality", choices=("best", "fastest"),
                     help="best (default): the best voice that can meet the deadline; fastest: the soonest")
    say.add_argument("--deadline", type=float, help="seconds the job should complete within")
    say.add_argument("--instruction", help="a style instruction, e.g. 'say it sadly'")
    say.add_argument("--timeout", type=float, default=300)
    say.set_defaults(func=cmd_say)

    pronounce = sub.add_parser("pronounce", help="the readings the Mandarin voices will use (runs here, no "
                               "control plane); without TEXT, one line of standard input at a time")
    pronounce.add_argument("text", nargs="?", help="the text (default: read lines from standard input)")
    pronounce.add_argument("--json", action="store_true", help='one JSON array per text: {"char", "pinyin"}')
    pronounce.set_defaults(func=cmd_pronounce)

    jobs = sub.add_parser("jobs", help="list jobs, or show one")
    jobs.add_argument("job_id", nargs="?")
    jobs.add_argument("--state")
    jobs.add_argument("--limit", type=int, default=20)
    jobs.add_argument("--json", action="store_true", help="with a job id: the API's JSON")
    jobs.set_defaults(func=cmd_jobs)
    sub.add_parser("devices", help="list devices: status, whether they take jobs (cordon, gate), and each "
                   "engine with its quality tier, voices and measured RTF").set_defaults(
        func=cmd_devices)
    uncordon = sub.add_parser("uncordon", help="let a cordoned device take jobs again (operator)")
    uncordon.add_argument("device_id")
    uncordon.set_defaults(func=cmd_uncordon)
    sub.add_parser("admin-token", help="make a new admin token in this box's database (no token needed) and "
                   "write it to VOICEFLEET_HOME/admin.token").set_defaults(func=cmd_admin_token)
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
    settings = CliSettings()
    logs.configure(settings.log_level, settings.log_format)
    try:
        return args.func(args, settings)
    except (ApiError, CodedError) as exc:  # the API's refusal, or a setting to fix (an unknown engine, say)
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
