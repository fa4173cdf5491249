"""Transitional alias: the log format moved to :mod:`schemas.logs`, shared by every process."""

from schemas.logs import configure

__all__ = ["configure"]
