"""The agent on each locker: gpiozero hardware, MQTT publishing, commands, journal, outbox."""
