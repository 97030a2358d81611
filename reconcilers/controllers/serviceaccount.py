"""The ServiceAccount controller: every active namespace has a `default` ServiceAccount.

Fed by the namespaces informer (a namespace appearing) and the
serviceaccounts informer (a `default` ServiceAccount deleted: its namespace is
looked at again). Consumed by the API: one create per namespace that lacks
its `default` ServiceAccount. Namespaces being deleted get none (the API would
refuse it anyway).
"""
from __future__ import annotations

from typing import Any

from eventplane.objects import errors
from reconcilers.runner import Controller, Request

from ._informed import InformedController
from .registry import ControllerContext

Obj = dict[str, Any]
DEFAULT = "default"

__all__ = ["build", "missing_default"]


def missing_default(ns: Obj | None, default_sa: Obj | None) -> Obj | None:
    """The ServiceAccount to create for a namespace, or None."""
    if ns is None or default_sa is not None:
        return None
    meta = ns.get("metadata") or {}
    if meta.get("deletionTimestamp") or (ns.get("status") or {}).get("phase") == "Terminating":
        return None
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": DEFAULT, "namespace": meta["name"]}}


def build(ctx: ControllerContext) -> list[Controller]:
    namespaces = ctx.informers.informer("namespaces")
    accounts = ctx.informers.informer("serviceaccounts")

    async def reconcile(req: Request) -> None:
        sa = missing_default(namespaces.store.get(req.key), accounts.store.get(f"{req.key}/{DEFAULT}"))
        if sa is None:
            return
        # Caused by the namespace's event, or by the deletion of its default ServiceAccount if later.
        causes = [p for p in (req.causation, accounts.position_of(f"{req.key}/{DEFAULT}")) if p is not None]
        try:
            await ctx.client.create(sa, causation=max(causes) if causes else None)
        except (errors.AlreadyExistsError, errors.ForbiddenError, errors.NotFoundError):
            pass  # made by someone else, or the namespace is going or gone

    controller = InformedController("serviceaccount", namespaces, reconcile, reads=[accounts])

    def on_account_deleted(sa: Obj) -> None:
        meta = sa.get("metadata") or {}
        if meta.get("name") == DEFAULT and meta.get("namespace"):
            controller.queue.add(meta["namespace"])

    accounts.add_handler(on_delete=on_account_deleted)
    return [controller]
