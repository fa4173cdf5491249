"""Courier reservations: contention policy, reconciliation with the node's ledger, the service."""
