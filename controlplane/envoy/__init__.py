"""Everything Envoy-specific: translating the model into xDS resources, node bootstraps.

`translate(config, group)` gives the `Resources` (clusters, endpoints, listeners, routes) a
node group's Envoys run.
"""

from .resources import Resources
from .translate import translate

__all__ = ["Resources", "translate"]
