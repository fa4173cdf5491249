"""Local development stack: private mosquitto/influxd runners, a throwaway PKI and the demo."""
