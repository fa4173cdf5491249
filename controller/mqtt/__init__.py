"""MQTT adapters: the hand-framed ingest session (wire format, TLS) and the paho command publisher."""
