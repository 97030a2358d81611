"""Kubernetes' controllers, each a pure decision function plus a thin loop (see registry.py)."""
