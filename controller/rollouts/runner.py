"""The rollout engine's adapter: the clock, the fleet, the store, the update commands and the ``ota`` reports.

A thread calls :meth:`RolloutRunner.tick` every ``tick_s`` (1 s by default): each running rollout is stepped against
the fleet as it is now (births: site, hardware model, firmware version; liveness; maintenance; what any rollout is
updating) and the actions it returns are carried out. A node's ``ota`` report comes from ingest to :meth:`on_ota` at
once, so a threshold breach aborts within that report, not at the next tick.

Every change is stored before anything is published: the rollout's document and the update commands it is about to
send go into the store in one transaction, then the commands go out. A report that leads to an action (an abort, a
cancel, a rollback, the next wave) is stored at once; one that only moves its node is stored with the next tick. A
controller that stops mid-rollout resumes from the store; a command that was stored but never published (or a report
not yet stored) ends in the node's step timeout, and the node is retried.
Every update command is new (a new id per attempt); ``rollout_commands`` maps it to its node and attempt, so a late
report of an earlier attempt is told apart.
"""

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Container, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from controller.commands.service import Commands
from controller.fleet.registry import Fleet
from controller.influx.lineproto import firmware_line, rollout_line
from controller.log_throttle import Throttle
from controller.releases.catalog import find
from controller.releases.http import artifact_path
from controller.rollouts.actions import Aborted, Action, Cancel, Completed, DispatchUpdate, Rollback, WaveAdvanced
from controller.rollouts.engine import Rollout
from controller.rollouts.errors import CorruptStateError, RolloutError
from controller.rollouts.fleet_view import UpdatingNodes, fleet_facts
from controller.rollouts.policy import RolloutPolicy
from controller.rollouts.progress import ACTIVE, Phase
from controller.rollouts.targeting import NodeFacts, Target
from controller.store.rollouts import RolloutStore, SentCommand, StoredRollout
from schemas import CommandResult, CommandStatus, OtaEvent, SignedRelease
from schemas.semver import SemVer

log = logging.getLogger(__name__)

LINE_EVERY_S: Final = 30.0
"""A running rollout's progress is written to InfluxDB on every change and at least this often."""
FOLLOWED: Final = frozenset({*ACTIVE, Phase.ROLLED_BACK})
"""Phases whose rollouts the runner keeps in memory: they still send commands or expect reports."""


@dataclass
class _Followed:
    """One rollout in memory, with what the adapter keeps beside the engine's state."""

    rollout: Rollout
    extra_urls: tuple[str, ...]
    created_by: str
    saved: dict[str, Any]
    """The engine document last stored (a step that changed nothing stores nothing)."""
    lines_at: float = 0.0
    dirty: bool = False
    """A report changed it and asked for nothing: the next tick stores it."""

    def document(self) -> dict[str, Any]:
        return {"engine": self.saved, "extra_urls": list(self.extra_urls), "created_by": self.created_by}


