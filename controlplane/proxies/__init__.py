"""Running proxies: the HAProxy manager (validate, write, runtime API or hitless reload,
supervise), its reload planning and the agent; a local Envoy process for the demo and tests.

Nothing here compiles a config or serves the control plane's side: runners take what a
compiler made (an HAProxy bundle, an Envoy bootstrap) and keep a proxy on it.
"""
