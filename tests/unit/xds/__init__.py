"""Unit tests of the xDS cache, stream protocol and ledger."""
