"""Turns validated contract messages into InfluxDB line protocol.

Tags stay low-cardinality (node, compartment, kind, status); ids and counters are fields. Every point is
stamped with the device timestamp, so a redelivered message overwrites its earlier copy instead of adding
a row.
"""

from datetime import datetime

from schemas import CommandResult, DoorEvent, Telemetry

_TAG_ESCAPES = str.maketrans({",": r"\,", "=": r"\=", " ": r"\ "})


def ns(ts: datetime) -> int:
    """Nanoseconds since the epoch, exact to the microsecond."""
    return int(ts.timestamp()) * 1_000_000_000 + ts.microsecond * 1_000


def tag(value: str) -> str:
    """Escape a tag key or value."""
    return value.translate(_TAG_ESCAPES)


def string_field(value: str) -> str:
    """Quote and escape a string field value."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _bool(value: bool) -> str:
    return "true" if value else "false"


def telemetry_lines(t: Telemetry) -> list[str]:
    """One ``telemetry`` point for the node and one ``door`` point per compartment."""
    when = ns(t.ts)
    node = tag(t.node_id)
    b = t.battery
    lines = [
        f"telemetry,node={node} soc_pct={b.soc_pct},voltage_v={b.voltage_v},charging={_bool(b.charging)},"
        f"power_source={string_field(b.power_source.value)},cycle_count={b.cycle_count}i,"
        f"temp_c={t.enclosure_temp_c},outbox_dropped={t.outbox_dropped}i,boot_id={t.boot_id}i,seq={t.seq}i,"
        f"replayed={_bool(t.replayed)} {when}"
    ]
    lines.extend(
        f"door,node={node},compartment={tag(c.id)} open={_bool(c.door == 'open')},"
        f"locked={_bool(c.lock == 'locked')} {when}"
        for c in t.compartments
    )
    return lines


def event_line(e: DoorEvent) -> str:
    """One ``event`` point; the cause's command id is a field, never a tag."""
    command_id = getattr(e.cause, "command_id", "")
    return (
        f"event,node={tag(e.node_id)},compartment={tag(e.compartment)},kind={e.kind},action={e.action} "
        f"cause={string_field(e.cause.type)},command_id={string_field(command_id)},"
        f"uncommanded={_bool(e.uncommanded_open)},boot_id={e.boot_id}i,seq={e.seq}i,"
        f"replayed={_bool(e.replayed)} {ns(e.ts)}"
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
