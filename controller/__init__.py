"""The central service: ingest, fleet state, reservations, rollouts, alerts, HTTP API, metrics."""
