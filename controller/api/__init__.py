"""HTTP routes only: map domain outcomes and errors to HTTP (operators' nodes, couriers' reservations)."""
