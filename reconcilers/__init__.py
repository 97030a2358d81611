"""Reconcilers: the controller framework (informers, work queue, leader election, a thin
controller loop) and, one module each, the controllers built on it. Imports only
eventplane.client and eventplane.objects (checked by import-linter). See docs/reconcilers.md.
"""
from .informer import (BY_LABEL, BY_NAMESPACE, BY_NODE, BY_OWNER, DEFAULT_INDEXERS, Informer,
                       SharedInformerFactory, Store, causation_of, key_of, label_value)
from .leaderelection import LeaderElector, LeaseRecord
from .runner import Controller, Request, Requeue
from .workqueue import (BucketRateLimiter, ExponentialBackoff, MaxOfRateLimiter, QueueShutDown, WorkQueue,
                        default_rate_limiter)

__all__ = ["BY_LABEL", "BY_NAMESPACE", "BY_NODE", "BY_OWNER", "BucketRateLimiter", "Controller", "DEFAULT_INDEXERS",
           "ExponentialBackoff", "Informer", "LeaderElector", "LeaseRecord", "MaxOfRateLimiter", "QueueShutDown",
           "Request", "Requeue", "SharedInformerFactory", "Store", "WorkQueue", "causation_of",
           "default_rate_limiter", "key_of", "label_value"]
