"""The write side's storage: the `events` table, the inline `objects` projection,
append with group commit, history reads, verification and rebuild."""
from .append import MAX_PAYLOAD_BYTES, NOTIFY_CHANNEL, Append, Appended, Context
from .eventstore import EventStore
from .migrate import migrate
from .reads import listen_appends
from .verify import VerifyResult

__all__ = ["MAX_PAYLOAD_BYTES", "NOTIFY_CHANNEL", "Append", "Appended", "Context", "EventStore", "VerifyResult",
           "listen_appends", "migrate"]
