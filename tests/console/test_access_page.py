"""The console's Access page in Debian's Chromium against a real control plane: tokens shown once, a
viewer signed in with one and cut off by its revocation, enrolment and broker logins, the audit log."""

from __future__ import annotations

import uuid

import httpx
from conftest import axe_violations, sign_in
from services import http, wait_for

from voicefleet_cli.onebox import Cluster

# A call made by the page's own API module (its CSRF token, its session cookie): the status it got.
PAGE_CALL = """async ([method, path, body]) => {
    const api = await import('/console/static/api.js');
    try { await api.call(method, path, body ?? undefined); return {status: 200}; }
    catch (e) { return {status: e.status, code: e.code}; } }"""


def audit_rows(page) -> list[dict]:
    return page.eval_on_selector_all("#access-audit tbody tr", """rows => rows.map(r => {
        const c = [...r.cells].map(td => td.innerText.trim());
        return {id: Number(r.dataset.id), who: c[1], call: c[2], target: c[4], status: c[5]}; })""")


def show_audit(page, *, subject: str = "", path: str = "") -> list[dict]:
    """The audit table once the page has applied these filters (it debounces typing)."""
    page.get_by_label("Subject", exact=True).fill(subject)
    page.get_by_label("Path starts with").fill(path)
    page.wait_for_function("""([subject, path]) => {
        const rows = [...document.querySelectorAll('#access-audit tbody tr')];
        return rows.length > 0 && rows.every(r => r.cells[1].innerText.startsWith(subject)
            && r.cells[2].innerText.split(' ')[1].startsWith(path)); }""", arg=[subject, path])
    return audit_rows(page)


def go_away_and_back(page, api: str) -> None:
    page.goto(f"{api}/console#/overview")
    page.wait_for_selector("#ov-jobs")
    page.goto(f"{api}/console#/access")
    page.wait_for_selector("#access-audit")


def test_a_viewer_token_is_shown_once_works_and_is_cut_off_by_its_revocation(console: Cluster, browser, context):
    api, tag = console.api, uuid.uuid4().hex[:6]
    name, subject = f"viewer-{tag}", f"ana-{tag}"
    admin_subject = http.get(f"{api}/v1/tokens/me").json()["subject"]
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=api)
    admin = sign_in(context, api, page_path="#/access")
    form = admin.locator("#access-token-form")
    form.get_by_label("Name").fill(name)
    form.locator("select[name=role]").select_option("viewer")
    form.get_by_label("Subject").fill(subject)
    form.get_by_role("button", name="Create token").click()
    box = admin.get_by_role("region", name="Copy the new token now")
    box.wait_for()
    token = admin.inner_text("#access-secret-value").strip()
    assert token.startswith("vft_") and "shown only this once" in box.inner_text()
    admin.wait_for_function("() => document.activeElement?.id === 'access-copy'")  # focus went to the secret
    admin.keyboard.press("Enter")  # copy, by keyboard
    admin.get_by_text("Copied to the clipboard").wait_for()
    assert admin.evaluate("() => navigator.clipboard.readText()") == token
    assert axe_violations(admin) == []

    go_away_and_back(admin, api)
    row = admin.locator("#access-tokens tbody tr", has_text=name)
    row.get_by_text("active").wait_for()
    assert subject in row.inner_text() and "viewer" in row.inner_text()
    assert box.count() == 0 and token not in admin.content()

    viewer_context = browser.new_context(locale="en-GB")
    try:
        viewer = sign_in(viewer_context, api, token, page_path="#/devices")
        viewer.get_by_text(console.edge_id).wait_for()
        assert subject in viewer.inner_text("header .who")
        assert viewer.get_by_role("link", name="Access").count() == 0
        refused = viewer.evaluate(PAGE_CALL, ["POST", "/v1/tokens", {"name": "mine", "role": "admin"}])
        assert refused["status"] == 403 and refused["code"] != "csrf", refused

        row.get_by_role("button", name="Revoke").click()
        admin.get_by_role("dialog").get_by_role("button", name="Revoke").click()
        row.get_by_text("revoked").wait_for()
        assert row.get_by_role("button").count() == 0

        viewer.get_by_label("Search id or tag").fill("edge")  # the devices page asks the API again
        viewer.get_by_role("alert").filter(has_text="session has ended").wait_for()
        assert viewer.evaluate(PAGE_CALL, ["GET", "/v1/devices", None])["status"] == 401
    finally:
        viewer_context.close()

    token_id = row.locator("code").inner_text()
    # The log records a call just after answering it: the page's own reload may come first.
    wait_for(lambda: http.get(f"{api}/v1/audit", params={"path_prefix": f"/v1/tokens/{token_id}"}).json(),
             "the revocation in the audit log")
    entries = show_audit(admin, path="/v1/tokens")
    ids = [e["id"] for e in entries]
    assert ids == sorted(ids, reverse=True), "newest first"
    revoked = next(e for e in entries if e["call"] == f"DELETE /v1/tokens/{token_id}")
    created = next(e for e in entries if e["call"] == "POST /v1/tokens" and e["status"] == "201")
    assert revoked["who"].startswith(admin_subject) and revoked["status"] == "200"
    assert revoked["target"] == f"token_id={token_id}"
    assert created["who"].startswith(admin_subject) and created["id"] < revoked["id"]
    by_viewer = show_audit(admin, subject=subject)
    assert [(e["call"], e["status"]) for e in by_viewer] == [("POST /v1/tokens", "403"), ("POST /v1/session", "200")]
    assert "viewer" in by_viewer[0]["who"]
    assert admin.problems == [], "\n".join(admin.problems)


