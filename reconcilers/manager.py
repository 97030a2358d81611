"""The controller manager: the chosen controllers of reconcilers/controllers/registry.py, run by
one process over one SharedInformerFactory, only while this process holds the leader Lease.

Fed by `eventplane controllers` and `eventplane up` (through `run_controllers`), and by the
Lease (reconcilers/leaderelection.py): several manager processes may run; exactly one leads.

While leading ("a term"), the manager builds the controllers (their builders take a
ControllerContext and pick their informers from the term's factory), starts every informer,
waits until their caches are synced, and runs the controllers' loops. When the lease is lost —
the elector could not renew it within renew_deadline, which is shorter than the lease, so before
anyone else can take it over — the elector cancels the term: every worker and informer is
cancelled at once and the term's caches are dropped. The manager then campaigns again; a new
term starts from fresh lists, because the old caches stopped following the stream when the old
term ended. Expectations (podcontrol.Expectations) live in the controllers, so they too are
fresh in a new term: a successor never trusts what its predecessor believed it had written.

A controller loop that fails is restarted with backoff, so one controller's bug cannot leave
the leader holding the lease with part of its work silently stopped.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable
from typing import Any

from eventplane.client import Client

from .controllers.registry import CONTROLLERS, ControllerContext, builder
from .informer import SharedInformerFactory
from .leaderelection import LeaderElector
from .runner import Controller

log = logging.getLogger("eventplane.reconcilers.manager")

LEASE_NAME = "eventplane-controller-manager"
LEASE_NAMESPACE = "kube-system"
RESTART_BASE, RESTART_CAP = 0.5, 30.0   # seconds between restarts of a failing controller loop

__all__ = ["ControllerManager", "default_identity", "resolve_names", "run_controllers"]


def default_identity() -> str:
    """hostname_uuid, as kube-controller-manager names its leader election identity."""
    return f"{socket.gethostname()}_{uuid.uuid4()}"


def default_names() -> list[str]:
    from .controllers import registry

    chosen = getattr(registry, "DEFAULT", None)
    return [n for n in chosen if n in CONTROLLERS] if chosen else sorted(CONTROLLERS)


def resolve_names(names: str | Iterable[str] | None) -> list[str]:
    """`None` → the registry's DEFAULT (every controller when it has none), `all` → every one,
    `a,b` or a list → those, checked. `-name` drops a controller (`all,-job`)."""
    if names is None:
        return default_names()
    items = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n and n.strip()]
    chosen: list[str] = []
    for n in items:
        if n in ("all", "*"):
            chosen += [c for c in sorted(CONTROLLERS) if c not in chosen]
        elif n.startswith("-"):
            chosen = [c for c in chosen if c != n[1:]]
        elif n not in CONTROLLERS:
            raise ValueError(f"unknown controller {n!r}; known: {', '.join(sorted(CONTROLLERS))}")
        elif n not in chosen:
            chosen.append(n)
    return chosen


class ControllerManager:
    """`await manager.run()` until cancelled: campaign, lead (run the controllers), lose, campaign."""

    def __init__(self, client: Client, *, names: str | Iterable[str] | None = None, identity: str | None = None,
                 nats_url: str | None = None, options: dict[str, Any] | None = None,
                 lease_name: str = LEASE_NAME, lease_namespace: str = LEASE_NAMESPACE,
                 lease_duration: float = 15.0, renew_deadline: float = 10.0, retry_period: float = 2.0,
                 leader_election: bool = True) -> None:
        self.client = client
        self.names = resolve_names(names)
        self.identity = identity or default_identity()
        self.nats_url = nats_url
        self.options = dict(options or {})
        self.leader_election = leader_election
        self.settle = max(lease_duration - renew_deadline, 0.0)   # after a lost term, before campaigning
        self.elector = LeaderElector(client, name=lease_name, namespace=lease_namespace, identity=self.identity,
                                     lease_duration=lease_duration, renew_deadline=renew_deadline,
                                     retry_period=retry_period, on_started_leading=self._term,
                                     on_new_leader=self._new_leader)
        self.terms = 0                                  # how many times this process has led
        self.controllers: list[Controller] = []         # the current term's
        self.informers: SharedInformerFactory | None = None
        self.failed: dict[str, str] = {}                 # controllers that could not be built, and why
        self._synced = asyncio.Event()

    @property
    def leading(self) -> bool:
        return self.elector.is_leader if self.leader_election else self.informers is not None

    async def wait_acting(self, timeout: float | None = None) -> None:
        """Until this process leads and its controllers' caches are synced (for tests and `up`)."""
        await asyncio.wait_for(self._synced.wait(), timeout)

    def _new_leader(self, identity: str) -> None:
        if identity != self.identity:
            log.info("controller manager: %s leads", identity)

    async def run(self) -> None:
        if not self.names:
            log.warning("controller manager: no controllers chosen; nothing to do")
            await asyncio.Event().wait()
        log.info("controller manager %s: running %s", self.identity, ", ".join(self.names))
        if not self.leader_election:
            await self._term()
            return
        while True:
            await self.elector.run()
            # run() returned: the lease is lost and the term cancelled. Its writes already sent may
            # still land (the server finishes a request whose client gave up), so wait as long as a
            # successor would before campaigning again: a new term must list after they landed, or
            # it would act on a world without them (create a pod twice).
            log.warning("controller manager %s: lost the lease; stopped acting", self.identity)
            await asyncio.sleep(self.settle)

    async def _term(self) -> None:
        """One term of leadership: fresh informers and controllers, run until cancelled."""
        self.terms += 1
        factory = SharedInformerFactory(self.client)
        ctx = ControllerContext(client=self.client, informers=factory, identity=self.identity,
                                nats_url=self.nats_url, options=self.options)
        controllers: list[Controller] = []
        self.failed = {}
        for name in self.names:
            try:
                controllers += builder(name)(ctx)
            except Exception as exc:   # one broken controller must not stop the others
                log.exception("controller %s could not be built; the others run without it", name)
                self.failed[name] = f"{type(exc).__name__}: {exc}"
        self.controllers, self.informers = controllers, factory
        tasks: list[asyncio.Task[None]] = []
        try:
            factory.start()
            await factory.wait_synced()
            tasks = [asyncio.create_task(self._supervise(c), name=f"controller:{c.name}") for c in controllers]
            self._synced.set()
            log.info("controller manager %s: term %d, %d controller loops acting", self.identity, self.terms,
                     len(controllers))
            await asyncio.gather(*tasks)
        finally:
            self._synced.clear()
            for t in tasks:
                t.cancel()
            with contextlib.suppress(BaseException):
                await asyncio.shield(asyncio.gather(*tasks, return_exceptions=True))
            with contextlib.suppress(BaseException):
                await asyncio.shield(factory.stop())
            self.controllers, self.informers = [], None

    async def _supervise(self, controller: Controller) -> None:
        failures = 0
        while True:
            try:
                await controller.run()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                failures += 1
                delay = min(RESTART_BASE * 2 ** failures, RESTART_CAP)
                log.exception("controller %s failed; restarting in %.1fs", controller.name, delay)
                await asyncio.sleep(delay)
                controller.queue = type(controller.queue)(name=controller.name)


async def run_controllers(client: Client, *, names: str | Iterable[str] | None = None, identity: str | None = None,
                          nats_url: str | None = None, options: dict[str, Any] | None = None, **kw: Any) -> None:
    """Run the chosen controllers (None: the default set; "all"; "a,b") until cancelled, leader-elected
    on the Lease kube-system/eventplane-controller-manager. For `eventplane up` and `eventplane controllers`."""
    manager = ControllerManager(client, names=names, identity=identity or os.environ.get("EVENTPLANE_IDENTITY"),
                                nats_url=nats_url, options=options, **kw)
    await manager.run()
