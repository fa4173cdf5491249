"""The controller store's migrations on SQLite and on a real PostgreSQL: new stores, stores from before
migrations existed, and the models never drifting from the revisions."""

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from controller.store import alerts as alert_store
from controller.store import fieldwork as field_store
from controller.store import fleet as fleet_store
from controller.store import migrations
from controller.store import operators as operator_store
from controller.store import reservations as reservation_store
from controller.store import rollouts as rollout_store
from controller.store import spool as spool_store
from controller.store.operators import OperatorStore
from controller.store.reservations import ReservationStore
from tests.controller.store.test_reservation_store import reservation

HEAD = ScriptDirectory(str(Path(migrations.__file__).parent)).get_current_head()


def models() -> sa.MetaData:
    """Every table of the store as the code defines it, in one MetaData."""
    combined = sa.MetaData()
    for metadata in (
        reservation_store.METADATA,
        operator_store.METADATA,
        fleet_store.METADATA,
        alert_store.METADATA,
        rollout_store.METADATA,
        field_store.METADATA,
        spool_store.METADATA,
    ):
        for table in metadata.tables.values():
            table.to_metadata(combined)
    return combined


def revision_of(engine: sa.Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def test_a_new_store_is_at_the_newest_revision_and_matches_the_models(store_url: str) -> None:
    store = ReservationStore(store_url)
    assert HEAD is not None and revision_of(store.engine) == HEAD
    with store.engine.connect() as connection:
        drift = compare_metadata(MigrationContext.configure(connection), models())
    assert drift == [], f"the models differ from the migrations; add a revision: {drift}"
    store.close()


def test_a_store_made_before_migrations_is_adopted_and_upgraded_keeping_its_data(store_url: str) -> None:
    engine = sa.create_engine(store_url)
    with engine.begin() as connection:  # the previous release: its tables by create_all, no version table
        command.upgrade(migrations.alembic_config(connection), migrations.BASELINE)
        connection.execute(sa.text("DROP TABLE alembic_version"))
        connection.execute(
            reservation_store.reservations.insert().values(**reservation_store.row_of(reservation("res-old")))
        )
    engine.dispose()

    store = ReservationStore(store_url)
    assert revision_of(store.engine) == HEAD
    kept = store.get("res-old")
    assert kept is not None and kept.parcel_ref == "PARCEL-res-old"
    operators = OperatorStore(store.engine)  # the tables of a later revision were added
    assert operators.authenticate(operators.create_key("alice", datetime.now(UTC))) is not None
    store.close()
    reopened = ReservationStore(store_url)  # opening again changes nothing
    assert revision_of(reopened.engine) == HEAD and reopened.get("res-old") is not None
    reopened.close()


def test_every_revision_downgrades(store_url: str) -> None:
    store = ReservationStore(store_url)
    with store.engine.begin() as connection:
        config = migrations.alembic_config(connection)
        command.downgrade(config, "0002")  # the fleet registry's table goes, the operators' stay
        tables = set(sa.inspect(connection).get_table_names())
        assert "fleet_nodes" not in tables and {"operator_keys", "node_maintenance", "reservations"} <= tables
        command.downgrade(config, "base")
        assert set(sa.inspect(connection).get_table_names()) == {"alembic_version"}
    store.close()


def test_the_newest_revision_read_from_the_files_is_alembics() -> None:
    assert migrations.head_revision() == HEAD


def test_a_store_some_revisions_behind_is_upgraded_when_it_opens(store_url: str) -> None:
    store = ReservationStore(store_url)
    with store.engine.begin() as connection:
        command.downgrade(migrations.alembic_config(connection), "0006")
    store.close()

    reopened = ReservationStore(store_url)
    assert revision_of(reopened.engine) == HEAD
    with reopened.engine.connect() as connection:
        assert {"work_orders", "influx_spool"} <= set(sa.inspect(connection).get_table_names())
    reopened.close()


def test_a_store_at_the_newest_revision_opens_without_loading_alembic(store_url: str) -> None:
    ReservationStore(store_url).close()
    opens = (
        "import sys; from controller.store.reservations import ReservationStore; "
        f"ReservationStore({store_url!r}).close(); print(sorted(m for m in sys.modules if m.startswith('alembic')))"
    )
    loaded = subprocess.run([sys.executable, "-c", opens], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
