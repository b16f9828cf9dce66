"""POST /v1/pronounce on the real app (Mosquitto and SQLite, in-process): the readings the Mandarin
engines use, any role may ask, bad text refused with the API's error body, the schema published."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from services import ADMIN_TOKEN

from control_plane.app import create_app
from control_plane.core.config import Settings
from voicefleet.broker import MosquittoBroker
from voicefleet.credentials import auth_headers
from voicefleet.protocol import MAX_TEXT_CHARS
from voicefleet.text.mandarin import phrases


@pytest.fixture
def app(mqtt_broker: MosquittoBroker, tmp_path: Path) -> Iterator[TestClient]:
    settings = Settings(home=tmp_path, database_url=f"sqlite:///{tmp_path}/vf.db", mqtt_url=mqtt_broker.url,
                        control_id=f"cp-{uuid.uuid4().hex[:8]}", redis_url=None)
    with TestClient(create_app(settings), headers=auth_headers(ADMIN_TOKEN)) as client:
        yield client


def test_readings_are_one_per_character_with_null_for_what_is_not_han(app: TestClient):
    r = app.post("/v1/pronounce", json={"text": "长江很长, OK"})
    assert r.status_code == 200, r.text
    assert r.json() == {"normalised": "长江很长, OK", "readings": [
        {"char": "长", "pinyin": "chang2", "polyphone": True}, {"char": "江", "pinyin": "jiang1", "polyphone": False},
        {"char": "很", "pinyin": "hen3", "polyphone": False}, {"char": "长", "pinyin": "chang2", "polyphone": True},
        {"char": ",", "pinyin": None, "polyphone": False}, {"char": " ", "pinyin": None, "polyphone": False},
        {"char": "O", "pinyin": None, "polyphone": False}, {"char": "K", "pinyin": None, "polyphone": False}]}


def test_the_normalised_text_is_what_is_read(app: TestClient):
    body = app.post("/v1/pronounce", json={"text": "第3天"}).json()
    assert body["normalised"] == "第三天" == "".join(e["char"] for e in body["readings"])


def test_the_readings_are_the_syllables_the_engines_speak(app: TestClient):
    text = "2025年我在银行排了一个小时的队，她[h][ào]干净。"
    got = [e["pinyin"] for e in app.post("/v1/pronounce", json={"text": text}).json()["readings"]]
    assert [s for s in got if s] == [s for p in phrases(text) for s in p.syllables]


def test_a_viewer_may_ask_and_no_token_may_not(app: TestClient):
    made = app.post("/v1/tokens", json={"name": "viewer", "role": "viewer"})
    assert made.status_code == 201, made.text
    r = app.post("/v1/pronounce", json={"text": "银行"}, headers=auth_headers(made.json()["token"]))
    assert r.json()["readings"][1] == {"char": "行", "pinyin": "hang2", "polyphone": True}
    assert app.post("/v1/pronounce", json={"text": "银行"}, headers={"Authorization": ""}).status_code == 401


@pytest.mark.parametrize(("body", "code", "words"), [
    ({"text": "长" * MAX_TEXT_CHARS}, "invalid_request", "split it into jobs"),
    ({"text": "  \n"}, "empty_text", "empty"),
    ({"text": "长江", "lang": "en"}, "invalid_request", "lang"),
    ({}, "invalid_request", "text"),
])
def test_bad_text_is_refused_with_the_error_body(app: TestClient, body: dict, code: str, words: str):
    r = app.post("/v1/pronounce", json=body)
    assert r.status_code == 422, r.text
    assert r.json()["error"]["code"] == code and words in r.json()["error"]["text"], r.text


def test_a_lone_surrogate_is_refused_not_a_server_error(app: TestClient):
    body = b'{"text": "\\ud800\xe5\xa5\xbd"}'  # a JSON escape of half a UTF-16 pair, then 好
    r = app.post("/v1/pronounce", content=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and "surrogate" in r.json()["error"]["text"], r.text


def test_the_route_and_its_models_are_in_the_openapi_document(app: TestClient):
    doc = app.get("/openapi.json").json()
    op = doc["paths"]["/v1/pronounce"]["post"]
    assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/Pronunciation")
    assert {"401", "422", "429"} <= op["responses"].keys()
    text = doc["components"]["schemas"]["PronounceRequest"]["properties"]["text"]
    assert (text["minLength"], text["maxLength"]) == (1, MAX_TEXT_CHARS - 1)
    reading = doc["components"]["schemas"]["CharReading"]
    assert set(reading["required"]) == {"char", "pinyin"}
