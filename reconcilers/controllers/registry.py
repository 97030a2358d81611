"""The controllers `eventplane controllers` can run, by name.

Each controller module exposes `build(ctx) -> list[Controller]`: it takes its
informers from the shared factory (one cache and watch per resource for the
whole process) and returns the loops to run. The manager runs the builders of
the chosen names while it holds the leader Lease.

A new controller adds one line to CONTROLLERS; `DEFAULT` lists those `up` runs.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field

from eventplane.client import Client
from reconcilers.informer import SharedInformerFactory
from reconcilers.runner import Controller

__all__ = ["CONTROLLERS", "ControllerContext", "builder"]


@dataclass
class ControllerContext:
    client: Client
    informers: SharedInformerFactory
    identity: str = "eventplane-controllers"   # this process: leader identity, event source host
    nats_url: str | None = None                 # for the NATS KV node leases (node lifecycle)
    options: dict[str, object] = field(default_factory=dict)   # per-controller settings from flags


Builder = Callable[[ControllerContext], list[Controller]]

# name → "module:function", imported only when chosen.
CONTROLLERS: dict[str, str] = {
    "garbage-collector": "reconcilers.controllers.garbagecollector:build",
    "replicaset": "reconcilers.controllers.replicaset:build",
    "replicationcontroller": "reconcilers.controllers.replicaset:build_replicationcontroller",
    "deployment": "reconcilers.controllers.deployment:build",
    "namespace": "reconcilers.controllers.namespace:build",
    "serviceaccount": "reconcilers.controllers.serviceaccount:build",
    "endpoints": "reconcilers.controllers.endpoints:build",
    "endpointslice": "reconcilers.controllers.endpointslice:build",
    "disruption": "reconcilers.controllers.disruption:build",
    "job": "reconcilers.controllers.job:build",
    "node-lifecycle": "reconcilers.controllers.nodelifecycle:build",
    "cronjob": "reconcilers.controllers.cronjob:build",
    "statefulset": "reconcilers.controllers.statefulset:build",
    "daemonset": "reconcilers.controllers.daemonset:build",
    "persistentvolume-binder": "reconcilers.controllers.pvbinder:build",
    "resourcequota": "reconcilers.controllers.resourcequota:build",
}


def builder(name: str) -> Builder:
    module, _, func = CONTROLLERS[name].partition(":")
    return getattr(importlib.import_module(module), func or "build")
