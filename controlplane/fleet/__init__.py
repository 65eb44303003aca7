"""The running fleet: committed revisions taken to every proxy, and who runs which.

`Fleet` compiles each revision for every node group (xDS snapshots for Envoy, bundles for
HAProxy), hands them to the xDS cache, the HAProxy agents' bundle source and local HAProxy
managers, and remembers which version each group got for which revision, so the ledger's
versions read back as revision numbers (`LedgerStatus`).
"""

from .explain import ProxyDiffExplainer
from .revisions import RevisionIndex
from .rollout import Fleet, LocalHAProxy, relocate
from .status import LedgerStatus

__all__ = [
    "Fleet",
    "LedgerStatus",
    "LocalHAProxy",
    "ProxyDiffExplainer",
    "RevisionIndex",
    "relocate",
]
