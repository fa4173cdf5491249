"""The rollout engine: a pure state machine that decides, for one release, which node gets its update when.

Feed it the time, the fleet snapshot and every node report; carry out the actions it returns in order. It does no I/O
and reads no clock. ``step`` dispatches (waves, rate limit, K per site, maintenance windows, controller gates) and
fires timeouts; ``on_report`` applies one node report and answers a threshold breach with ``Aborted`` at once, so an
adapter that calls it as reports arrive stops a rollout within one report. ``to_dict``/``from_dict`` round-trip the
whole state through the store; a restored rollout makes exactly the decisions the original would have.
"""

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from controller.rollouts.actions import Aborted, Action, Cancel, Completed, DispatchUpdate, Rollback, WaveAdvanced
from controller.rollouts.book import NodeBook, NodeRecord
from controller.rollouts.errors import (
    CorruptStateError,
    IllegalReportError,
    NoTargetsError,
    PhaseError,
    UnknownNodeError,
)
from controller.rollouts.gating import DeferReason, controller_defer_reason
from controller.rollouts.policy import RolloutPolicy
from controller.rollouts.progress import ACTIVE, NodeView, Phase, Progress, totals, wave_progress
from controller.rollouts.rate import DispatchRate
from controller.rollouts.states import CANCELLABLE, IN_FLIGHT, PIPELINE, REPORT_MOVES, REPORTED, TERMINAL, NodeState
from controller.rollouts.targeting import NodeFacts, Target, select_targets
from schemas.semver import SemVer

FORMAT = 1
"""Version of the :meth:`Rollout.to_dict` document."""

S = NodeState
_ROLLBACK_STEPS = frozenset({S.QUEUED, S.DEFERRED, S.RESTARTING, S.TESTING, S.FAILED})
"""Reports of a committed node carrying out a Rollback before it reports ``rolled_back``."""


def current_is_final(record: NodeRecord) -> bool:
    """A node that ended after it was sent a command: its late reports are believed."""
    return record.sent and record.state in TERMINAL


def _default_reason(state: NodeState) -> str | None:
    return "deferred by the node" if state is S.DEFERRED else None


def _ts(now: datetime) -> float:
    if now.tzinfo is None:
        raise ValueError(f"{now.isoformat()}: the rollout engine needs an aware datetime (e.g. datetime.now(UTC))")
    return now.timestamp()


