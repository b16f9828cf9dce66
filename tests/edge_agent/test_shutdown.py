"""An agent leaves cleanly on SIGTERM, whichever of its threads the kernel hands the signal to."""

from __future__ import annotations

import ctypes
import os
import signal
from pathlib import Path

from services import new_cluster, wait_for

from voicefleet.broker import MosquittoBroker

SYS_TGKILL = {"x86_64": 234, "aarch64": 131}[os.uname().machine]


def _signal_thread(pid: int, tid: int, sig: int) -> None:
    """tgkill(2): a process-directed kill() lets the kernel pick the thread; this picks it."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(SYS_TGKILL, pid, tid, sig) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill({pid}, {tid})")


def test_sigterm_taken_by_a_worker_thread_still_drains_and_says_offline(tmp_path: Path,
                                                                         mqtt_broker: MosquittoBroker):
    cluster = new_cluster(tmp_path, mqtt_broker.url)
    device = f"edge-{cluster.tag}"
    try:
        cluster.start_control_plane()
        agent = cluster.start_agent(device)
        workers = sorted(int(t) for t in os.listdir(f"/proc/{agent.pid}/task") if int(t) != agent.pid)
        assert workers, "the agent runs no threads besides its main one"
        _signal_thread(agent.pid, workers[-1], signal.SIGTERM)
        assert agent.wait(timeout=60) == 0
        wait_for(lambda: cluster.device_status(device) == "offline", "the agent's offline state")
        log = (cluster.home / f"agent-{device}.log").read_text()
        assert f"agent {device} stopped" in log
    finally:
        cluster.stop()
