"""The durable history of the configuration: numbered revisions of a whole validated Config.

`Store` is the interface callers use; `SQLiteStore` is the embedded default. A store for
several control-plane replicas (PostgreSQL, notified of new revisions) implements the same
interface.
"""

from .base import Conflict, Revision, RevisionListener, RevisionMeta, RevisionNotFound, Store
from .content import config_json, content_hash
from .sqlite import SQLiteStore

__all__ = [
    "Conflict",
    "Revision",
    "RevisionListener",
    "RevisionMeta",
    "RevisionNotFound",
    "SQLiteStore",
    "Store",
    "config_json",
    "content_hash",
]
