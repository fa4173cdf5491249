"""Schema migrations of the controller's store (Alembic), applied when a store opens.

``env.py`` runs them on the connection the store hands over; ``versions/`` holds one revision per schema change.
After changing a table in ``reservations``, ``operators`` or ``fleet``, add a revision with
``alembic -c controller/store/migrations/alembic.ini revision --autogenerate -m "what changed"`` against a database at
the previous head; ``tests/controller/store/test_migrations.py`` fails while the models and the revisions disagree.
"""

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

BASELINE = "0001"
"""The schema that stores created before migrations existed have (``create_all`` of that release)."""

_PG_MIGRATION_LOCK = 0x6C66_6D69  # any constant: controllers starting together on one PostgreSQL migrate in turn


def alembic_config(connection: sa.Connection) -> Config:
    """Alembic's configuration for migrating the store on ``connection``."""
    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


def upgrade(engine: sa.Engine) -> None:
    """Bring the store behind ``engine`` to the newest schema, adopting a store made before migrations existed."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        tables = set(sa.inspect(connection).get_table_names())
        config = alembic_config(connection)
        if "reservations" in tables and "alembic_version" not in tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
