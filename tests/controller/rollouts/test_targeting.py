"""Targeting: filters over the fleet snapshot, the version filter, and round-robin ordering over sites."""

import pytest
from pydantic import ValidationError

from controller.rollouts import NoTargetsError, Target, VersionRange, select_targets
from schemas.semver import SemVer
from tests.controller.rollouts.fleet import facts, start

V14 = SemVer.parse("1.4.0")


def test_every_filter_must_hold() -> None:
    fleet = [
        facts("a", "s1", labels={"ring": "beta", "city": "ber"}),
        facts("b", "s2", labels={"ring": "beta"}),
        facts("c", "s1", hardware_model="pi5-locker", labels={"ring": "beta"}),
        facts("d", "s1", labels={"ring": "stable"}),
        facts("e", "s1", version="1.4.1", labels={"ring": "beta"}),
    ]
    target = Target(sites={"s1"}, hardware_models={"pi4-locker"}, version="<1.4.0", labels={"ring": "beta"})
    assert [n.node_id for n in select_targets(target, fleet, V14)] == ["a"]


def test_version_filter_ranges_and_unparseable_versions() -> None:
    fleet = [facts("old", version="1.1.9"), facts("mid", version="1.2.5"), facts("bad", version="nightly")]
    chosen = select_targets(Target(version=">=1.2.0, <1.4.0"), fleet, V14)
    assert [n.node_id for n in chosen] == ["mid"]
    assert [n.node_id for n in select_targets(Target(), fleet, V14)] == ["bad", "mid", "old"]


def test_nodes_already_on_the_release_are_skipped() -> None:
    fleet = [facts("a", version="1.4.0"), facts("b", version="1.3.0")]
    assert [n.node_id for n in select_targets(Target(), fleet, V14)] == ["b"]


def test_targets_alternate_over_sites_so_early_waves_span_sites() -> None:
    fleet = [facts(f"{site}{i}", site) for site in ("x", "y", "z") for i in range(3)]
    fleet.append(facts("y9", "y"))
    order = [n.node_id for n in select_targets(Target(), fleet, V14)]
    assert order == ["x0", "y0", "z0", "x1", "y1", "z1", "x2", "y2", "z2", "y9"]


@pytest.mark.parametrize("text", ["1.4.0", "<1.4", "~=1.4.0", "<1.4.0,", "<1.4.0+b1"])
def test_a_bad_version_filter_is_refused_at_validation(text: str) -> None:
    with pytest.raises(ValidationError, match="version"):
        Target(version=text)


def test_version_range_operators() -> None:
    r = VersionRange.parse(">1.0.0,<=1.3.0,!=1.2.0")
    assert [str(v) for v in map(SemVer.parse, ["1.0.0", "1.1.0", "1.2.0", "1.3.0", "1.3.1"]) if v in r] == [
        "1.1.0",
        "1.3.0",
    ]
    assert SemVer.parse("1.2.0") in VersionRange.parse("==1.2.0")
    assert SemVer.parse("1.2.0") in VersionRange.parse(">=1.2.0")


def test_a_target_that_selects_nothing_is_an_error() -> None:
    with pytest.raises(NoTargetsError, match="no node matches"):
        start({"a": facts("a")}, target=Target(sites={"nowhere"}))
