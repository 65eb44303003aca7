"""controlplane: one load-balancing model, compiled for Envoy and HAProxy."""

__version__ = "0.1.0"
