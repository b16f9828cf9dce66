"""The console as operators use it, in Debian's Chromium against a real control plane and agents."""

from __future__ import annotations

import re

import pytest
from conftest import axe_violations, make_token, sign_in
from services import http, wait_for, wait_job

from voicefleet_cli.onebox import Cluster

PAGES = ["overview", "devices", "jobs", "playground", "voices", "rollouts", "access"]


def test_the_console_is_served_with_a_strict_content_security_policy(console: Cluster):
    r = http.get(f"{console.api}/console")
    assert r.status_code == 200 and "text/html" in r.headers["content-type"]
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "http" not in csp
    assert r.headers["x-frame-options"] == "DENY" and r.headers["x-content-type-options"] == "nosniff"
    assert "<script>" not in r.text and 'type="module"' in r.text  # no inline script to allow
    assert http.get(f"{console.api}/console/static/app.js").headers["content-security-policy"] == csp


def test_admin_signs_in_and_every_page_renders_in_both_languages_without_errors(console: Cluster, context):
    page = sign_in(context, console.api)
    assert page.evaluate("document.cookie") == "", "the session cookie must be HttpOnly"
    for lang, label in (("en", "Overview"), ("zh", "总览")):
        if lang == "zh":
            page.get_by_role("button", name="Language").click()
        page.get_by_role("link", name=label).wait_for()
        for name in PAGES:
            page.goto(f"{console.api}/console#/{name}")
            page.wait_for_selector("main#page h1")
            text = page.inner_text("body")
            assert "⟦" not in text, f"{name} ({lang}) shows a label with no {lang} text: {re.findall('⟦[^⟧]*⟧', text)}"
    missing = page.evaluate("async () => (await import('/console/static/i18n.js')).missingKeys()")
    assert missing == {"en": [], "zh": []}
    assert page.problems == [], "\n".join(page.problems)


def test_overview_updates_live_when_a_job_finishes(console: Cluster, context):
    page = sign_in(context, console.api)
    summary = page.locator("#ov-jobs")
    summary.wait_for()
    before = summary.inner_text()
    done_before = int(re.search(r"(\d+) done", before).group(1))
    job = http.post(f"{console.api}/v1/jobs", json={"text": "overview live", "lang": "en"}).json()
    assert wait_job(console.api, job["id"])["state"] == "done"
    page.wait_for_function("n => /(\\d+) done/.exec(document.querySelector('#ov-jobs').innerText)[1] > n",
                           arg=done_before)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1  # no reload


def test_playground_shows_readings_then_speaks_audio_the_page_can_decode(console: Cluster, context):
    page = sign_in(context, console.api, page_path="#/playground")
    page.fill("#play-text", "我们一起去银行。")
    page.wait_for_function("() => document.querySelector('.reading')?.innerText.includes('银')")
    assert page.inner_text(".reading ruby.poly") .startswith("行")  # the one polyphone, marked
    readings = page.eval_on_selector_all(".reading ruby", "rs => rs.map(r => r.querySelector('rt').textContent)")
    assert readings[-1] == "hang2" and len(readings) == 7
    page.get_by_role("button", name="Speak").click()
    page.wait_for_selector("#play-audio")
    job_id = re.search(r"Job (\w+)", page.inner_text(".result h2")).group(1)
    assert wait_job(console.api, job_id)["state"] == "done"
    heard = page.evaluate("""async () => {
        const src = document.querySelector('#play-audio').src;
        const buf = await (await fetch(src)).arrayBuffer();
        const audio = await new OfflineAudioContext(1, 1, 16000).decodeAudioData(buf);
        const x = audio.getChannelData(0);
        let sum = 0; for (const v of x) sum += v * v;
        return {seconds: audio.duration, rms: Math.sqrt(sum / x.length)};
    }""")
    assert 0.8 < heard["seconds"] < 10, heard  # seven syllables
    assert heard["rms"] > 0.01, heard  # speech, not silence
    page.wait_for_selector(".result table.grid tr.picked")  # where it went and why
    assert "tier" in page.inner_text(".result")


