"""The alert state machine: observations in, notifications out, once per episode transition.

Pure and clock-injected: every call takes ``now`` (epoch seconds). An alert goes ``pending`` when its raise
condition is first observed, ``firing`` once the condition has held for the rule's ``for_s``, and ``resolved`` once
the clear condition has held for ``keep_firing_for_s``; a pending alert whose clear condition is observed goes
``inactive`` without a word. Raise and clear are separate conditions (hysteresis): between them rules emit nothing
and the alert keeps its state, and so it does when a rule cannot tell (no data).

Delivery is idempotent across restarts: the state is a dict of :class:`AlertRecord` (:meth:`AlertEngine.dump` /
:meth:`AlertEngine.load`), and each notification's ``delivery_key`` (id, episode, transition) names it uniquely.
Persist the state and the returned notifications in one transaction (outbox) and nothing is announced twice.
"""

from collections.abc import Iterable, Iterator, Set
from typing import Any

from controller.alerts.model import AlertRecord, AlertState, Notification, Observation, Silence, Transition

STATE_VERSION = 1
"""Version of the :meth:`AlertEngine.dump` format."""
_NONE_OPEN: frozenset[str] = frozenset()


class AlertError(Exception):
    """An operation on the alert engine was refused."""


class UnknownAlertError(AlertError):
    """No alert has this id."""


class AlertNotOpenError(AlertError):
    """The alert is resolved or inactive: there is nothing to acknowledge."""


class UnknownSilenceError(AlertError):
    """No silence has this id."""


