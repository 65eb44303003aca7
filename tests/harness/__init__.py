"""Shared test harness: free ports, backends that say who they are, real proxy processes."""
