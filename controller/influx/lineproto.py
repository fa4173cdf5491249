"""Turns validated contract messages into InfluxDB line protocol.

Tags stay low-cardinality (node, compartment, kind, status, reason); ids and counters are fields. Every point is
stamped with the device timestamp, so a redelivered message overwrites its earlier copy instead of adding
a row.
"""

import math
from collections.abc import Mapping
from datetime import UTC, datetime

from controller.kpis.figures import FieldKpis
from controller.swapqueue.model import Event
from schemas import (
    CommandResult,
    DoorEvent,
    DoorState,
    KeypadEvent,
    LedgerEvent,
    LockState,
    OtaEvent,
    PowerSource,
)
from schemas.alert import AlertNotice
from schemas.ingest_codec import AnyTelemetry

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def ns(ts: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond."""
    delta = ts - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def tag(value: str) -> str:
    """Escape a tag key or value."""
    return value.translate(_TAG_ESCAPES)


def string_field(value: str) -> str:
    """Quote and escape a string field value; line breaks become a literal ``\\n`` (one line per point)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n").replace("\r", "\\r") + '"'


def _bool(value: bool) -> str:
    return "true" if value else "false"


_POWER_SOURCE_FIELDS = {source: string_field(source.value) for source in PowerSource}
_NODE_TAGS: dict[str, str] = {}
"""Escaped node ids (a node sends telemetry every few seconds); emptied when it grows past :data:`_NODE_TAGS_MAX`."""
_NODE_TAGS_MAX = 100_000


def node_tag(node_id: str) -> str:
    """:func:`tag` of a node id, remembered."""
    escaped = _NODE_TAGS.get(node_id)
    if escaped is None:
        if len(_NODE_TAGS) >= _NODE_TAGS_MAX:
            _NODE_TAGS.clear()
        escaped = _NODE_TAGS[node_id] = tag(node_id)
    return escaped


def telemetry_line(t: AnyTelemetry) -> str:
    """One ``telemetry`` point per sample; compartments are summarised as counts of open doors and unlocked locks.

    Per-compartment history comes from door events (one point per edge), which is what changes; repeating every
    compartment's unchanged state in every sample would multiply the points written by the compartment count.
    Written for speed (it runs once per ingested message): no helper calls but the cached ones.
    """
    b = t.battery
    doors_open = unlocked = 0
    is_open, is_unlocked = DoorState.OPEN, LockState.UNLOCKED
    for c in t.compartments:
        if c.door is is_open:
            doors_open += 1
        if c.lock is is_unlocked:
            unlocked += 1
    return (
        f"telemetry,node={node_tag(t.node_id)} soc_pct={b.soc_pct},voltage_v={b.voltage_v},"
        f"charging={'true' if b.charging else 'false'},power_source={_POWER_SOURCE_FIELDS[b.power_source]},"
        f"cycle_count={b.cycle_count}i,temp_c={t.enclosure_temp_c},doors_open={doors_open}i,unlocked={unlocked}i,"
        f"outbox_dropped={t.outbox_dropped}i,boot_id={t.boot_id}i,seq={t.seq}i,"
        f"replayed={'true' if t.replayed else 'false'} {ns(t.ts)}"
    )


def event_line(e: DoorEvent) -> str:
    """One ``event`` point; the cause's command id is a field, never a tag."""
    command_id = getattr(e.cause, "command_id", "")
    return (
        f"event,node={tag(e.node_id)},compartment={tag(e.compartment)},kind={e.kind},action={e.action} "
        f"cause={string_field(e.cause.type)},command_id={string_field(command_id)},"
        f"uncommanded={_bool(e.uncommanded_open)},boot_id={e.boot_id}i,seq={e.seq}i,"
        f"replayed={_bool(e.replayed)} {ns(e.ts)}"
    )


def ledger_line(e: LedgerEvent) -> str:
    """One ``ledger`` point: a compartment's reservation state changed at the node; the reservation id is a field."""
    return (
        f"ledger,node={tag(e.node_id)},compartment={tag(e.compartment)},transition={e.transition.value},via={e.via} "
        f"reservation_id={string_field(e.reservation_id or '')},command_id={string_field(e.command_id or '')},"
        f"boot_id={e.boot_id}i,seq={e.seq}i,replayed={_bool(e.replayed)} {ns(e.ts)}"
    )


def keypad_line(e: KeypadEvent) -> str:
    """One ``keypad`` point: the node's keypad locked itself after too many wrong codes."""
    return (
        f"keypad,node={tag(e.node_id)},action={e.action} locked_until={ns(e.locked_until)}i,"
        f"wrong_attempts={e.wrong_attempts}i,boot_id={e.boot_id}i,seq={e.seq}i,replayed={_bool(e.replayed)} {ns(e.ts)}"
    )


def result_line(r: CommandResult) -> str:
    """One ``command_result`` point, tagged by status and physical outcome."""
    outcome = r.outcome
    result = outcome.result.value if outcome else "none"
    fields = [f"command_id={string_field(r.command_id)}", f"boot_id={r.boot_id}i", f"seq={r.seq}i"]
    if outcome is not None:
        fields.append(f"pulse_ms={outcome.pulse_ms}i")
        if outcome.switch_latency_ms is not None:
            fields.append(f"switch_latency_ms={outcome.switch_latency_ms}i")
    tags = f"node={tag(r.node_id)},status={r.status.value},result={result}"
    return f"command_result,{tags} {','.join(fields)} {ns(r.ts)}"


def dead_letter_line(reason: str, topic: str, payload: bytes, detail: str, when_ns: int, cap: int) -> str:
    """One ``dead_letter`` point keeping the first ``cap`` bytes of a refused payload for inspection."""
    kept = payload[:cap].decode("utf-8", errors="backslashreplace")
    return (
        f"dead_letter,reason={tag(reason)} topic={string_field(topic)},size_bytes={len(payload)}i,"
        f"payload={string_field(kept)},truncated={_bool(len(payload) > cap)},detail={string_field(detail)} {when_ns}"
    )


def fleet_line(online: int, stale: int, offline: int, maintenance: int, when_ns: int) -> str:
    """One ``fleet`` point: how many nodes are in each liveness state, and how many are under maintenance."""
    return f"fleet online={online}i,stale={stale}i,offline={offline}i,maintenance={maintenance}i {when_ns}"


def courier_open_line(
    node_id: str, outcome: str, rtt_ms: float, command_id: str, requested_by: str, when_ns: int
) -> str:
    """One ``courier_open`` point: an HTTP open's outcome and round trip as the caller saw it, and who asked."""
    return (
        f"courier_open,node={tag(node_id)},outcome={tag(outcome)} rtt_ms={rtt_ms},"
        f"command_id={string_field(command_id)},requested_by={string_field(requested_by)} {when_ns}"
    )


def maintenance_line(node_id: str, action: str, operator: str, reason: str, when_ns: int) -> str:
    """One ``maintenance`` point: an operator took a node out of the reservation pool (``start``) or back (``end``)."""
    return (
        f"maintenance,node={tag(node_id)},action={tag(action)} operator={string_field(operator)},"
        f"reason={string_field(reason)} {when_ns}"
    )


def reservation_line(site: str, answer: str, latency_ms: float, reservation_id: str, when_ns: int) -> str:
    """One ``reservation`` point per decided request: the answer by site, and how long deciding took."""
    return (
        f"reservation,site={tag(site)},answer={tag(answer)} latency_ms={latency_ms},"
        f"reservation_id={string_field(reservation_id)} {when_ns}"
    )


def alert_line(a: AlertNotice) -> str:
    """One ``alert`` point per announcement, stamped with its decision time (a redelivery overwrites it).

    Tags: rule, severity, transition and, where the alert has them, site, node and compartment; the alert id,
    episode, count and the times to acknowledge / resolve (seconds from firing, where known) are fields.
    """
    tags = [f"rule={tag(a.rule)}", f"severity={a.severity}", f"transition={a.transition}"]
    tags += [
        f"{k}={tag(v)}" for k, v in (("site", a.site_id), ("node", a.node_id), ("compartment", a.compartment)) if v
    ]
    fields = [
        f"alert_id={string_field(a.alert_id)}",
        f"episode={a.episode}i",
        f"count={a.count}i",
        f"summary={string_field(a.summary)}",
    ]
    for name, number in (
        ("value", a.value),
        ("time_to_ack_s", a.time_to_ack_s),
        ("time_to_resolve_s", a.time_to_resolve_s),
    ):
        if number is not None and math.isfinite(number):
            fields.append(f"{name}={float(number)}")
    return f"alert,{','.join(tags)} {','.join(fields)} {ns(a.at)}"


def ota_line(e: OtaEvent) -> str:
    """One ``ota`` point per step a node reports, tagged by node, rollout, state and (when given) reason."""
    tags = f"node={tag(e.node_id)},rollout={tag(e.rollout_id)},state={e.state.value}"
    if e.reason is not None:
        tags += f",reason={tag(e.reason)}"
    fields = [f"command_id={string_field(e.command_id)}"]
    fields += [
        f"{k}={string_field(str(v))}"
        for k, v in (("from_version", e.from_version), ("to_version", e.to_version))
        if v is not None
    ]
    if e.bytes_done is not None and e.bytes_total is not None:
        fields += [f"bytes_done={e.bytes_done}i", f"bytes_total={e.bytes_total}i"]
    fields += [f"boot_id={e.boot_id}i", f"seq={e.seq}i", f"replayed={_bool(e.replayed)}"]
    return f"ota,{tags} {','.join(fields)} {ns(e.ts)}"


def rollout_line(
    rollout_id: str, release: str, wave: int, phase: str, size: int, counts: Mapping[str, int], when_ns: int
) -> str:
    """One ``rollout`` point: one wave of one rollout, its size and how many of its nodes are in each state."""
    states = ",".join(f"{state}={count}i" for state, count in sorted(counts.items()))
    return (
        f"rollout,rollout={tag(rollout_id)},release={tag(release)},wave={wave} phase={string_field(phase)},"
        f"size={size}i,{states} {when_ns}"
    )


def firmware_line(version: str, nodes: int, when_ns: int) -> str:
    """One ``firmware`` point: how many known nodes run ``version`` (from their births)."""
    return f"firmware,version={tag(version)} nodes={nodes}i {when_ns}"


def alert_open_line(severity: str, pending: int, firing: int, when_ns: int) -> str:
    """One ``alert_open`` point: how many alerts of one severity are pending and firing now."""
    return f"alert_open,severity={tag(severity)} pending={pending}i,firing={firing}i {when_ns}"


def work_order_line(e: Event) -> str:
    """One ``work_order`` point per change of a technician's work order (the swap queue writes one per event).

    Tags: node, site (when the node has one), kind (``battery_swap``, ``pack_replacement``, ``field_repair``),
    event (``created``, ``assigned``, ``arrived``, ``done``, ``verified``, ``cancelled``, ...), severity and, once
    cancelled, cancel_reason.
    Fields: order_id, alert_ids (comma-separated), created_at_s (the first alert, epoch seconds), duration_s (from
    the first alert to this event: on a swap's ``verified``, its time to swap) and, where set, technician and
    evidence. Stamped with the event's time.
    """
    o = e.order
    site = f",site={tag(o.site_id)}" if o.site_id else ""  # InfluxDB refuses an empty tag value: no site, no tag
    tags = f"node={tag(o.node_id)}{site},kind={o.kind.value},event={e.kind.value}"
    tags += f",severity={o.severity.value}"
    if o.cancel_reason is not None:
        tags += f",cancel_reason={o.cancel_reason.value}"
    fields = [
        f"order_id={string_field(o.order_id)}",
        f"alert_ids={string_field(','.join(o.alert_ids))}",
        f"created_at_s={float(o.created_at)}",
        f"duration_s={max(0.0, e.at - o.created_at)}",
    ]
    fields += [
        f"{k}={string_field(v)}"
        for k, v in (("technician", o.technician_id), ("evidence", o.evidence and o.evidence.value))
        if v
    ]
    return f"work_order,{tags} {','.join(fields)} {round(e.at * 1e9)}"


def kpi_line(k: FieldKpis, when_ns: int) -> str:
    """One ``kpi`` point: the field KPIs of the window ending now (figures without data are left out)."""
    fields = [f"window_s={float(k.window_s)}", f"nodes={k.nodes}i", f"alerts_raised={k.alerts_raised}i"]
    for name in (
        "mean_time_to_swap_s",
        "mean_time_to_acknowledge_s",
        "alerts_per_100_nodes_per_day",
        "noise_share",
        "fulfilment_mean_s",
        "fulfilment_p90_s",
        "sync_success_share",
    ):
        number = getattr(k, name)
        if number is not None and math.isfinite(number):
            fields.append(f"{name}={float(number)}")
    return f"kpi {','.join(fields)} {when_ns}"
