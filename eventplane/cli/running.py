"""How a long-running command runs: logging to stderr, the event loop (uvloop
when it is installed), and SIGINT/SIGTERM turned into a request to stop.

Every command of `eventplane` goes through `run`; `up` and `relay` also hold a
`StopRequest`, which replaces Python's KeyboardInterrupt so that a signal
never lands in the middle of starting or stopping a server: it is honoured at
the command's next safe point, and a second signal does not cut cleanup short.
"""
from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
log = logging.getLogger("eventplane.cli")

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def setup_logging(level: str) -> None:
    logging.basicConfig(stream=sys.stderr, level=level.upper(), format=LOG_FORMAT)


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion on a fresh event loop, uvloop's when it is importable."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    uv_run = getattr(uvloop, "run", None)
    if uv_run is not None:
        return uv_run(main)
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return asyncio.run(main)


class StopRequest:
    """Set once SIGINT or SIGTERM arrives; `wait()` returns from then on."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._wakers: list[Callable[[], None]] = []

    def install(self) -> StopRequest:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._received)
        return self

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""

    def _received(self, signum: int, _frame: object) -> None:
        # A signal handler: no logging (it takes locks), only note and wake.
        self.signal = signum
        for wake in list(self._wakers):
            wake()

    async def wait(self) -> None:
        loop = asyncio.get_running_loop()
        event = asyncio.Event()

        def wake() -> None:
            loop.call_soon_threadsafe(event.set)

        # Registered before the check, so a signal between the two is not missed.
        self._wakers.append(wake)
        try:
            if not self.requested:
                await event.wait()
        finally:
            self._wakers.remove(wake)


async def run_until_stopped(stop: StopRequest, main: Awaitable[object]) -> bool:
    """Run `main` until it returns or a stop is requested, then cancel what is left.

    Returns True when a stop was requested, False when `main` returned by
    itself; an exception of `main` propagates unless it came while stopping.
    """
    task = asyncio.ensure_future(main)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, stopper, return_exceptions=True)
    error = None if task.cancelled() else task.exception()
    if error is not None:
        if not stop.requested:
            raise error
        log.warning("while stopping: %r", error)
    return stop.requested