class Rollout:
    """One release going out to its targets. Build with :meth:`create` or :meth:`from_dict`."""

    def __init__(
        self,
        *,
        rollout_id: str,
        release_version: str,
        target: Target,
        policy: RolloutPolicy,
        created_at: float,
        book: NodeBook,
        phase: Phase = Phase.RUNNING,
        current_wave: int = 0,
        sent_at: Iterable[float] = (),
        retries: int = 0,
        abort_reason: str | None = None,
        history: Iterable[dict[str, Any]] = (),
    ) -> None:
        self.rollout_id = rollout_id
        self.release_version = release_version
        self.target = target
        self.policy = policy
        self.created_at = created_at
        self.phase = phase
        self.current_wave = current_wave
        self.retries = retries
        self.abort_reason = abort_reason
        self.history = list(history)
        """Operator and engine decisions: ``{"at", "event", "by", "reason"}``."""
        self._book = book
        self._rate = DispatchRate(policy.max_dispatch_per_minute, sent_at)
        self._required = [policy.rules_for(w).required_successes(size) for w, size in enumerate(book.wave_sizes)]

    @classmethod
    def create(
        cls,
        rollout_id: str,
        release_version: str,
        target: Target,
        policy: RolloutPolicy,
        fleet: Iterable[NodeFacts],
        now: datetime,
    ) -> "Rollout":
        """Select the targets from ``fleet`` (skipping nodes already on the release) and split them into waves."""
        version = SemVer.parse(release_version)
        nodes = select_targets(target, fleet, version)
        if not nodes:
            raise NoTargetsError(
                f"rollout {rollout_id}: no node matches {target.model_dump(exclude_none=True)} "
                f"below {version}; action=check the target filters"
            )
        sizes = policy.wave_sizes(len(nodes))
        waves = [wave for wave, size in enumerate(sizes) for _ in range(size)]
        t = _ts(now)
        book = NodeBook(
            [NodeRecord(n.node_id, n.site, w, since=t) for n, w in zip(nodes, waves, strict=True)], len(sizes)
        )
        return cls(
            rollout_id=rollout_id,
            release_version=str(version),
            target=target,
            policy=policy,
            created_at=t,
            book=book,
        )

    # ----- driving -----

    def step(self, now: datetime, fleet: Mapping[str, NodeFacts]) -> list[Action]:
        """Fire due timeouts, judge thresholds, then dispatch what the gates allow; ``fleet`` is keyed by node id."""
        t = _ts(now)
        actions: list[Action] = []
        self._expire_steps(t, actions)
        if self.phase in ACTIVE and t >= self.created_at + self.policy.rollout_timeout_s:
            hours = self.policy.rollout_timeout_s / 3600
            self._abort(t, f"the rollout did not finish within {hours:g} h", "engine", actions)
        for wave in range(self.current_wave + 1):
            self._judge(wave, t, actions)
        if self.phase is Phase.RUNNING:
            self._dispatch(now, t, fleet, actions)
        return actions

    def on_report(
        self, node_id: str, state: NodeState | str, reason: str | None, now: datetime, *, attempt: int | None = None
    ) -> list[Action]:
        """Apply one node report; one for an older ``attempt`` is ignored, an illegal one raises IllegalReportError."""
        t = _ts(now)
        i = self._book.index.get(node_id)
        if i is None:
            raise UnknownNodeError(self.rollout_id, node_id)
        record = self._book.records[i]
        if attempt is not None and attempt != record.attempt:
            return []
        if self.phase is Phase.ROLLED_BACK and record.state is S.SUCCEEDED and state in _ROLLBACK_STEPS:
            record.reason = f"rollback {NodeState(state).value}" + (f": {reason}" if reason else "")
            return []  # the node is on its way back (or could not go back): it still runs the release
        reported = self._legal(record, state)
        if reported is None:  # the node acknowledges a Cancel of a command it no longer holds
            return []
        if reported is record.state:
            record.since = t
            record.reason = reason if reason is not None else record.reason
            return []
        actions: list[Action] = []
        if record.state is S.DEFERRED and reported in PIPELINE and self._must_wait(record):
            actions.append(Cancel(node_id))
            why = "paused" if self.phase is not Phase.RUNNING else "site_busy"
            self._requeue(i, why, t, delay=self.policy.defer_retry_s, retry=False)
        elif reported is S.FAILED and self._retryable(record, reason):
            self._requeue(i, reason, t, delay=self.policy.retry_delay_s, retry=True)
        else:
            self._book.move(i, reported, reason or _default_reason(reported), t, held=reported not in TERMINAL)
        if reported is S.SUCCEEDED and self.phase is Phase.ROLLED_BACK:
            actions.append(Rollback(node_id))
        self._judge(record.wave, t, actions)
        return actions

    # ----- operator -----

    def pause(self, now: datetime, by: str) -> list[Action]:
        """Stop dispatching; nodes already updating carry on."""
        self._require(Phase.RUNNING, "pause")
        self.phase = Phase.PAUSED
        self._log(_ts(now), "pause", by, None)
        return []

    def resume(self, now: datetime, by: str) -> list[Action]:
        """Dispatch again from the next :meth:`step`."""
        self._require(Phase.PAUSED, "resume")
        self.phase = Phase.RUNNING
        self._log(_ts(now), "resume", by, None)
        return []

    def abort(self, now: datetime, by: str, reason: str = "aborted by an operator") -> list[Action]:
        """Stop for good: waiting nodes are cancelled, nodes not yet installing are sent a Cancel."""
        if self.phase not in ACTIVE:
            raise PhaseError(f"rollout {self.rollout_id} is {self.phase.value}; only a running or paused one aborts")
        actions: list[Action] = []
        self._abort(_ts(now), reason, by, actions)
        return actions

    def rollback(self, now: datetime, by: str) -> list[Action]:
        """Abort if still active, then send Rollback to every node that committed (and to any that commits later)."""
        if self.phase is Phase.ROLLED_BACK:
            raise PhaseError(f"rollout {self.rollout_id} was already rolled back")
        t = _ts(now)
        actions: list[Action] = []
        if self.phase in ACTIVE:
            self._abort(t, f"rollback requested by {by}", by, actions)
        self.phase = Phase.ROLLED_BACK
        self._log(t, "rollback", by, None)
        actions.extend(Rollback(r.node_id) for r in self._book.records if r.state is S.SUCCEEDED)
        return actions

    # ----- views -----

    def progress(self) -> Progress:
        """Counts per state, per wave and in total."""
        waves = wave_progress(self._book, self._required)
        return Progress(self.phase, self.current_wave, waves, totals(waves), self.retries, self.abort_reason)

    def node(self, node_id: str) -> NodeView:
        """One node's state, reason and attempt."""
        i = self._book.index.get(node_id)
        if i is None:
            raise UnknownNodeError(self.rollout_id, node_id)
        r = self._book.records[i]
        since = datetime.fromtimestamp(r.since, UTC)
        return NodeView(r.node_id, r.site, r.wave, r.state, r.reason, r.attempt, r.retries, since)

    def updating_nodes(self) -> list[str]:
        """Nodes this rollout has in flight: the contention policy's ``updating`` flag."""
        return [self._book.records[i].node_id for i in sorted(self._book.in_flight)]

    # ----- persistence -----

    def to_dict(self) -> dict[str, Any]:
        """The whole state as a JSON-ready document for the store."""
        return {
            "format": FORMAT,
            "rollout_id": self.rollout_id,
            "release_version": self.release_version,
            "target": self.target.model_dump(mode="json"),
            "policy": self.policy.model_dump(mode="json"),
            "created_at": self.created_at,
            "phase": self.phase.value,
            "current_wave": self.current_wave,
            "waves": len(self._book.wave_sizes),
            "nodes": self._book.dump(),
            "sent_at": self._rate.dump(),
            "retries": self.retries,
            "abort_reason": self.abort_reason,
            "history": list(self.history),
        }

    @classmethod
    def from_dict(cls, document: Mapping[str, Any]) -> "Rollout":
        """Restore a rollout saved with :meth:`to_dict`; raise CorruptStateError naming what is wrong."""
        if document.get("format") != FORMAT:
            raise CorruptStateError(f"rollout document format {document.get('format')!r}, expected {FORMAT}")
        try:
            policy = RolloutPolicy.model_validate(document["policy"])
            rollout = cls(
                rollout_id=str(document["rollout_id"]),
                release_version=str(document["release_version"]),
                target=Target.model_validate(document["target"]),
                policy=policy,
                created_at=float(document["created_at"]),
                book=NodeBook.load(document["nodes"], int(document["waves"])),
                phase=Phase(document["phase"]),
                current_wave=int(document["current_wave"]),
                sent_at=[float(t) for t in document["sent_at"]],
                retries=int(document["retries"]),
                abort_reason=document["abort_reason"],
                history=document["history"],
            )
        except (KeyError, TypeError, ValueError, ValidationError) as error:
            raise CorruptStateError(
                f"rollout document does not restore: {error}; action=inspect the stored row"
            ) from error
        if not 0 <= rollout.current_wave < len(rollout._book.wave_sizes):
            raise CorruptStateError(f"rollout document names wave {rollout.current_wave}, which it does not have")
        return rollout

    # ----- internals -----

    def _legal(self, record: NodeRecord, state: NodeState | str) -> NodeState | None:
        """The state a report moves the node to (None: an acknowledgement that changes nothing), or raise."""
        try:
            reported = NodeState(state)
        except ValueError:
            raise IllegalReportError(record.node_id, record.state, str(state)) from None
        current, holds = record.state, record.held or current_is_final(record)
        if reported is S.CANCELLED and (not holds or current is S.TIMED_OUT):
            return None
        if reported is S.QUEUED and current is S.DISPATCHED:
            return current
        rollback = current is S.SUCCEEDED and reported is S.ROLLED_BACK and self.phase is Phase.ROLLED_BACK
        if reported not in REPORTED or not holds or (reported not in REPORT_MOVES[current] and not rollback):
            raise IllegalReportError(record.node_id, current, reported.value)
        return reported

    def _must_wait(self, record: NodeRecord) -> bool:
        """Whether a node going on from its own deferral must be held back (not running, or its site is full)."""
        load = self._book.site_load.get(record.site, 0)
        return self.phase is not Phase.RUNNING or load >= self.policy.site_limit(record.site)

    def _retryable(self, record: NodeRecord, reason: str | None) -> bool:
        return self.phase in ACTIVE and reason in self.policy.retry_reasons and record.retries < self.policy.max_retries

    def _requeue(self, i: int, reason: str | None, t: float, *, delay: float, retry: bool) -> None:
        """Back to the queue with a new attempt (a new command) after ``delay``; ``retry`` counts it as a retry."""
        record = self._book.move(i, S.QUEUED, reason, t, held=False)
        record.attempt += 1
        record.not_before = t + delay
        if retry:
            record.retries += 1
            self.retries += 1

    def _expire_steps(self, t: float, actions: list[Action]) -> None:
        limit, book = self.policy.step_timeout_s, self._book
        for i in sorted(i for i in book.in_flight | book.parked if t - book.records[i].since >= limit):
            record = book.records[i]
            if record.state in CANCELLABLE:
                actions.append(Cancel(record.node_id))
            if self.phase in ACTIVE and self.policy.retry_timeouts and record.retries < self.policy.max_retries:
                self._requeue(i, S.TIMED_OUT.value, t, delay=self.policy.retry_delay_s, retry=True)
            else:
                reason = f"no report for {limit:g} s while {record.state.value}"
                book.move(i, S.TIMED_OUT, reason, t, held=False)

    def _judge(self, wave: int, t: float, actions: list[Action]) -> None:
        """Abort on a failure breach in ``wave``; otherwise advance or complete the rollout."""
        if self.phase not in ACTIVE:
            return
        size, failures = self._book.wave_sizes[wave], self._book.failures(wave)
        if self.policy.rules_for(wave).breached(failures, size):
            name = "canary" if wave == 0 else f"wave {wave}"
            self._abort(t, f"{name}: {failures} of {size} nodes failed, above its failure threshold", "engine", actions)
            return
        self._advance(t, actions)

    def _advance(self, t: float, actions: list[Action]) -> None:
        book = self._book
        while self.phase in ACTIVE:
            wave = self.current_wave
            succeeded, required = book.counts[wave][S.SUCCEEDED], self._required[wave]
            if succeeded < required:
                if book.finished(wave):
                    reason = (
                        f"wave {wave} ended with {succeeded} of {book.wave_sizes[wave]} succeeded, {required} needed"
                    )
                    self._abort(t, reason, "engine", actions)
                return
            if wave + 1 < len(book.wave_sizes):
                self.current_wave += 1
                actions.append(WaveAdvanced(wave + 1, book.wave_sizes[wave + 1]))
                continue
            if book.terminal == len(book.records):
                self.phase = Phase.COMPLETED
                failed = sum(book.failures(w) for w in range(len(book.wave_sizes)))
                actions.append(Completed(succeeded=sum(c[S.SUCCEEDED] for c in book.counts), failed=failed))
                self._log(t, "completed", "engine", None)
            return

    def _dispatch(self, now: datetime, t: float, fleet: Mapping[str, NodeFacts], actions: list[Action]) -> None:
        budget = self._rate.available(t)
        if budget <= 0:
            return
        book, policy = self._book, self.policy
        load = dict(book.site_load)
        for facts in fleet.values():
            if facts.updating:
                i = book.index.get(facts.node_id)
                if i is None or book.records[i].state not in IN_FLIGHT:
                    load[facts.site] = load.get(facts.site, 0) + 1
        window_open: dict[str, bool] = {}
        for wave in range(self.current_wave + 1):
            for i in sorted(book.waiting[wave]):
                record = book.records[i]
                if record.not_before > t or load.get(record.site, 0) >= policy.site_limit(record.site):
                    continue
                if record.site not in window_open:
                    window = policy.maintenance_windows.get(record.site)
                    window_open[record.site] = window is None or window.contains(now)
                reason = controller_defer_reason(fleet.get(record.node_id), window_open[record.site])
                if reason is not None:
                    self._defer(i, record, reason, t)
                    continue
                book.move(i, S.DISPATCHED, None, t, held=True)
                record.sent = True
                load[record.site] = load.get(record.site, 0) + 1
                self._rate.record(t)
                actions.append(DispatchUpdate(record.node_id, record.attempt))
                budget -= 1
                if budget == 0:
                    return

    def _defer(self, i: int, record: NodeRecord, reason: DeferReason, t: float) -> None:
        if record.state is not S.DEFERRED or record.reason != reason.value:
            self._book.move(i, S.DEFERRED, reason.value, t)

    def _abort(self, t: float, reason: str, by: str, actions: list[Action]) -> None:
        book = self._book
        self.phase, self.abort_reason = Phase.ABORTED, reason
        actions.append(Aborted(reason, by))
        self._log(t, "abort", by, reason)
        waiting = [i for wave in book.waiting for i in wave]
        cancellable = [i for i in book.in_flight | book.parked if book.records[i].state in CANCELLABLE]
        for i in sorted(waiting + cancellable):
            record = book.records[i]
            if record.held:
                actions.append(Cancel(record.node_id))
            book.move(i, S.CANCELLED, "rollout aborted", t, held=False)

    def _require(self, phase: Phase, action: str) -> None:
        if self.phase is not phase:
            raise PhaseError(f"rollout {self.rollout_id} is {self.phase.value}; {action} needs it {phase.value}")

    def _log(self, t: float, event: str, by: str, reason: str | None) -> None:
        at = datetime.fromtimestamp(t, UTC).isoformat()
        self.history.append({"at": at, "event": event, "by": by, "reason": reason})
