"""The device page's offline history in Debian's Chromium: an agent of the test's own on the shared
console cluster is stopped and started again, and its page lists the spell (when, how long, why) in
English and Chinese, live, with no accessibility violations."""

from __future__ import annotations

import uuid

from conftest import axe_violations, sign_in
from services import http, wait_for

from voicefleet.processes import terminate
from voicefleet_cli.onebox import Cluster


def test_a_stop_and_start_is_listed_on_the_device_page(console: Cluster, context):
    device = f"edge-hist-{uuid.uuid4().hex[:6]}"
    console.start_agent(device, role="edge")
    page = sign_in(context, console.api, page_path=f"#/devices/{device}")
    page.get_by_role("heading", name="Offline history").wait_for()
    assert page.get_by_text("No offline spells recorded.").is_visible()
    try:
        terminate(console.agents[device], timeout=40)
        rows = page.locator("table.offline-history tbody tr")
        rows.filter(has_text="still offline").wait_for()  # live: the device event redraws the page
        console.start_agent(device, role="edge")
        spells = wait_for(lambda: [c for c in http.get(f"{console.api}/v1/devices/{device}/status-history").json()
                                   if c["kind"] == "offline" and c["back_at"]], "the spell's end")
        rows.filter(has_not_text="still offline").filter(has_text="state message").wait_for()
        assert rows.count() == 1
        cells = rows.first.locator("td").all_inner_texts()
        assert cells[2].endswith((" s", " ms", " min")) and cells[3] == spells[0]["reason"] == "state message"
        assert axe_violations(page) == []
        page.get_by_role("button", name="Language").click()
        page.get_by_role("heading", name="离线记录").wait_for()
        assert page.get_by_role("columnheader", name="原因").is_visible()
        assert page.problems == [], "\n".join(page.problems)
    finally:
        terminate(console.agents.pop(device), timeout=40)
