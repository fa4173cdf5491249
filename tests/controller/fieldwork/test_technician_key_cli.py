"""``lockerfleet technician-key``: a key that works, and a start that is not a position refused by name."""

from pathlib import Path

import pytest

from controller.cli import main
from controller.settings import reservations_sqlite_url
from controller.store.fieldwork import FieldStore
from controller.store.reservations import ReservationStore
from controller.swapqueue import GeoPoint, Technician


def test_the_key_printed_authenticates_its_technician_and_revoke_key_ends_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store-path", str(tmp_path / "store.sqlite3")]
    argv = ["technician-key", "--technician", "ana", "--start", "52.516, 13.378", "--max-stops", "4"]
    assert main([*argv, *store, "--create-store", "true"]) == 0
    token = capsys.readouterr().out.strip().splitlines()[-1]
    opened = ReservationStore(reservations_sqlite_url(tmp_path / "store.sqlite3"))  # where the controller looks
    field = FieldStore(opened.engine)
    key = field.authenticate(token)
    assert key is not None and key.technician_id == "ana"
    assert field.technicians() == [Technician("ana", GeoPoint(52.516, 13.378), 4)]
    assert main(["revoke-key", "--key-id", key.key_id, *store]) == 0
    assert "revoked technician key" in capsys.readouterr().out
    assert field.authenticate(token) is None
    opened.close()


@pytest.mark.parametrize("start", ["91,13", "52.5", "north"])
def test_a_start_that_is_not_a_position_is_refused_naming_the_flag(
    start: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["technician-key", "--technician", "ana", "--start", start, "--store-path", str(tmp_path / "s.sqlite3")]
    assert main([*argv, "--create-store", "true"]) == 2
    assert "--start" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing issued, no store made
