"""The read side's transport: the relay from PostgreSQL to JetStream, subject
names, and subscriptions from any position."""
from .config import BusConfig
from .relay import Relay, ensure_stream, run_relay
from .subjects import event_subject, filter_subject
from .subscribe import Subscription

__all__ = ["BusConfig", "Relay", "Subscription", "ensure_stream", "event_subject", "filter_subject", "run_relay"]
