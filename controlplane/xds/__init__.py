"""The xDS side: snapshots of resources per node group, the gRPC discovery server, the ledger."""
