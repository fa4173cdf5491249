"""The fleet registry: each node's liveness, site, compartments and latest telemetry."""
