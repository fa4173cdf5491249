"""Anomaly alerts: a pure, clock-injected engine and the rules that feed it (issue 11)."""
