#!/usr/bin/env python
"""The console's weight and speed: what the overview costs a browser, with a loaded database.

A control plane with one eSpeak agent runs against a database filled with 200 devices and 10,000
jobs from the last hour; Debian's Chromium signs in and measures, side by side in one run:

- bytes on the wire for the overview, first load and again from the cache (revalidated: 304s);
- requests each page makes;
- time from navigation until the overview has drawn its figures (the page marks it), against the time
  the one API call behind it takes alone;
- the delay from a job's end (its finished_at) to the overview showing it, with no reload.

Targets (docs/console.md): first load at most 300 KB, usable within 1 s, live within 1 s. Printed as
each figure and its ratio to the target (below 1 meets it); ``--json`` for the same as JSON.
``python benchmarks/console.py [--json] [--devices 200] [--jobs 10000]``
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run from a checkout without installing

TARGETS = {"first_load_kb": 300.0, "usable_s": 1.0, "live_s": 1.0}
PAGES = ["overview", "devices", "jobs", "playground", "voices", "rollouts", "access"]


def fill(database_url: str, devices: int, jobs: int, now: float) -> None:
    """Devices across roles and sites, and a last hour of finished jobs, written straight to the database."""
    from sqlalchemy import insert
    from sqlmodel import Session, create_engine

    from control_plane.models import Device, DeviceModel, Job

    rng = random.Random(7)
    engine = create_engine(database_url)
    with Session(engine) as session:
        session.execute(insert(Device), [{
            "id": f"bench-{i:03d}", "role": "edge" if i % 4 else "cloud",
            "status": rng.choice(["online"] * 9 + ["offline"]), "max_concurrency": 1, "agent_version": "bench",
            "last_seen_at": now - rng.uniform(0, 60), "cordoned": i % 50 == 0, "boot_id": "", "created_at": now - 86400}
            for i in range(devices)])
        tags = [{"device_id": f"bench-{i:03d}", "tags": [f"site:s{i % 8}", f"room:r{i % 20}"]} for i in range(devices)]
        session.execute(insert(DeviceModel), tags)
        rows = []
        for i in range(jobs):
            created = now - rng.uniform(5, 1800)  # none leaves the hour's window while this runs
            state = "failed" if i % 40 == 0 else "done"
            rows.append({"id": uuid.uuid4().hex, "text": f"第{i}条提醒", "lang": "zh", "state": state,
                         "device_id": f"bench-{i % devices:03d}", "attempt": 1, "created_at": created,
                         "assigned_at": created + 0.01, "started_at": created + 0.02,
                         "first_chunk_at": created + rng.uniform(0.05, 0.4),
                         "finished_at": created + rng.uniform(0.5, 3),
                         "error_code": "engine_error" if state == "failed" else None, "max_attempts": 3,
                         "spoken_by": {"engine": "student-onnx", "tier": "neural"}, "priority": 0,
                         "tier": "interactive"})
        session.execute(insert(Job), rows)
        session.commit()


def measure(devices: int, jobs: int) -> dict:
    import httpx
    from playwright.sync_api import sync_playwright

    from control_plane.console.browser import launch
    from voicefleet.broker import MosquittoBroker
    from voicefleet.credentials import auth_headers
    from voicefleet_cli.onebox import Cluster

    work = Path(tempfile.mkdtemp(prefix="voicefleet-console-bench-"))
    database_url = f"sqlite:///{work}/cp.db"
    with MosquittoBroker(work / "broker") as broker:
        cluster = Cluster(work / "home", mqtt_url=broker.url,
                          env={"VOICEFLEET_DATABASE_URL": database_url})
        try:
            cluster.start_control_plane()
            fill(database_url, devices, jobs, time.time())
            cluster.start_agent("bench-speaker", role="edge")
            api, token = cluster.api, cluster.token
            client = httpx.Client(base_url=api, headers=auth_headers(token), timeout=60)
            api_s = _api_time(client)
            with sync_playwright() as pw:
                browser = launch(pw)
                try:
                    seen = _browse(browser, api, token, client)
                    return {"devices": devices, "jobs": jobs, **seen, "api_s": api_s}
                finally:
                    browser.close()
        finally:
            cluster.stop()


def _api_time(client) -> float:
    """The overview's one API call alone (median of 5)."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        client.get("/v1/stats/overview", params={"window_s": 3600, "bucket_s": 60}).raise_for_status()
        times.append(time.perf_counter() - start)
    return sorted(times)[2]


