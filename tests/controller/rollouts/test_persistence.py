"""A rollout saved to its store document and restored mid-flight decides exactly as the original does."""

import json
from typing import Any

import pytest

from controller.rollouts import Action, CorruptStateError, Rollout, RolloutPolicy
from tests.controller.rollouts.fleet import at, commit, fleet_of, start


def script(rollout: Rollout, fleet: dict[str, Any]) -> list[list[Action]]:
    """The second half of a rollout: dispatches under the rate limit, reports, a retry, a pause, a timeout."""
    out = [rollout.step(at(30), fleet)]
    out.append(rollout.on_report("n1-0", "failed", "download_failed", at(31)))
    out += [commit(rollout, "n2-0", at(32)), rollout.step(at(45), fleet), rollout.step(at(61), fleet)]
    out += [rollout.pause(at(62), "ops"), rollout.step(at(63), fleet), rollout.resume(at(64), "ops")]
    out += [rollout.step(at(t), fleet) for t in (120, 200, 400, 1000)]
    return out


def test_restored_rollout_makes_identical_decisions() -> None:
    fleet = fleet_of(4, 3)
    policy = RolloutPolicy(canary_count=1, max_dispatch_per_minute=3, step_timeout_s=300, retry_delay_s=5)
    original = start(fleet, policy)
    original.step(at(0), fleet)
    commit(original, "n0-0", at(10))
    original.step(at(20), fleet)  # wave 1 under way, the rate window half full
    stored = json.dumps(original.to_dict())
    restored = Rollout.from_dict(json.loads(stored))
    assert restored.to_dict() == original.to_dict()
    expected = script(original, fleet)
    assert script(restored, fleet) == expected
    assert any(expected)  # the script did decide things
    assert restored.to_dict() == original.to_dict()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"format": 99}, "format 99"),
        ({"phase": "exploded"}, "does not restore"),
        ({"current_wave": 42}, "wave 42"),
        ({"nodes": [["n", "s", 0, "nonsense", None, 1, 0.0, 0.0, False]]}, "node rows"),
        ({"policy": {"growth": 0.5}}, "does not restore"),
    ],
)
def test_a_damaged_document_is_refused_by_name(change: dict[str, Any], message: str) -> None:
    fleet = fleet_of(1, 2)
    document = start(fleet).to_dict() | change
    with pytest.raises(CorruptStateError, match=message):
        Rollout.from_dict(document)


def test_a_document_missing_a_field_is_refused() -> None:
    document = start(fleet_of(1, 2)).to_dict()
    del document["sent_at"]
    with pytest.raises(CorruptStateError, match="sent_at"):
        Rollout.from_dict(document)
