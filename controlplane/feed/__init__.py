"""Serving HAProxy agents: each node group's newest bundle, long-polled over HTTP, and the
agents' reports of what applying it did."""
