from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from brokersec import Secured, secured_broker


@pytest.fixture
def secured(tmp_path: Path) -> Iterator[Secured]:
    """A secured Mosquitto with a control-plane login and no devices yet."""
    yield from secured_broker(tmp_path)