def test_cordon_from_the_device_page_and_the_next_job_avoids_it(console: Cluster, context):
    page = sign_in(context, console.api, page_path=f"#/devices/{console.cloud_id}")
    page.get_by_role("button", name="Cordon").focus()
    page.keyboard.press("Enter")  # the keyboard alone: the button, then the dialog's confirm
    page.get_by_role("dialog").wait_for()
    page.keyboard.press("Enter")
    page.get_by_role("button", name="Uncordon").wait_for()
    try:
        jobs = [http.post(f"{console.api}/v1/jobs", json={"text": f"avoid {i}", "lang": "en"}).json() for i in range(3)]
        assert {wait_job(console.api, j["id"])["device_id"] for j in jobs} == {console.edge_id}
    finally:
        page.get_by_role("button", name="Uncordon").click()
        wait_for(lambda: not http.get(f"{console.api}/v1/devices/{console.cloud_id}").json()["cordoned"], "uncordon")


def test_user_text_is_rendered_inert(console: Cluster, context):
    """Job text with entities shows as typed; markup the API echoes back in its advice stays text."""
    text = "Tom &amp; Jerry &lt;b&gt;你好"
    job = http.post(f"{console.api}/v1/jobs", json={"text": text}).json()
    page = sign_in(context, console.api, page_path=f"#/jobs/{job['id']}")
    page.wait_for_selector("h1 .text")
    assert page.inner_text("h1 .text") == text
    page.goto(f"{console.api}/console#/playground")
    page.fill("#play-text", "<script>window.pwned=1</script><img src=x onerror=window.pwned=2>你好")
    page.get_by_role("button", name="Speak").click()
    advice = page.get_by_role("alert").first
    advice.wait_for()
    assert "<script> is not markup" in advice.inner_text()
    assert page.evaluate("window.pwned") is None
    assert page.locator("main img").count() == 0


def test_viewer_sees_no_action_controls_and_a_forged_call_is_refused(console: Cluster, context):
    page = sign_in(context, console.api, make_token(console.api, "viewer"), page_path=f"#/devices/{console.edge_id}")
    page.wait_for_selector("main h1")
    page.get_by_text("Engines and voices").wait_for()
    assert page.locator("main button").count() == 0
    assert page.get_by_role("link", name="Playground").count() == 0
    forged = page.evaluate("""async (id) => {
        const s = await (await fetch('/v1/session')).json();
        const r = await fetch(`/v1/devices/${id}/cordon`, {method: 'POST', headers: {'X-CSRF-Token': s.csrf}});
        return r.status; }""", console.edge_id)
    assert forged == 403
    assert http.get(f"{console.api}/v1/devices/{console.edge_id}").json()["cordoned"] is False


def test_a_state_changing_call_without_the_csrf_token_is_refused(console: Cluster, context):
    page = sign_in(context, console.api)
    status = page.evaluate("""async (id) =>
        (await fetch(`/v1/devices/${id}/cordon`, {method: 'POST'})).status""", console.edge_id)
    assert status == 403
    assert http.get(f"{console.api}/v1/devices/{console.edge_id}").json()["cordoned"] is False


def test_signing_out_ends_the_session(console: Cluster, context):
    page = sign_in(context, console.api)
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_selector("#token")
    assert page.evaluate("async () => (await fetch('/v1/devices')).status") == 401


@pytest.mark.parametrize("name", PAGES)
def test_no_serious_accessibility_violation(console: Cluster, context, name: str):
    page = sign_in(context, console.api, page_path=f"#/{name}")
    page.wait_for_selector("main#page h1")
    page.wait_for_function("() => !document.querySelector('main').innerText.includes('Loading')")
    assert axe_violations(page) == []
