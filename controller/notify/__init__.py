"""Outbound notifications: signed webhooks with a retry queue."""
