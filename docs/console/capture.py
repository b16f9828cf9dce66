"""Screenshots of every console page, in English and in Chinese, as docs/console.md shows them.

Runs the main job as a new user would (`voicefleet up` in a fresh home), gives it some work (Mandarin,
Cantonese and English jobs, a cordoned device), then signs in with the box's admin token and captures
each page in Debian's Chromium. Usage: .venv/bin/python docs/console/capture.py [--out docs/console]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from control_plane.console.browser import launch
from voicefleet.broker import free_port
from voicefleet.credentials import auth_headers

JOBS = [{"text": "明天我还你钱，你得早点来，我们一起去银行。"}, {"text": "今天下午三点提醒我开会。"},
        {"text": "早晨好，今日天气几好。", "dialect": "yue"}, {"text": "The kitchen timer is done.", "lang": "en"},
        {"text": "请把客厅的灯调暗一点。"}, {"text": "会议改到四点半，地点不变。", "quality": "fastest"}]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    home = Path(tempfile.mkdtemp(prefix="voicefleet-shots-"))
    port = free_port()
    env = {**os.environ, "VOICEFLEET_HOME": str(home)}
    up = subprocess.Popen([sys.executable, "-m", "voicefleet_cli", "up", "--port", str(port)], env=env,
                          stdout=subprocess.PIPE, text=True)
    try:
        for line in up.stdout:  # it prints its address once everything is up
            if line.startswith("voicefleet is up"):
                break
        api = f"http://127.0.0.1:{port}"
        token = (home / "admin.token").read_text().strip()
        job_ids = work(api, token)
        shoot(api, token, job_ids, args.out)
    finally:
        up.terminate()
        up.wait(60)


def work(api: str, token: str) -> list[str]:
    client = httpx.Client(base_url=api, headers=auth_headers(token), timeout=60)
    ids = [client.post("/v1/jobs", json=body).json()["id"] for body in JOBS]
    while any(client.get(f"/v1/jobs/{i}").json()["state"] not in ("done", "failed", "cancelled") for i in ids):
        time.sleep(0.2)
    return ids


def shoot(api: str, token: str, job_ids: list[str], out: Path) -> None:
    from playwright.sync_api import sync_playwright

    pages = ["overview", "devices", "devices/edge-1", "jobs", f"jobs/{job_ids[0]}", "playground", "voices",
             "rollouts", "access"]
    with sync_playwright() as pw:
        browser = launch(pw)
        for lang in ("en", "zh"):
            context = browser.new_context(viewport={"width": 1280, "height": 900}, locale="en-GB")
            page = context.new_page()
            page.goto(f"{api}/console")
            page.evaluate("lang => localStorage.setItem('vf-lang', lang)", lang)
            page.reload()
            page.fill("#token", token)
            page.locator("form.signin button[type=submit]").click()
            page.wait_for_selector("header.top nav")
            for name in pages:
                page.goto(f"{api}/console#/{name}")
                page.wait_for_function("() => !document.querySelector('main').innerText.match(/Loading|加载中/)")
                if name == "playground":
                    page.wait_for_selector(".reading ruby")
                page.wait_for_timeout(400)  # charts draw on the next frame
                page.screenshot(path=str(out / f"{name.split('/')[0]}{'-detail' if '/' in name else ''}-{lang}.png"),
                                full_page=True)
            context.close()
        browser.close()


if __name__ == "__main__":
    main()
