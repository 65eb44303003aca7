"""The HAProxy compiler's route- and listener-level policies, one module each, registered here
in the order their rules run (see `controlplane.haproxy.features.base` for the phases)."""

from .answers import Answers
from .base import Feature, Part, Phase, parts
from .connection_limits import ConnectionLimits
from .firewall import FirewallFeature
from .headers import Headers
from .prefix_rewrite import PrefixRewrite
from .rate_limits import RateLimits

FEATURES: tuple[Feature, ...] = (
    FirewallFeature(),
    ConnectionLimits(),
    RateLimits(),
    Answers(),
    PrefixRewrite(),
    Headers(),
)

__all__ = ["FEATURES", "Feature", "Part", "Phase", "parts"]
