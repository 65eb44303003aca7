"""The running fleet: committed revisions taken to every proxy, and who runs which.

`Fleet` takes each revision through its data planes (`planes`: one per kind of proxy, Envoy
over xDS and HAProxy through rendered bundles), each compiling every node group once; the
`RevisionIndex` remembers which version each group got for which revision, the `Ledger` what
every proxy said, and `LedgerStatus` reads the two together in revision numbers;
`SharedStatus` answers for the proxies of every replica sharing a store.
"""

from .envoy_plane import EnvoyPlane, XdsReports
from .haproxy_plane import AgentLedger, HAProxyPlane, LocalHAProxy, manager_reports, relocate
from .ledger import Ledger
from .planes import DataPlane, PlaneExplainer
from .revisions import RevisionIndex
from .rollout import Fleet
from .shared_status import SharedStatus
from .status import LedgerStatus

__all__ = [
    "AgentLedger",
    "DataPlane",
    "EnvoyPlane",
    "Fleet",
    "HAProxyPlane",
    "Ledger",
    "LedgerStatus",
    "LocalHAProxy",
    "PlaneExplainer",
    "RevisionIndex",
    "SharedStatus",
    "XdsReports",
    "manager_reports",
    "relocate",
]
