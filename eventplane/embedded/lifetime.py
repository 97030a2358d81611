"""Child servers end with the process that started them.

`eventplane up` (or a test session) may die by SIGKILL; its PostgreSQL and
NATS must not live on holding the data directory. PR_SET_PDEATHSIG asks the
kernel to send SIGTERM (a clean shutdown for both servers) when the parent
thread exits. Applied in the child after the switch to the service user,
which would otherwise clear it.
"""
from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    if sys.platform != "linux":
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
