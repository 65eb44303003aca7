"""The REST API: `create_app(store, ...)` and the seams it is wired through.

Seams: `Propagator` (new revisions to the proxies), `StatusSource` (who runs what),
`DiffExplainer` (per-proxy detail of a dry run), `MetricsSource` (more /metrics).
"""

from .app import create_app
from .auth import Principal, Token, TokenFileError, TokenSet, is_loopback
from .diff import DiffExplainer, ModelChange, ModelOnly, model_diff
from .limits import DEFAULT_MAX_BODY_BYTES
from .metrics import Counter, Histogram, MetricsSource
from .propagation import NullPropagator, Propagator, RecordingPropagator, follow
from .status import InMemoryStatus, ProxyRecord, Refusal, StatusSource, WaitResult, evaluate

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "Counter",
    "DiffExplainer",
    "Histogram",
    "InMemoryStatus",
    "MetricsSource",
    "ModelChange",
    "ModelOnly",
    "NullPropagator",
    "Principal",
    "Propagator",
    "ProxyRecord",
    "RecordingPropagator",
    "Refusal",
    "StatusSource",
    "Token",
    "TokenFileError",
    "TokenSet",
    "WaitResult",
    "create_app",
    "evaluate",
    "follow",
    "is_loopback",
    "model_diff",
]