def test_an_enrolment_token_is_shown_once_and_the_device_it_enrols_can_be_revoked(console: Cluster, context):
    api, device = console.api, f"kiosk-{uuid.uuid4().hex[:6]}"
    page = sign_in(context, api, page_path="#/access")
    form = page.locator("#access-enrol-form")
    form.get_by_label("Device id").fill(device)
    form.get_by_label("Tags").fill("lobby, north")
    form.get_by_label("Valid for").fill("2")
    form.get_by_role("button", name="Create enrolment token").click()
    page.get_by_role("region", name="Copy the new token now").wait_for()
    token = page.inner_text("#access-secret-value").strip()
    made = next(t for t in http.get(f"{api}/v1/enrolment-tokens").json() if t["device_id"] == device)
    assert made["tags"] == ["lobby", "north"] and round(made["expires_at"] - made["created_at"]) == 7200
    page.locator("#access-enrolment tbody tr", has_text=device).get_by_text("unused").wait_for()

    enrolled = httpx.post(f"{api}/v1/enrol", json={"token": token, "device_id": device}, timeout=30)
    assert enrolled.status_code == 200, enrolled.text
    go_away_and_back(page, api)
    assert token not in page.content()
    page.locator("#access-enrolment tbody tr", has_text=device).get_by_text(f"used by {device}").wait_for()
    login = page.locator("#access-users tbody tr", has_text=device)
    login.get_by_text("active").wait_for()
    assert "lobby, north" in login.inner_text()

    login.get_by_role("button", name="Revoke").click()
    page.get_by_role("dialog").get_by_role("button", name="Revoke").click()
    login.get_by_text("revoked").wait_for()
    users = {u["username"]: u for u in http.get(f"{api}/v1/mqtt-users").json()}
    assert users[device]["revoked_at"] is not None
    assert page.problems == [], "\n".join(page.problems)


def test_the_audit_log_pages_to_older_entries_and_names_bad_filters(console: Cluster, context):
    path = f"/v1/tokens/nope-{uuid.uuid4().hex[:6]}"
    for _ in range(55):  # each refused call is an entry
        assert http.delete(f"{console.api}{path}").status_code == 404
    page = sign_in(context, console.api, page_path="#/access")
    page.wait_for_selector("#access-audit")
    first = show_audit(page, path=path)
    assert len(first) == 50 and all(e["status"] == "404" for e in first)
    page.get_by_role("button", name="Older entries").click()
    page.get_by_text("End of the log.").wait_for()
    every = audit_rows(page)
    assert len(every) == 55 and len({e["id"] for e in every}) == 55
    assert [e["id"] for e in every] == sorted((e["id"] for e in every), reverse=True)

    page.get_by_label("Subject", exact=True).fill("not a subject")
    page.get_by_role("alert").filter(has_text="subject").wait_for()
