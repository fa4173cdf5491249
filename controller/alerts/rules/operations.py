"""Operations rules: a node offline or stale, its outbox dropping telemetry, its clock skewed; a site gone dark.

Evaluated on the timer as well as on data, so silence itself is a condition: a node whose last message is older
than ``offline_after_s`` is offline even if no last will arrived. A node registered after a controller restart
counts from its last-seen time in the store (or from registration), so a restart raises no storm of offline alerts.
When a share of a site's nodes is offline together, :func:`evaluate_site` raises one ``site_uplink_lost`` with the
node list, and the monitor holds those nodes' own offline alerts.
"""

from collections.abc import Sequence
from dataclasses import dataclass

from controller.alerts.inputs import TelemetrySample
from controller.alerts.model import Detail, RuleName, Severity
from controller.alerts.params import OperationsParams
from controller.alerts.rules.base import Emitter


@dataclass(slots=True)
class OperationsState:
    """One node's liveness and data-quality state."""

    last_seen: float
    last_telemetry: float
    online: bool | None = None
    """The registry's verdict from status births and wills; ``None`` until one arrives."""
    outbox_total: int | None = None
    outbox_last_increase: float | None = None
    new_drops: int = 0
    skew_s: float | None = None
    was_offline: bool = False


def record_sample(state: OperationsState, sample: TelemetrySample, now: float) -> None:
    """Fold in a telemetry sample: freshness, outbox counter, clock skew."""
    state.last_seen = state.last_telemetry = now
    total = sample.outbox_dropped
    if state.outbox_total is not None and total != state.outbox_total:
        dropped = total - state.outbox_total if total > state.outbox_total else total  # lower: the node rebooted
        if dropped > 0:
            state.new_drops += dropped
            state.outbox_last_increase = now
    state.outbox_total = total
    if not sample.replayed:
        state.skew_s = sample.received_at - sample.ts


def offline(state: OperationsState, p: OperationsParams, now: float) -> bool:
    """The offline condition: a will says so, or nothing was heard for ``offline_after_s``."""
    return state.online is False or now - state.last_seen >= p.offline_after_s


def evaluate(state: OperationsState, p: OperationsParams, now: float, emit: Emitter, is_offline: bool) -> None:
    """Offline, stale, outbox and skew verdicts for one node."""
    silent = now - state.last_seen
    if state.was_offline and not is_offline:  # back: staleness counts from the return, not from before the outage
        state.last_telemetry = max(state.last_telemetry, now)
    state.was_offline = is_offline
    if is_offline:
        summary = "offline (last will)" if state.online is False else f"silent for {silent:.0f} s"
        emit.raise_(
            RuleName.NODE_OFFLINE,
            Severity.WARNING,
            summary,
            for_s=p.offline_for_s,
            keep_firing_for_s=p.offline_keep_firing_for_s,
            value=silent,
        )
        return  # the rest is derived from a live node
    emit.clear(RuleName.NODE_OFFLINE)
    age = now - state.last_telemetry
    if age >= p.stale_after_s:
        summary = f"online but no telemetry for {age:.0f} s"
        emit.raise_(RuleName.NODE_STALE, Severity.WARNING, summary, for_s=p.stale_for_s, value=age)
    else:
        emit.clear(RuleName.NODE_STALE)
    if state.outbox_last_increase is not None:
        _outbox(state, state.outbox_last_increase, p, now, emit)
    if state.skew_s is not None:
        _skew(state.skew_s, p, emit)


def _outbox(state: OperationsState, last: float, p: OperationsParams, now: float, emit: Emitter) -> None:
    if now - last < p.outbox_quiet_s:
        summary = f"outbox full: {state.outbox_total} telemetry samples dropped since boot"
        raised = emit.raise_(
            RuleName.OUTBOX_DROPPING, Severity.WARNING, summary, value=state.outbox_total, occurrences=state.new_drops
        )
        if raised:
            state.new_drops = 0
    else:
        emit.clear(RuleName.OUTBOX_DROPPING)


def _skew(skew: float, p: OperationsParams, emit: Emitter) -> None:
    if abs(skew) >= p.skew_raise_s:
        summary = f"device clock {'behind' if skew > 0 else 'ahead'} by {abs(skew):.0f} s"
        emit.raise_(RuleName.CLOCK_SKEW, Severity.WARNING, summary, for_s=p.skew_for_s, value=skew)
    elif abs(skew) <= p.skew_clear_s:
        emit.clear(RuleName.CLOCK_SKEW)


def evaluate_site(offline_nodes: Sequence[str], site_size: int, p: OperationsParams, emit: Emitter) -> bool:
    """One grouped verdict for a site (``emit`` has the site, no node); returns whether the raise condition holds."""
    share = len(offline_nodes) / site_size if site_size else 0.0
    if len(offline_nodes) >= p.site_min_nodes and share >= p.site_raise_share:
        nodes: list[str] = sorted(offline_nodes)
        details: dict[str, Detail] = {"nodes": nodes, "offline": len(nodes), "site_nodes": site_size}
        summary = f"site {emit.site_id}: {len(nodes)} of {site_size} nodes offline together (uplink lost?)"
        emit.raise_(
            RuleName.SITE_UPLINK_LOST,
            Severity.CRITICAL,
            summary,
            for_s=p.site_for_s,
            keep_firing_for_s=p.offline_keep_firing_for_s,
            value=share,
            details=details,
        )
        return True
    if share < p.site_clear_share:
        emit.clear(RuleName.SITE_UPLINK_LOST)
    return False
