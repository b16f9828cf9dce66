"""The console in a real browser: Debian's Chromium driven by Playwright (no browser download),
against a real control plane with real agents (eSpeak NG) on the test Mosquitto.

One cluster per test module (starting one costs seconds); each test gets a fresh browser context,
so cookies and storage never leak between tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import ADMIN_TOKEN, http, new_cluster

from control_plane.console.browser import CHROMIUM, launch
from voicefleet.broker import MosquittoBroker
from voicefleet_cli.onebox import Cluster

AXE = Path(__file__).parent / "vendor" / "axe.min.js"


@pytest.fixture(scope="module")  # not longer: Playwright's sync API keeps an event loop running in this
def browser():                   # thread while it is open, and later tests' asyncio.run() would refuse to start
    sync_api = pytest.importorskip("playwright.sync_api", reason="the browser tests need playwright (make test-setup)")
    if not Path(CHROMIUM).exists():
        pytest.fail("the console tests need Debian's chromium: apt-get install chromium (make test installs it)")
    with sync_api.sync_playwright() as pw:
        chromium = launch(pw)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def console(tmp_path_factory: pytest.TempPathFactory, mqtt_broker: MosquittoBroker) -> Iterator[Cluster]:
    """A control plane with an edge and a cloud agent, both eSpeak NG."""
    cluster = new_cluster(tmp_path_factory.mktemp("console"), mqtt_broker.url,
                          VOICEFLEET_TELEMETRY_INTERVAL_S="1")
    cluster.edge_id, cluster.cloud_id = f"edge-{cluster.tag}", f"cloud-{cluster.tag}"
    try:
        cluster.start_control_plane()
        cluster.start_agent(cluster.edge_id, role="edge")
        cluster.start_agent(cluster.cloud_id, role="cloud")
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def context(browser):
    ctx = browser.new_context(locale="en-GB", viewport={"width": 1280, "height": 900})
    yield ctx
    ctx.close()


def make_token(api: str, role: str) -> str:
    made = http.post(f"{api}/v1/tokens", json={"name": f"{role}-{uuid.uuid4().hex[:6]}", "role": role})
    assert made.status_code == 201, made.text
    return made.json()["token"]


def sign_in(context, api: str, token: str = ADMIN_TOKEN, page_path: str = "#/overview"):
    """A page of the console, signed in through the sign-in form as a person would."""
    page = context.new_page()
    page.goto(f"{api}/console")
    page.fill("#token", token)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("header.top nav")
    problems: list[str] = []  # from here on (before sign-in, GET /v1/session is rightly a 401)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.problems = problems
    if page_path:
        page.goto(f"{api}/console{page_path}")
    return page


def axe_violations(page) -> list[dict]:
    """axe-core's serious and critical violations on the page as it stands."""
    page.evaluate(AXE.read_text())  # evaluated by the driver: the page's CSP (rightly) refuses injected scripts
    result = page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")
    return [{"id": v["id"], "impact": v["impact"], "help": v["help"],
             "nodes": [n["target"] for n in v["nodes"][:3]]}
            for v in result if v["impact"] in ("serious", "critical")]
