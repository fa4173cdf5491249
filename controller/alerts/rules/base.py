"""What every rule writes to: an emitter of verdicts for one node (or site), honouring suppression."""

from collections.abc import Callable
from collections.abc import Set as AbstractSet

from controller.alerts.model import Detail, Observation, RuleName, Severity, alert_id

_EVERY_RULE: frozenset[str] = frozenset(RuleName)
_NO_RULE: frozenset[str] = frozenset()


class Emitter:
    """Collects one evaluation's observations about one node (``node_id``) or one site (``node_id=None``).

    Rules in ``quiet`` (suppressed or disabled) say nothing, so their alerts keep their state. A clear verdict is
    only kept for an alert the engine has open: closed alerts need no news, which keeps ticks cheap. ``is_open``
    None says none is open; ``open_rules``, when given, holds every rule with an alert open here. A clear of any
    other rule is skipped without building its alert id.
    """

    __slots__ = ("_clearable", "_is_open", "_quiet", "node_id", "observations", "site_id")

    def __init__(
        self,
        is_open: Callable[[str], bool] | None,
        node_id: str | None,
        site_id: str | None,
        quiet: frozenset[str] = frozenset(),
        open_rules: AbstractSet[str] = _EVERY_RULE,
    ) -> None:
        self._is_open, self._quiet = is_open, quiet
        self._clearable = open_rules - quiet if is_open is not None and open_rules else _NO_RULE
        self.node_id, self.site_id = node_id, site_id
        self.observations: list[Observation] = []

    def may_clear(self, rules: AbstractSet[str]) -> bool:
        """False when a clear of none of ``rules`` can be kept (none has an alert open here, or all are quiet)."""
        return not self._clearable.isdisjoint(rules)

    def wants(self, rule: str) -> bool:
        """False when the rule is quiet for this node: skip computing it."""
        return rule not in self._quiet

    def raise_(
        self,
        rule: str,
        severity: Severity,
        summary: str,
        *,
        for_s: float = 0.0,
        keep_firing_for_s: float = 0.0,
        value: float | None = None,
        details: dict[str, Detail] | None = None,
        occurrences: int = 0,
        compartment: str | None = None,
    ) -> bool:
        """The raise condition holds; returns False when the rule is quiet (keep counting its occurrences)."""
        if rule in self._quiet:
            return False
        obs = Observation(
            rule,
            True,
            self.node_id,
            compartment,
            self.site_id,
            severity,
            summary,
            for_s,
            keep_firing_for_s,
            value,
            details or {},
            occurrences,
        )
        self.observations.append(obs)
        return True

    def clear(self, rule: str, compartment: str | None = None) -> None:
        """The clear condition holds."""
        if rule not in self._clearable:
            return
        is_open = self._is_open
        assert is_open is not None  # nothing is clearable without it
        if not is_open(alert_id(rule, self.node_id, compartment, self.site_id)):
            return
        self.observations.append(Observation(rule, False, self.node_id, compartment, self.site_id))
