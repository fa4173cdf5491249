"""Over-the-air updates of the agent: a persisted, pure state machine, the occupancy gate, and the driver that runs
them against a platform shim (:mod:`node_agent.ota.shims`)."""
