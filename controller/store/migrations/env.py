"""Alembic environment: migrate the connection passed in ``config.attributes``, or the configured URL."""

import sqlalchemy as sa
from alembic import context

from controller.store import alerts as alert_store
from controller.store import fieldwork as field_store
from controller.store import fleet as fleet_store
from controller.store import operators as operator_store
from controller.store import reservations as reservation_store
from controller.store import rollouts as rollout_store
from controller.store import spool as spool_store

METADATA = [
    reservation_store.METADATA,
    operator_store.METADATA,
    fleet_store.METADATA,
    alert_store.METADATA,
    rollout_store.METADATA,
    field_store.METADATA,
    spool_store.METADATA,
]

config = context.config
connection = config.attributes.get("connection")
if connection is None:  # the alembic command line: a throwaway engine on the configured URL
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.begin() as opened:
        context.configure(connection=opened, target_metadata=METADATA, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(connection=connection, target_metadata=METADATA, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
