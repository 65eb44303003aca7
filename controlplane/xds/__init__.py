"""Serving Envoy: snapshots of resources per node group, the gRPC discovery server (SotW and
Delta, ADS and per-type), client identities over mutual TLS, and the callbacks through which
it reports each stream. It keeps no record of its own of who runs what."""
