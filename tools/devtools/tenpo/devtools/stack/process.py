"""Devstack child-process helpers: tie children to the runner's life, stop process groups."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence

_PR_SET_PDEATHSIG = 1


def parent_death_preexec() -> Callable[[], None] | None:
    """A ``preexec_fn`` that makes the kernel SIGTERM the child when the runner dies outright
    (kill -9, crash), so no orphan keeps a port busy; None where Linux' prctl is missing."""
    if sys.platform != "linux":
        return None
    # Resolved here, in the parent: the child between fork and exec should do no more than
    # one plain system call.
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def preexec() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)

    return preexec


def signal_group(process: subprocess.Popen[bytes], signum: int) -> None:
    """Signal the child's whole process group (it leads one: start_new_session=True), so
    worker processes it forked get the signal too."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signum)


def stop_all(processes: Sequence[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM every process group at once, then SIGKILL whatever is left after ``grace`` s."""
    for process in processes:
        signal_group(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(process, signal.SIGKILL)
            process.wait()
