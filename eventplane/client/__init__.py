"""The async client of the eventplane API, over REST or NATS, for every component and epctl.

`Client.from_kubeconfig()` speaks REST to the server of a kubeconfig;
`Client.via_nats(url, token)` sends the same operations over NATS. Imports
only eventplane.objects (checked by import-linter).
"""
from .client import Client
from .kubeconfig import ClusterAccess, KubeconfigError
from .operation import Write
from .resources import Resources, kind_name
from .status import UnreachableError, error_from_status
from .watch import Watch

__all__ = ["Client", "ClusterAccess", "KubeconfigError", "Resources", "UnreachableError", "Watch", "Write",
           "error_from_status", "kind_name"]
