"""Simulated nodes for scale tests and benchmarks (`eventplane simulate-nodes`), like kwok.

They register as Nodes, renew their leases in NATS KV and turn the pods bound
to them Running and Ready — or Succeeded, for pods meant to end — without
running any container. Not a node agent for real workloads: that is the rest
of `nodeagent/`.

    shapes.py     what a simulated node looks like (labels, capacity, addresses, pod range)
    podstatus.py  the status the kubelet would post for a pod, as a pure plan
    agent.py      the loop: nodes, leases, one watch of bound pods, status writes
"""
from .agent import SimulatedNodes, Stats, run_simulated_nodes
from .podstatus import EXIT_CODE, READY_SECONDS, RUN_SECONDS
from .shapes import SIMULATED_LABEL, SimulatorConfig

__all__ = ["EXIT_CODE", "READY_SECONDS", "RUN_SECONDS", "SIMULATED_LABEL", "SimulatedNodes", "SimulatorConfig", "Stats",
           "run_simulated_nodes"]
