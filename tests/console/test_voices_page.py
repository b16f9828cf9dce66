"""The voices page in Debian's Chromium against a real control plane and its eSpeak NG agents: upload
advice, a voice spoken by eSpeak NG uploaded, listed, played, compared and deleted; a viewer's view;
accessibility with voices listed."""

from __future__ import annotations

import io
import re
import wave

import numpy as np
import pytest
from conftest import axe_violations, make_token, sign_in
from services import http, wait_job

from benchmarks.signals import speechlike
from voicefleet_cli.onebox import Cluster

CONSENT = "Synthetic speech made by the test suite; no person's voice"
LANGUAGE = re.compile("Language|语言")  # the switch's label names the language it leads to
SPOKEN = "The quick brown fox jumps over the lazy dog, then it runs home across the quiet green field."


def wav_bytes(x: np.ndarray, sr: int) -> bytes:
    """16-bit mono WAV through the standard library."""
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sr)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def espeak_clip(console: Cluster) -> tuple[bytes, float]:
    """A sentence spoken by the cluster's own eSpeak NG agents (a job's WAV, re-packed) and its length."""
    job = http.post(f"{console.api}/v1/jobs", json={"text": SPOKEN, "lang": "en"}).json()
    assert wait_job(console.api, job["id"])["state"] == "done"
    with wave.open(io.BytesIO(http.get(f"{console.api}/v1/jobs/{job['id']}/audio").content)) as w:
        sr, pcm = w.getframerate(), np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    assert sr >= 16_000 and 3.5 < len(pcm) / sr < 8, (sr, len(pcm) / sr)  # a 3-30 s prompt, as a person would give
    return wav_bytes(pcm / 32768, sr), len(pcm) / sr


@pytest.fixture(scope="module")
def reference(console: Cluster) -> dict:
    """A voice already in the library (uploaded over the API), so the page lists one and has one to compare."""
    clip = wav_bytes(speechlike(5.0, seed=3), 24_000)
    made = http.post(f"{console.api}/v1/voices", files={"file": ("reference.wav", clip)},
                     data={"name": "Reference voice", "transcript": "syllables", "consent": CONSENT},
                     timeout=120)  # the first upload loads the speaker encoder: ~24 s on a quiet box
    assert made.status_code == 201, made.text
    return made.json()


def choose(page, name: str, data: bytes) -> None:
    page.set_input_files("#voice-file", files=[{"name": name, "mimeType": "audio/wav", "buffer": data}])


def test_upload_advice_then_a_spoken_voice_is_listed_played_compared_and_deleted(console: Cluster, context, reference):
    page = sign_in(context, console.api, page_path="#/voices")
    page.get_by_role("link", name="Reference voice").wait_for()

    # 1 s of voiced sound: refused, with the hint in English and the API's own text.
    choose(page, "short.wav", wav_bytes(speechlike(1.0, seed=5), 24_000))
    page.get_by_label("Name", exact=True).fill("Too short")
    page.get_by_label("Transcript", exact=True).fill(SPOKEN)
    page.get_by_label("Consent", exact=True).fill(CONSENT)
    page.get_by_role("button", name="Upload and check").click()
    advice = page.locator(".voices-advice[role=alert]")
    advice.wait_for()
    text = advice.inner_text()
    assert "Too short: record at least 3 seconds" in text, text
    assert "short.wav is 1.0 s" in text and "too_short" in text, text
    assert page.get_by_role("link", name="Too short").count() == 0

    # Corrupt bytes in Chinese: the hint in the reader's language, the API's text as it is.
    page.get_by_role("button", name=LANGUAGE).click()
    page.get_by_role("heading", name="上传音色").wait_for()
    choose(page, "broken.wav", np.random.default_rng(1).bytes(20_000))
    page.get_by_label("文本", exact=True).fill(SPOKEN)
    page.get_by_label("授权说明", exact=True).fill(CONSENT)
    page.get_by_role("button", name="上传并检查").click()
    page.get_by_text("无法识别的音频").wait_for()
    assert "undecodable" in page.locator(".voices-advice").inner_text()
    page.get_by_role("button", name=LANGUAGE).click()
    page.get_by_role("heading", name="Upload a voice").wait_for()

    # eSpeak NG speech: accepted, listed with its measurements and who can speak it, playable.
    clip, seconds = espeak_clip(console)
    choose(page, "espeak.wav", clip)
    page.get_by_label("Name", exact=True).fill("eSpeak fox")
    page.get_by_label("Transcript", exact=True).fill(SPOKEN)
    page.get_by_label("Language", exact=True).select_option("en")  # Latin alone would leave it unknown
    page.get_by_label("Consent", exact=True).fill(CONSENT)
    page.get_by_role("button", name="Upload and check").click()
    row = page.locator("tr.voices-fresh")
    row.wait_for()
    assert page.locator(".voices-advice").count() == 0
    cells = row.inner_text()
    assert "eSpeak fox" in cells and f"{seconds:.1f} s" in cells and "dB" in cells, cells
    assert "no cloning device online" in cells  # eSpeak NG does not clone
    voice_id = row.get_attribute("data-voice")
    stored = http.get(f"{console.api}/v1/voices/{voice_id}").json()
    assert stored["name"] == "eSpeak fox" and stored["language"] == "en", stored
    heard = page.evaluate("""async (id) => {
        const audio = document.querySelector(`tr[data-voice="${id}"] audio`);
        const r = await fetch(audio.src, {cache: "no-store"});  // not the element's cached range
        const bytes = (await r.arrayBuffer()).byteLength;
        if (audio.readyState < 1) await new Promise((ok) => audio.addEventListener('loadedmetadata', ok, {once: true}));
        return {status: r.status, type: r.headers.get('content-type'), bytes, duration: audio.duration};
    }""", voice_id)
    assert heard["status"] == 200 and heard["type"] == "audio/wav" and heard["bytes"] > 24_000 * 2 * 3, heard
    assert heard["duration"] == pytest.approx(seconds, abs=0.05), heard  # the element plays the stored prompt

    # Its page: the reference voice among the similar ones; then delete it, confirmed in the dialog.
    page.get_by_role("link", name="eSpeak fox").click()
    page.get_by_role("heading", name="eSpeak fox", level=1).wait_for()
    assert "English" in page.locator("dl.voices-facts").inner_text()
    similar = page.locator("table.voices-similar")
    similar.wait_for()
    assert re.search(r"0\.\d{3}|1\.000|-0\.\d{3}", similar.inner_text())
    assert similar.get_by_role("link", name="Reference voice").count() == 1
    page.get_by_role("button", name="Delete voice").click()
    dialog = page.get_by_role("dialog")
    assert "Delete the voice eSpeak fox" in dialog.inner_text()
    dialog.get_by_role("button", name="Delete voice").click()
    page.get_by_role("heading", name="Voices", level=1).wait_for()
    page.get_by_role("link", name="Reference voice").wait_for()
    assert page.get_by_role("link", name="eSpeak fox").count() == 0
    assert http.get(f"{console.api}/v1/voices/{voice_id}").status_code == 404
    assert all(re.search(r"status of (422|404)", p) for p in page.problems), page.problems  # the refusals only


