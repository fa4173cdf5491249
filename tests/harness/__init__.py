"""Test helpers that talk to the real services the fixtures start: read back what InfluxDB stored and what the
broker delivered."""