def _browse(browser, api: str, token: str, client) -> dict:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    cdp = context.new_cdp_session(page)
    cdp.send("Network.enable")
    wire = {"bytes": 0, "requests": 0}

    def loaded(event):
        wire["bytes"] += event["encodedDataLength"]
        wire["requests"] += 1

    cdp.on("Network.loadingFinished", loaded)
    page.goto(f"{api}/console")
    page.fill("#token", token)
    page.locator("form.signin button[type=submit]").click()
    page.wait_for_selector("#ov-jobs")
    first = dict(wire)
    usable = []
    for _ in range(3):  # the cache is warm from here on: revalidation only
        wire.update(bytes=0, requests=0)
        page.reload()
        page.wait_for_selector("#ov-jobs")
        # the page marks the moment it first drew the figures, in ms since navigation began
        usable.append(page.evaluate("performance.getEntriesByName('overview-usable')[0].startTime") / 1000)
    cached = dict(wire)
    requests = {}
    for name in PAGES:
        wire.update(bytes=0, requests=0)
        page.goto(f"{api}/console#/{name}")
        page.wait_for_function("() => document.querySelector('main h1') && !/Loading/.test(document.body.innerText)")
        page.wait_for_timeout(300)
        requests[name] = wire["requests"]
    page.goto(f"{api}/console#/overview")
    page.wait_for_selector("#ov-jobs")
    live = []
    for i in range(3):
        page.evaluate(_WATCH_DONE, _done_count(page))
        job = client.post("/v1/jobs", json={"text": f"live check {i}", "lang": "en"}).json()
        finished = _finished(client, job["id"])
        page.wait_for_function("() => window.shownAt !== null")
        live.append(max(0.0, page.evaluate("window.shownAt") / 1000 - finished))
    context.close()
    return {"first_load_kb": first["bytes"] / 1024, "first_load_requests": first["requests"],
            "cached_load_kb": cached["bytes"] / 3 / 1024, "usable_s": sorted(usable)[1],
            "requests_per_page": requests, "live_s": sorted(live)[1]}


# Records when the overview's "N done" first exceeds the count it had: the moment a person sees it.
_WATCH_DONE = """n => { window.shownAt = null; const main = document.querySelector('main');
  const obs = new MutationObserver(() => {
    const m = /(\\d+) done/.exec(document.querySelector('#ov-jobs')?.innerText || '');
    if (m && Number(m[1]) > n) { window.shownAt = Date.now(); obs.disconnect(); } });
  obs.observe(main, {subtree: true, childList: true, characterData: true}); }"""


def _done_count(page) -> int:
    import re

    return int(re.search(r"(\d+) done", page.inner_text("#ov-jobs")).group(1))


def _finished(client, job_id: str) -> float:
    while True:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["state"] in ("done", "failed", "cancelled"):
            return job["finished_at"]
        time.sleep(0.02)


def report(r: dict) -> str:
    lines = [f"console benchmark: {r['devices']} devices, {r['jobs']} jobs in the last hour"]
    for key, unit in (("first_load_kb", "KB"), ("usable_s", "s"), ("live_s", "s")):
        ratio = r[key] / TARGETS[key]
        lines.append(f"  {key:<16} {r[key]:9.3f} {unit:<3} target {TARGETS[key]:g} {unit}  ratio {ratio:.2f}")
    share = r["cached_load_kb"] / r["first_load_kb"]
    lines.append(f"  cached reload    {r['cached_load_kb']:9.1f} KB  ({share:.2f} of first load)")
    lines.append(f"  overview API     {r['api_s']:9.3f} s   ({r['usable_s'] / r['api_s']:.1f}x of it until usable)")
    lines.append(f"  first load       {r['first_load_requests']} requests; per page: "
                 + ", ".join(f"{k} {v}" for k, v in r["requests_per_page"].items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--jobs", type=int, default=10_000)
    args = parser.parse_args()
    result = measure(args.devices, args.jobs)
    result["ratios"] = {k: result[k] / v for k, v in TARGETS.items()}
    print(json.dumps(result, indent=2) if args.json else report(result))


if __name__ == "__main__":
    main()
