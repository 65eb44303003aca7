"""The REST API: `create_app(store, ...)` and the seams it is wired through.

Seams: `Propagator` (new revisions to the proxies), `StatusSource` (who runs what),
`DiffExplainer` (per-proxy detail of a dry run), `MetricsSource` (more /metrics).
"""

from ..prometheus import MetricsSource
from .app import create_app
from .auth import Principal, Token, TokenFileError, TokenSet, is_loopback
from .diff import DiffExplainer, ModelChange, ModelOnly, model_diff
from .limits import DEFAULT_MAX_BODY_BYTES
from .propagation import NullPropagator, Propagator, RecordingPropagator, follow
from .status import DriftVerifier, HeldBack, InMemoryStatus, NoVerifier, StatusSource

__all__ = [
    "DEFAULT_MAX_BODY_BYTES",
    "DiffExplainer",
    "DriftVerifier",
    "HeldBack",
    "InMemoryStatus",
    "MetricsSource",
    "ModelChange",
    "ModelOnly",
    "NoVerifier",
    "NullPropagator",
    "Principal",
    "Propagator",
    "RecordingPropagator",
    "StatusSource",
    "Token",
    "TokenFileError",
    "TokenSet",
    "create_app",
    "follow",
    "is_loopback",
    "model_diff",
]
