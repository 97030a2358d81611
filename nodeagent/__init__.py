"""The node agent (the kubelet of eventplane): pods bound to this node run as containers.

`run_nodeagent(client, nats_url, node_name=...)` runs one agent until cancelled
(agent.py); `eventplane nodeagent` is its command. Talks to the cluster only
through eventplane.client and reconcilers.informer (checked by import-linter).
"""
from .agent import NodeAgent, choose_runtime, run_nodeagent

__all__ = ["NodeAgent", "choose_runtime", "run_nodeagent"]
