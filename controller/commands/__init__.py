"""Downlink commands: one owner for building, publishing, awaiting and recording every command."""