def test_a_viewer_sees_the_voices_but_no_upload_or_delete(console: Cluster, context, reference):
    page = sign_in(context, console.api, make_token(console.api, "viewer"), page_path="#/voices")
    row = page.locator(f'tr[data-voice="{reference["id"]}"]')
    row.wait_for()
    assert "5.0 s" in row.inner_text() and "24 kHz" in row.inner_text()
    assert "only operators can listen" in row.inner_text()  # the API refuses viewers a person's voice
    page.get_by_role("heading", name="Preset voices by engine").wait_for()
    assert page.locator("main input[type=file]").count() == 0 and page.locator("main button").count() == 0
    page.get_by_role("link", name="Reference voice").click()
    page.get_by_role("heading", name="Reference voice", level=1).wait_for()
    page.locator("table.voices-similar, main p.hint").first.wait_for()
    assert page.locator("main button").count() == 0 and page.locator("main audio").count() == 0


def test_presets_are_listed_by_engine_with_the_devices_that_offer_them(console: Cluster, context, reference):
    page = sign_in(context, console.api, page_path="#/voices")
    table = page.locator("table.voices-presets-table")
    table.wait_for()
    page.wait_for_function("() => document.querySelector('.voices-presets-table').innerText.includes('espeak-ng:')")
    text = table.inner_text()
    presets = [v["id"] for v in http.get(f"{console.api}/v1/voices", params={"kind": "preset"}).json()]
    assert presets and all(f"espeak-ng:{p}" in text for p in presets), (presets, text)
    assert console.edge_id in text and console.cloud_id in text


@pytest.mark.parametrize("where", ["list", "voice"])
def test_no_serious_accessibility_violation_with_a_voice_listed(console: Cluster, context, reference, where: str):
    path = "#/voices" if where == "list" else f"#/voices/{reference['id']}"
    page = sign_in(context, console.api, page_path=path)
    page.wait_for_selector("main#page h1")
    page.wait_for_function("() => !document.querySelector('main').innerText.includes('Loading')")
    page.locator("main audio").first.wait_for()
    assert axe_violations(page) == []
    for lang in ("zh", "en"):  # every label in both languages
        page.get_by_role("button", name=LANGUAGE).click()
        page.wait_for_function("lang => document.documentElement.lang.startsWith(lang)", arg=lang)
        page.locator("main audio").first.wait_for()
        text = page.inner_text("body")
        assert "⟦" not in text, re.findall("⟦[^⟧]*⟧", text)
    missing = page.evaluate("async () => (await import('/console/static/i18n.js')).missingKeys()")
    assert [k for k in missing["en"] + missing["zh"] if k.startswith("voices.")] == []