class RolloutRunner:
    """Runs every rollout of this controller; thread-safe (its thread, ingest, HTTP workers)."""

    def __init__(
        self,
        store: RolloutStore,
        commands: Commands,
        fleet: Fleet,
        *,
        maintenance: Container[str],
        releases_dir: Path,
        public_url: str,
        store_lines: Callable[[list[str]], None],
        clock: Callable[[], float] = time.time,
        tick_s: float = 1.0,
    ) -> None:
        self._store = store
        self._commands = commands
        self._fleet = fleet
        self._maintenance = maintenance
        self.releases_dir = releases_dir
        self.public_url = public_url.rstrip("/")
        self._store_lines = store_lines
        self._clock = clock
        self._tick_s = tick_s
        self._lock = threading.RLock()
        self._followed: dict[str, _Followed] = {}
        self._sent: dict[str, SentCommand] = {}
        self._releases: dict[str, SignedRelease] = {}
        self._versions: Counter[str] = Counter()
        self._versions_at = 0.0
        self._stray_reports = Throttle()
        self.updating = UpdatingNodes()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if urlsplit(self.public_url).hostname in {"0.0.0.0", "::"}:  # noqa: S104 - recognising it, not binding it
            log.warning(
                "update commands would point lockers at %s action=set --public-url to this controller's address as "
                "lockers reach it",
                self.public_url,
            )
        for document in store.documents(FOLLOWED):
            self._adopt(document)
        self._sent = {c.command_id: c for c in store.commands_of(self._followed)}
        self._refresh_updating()

    # ----- lifecycle -----

    def start(self) -> None:
        """Step the rollouts every ``tick_s`` in a thread until :meth:`stop`."""
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rollouts", daemon=True)
        self._thread.start()
        if self._followed:
            log.info("rollouts resumed from the store count=%d ids=%s", len(self._followed), ",".join(self._followed))

    def stop(self) -> None:
        """Stop stepping (everything is already stored)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self._stop.wait(self._tick_s):
            try:
                self.tick()
            except Exception:  # a bug or a store outage: keep trying every tick, and say so
                log.exception("rollout step failed action=check the store; the runner retries every tick")

    # ----- operator -----

    def create(
        self, release_version: str, target: Target, policy: RolloutPolicy, by: str, extra_urls: tuple[str, ...] = ()
    ) -> Rollout:
        """Start a rollout of a published release (ReleaseError if it is not; NoTargetsError if nothing matches).

        A target without hardware models takes the release's models: a node of another model would refuse it.
        """
        release = find(self.releases_dir, SemVer.parse(release_version)).signed
        if target.hardware_models is None:
            target = target.model_copy(update={"hardware_models": frozenset(release.manifest.hardware_models)})
        rollout_id = f"ro-{uuid.uuid4().hex[:12]}"
        with self._lock:
            now = self._clock()
            facts = self._facts(now)
            rollout = Rollout.create(rollout_id, release_version, target, policy, facts.values(), _at(now))
            self._releases[rollout.release_version] = release
            followed = _Followed(rollout, extra_urls, by, saved={})
            self._followed[rollout_id] = followed
            sizes = [w.size for w in rollout.progress().waves]
            log.info(
                "rollout created rollout=%s release=%s by=%s targets=%d waves=%s",
                rollout_id,
                rollout.release_version,
                by,
                sum(sizes),
                sizes,
            )
            self._carry_out(followed, rollout.step(_at(now), facts), now)
            return _copy(rollout)

    def pause(self, rollout_id: str, by: str) -> Rollout:
        """Stop dispatching (PhaseError unless running; KeyError if unknown)."""
        return self._operate(rollout_id, lambda r, at: r.pause(at, by))

    def resume(self, rollout_id: str, by: str) -> Rollout:
        """Dispatch again (PhaseError unless paused)."""
        return self._operate(rollout_id, lambda r, at: r.resume(at, by))

    def abort(self, rollout_id: str, by: str, reason: str | None = None) -> Rollout:
        """Stop for good (PhaseError unless running or paused)."""
        return self._operate(rollout_id, lambda r, at: r.abort(at, by, reason or f"aborted by {by}"))

    def rollback(self, rollout_id: str, by: str) -> Rollout:
        """Abort if active and send every node that committed the release back to its previous one."""
        return self._operate(rollout_id, lambda r, at: r.rollback(at, by))

    def _operate(self, rollout_id: str, act: Callable[[Rollout, datetime], list[Action]]) -> Rollout:
        with self._lock:
            followed = self._follow(rollout_id)
            if followed is None:
                raise KeyError(rollout_id)
            now = self._clock()
            self._carry_out(followed, act(followed.rollout, _at(now)), now)
            return _copy(followed.rollout)

    # ----- views -----

    def get(self, rollout_id: str) -> Rollout | None:
        """A copy of one rollout (from memory, or the store for a finished one)."""
        with self._lock:
            followed = self._followed.get(rollout_id)
            if followed is not None:
                return _copy(followed.rollout)
        document = self._store.load(rollout_id)
        return None if document is None else _restore(document)

    def rollouts(self) -> list[Rollout]:
        """Copies of every stored rollout, oldest first (those in memory as they are now)."""
        found = []
        for document in self._store.documents():
            rollout_id = document["engine"]["rollout_id"]
            with self._lock:
                followed = self._followed.get(rollout_id)
                rollout = _copy(followed.rollout) if followed is not None else None
            found.append(rollout or _restore(document))
        return found

    def created_by(self, rollout_id: str) -> str | None:
        """Who created ``rollout_id`` (None when unknown)."""
        document = self._store.load(rollout_id)
        return None if document is None else str(document.get("created_by"))

    # ----- driving -----

    def tick(self) -> None:
        """Step every running or paused rollout once, and write progress and fleet versions when due."""
        with self._lock:
            now = self._clock()
            facts = self._facts(now)
            for followed in list(self._followed.values()):
                active = followed.rollout.phase in ACTIVE
                if active or followed.dirty:
                    followed.dirty = False
                    self._carry_out(followed, followed.rollout.step(_at(now), facts) if active else [], now)
                if active and now - followed.lines_at >= LINE_EVERY_S:
                    self._write_progress(followed, now)
        self._write_versions(now)

    def on_ota(self, event: OtaEvent) -> None:
        """A node's ``ota`` report (ingest thread): apply it at once; a breach aborts and stores before returning."""
        self._report(event.command_id, event.node_id, event.state.value, event.reason)

    def on_result(self, result: CommandResult) -> None:
        """The node's answer to an update command: a refusal (signature, lifetime…) fails that attempt."""
        if result.status in {CommandStatus.REJECTED, CommandStatus.FAILED, CommandStatus.EXPIRED}:
            self._report(result.command_id, result.node_id, "failed", f"command_{result.status.value}")

    def _report(self, command_id: str, node_id: str, state: str, reason: str | None) -> None:
        with self._lock:
            sent = self._sent.get(command_id) or self._store.command(command_id)
            if sent is None or sent.node_id != node_id:
                held = self._stray_reports.allow(node_id, time.monotonic())
                if held is not None:  # one line per node per minute: a misbehaving node cannot flood the log
                    log.warning(
                        "ota report for a command no rollout sent node=%s command_id=%s state=%s held_back=%d "
                        "action=none if the rollout was deleted; else check the node's clock and outbox",
                        node_id,
                        command_id,
                        state,
                        held,
                    )
                return
            followed = self._follow(sent.rollout_id)
            if followed is None:
                return
            now = self._clock()
            try:
                actions = followed.rollout.on_report(node_id, state, reason, _at(now), attempt=sent.attempt)
            except RolloutError as exc:
                log.warning(
                    "ota report refused rollout=%s node=%s state=%s error=%s",
                    sent.rollout_id,
                    node_id,
                    state,
                    exc,
                )
                return
            if actions:
                self._carry_out(followed, actions, now)
            else:  # stored with the next tick: a report that asks for nothing need not wait for the store
                followed.dirty = True

    # ----- internals -----

    def _carry_out(self, followed: _Followed, actions: list[Action], now: float) -> None:
        """Store the rollout and the commands its actions send (one transaction), then publish, then log."""
        rollout = followed.rollout
        document = rollout.to_dict()
        if not actions and document == followed.saved:
            return
        outgoing = list(self._build(rollout, actions, now))
        followed.saved = document
        self._save(followed, now, [sent for sent, _ in outgoing])
        for sent, command in outgoing:
            self._sent[sent.command_id] = sent
            try:
                self._commands.send(command, self.on_result)
            except ConnectionError as exc:
                log.error(
                    "update command not published rollout=%s node=%s error=%s action=check the broker; the node "
                    "times out and is retried",
                    rollout.rollout_id,
                    sent.node_id,
                    exc,
                )
        withdrawn = [a.node_id for a in actions if isinstance(a, Cancel)]
        if withdrawn:
            self._withdraw(rollout.rollout_id, withdrawn)
        for action in actions:
            _log_action(rollout, action)
        self._refresh_updating()
        self._write_progress(followed, now)

    def _withdraw(self, rollout_id: str, node_ids: list[str]) -> None:
        """Send each node a cancel of the latest update this rollout sent it (the engine took the node back)."""
        latest: dict[str, SentCommand] = {}
        for sent in self._sent.values():
            if sent.rollout_id == rollout_id and not sent.rollback:
                known = latest.get(sent.node_id)
                if known is None or sent.sent_at >= known.sent_at:
                    latest[sent.node_id] = sent
        for node_id in node_ids:
            update = latest.get(node_id)
            if update is None:
                continue
            try:
                self._commands.send(self._commands.cancel_update(node_id, rollout_id, update.command_id))
            except ConnectionError as exc:
                log.error(
                    "cancel of an update not published rollout=%s node=%s error=%s action=check the broker; the node "
                    "finishes what it started and its report is still counted",
                    rollout_id,
                    node_id,
                    exc,
                )

    def _save(self, followed: _Followed, now: float, commands: list[SentCommand]) -> None:
        r = followed.rollout
        row = StoredRollout(r.rollout_id, r.release_version, r.phase.value, r.created_at, followed.document())
        self._store.save(row, now, commands)

    def _build(self, rollout: Rollout, actions: list[Action], now: float) -> Iterator[tuple[SentCommand, Any]]:
        ttl = timedelta(seconds=min(rollout.policy.step_timeout_s, 86_400.0))
        for action in actions:
            if isinstance(action, DispatchUpdate):
                release = self._release(rollout.release_version)
                urls = (*self._followed[rollout.rollout_id].extra_urls, self._artifact_url(release))[:4]
                command = self._commands.update(action.node_id, rollout.rollout_id, ttl, release, urls)
                yield (
                    SentCommand(command.command_id, rollout.rollout_id, action.node_id, action.attempt, False, now),
                    command,
                )
            elif isinstance(action, Rollback):
                attempt = rollout.node(action.node_id).attempt
                command = self._commands.update(action.node_id, rollout.rollout_id, ttl)
                yield SentCommand(command.command_id, rollout.rollout_id, action.node_id, attempt, True, now), command

    def _artifact_url(self, release: SignedRelease) -> str:
        return self.public_url + artifact_path(release.manifest.version)

    def _release(self, version: str) -> SignedRelease:
        release = self._releases.get(version)
        if release is None:
            release = self._releases[version] = find(self.releases_dir, SemVer.parse(version)).signed
        return release

    def _follow(self, rollout_id: str) -> _Followed | None:
        followed = self._followed.get(rollout_id)
        if followed is None:
            document = self._store.load(rollout_id)
            if document is not None:
                followed = self._adopt(document)
        return followed

    def _adopt(self, document: Mapping[str, Any]) -> _Followed | None:
        try:
            rollout = _restore(document)
        except CorruptStateError as exc:
            log.error("rollout not resumed error=%s action=inspect the row in table rollouts", exc)
            return None
        followed = _Followed(
            rollout,
            tuple(document.get("extra_urls", ())),
            str(document.get("created_by", "")),
            saved=dict(document["engine"]),
        )
        self._followed[rollout.rollout_id] = followed
        return followed

    def _facts(self, now: float) -> dict[str, NodeFacts]:
        return fleet_facts(self._fleet.records(), now, self._maintenance, self.updating)

    def _refresh_updating(self) -> None:
        self.updating.nodes = frozenset(n for f in self._followed.values() for n in f.rollout.updating_nodes())

    def _write_progress(self, followed: _Followed, now: float) -> None:
        rollout, when = followed.rollout, int(now * 1e9)
        progress = rollout.progress()
        self._store_lines(
            [
                rollout_line(
                    rollout.rollout_id,
                    rollout.release_version,
                    wave.wave,
                    progress.phase.value,
                    wave.size,
                    {state.value: count for state, count in wave.counts.items()},
                    when,
                )
                for wave in progress.waves
            ]
        )
        followed.lines_at = now

    def _write_versions(self, now: float) -> None:
        versions = Counter(r.birth.firmware_version for r in self._fleet.records())
        if versions != self._versions or now - self._versions_at >= LINE_EVERY_S:
            self._versions, self._versions_at = versions, now
            when = int(now * 1e9)
            self._store_lines([firmware_line(v, n, when) for v, n in sorted(versions.items())])


def _at(now: float) -> datetime:
    return datetime.fromtimestamp(now, UTC)


def _restore(document: Mapping[str, Any]) -> Rollout:
    return Rollout.from_dict(document["engine"])


def _copy(rollout: Rollout) -> Rollout:
    return Rollout.from_dict(rollout.to_dict())


def _log_action(rollout: Rollout, action: Action) -> None:
    rid = rollout.rollout_id
    match action:
        case Aborted(reason, by):
            log.warning(
                "rollout aborted rollout=%s by=%s reason=%r action=look at the failed nodes' reasons "
                "(lockerfleet rollout follow %s); `rollout rollback` sends updated nodes back",
                rid,
                by,
                reason,
                rid,
            )
        case Completed(succeeded, failed):
            log.info("rollout completed rollout=%s succeeded=%d failed=%d", rid, succeeded, failed)
        case WaveAdvanced(wave, size):
            log.info("rollout wave started rollout=%s wave=%d size=%d", rid, wave, size)
        case Cancel(node_id):
            log.info(
                "rollout withdrew a node rollout=%s node=%s action=none; it was sent a cancel_update: it stops "
                "unless it already switched slots, and then ends in commit or rollback",
                rid,
                node_id,
            )
        case _:
            pass
