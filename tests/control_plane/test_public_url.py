"""VOICEFLEET_PUBLIC_URL: required, with a start-up error naming it, whenever agents may be on other
machines (they fetch cloned voices' clips from it); not needed on one box."""

import subprocess
import sys

import pytest

from control_plane.core.config import Settings, SettingsError


@pytest.mark.parametrize("env", [
    {},  # one box: the API and the broker on loopback
    {"http_host": "localhost", "mqtt_url": "mqtt://[::1]:1883"},
    {"http_host": "0.0.0.0", "public_url": "https://voicefleet.example"},
    {"mqtt_url": "mqtts://broker.example:8883", "public_url": "http://10.0.0.5:8750/"},
])
def test_no_public_url_is_needed_where_agents_can_reach_the_api(env):
    settings = Settings(**env)
    settings.require_public_url()
    if "public_url" in env:
        assert settings.api_url() == env["public_url"].rstrip("/")


@pytest.mark.parametrize("env, named", [
    ({"http_host": "0.0.0.0"}, "VOICEFLEET_HTTP_HOST=0.0.0.0 serves other machines"),
    ({"http_host": "10.0.0.5"}, "VOICEFLEET_HTTP_HOST=10.0.0.5"),
    ({"mqtt_url": "mqtt://emqx.voicefleet.svc:1883"}, "the broker (mqtt://emqx.voicefleet.svc:1883) is on another"),
])
def test_agents_elsewhere_need_a_public_url(env, named):
    with pytest.raises(SettingsError) as err:
        Settings(**env).require_public_url()
    assert err.value.code == "public_url_required"
    assert named in err.value.text and "set VOICEFLEET_PUBLIC_URL" in err.value.text


def test_a_public_url_that_is_not_one_is_refused():
    with pytest.raises(SettingsError) as err:
        Settings(http_host="0.0.0.0", public_url="voicefleet.example").require_public_url()
    assert err.value.code == "invalid_public_url" and "'voicefleet.example'" in err.value.text


def test_the_control_plane_refuses_to_start_saying_what_to_set(tmp_path):
    env = {"VOICEFLEET_HOME": str(tmp_path), "VOICEFLEET_HTTP_HOST": "0.0.0.0", "VOICEFLEET_HTTP_PORT": "1",
           "PATH": "/usr/bin:/bin"}
    run = subprocess.run([sys.executable, "-m", "voicefleet_cli", "control-plane"], env=env, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode != 0
    assert "public_url_required" in run.stderr and "VOICEFLEET_PUBLIC_URL" in run.stderr, run.stderr
    assert not (tmp_path / "voicefleet.db").exists(), "refused before the database was touched"
