"""A device running from an image reports it: the mark-good step's record reaches the control plane
through the agent's state and shows on the device."""

from __future__ import annotations

import json
from pathlib import Path

from services import http, new_cluster, wait_for

from voicefleet.broker import MosquittoBroker


def test_the_image_and_its_mark_good_state_show_on_the_device(mqtt_broker: MosquittoBroker, tmp_path: Path):
    status = tmp_path / "image-status.json"
    status.write_text(json.dumps({"image_version": "2026.11.3", "profile": "x86_64-hub", "slot": "appfs.1",
                                  "state": "good", "checked_at": "2026-11-27T04:00:00+00:00", "other": 1}))
    cluster = new_cluster(tmp_path, mqtt_broker.url)
    try:
        cluster.start_control_plane()
        device = f"imaged-{cluster.tag}"
        cluster.start_agent(device, VOICEFLEET_IMAGE_STATUS_FILE=str(status))
        plain = f"plain-{cluster.tag}"
        cluster.start_agent(plain)
        shown = wait_for(lambda: http.get(f"{cluster.api}/v1/devices/{device}").json().get("image"), "the image")
        assert shown == {"image_version": "2026.11.3", "profile": "x86_64-hub", "slot": "appfs.1", "state": "good",
                         "checked_at": "2026-11-27T04:00:00+00:00"}
        assert http.get(f"{cluster.api}/v1/devices/{plain}").json()["image"] is None  # no image: nothing claimed
    finally:
        cluster.stop()
