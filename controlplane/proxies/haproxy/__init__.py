"""One HAProxy kept on the bundles it is given: the manager, its sockets, reload planning,
and the agent that follows a node group's bundle from the control plane."""
