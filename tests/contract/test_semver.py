"""Semantic versions: one spelling each, ordered by semver precedence."""

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from schemas.semver import SemVer

IDENT = st.one_of(st.integers(0, 10_000).map(str), st.from_regex(r"[0-9]{0,2}[a-z-][0-9a-z-]{0,5}", fullmatch=True))
VERSIONS = st.builds(
    SemVer,
    st.integers(0, 999),
    st.integers(0, 999),
    st.integers(0, 999),
    st.lists(IDENT, max_size=3).map(tuple),
)


@given(VERSIONS)
def test_text_round_trip(version: SemVer) -> None:
    assert SemVer.parse(str(version)) == version


@given(VERSIONS, VERSIONS)
def test_order_is_total_and_matches_equality(a: SemVer, b: SemVer) -> None:
    assert (a < b) + (a == b) + (a > b) == 1
    assert (a == b) == (str(a) == str(b))


def test_precedence_of_the_semver_specification() -> None:
    chain = (
        "1.0.0-alpha 1.0.0-alpha.1 1.0.0-alpha.beta 1.0.0-beta 1.0.0-beta.2 1.0.0-beta.11 1.0.0-rc.1 1.0.0 1.0.1 1.10.0"
    )
    versions = [SemVer.parse(v) for v in chain.split()]
    assert sorted(reversed(versions)) == versions


BAD = ["1.0", "01.0.0", "1.0.0-01", "1.0.0+build", "1.0.0\n", "v1.0.0", "1.0.0-", "\uff11.0.0"]


@pytest.mark.parametrize("text", BAD)
def test_other_spellings_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a semantic version"):
        SemVer.parse(text)


class Carrier(BaseModel):
    version: SemVer


def test_travels_as_a_string() -> None:
    carried = Carrier.model_validate_json('{"version": "2.0.0-rc.1"}')
    assert carried.version == SemVer(2, 0, 0, ("rc", "1"))
    assert carried.model_dump_json() == '{"version":"2.0.0-rc.1"}'
    assert Carrier.model_json_schema()["properties"]["version"]["type"] == "string"
    with pytest.raises(ValidationError):
        Carrier.model_validate_json('{"version": "1.0"}')
