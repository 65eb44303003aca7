"""The two-tier lab: the compose file in `compose/` run by `controlplane lab up|down|status`.

`commands` holds what the CLI runs; `haproxy_host` is the process of an HAProxy container, which
an agent in another container feeds and may restart without stopping it.
"""
