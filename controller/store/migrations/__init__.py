"""Schema migrations of the controller's store (Alembic), applied when a store opens.

``env.py`` runs them on the connection the store hands over; ``versions/`` holds one revision per schema change.
After changing a table in ``reservations``, ``operators`` or ``fleet``, add a revision with
``alembic -c controller/store/migrations/alembic.ini revision --autogenerate -m "what changed"`` against a database at
the previous head; ``tests/controller/store/test_migrations.py`` fails while the models and the revisions disagree.

A store already at the newest revision (every start but the first after an upgrade) is recognised without Alembic:
loading Alembic and running its no-op upgrade cost about a quarter of a second of the controller's start-up CPU.
"""

import re
from pathlib import Path
from typing import TYPE_CHECKING

import sqlalchemy as sa

if TYPE_CHECKING:
    from alembic.config import Config

BASELINE = "0001"
"""The schema that stores created before migrations existed have (``create_all`` of that release)."""

_PG_MIGRATION_LOCK = 0x6C66_6D69  # any constant: controllers starting together on one PostgreSQL migrate in turn

_VERSIONS = Path(__file__).parent / "versions"
_REVISION = re.compile(r'^revision(?:: [^=]+)? = "([^"]+)"$', re.M)
_DOWN_REVISION = re.compile(r'^down_revision(?:: [^=]+)? = (?:None|"([^"]*)")$', re.M)


def alembic_config(connection: sa.Connection) -> "Config":
    """Alembic's configuration for migrating the store on ``connection``."""
    from alembic.config import Config  # noqa: PLC0415 - only when a store needs migrating

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    """The newest revision in ``versions/``, read from the files' ``revision`` and ``down_revision`` lines; None
    when they do not form one plain chain (a merge, or a line this reading does not know), so Alembic decides."""
    revisions, parents = set(), set()
    for path in _VERSIONS.glob("*.py"):
        text = path.read_text()
        revision, parent = _REVISION.search(text), _DOWN_REVISION.search(text)
        if revision is None or parent is None:
            return None
        revisions.add(revision.group(1))
        if parent.group(1) is not None:
            parents.add(parent.group(1))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def _at_head(connection: sa.Connection, tables: set[str]) -> bool:
    """Whether the store's schema is the newest revision (nothing to migrate)."""
    if "alembic_version" not in tables:
        return False
    stored = connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
    head = head_revision()
    return head is not None and stored == [head]


def upgrade(engine: sa.Engine) -> None:
    """Bring the store behind ``engine`` to the newest schema, adopting a store made before migrations existed."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
        tables = set(sa.inspect(connection).get_table_names())
        if _at_head(connection, tables):
            return
        from alembic import command  # noqa: PLC0415 - only when a store needs migrating

        config = alembic_config(connection)
        if "reservations" in tables and "alembic_version" not in tables:
            command.stamp(config, BASELINE)
        command.upgrade(config, "head")
