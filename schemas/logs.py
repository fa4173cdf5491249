"""Structured log lines (``ts level logger key=value ...``) for every lockerfleet process."""

import logging


def configure(level: str = "INFO") -> None:
    """Send key=value log lines to stderr; third-party chatter stays at WARNING."""
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s level=%(levelname)s logger=%(name)s %(message)s",
        datefmt="%Y-%m-%dT%H:%M:%S%z",
    )
    for noisy in ("aiomqtt", "paho", "httpx", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
