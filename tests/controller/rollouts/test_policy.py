"""Wave sizes and thresholds."""

import pytest
from pydantic import ValidationError

from controller.rollouts import RolloutPolicy, WaveRules


@pytest.mark.parametrize(
    ("policy", "total", "sizes"),
    [
        (RolloutPolicy(), 20, [1, 2, 4, 8, 5]),
        (RolloutPolicy(canary_count=3), 10, [3, 6, 1]),
        (RolloutPolicy(canary_count=1, canary_percent=5), 100, [5, 10, 20, 40, 25]),
        (RolloutPolicy(canary_count=0, canary_percent=0.1), 10, [1, 2, 4, 3]),
        (RolloutPolicy(growth=1.0, canary_count=2), 5, [2, 2, 1]),
        (RolloutPolicy(growth=1.5), 10, [1, 2, 3, 4]),
        (RolloutPolicy(canary_count=50), 3, [3]),
    ],
)
def test_wave_sizes(policy: RolloutPolicy, total: int, sizes: list[int]) -> None:
    assert policy.wave_sizes(total) == sizes
    assert sum(sizes) == total


def test_defaults_are_strict() -> None:
    policy = RolloutPolicy()
    assert policy.canary.breached(1, 1)
    assert policy.canary.required_successes(3) == 3
    assert not policy.waves.breached(1, 100)
    assert policy.waves.breached(2, 100)
    assert policy.waves.breached(1, 4)


def test_counts_and_percents_combine() -> None:
    rules = WaveRules(success_count=3, success_percent=50, failure_count=2, failure_percent=10)
    assert rules.required_successes(4) == 3  # the count is larger
    assert rules.required_successes(10) == 5  # the percent is larger
    assert rules.required_successes(2) == 2  # never more than the wave
    assert not rules.breached(2, 100)
    assert rules.breached(3, 100)  # above the count
    assert rules.breached(2, 10)  # above 10 %


def test_a_wave_without_a_failure_rule_is_refused() -> None:
    with pytest.raises(ValidationError, match="failure_count or failure_percent"):
        WaveRules(failure_count=None, failure_percent=None)


def test_a_site_limit_of_zero_is_refused() -> None:
    with pytest.raises(ValidationError, match="site_limits"):
        RolloutPolicy(site_limits={"s1": 0})