class AlertEngine:
    """Holds every alert's record and the silences; turns observations into notifications."""

    def __init__(self, records: Iterable[AlertRecord] = (), silences: Iterable[Silence] = ()) -> None:
        self._records = {r.id: r for r in records}
        self._open: set[str] = set()
        self._open_rules: dict[str | None, dict[str, int]] = {}
        """How many alerts are open per node id (None: site and fleet alerts) and rule: a node's clear verdicts
        are skipped for the rules with none open (for every rule when the node has none)."""
        for rec in self._records.values():
            if rec.open:
                self._opened(rec)
        self._silences = {s.id: s for s in silences}

    # -- observations -------------------------------------------------------------------------------------------

    def apply(self, now: float, observations: Iterable[Observation]) -> list[Notification]:
        """Advance the alerts these observations are about; return what to announce."""
        out: list[Notification] = []
        for obs in observations:
            if obs.raising:
                self._raise(now, obs, out)
            else:
                self._clear(now, obs.id, out)
        return out

    def is_open(self, alert_id: str) -> bool:
        """True when the alert is pending or firing (rules skip clear verdicts for closed alerts)."""
        return alert_id in self._open

    def open_rules(self, node_id: str | None) -> Set[str]:
        """The rules with an alert of the node pending or firing (``None``: of any site or the fleet)."""
        rules = self._open_rules.get(node_id)
        return _NONE_OPEN if rules is None else rules.keys()

    def _opened(self, rec: AlertRecord) -> None:
        self._open.add(rec.id)
        rules = self._open_rules.get(rec.node_id)
        if rules is None:
            rules = self._open_rules[rec.node_id] = {}
        rules[rec.rule] = rules.get(rec.rule, 0) + 1

    def _closed(self, rec: AlertRecord) -> None:
        self._open.discard(rec.id)
        rules = self._open_rules[rec.node_id]
        left = rules[rec.rule] - 1
        if left:
            rules[rec.rule] = left
        elif len(rules) > 1:
            del rules[rec.rule]
        else:
            del self._open_rules[rec.node_id]

    def _raise(self, now: float, obs: Observation, out: list[Notification]) -> None:
        alert_id = obs.id
        rec = self._records.get(alert_id)
        if rec is None or not rec.open:
            rec = AlertRecord(
                id=alert_id,
                rule=obs.rule,
                node_id=obs.node_id,
                compartment=obs.compartment,
                site_id=obs.site_id,
                severity=obs.severity,
                state=AlertState.PENDING,
                episode=1 if rec is None else rec.episode + 1,
                pending_since=now,
                count=max(1, obs.occurrences),
            )
            self._records[rec.id] = rec
            self._opened(rec)
        else:
            rec.count += obs.occurrences if rec.raising else max(1, obs.occurrences)
        rec.raising, rec.clear_since, rec.last_raised_at = True, None, now
        rec.severity, rec.summary, rec.value, rec.details = obs.severity, obs.summary, obs.value, obs.details
        rec.site_id, rec.for_s, rec.keep_firing_for_s = obs.site_id, obs.for_s, obs.keep_firing_for_s
        if rec.state is AlertState.PENDING and now - rec.pending_since >= rec.for_s:
            rec.state, rec.firing_since = AlertState.FIRING, now
        if rec.state is AlertState.FIRING:
            self._announce(now, rec, out)

    def _clear(self, now: float, alert_id: str, out: list[Notification]) -> None:
        rec = self._records.get(alert_id)
        if rec is None or not rec.open:
            return
        rec.raising = False
        if rec.state is AlertState.PENDING:
            rec.state = AlertState.INACTIVE
            self._closed(rec)
            return
        if rec.clear_since is None:
            rec.clear_since = now
        if now - rec.clear_since >= rec.keep_firing_for_s:
            rec.state, rec.resolved_at = AlertState.RESOLVED, now
            self._closed(rec)
            if rec.notified_severity is not None:  # a raise announced gets its resolve, silenced or not
                out.append(Notification.of(rec, Transition.RESOLVED, now))

    def _announce(self, now: float, rec: AlertRecord, out: list[Notification]) -> None:
        """Announce the raise (or a severity above the one announced) unless a silence mutes it."""
        announced = rec.notified_severity
        if announced is not None and rec.severity.rank <= announced.rank:
            return
        if self._silenced(rec, now):
            return
        rec.notified_severity = rec.severity
        transition = Transition.RAISED if announced is None else Transition.ESCALATED
        out.append(Notification.of(rec, transition, now))

    # -- timer ----------------------------------------------------------------------------------------------------

    def sweep(self, now: float) -> list[Notification]:
        """Announce firing alerts whose silence has ended; call on every timer tick."""
        out: list[Notification] = []
        for alert_id in sorted(self._open):
            rec = self._records[alert_id]
            if rec.state is AlertState.FIRING:
                self._announce(now, rec, out)
        return out

    # -- acknowledgement and silences -----------------------------------------------------------------------------

    def acknowledge(self, alert_id: str, by: str, now: float) -> Notification | None:
        """Record who acknowledged the open episode; the first acknowledgement of an announced alert is announced."""
        rec = self._records.get(alert_id)
        if rec is None:
            raise UnknownAlertError(f"no alert {alert_id!r}")
        if not rec.open:
            raise AlertNotOpenError(f"alert {alert_id!r} is {rec.state}: nothing to acknowledge")
        if rec.acked_by is not None:
            return None
        rec.acked_by, rec.acked_at = by, now
        return Notification.of(rec, Transition.ACKNOWLEDGED, now) if rec.notified_severity is not None else None

    def add_silence(self, silence: Silence) -> None:
        """Add or replace a silence (by id)."""
        self._silences[silence.id] = silence

    def expire_silence(self, silence_id: str, now: float) -> list[Notification]:
        """End a silence now; returns the raises it was holding back."""
        silence = self._silences.pop(silence_id, None)
        if silence is None:
            raise UnknownSilenceError(f"no silence {silence_id!r}")
        if now > silence.starts_at:
            self._silences[silence_id] = Silence(**{**silence.to_dict(), "ends_at": min(now, silence.ends_at)})
        return self.sweep(now)

    def silences(self) -> list[Silence]:
        """Every silence kept (active, future and expired until pruned)."""
        return sorted(self._silences.values(), key=lambda s: (s.starts_at, s.id))

    def _silenced(self, rec: AlertRecord, now: float) -> bool:
        return any(s.active(now) and s.matches(rec) for s in self._silences.values())

    def silenced(self, alert_id: str, now: float) -> bool:
        """True when an active silence matches the alert."""
        rec = self._records.get(alert_id)
        return rec is not None and self._silenced(rec, now)

    # -- queries and persistence ----------------------------------------------------------------------------------

    def get(self, alert_id: str) -> AlertRecord | None:
        """The record of one alert id."""
        return self._records.get(alert_id)

    def records(self) -> Iterator[AlertRecord]:
        """Every record, open or not."""
        return iter(self._records.values())

    def open_records(self) -> list[AlertRecord]:
        """Pending and firing alerts, by id."""
        return [self._records[i] for i in sorted(self._open)]

    def prune(self, before: float) -> int:
        """Forget closed alerts and silences that ended before ``before``; returns how many were dropped.

        A pruned alert's next episode starts again at 1: keep delivery markers no longer than the records.
        """
        closed = [r.id for r in self._records.values() if not r.open and _closed_at(r) < before]
        for alert_id in closed:
            del self._records[alert_id]
        ended = [s.id for s in self._silences.values() if s.ends_at < before]
        for silence_id in ended:
            del self._silences[silence_id]
        return len(closed) + len(ended)

    def dump(self) -> dict[str, Any]:
        """The whole state as JSON-ready data."""
        return {
            "version": STATE_VERSION,
            "records": [r.to_dict() for r in self._records.values()],
            "silences": [s.to_dict() for s in self._silences.values()],
        }

    @classmethod
    def load(cls, data: dict[str, Any]) -> "AlertEngine":
        """Rebuild an engine from :meth:`dump` output."""
        if data.get("version") != STATE_VERSION:
            raise AlertError(f"alert state version {data.get('version')!r} is not {STATE_VERSION}: migrate the store")
        return cls(
            (AlertRecord.from_dict(r) for r in data["records"]),
            (Silence.from_dict(s) for s in data["silences"]),
        )


def _closed_at(rec: AlertRecord) -> float:
    """When a closed alert last changed: resolved, or last raised before going inactive."""
    if rec.resolved_at is not None:
        return rec.resolved_at
    return rec.last_raised_at if rec.last_raised_at is not None else rec.pending_since
