"""The committed JSON Schema files are exactly what the models generate."""

import json

import pytest

from schemas import Channel
from schemas.export import drifted, main, render, schema_file


def test_committed_schemas_match_the_models() -> None:
    stale = drifted()
    assert not stale, f"regenerate with `python -m schemas.export`: {stale}"


@pytest.mark.parametrize("channel", list(Channel))
def test_schema_is_strict_json_schema(channel: Channel) -> None:
    schema = json.loads(schema_file(channel).read_text())
    assert schema["$schema"].endswith("2020-12/schema")
    text = json.dumps(schema)
    assert '"additionalProperties": false' in text


def test_drift_is_detected(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr("schemas.export.render", lambda c: render(c).replace("node_id", "nodeId"))
    assert main(["--check"]) == 1
    assert "out of date" in capsys.readouterr().err
