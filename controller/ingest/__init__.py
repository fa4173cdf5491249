"""Ingest: decode what nodes send, deduplicate, batch and write to InfluxDB, acknowledge after store."""
