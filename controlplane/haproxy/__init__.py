"""HAProxy data plane: rendered configuration bundles, the runtime API, and the instance manager."""
