"""InfluxDB: line protocol and the v1 /write client."""
