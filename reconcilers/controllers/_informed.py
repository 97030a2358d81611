"""A Controller that also reads other informers' caches: they are started, and waited for, before its
workers run (runner.Controller starts only its primary informer).

Used by the namespace-scoped controllers of this package whose reconcile looks at more than one
resource (pods for Endpoints, ServiceAccounts for namespaces, …).
"""
from __future__ import annotations

import asyncio
from collections.abc import Iterable

from reconcilers.informer import Informer
from reconcilers.runner import Controller, Reconcile


class InformedController(Controller):
    def __init__(self, name: str, informer: Informer, reconcile: Reconcile, *, reads: Iterable[Informer] = (),
                 workers: int = 1) -> None:
        super().__init__(name, informer, reconcile, workers=workers)
        self.reads = [i for i in reads if i is not informer]

    async def run(self) -> None:
        for inf in self.reads:
            inf.start()
        await asyncio.gather(*(inf.wait_synced() for inf in self.reads))
        await super().run()
