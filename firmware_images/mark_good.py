"""On the device, at boot: is the image RAUC just booted really working? Installed is not done.

Speaks a test phrase through the agent's local API (the new agent, its pinned dependencies and its
model bundle all take part), then ``rauc status mark-good`` — or ``mark-bad``, so the bootloader
falls back to the other slot on the reboot the systemd unit then asks for. The outcome goes to the
status file (``edge_agent/image_status.py``), which the agent reports to the control plane in its state.
"""

from __future__ import annotations

import argparse
import http.client
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.config import AgentSettings
from edge_agent.image_status import STATUS_FILE, write_status
from edge_agent.image_status import image_report as image_report  # what the agent reports of this check
from edge_agent.local_http import UnixHTTPConnection
from voicefleet.credentials import auth_headers

TEST_PHRASE = "系统更新完成。"
MIN_AUDIO_BYTES = 44 + 2 * 8000  # a WAV header and at least half a second at 16 kHz


def speak_test(where: int | str, text: str = TEST_PHRASE, timeout_s: float = 60.0, token: str | None = None) -> dict:
    """POST /v1/speak on the local API (its Unix socket's path, or its loopback port with the token);
    the audio must be a WAV of some length. Returns figures."""
    t0 = time.monotonic()
    if isinstance(where, str):
        conn: http.client.HTTPConnection = UnixHTTPConnection(where, timeout=timeout_s)
    else:
        conn = http.client.HTTPConnection("127.0.0.1", where, timeout=timeout_s)
    try:
        conn.request("POST", "/v1/speak", json.dumps({"text": text}),
                     {"Content-Type": "application/json", **auth_headers(token)})
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    if resp.status != 200 or data[:4] != b"RIFF" or len(data) < MIN_AUDIO_BYTES:
        raise RuntimeError(f"test phrase: HTTP {resp.status}, {len(data)} bytes: {data[:200]!r}")
    return {"audio_bytes": len(data), "seconds": round(time.monotonic() - t0, 3),
            "source": resp.getheader("X-Voicefleet-Source") or ""}


def wait_and_test(where: int | str, wait_s: float, token: str | None = None) -> dict:
    """The agent may still be starting (model load): retry until ``wait_s`` has passed."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return speak_test(where, token=token)
        except (OSError, RuntimeError):
            if time.monotonic() >= deadline:
                raise
            time.sleep(1.0)


def rauc_status() -> dict:
    out = subprocess.run(["rauc", "status", "--output-format=json"], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def rauc_mark(good: bool) -> None:
    subprocess.run(["rauc", "status", "mark-good" if good else "mark-bad"], check=True, capture_output=True)


def check_image(manifest_path: Path, where: int | str, status_path: Path, wait_s: float,
                token: str | None = None) -> dict:
    manifest = json.loads(manifest_path.read_text())
    record = {"image_version": manifest["image_version"], "profile": manifest["profile"],
              "compatible": manifest["compatible"], "slot": rauc_status().get("booted")}
    try:
        record.update(state="good", test=wait_and_test(where, wait_s, token), error=None)
    except (OSError, RuntimeError) as e:
        record.update(state="bad", test=None, error=str(e)[:500])
    rauc_mark(record["state"] == "good")
    record["checked_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    write_status(status_path, record)
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m firmware_images.mark_good", description=__doc__)
    ap.add_argument("--manifest", type=Path, required=True, help="image.json of the booted slot")
    ap.add_argument("--status-file", type=Path, default=STATUS_FILE)
    ap.add_argument("--wait-s", type=float, default=180.0, help="how long the agent may take to answer")
    args = ap.parse_args(argv)
    settings = AgentSettings()
    where = settings.local_api_socket or settings.local_api_port
    if where is None:
        print("VOICEFLEET_LOCAL_API_SOCKET (or _PORT with _TOKEN) is not set: the test phrase needs the local API",
              file=sys.stderr)
        return 2
    record = check_image(args.manifest, where, args.status_file, args.wait_s, settings.local_api_token)
    print(json.dumps(record, ensure_ascii=False))
    return 0 if record["state"] == "good" else 1


if __name__ == "__main__":
    sys.exit(main())
