"""Child-process helpers shared by the broker runner, the one-box cluster and the benchmarks."""

from __future__ import annotations

import signal
import subprocess


def terminate(proc: subprocess.Popen, timeout: float) -> None:
    """SIGTERM (a clean exit: agents drain, Mosquitto saves its sessions), SIGKILL if it hangs."""
    terminate_all([proc], timeout)


def terminate_all(procs: list[subprocess.Popen], timeout: float) -> None:
    """``terminate`` for many at once: all are signalled first, so they shut down in parallel."""
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
