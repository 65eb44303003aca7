"""The durable history of the configuration: numbered revisions of a whole validated Config.

`Store` is the interface callers use; `open_store(db)` opens the one a `--db` value names:
`SQLiteStore` (a file path, the embedded default) or `PostgresStore` (a `postgresql://` URL,
shared by several control-plane replicas and notified of each other's revisions). Both keep
the versioned schema of `schema`, and `transfer` moves a whole history between them.
"""

from .base import (
    MAX_NUMBER,
    Conflict,
    NotEmpty,
    Report,
    ReportsListener,
    Revision,
    RevisionListener,
    RevisionMeta,
    RevisionNotFound,
    SchemaError,
    Store,
    StoreError,
)
from .content import config_json, content_hash
from .postgres import PostgresStore
from .selection import migrate, open_store
from .sqlite import SQLiteStore
from .transfer import HistoryError, export_history, import_history

__all__ = [
    "MAX_NUMBER",
    "Conflict",
    "HistoryError",
    "NotEmpty",
    "PostgresStore",
    "Report",
    "ReportsListener",
    "Revision",
    "RevisionListener",
    "RevisionMeta",
    "RevisionNotFound",
    "SQLiteStore",
    "SchemaError",
    "Store",
    "StoreError",
    "config_json",
    "content_hash",
    "export_history",
    "import_history",
    "migrate",
    "open_store",
]
