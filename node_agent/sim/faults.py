"""Simulator faults, chosen per node: what each one does to a simulated locker, and how they are written.

A fault is written ``kind[:arg[:arg]]``; ``--faults`` takes ``node=fault`` pairs separated by commas (a node may
appear more than once), a faults file the same as TOML (``[faults]`` with ``sim-0003 = ["drain:fast", "swap:600"]``).
A node written ``@site`` means every node at that site (``@north=uplink``).

=====================  ==============================================================================================
``drain:fast|slow|H``  On battery power, a load that empties a full pack in H hours (fast: 10, slow: 100, the
                       normal load). Clearing it puts the node back on its own supply and load.
``pack:fade[:PCT]``    Failing pack: capacity fades to PCT % of nominal (default 50), so it drains faster.
``pack:drop[:PCT]``    Failing pack: the charge falls at once to PCT % (default 15).
``pack:worn[:N]``      Failing pack: N charge cycles on it (default 1900, past a 2000-cycle pack's replacement).
``heater[:C]``         Heater fault: the enclosure runs C °C off its usual temperature (default +40: stuck on).
``heater:drift[:C]``   Heater fault: the enclosure drifts C °C per hour away from its usual temperature (default 2).
``latch[:ID]``         Sticky latch: compartment ID's door never moves when its lock fires (default: the first).
``wear[:ID][:MS]``     Wearing switch: each opening of ID's door (default: every door) reaches the switch MS ms later
                       than the one before (default 50), up to 70 % of the door timeout.
``intruder[:S]``       A door forced open with no command or code and wrong codes typed until the keypad locks; once,
                       or every S seconds.
``swap[:S]``           A technician swaps the pack after S seconds (default 0): full charge, no cycles, pack faults
                       gone. Drain stays: it is the node's load, not its pack.
``door:held[:ID]``     ID's door (default: the first) is left open: once opened (by a command or a code) it stays
                       open until the fault is cleared, then closes.
``lock:fault[:ID]``    ID's lock relay (default: the first) is welded energised: the lock reads unlocked while the
                       door stays shut, and commands cannot move it. Clearing it replaces the relay (locked).
``offline``            The node's connection fails (no DISCONNECT: the broker publishes its last will) and it stays
                       away, its outbox filling, until the fault is cleared.
``uplink``             The same, for a site's shared uplink: give it to ``@site``. It and ``offline`` clear apart.
``stale``              The node stays connected but its telemetry sampler hangs: no telemetry until cleared.
``outbox:drop[:S]``    The outbox shrinks to one message and the link drops for S seconds (default 10), so the
                       telemetry of the outage is dropped and counted (``outbox_dropped``). Clearing restores both.
``clock:skew[:S]``     The node's clock runs S seconds ahead (default 600; negative: behind).
=====================  ==============================================================================================

Clearing a fault undoes it; clearing a ``pack`` fault is a pack swap (a failing pack is fixed by replacing it).
"""

import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal, TypeAlias, cast

DRAIN_HOURS: Mapping[str, float] = {"fast": 10.0, "slow": 100.0}
"""Named drain profiles: hours from full to empty (the shipped board's normal load empties it in 100 h)."""


class FaultSpecError(ValueError):
    """A fault written wrongly; the message names the spec and what is accepted."""


@dataclass(frozen=True, slots=True)
class Drain:
    """On battery power with a load that empties a full pack in ``hours``."""

    kind: ClassVar[str] = "drain"
    hours: float


PackMode: TypeAlias = Literal["fade", "drop", "worn"]


@dataclass(frozen=True, slots=True)
class Pack:
    """A failing pack: capacity fade to ``value`` %, a sudden drop to ``value`` %, or ``value`` cycles worn."""

    kind: ClassVar[str] = "pack"
    mode: PackMode
    value: float


@dataclass(frozen=True, slots=True)
class Heater:
    """The enclosure ``offset_c`` off its usual temperature, and drifting ``drift_c_per_h`` further."""

    kind: ClassVar[str] = "heater"
    offset_c: float = 0.0
    drift_c_per_h: float = 0.0


@dataclass(frozen=True, slots=True)
class Latch:
    """A compartment whose door never moves when its lock fires (``None``: the profile's first)."""

    kind: ClassVar[str] = "latch"
    compartment: str | None = None


@dataclass(frozen=True, slots=True)
class Wear:
    """Door switches reached ``ms_per_open`` later at each opening (``compartment`` ``None``: every door)."""

    kind: ClassVar[str] = "wear"
    compartment: str | None = None
    ms_per_open: float = 50.0


@dataclass(frozen=True, slots=True)
class Intruder:
    """A forced door and wrong codes until the keypad locks: once, or every ``every_s`` seconds."""

    kind: ClassVar[str] = "intruder"
    every_s: float | None = None


@dataclass(frozen=True, slots=True)
class Swap:
    """The pack is swapped ``after_s`` seconds after the fault is applied."""

    kind: ClassVar[str] = "swap"
    after_s: float = 0.0


@dataclass(frozen=True, slots=True)
class DoorHeld:
    """A door left open once opened (``None``: the profile's first)."""

    kind: ClassVar[str] = "door"
    compartment: str | None = None


@dataclass(frozen=True, slots=True)
class LockFault:
    """A lock relay welded energised: unlocked, the door shut (``None``: the profile's first)."""

    kind: ClassVar[str] = "lock"
    compartment: str | None = None


@dataclass(frozen=True, slots=True)
class Offline:
    """The node's connection fails and stays down."""

    kind: ClassVar[str] = "offline"


@dataclass(frozen=True, slots=True)
class Uplink:
    """The node's site uplink is down: its connection fails and stays down."""

    kind: ClassVar[str] = "uplink"


@dataclass(frozen=True, slots=True)
class Stale:
    """Connected, but no telemetry."""

    kind: ClassVar[str] = "stale"


@dataclass(frozen=True, slots=True)
class OutboxDrop:
    """An outbox of one message and the link down for ``cut_s`` seconds."""

    kind: ClassVar[str] = "outbox"
    cut_s: float = 10.0


@dataclass(frozen=True, slots=True)
class ClockSkew:
    """The node's clock ``offset_s`` seconds ahead (negative: behind)."""

    kind: ClassVar[str] = "clock"
    offset_s: float = 600.0


Fault: TypeAlias = (
    Drain
    | Pack
    | Heater
    | Latch
    | Wear
    | Intruder
    | Swap
    | DoorHeld
    | LockFault
    | Offline
    | Uplink
    | Stale
    | OutboxDrop
    | ClockSkew
)
_PACK_DEFAULTS: Mapping[PackMode, float] = {"fade": 50.0, "drop": 15.0, "worn": 1900.0}


def _number(spec: str, text: str, *, above: float | None = None, at_most: float | None = None) -> float:
    """``text`` as a finite number above ``above`` (``None``: 0 or more) and at most ``at_most``."""
    try:
        value = float(text)
    except ValueError:
        raise FaultSpecError(f"fault {spec!r}: {text!r} is not a number") from None
    too_low = value < 0 if above is None else value <= above
    if not math.isfinite(value) or too_low or (at_most is not None and value > at_most):
        bound = "at least 0" if above is None else f"above {above:g}"
        most = f", at most {at_most:g}" if at_most is not None else ""
        raise FaultSpecError(f"fault {spec!r}: {text!r} must be {bound}{most}")
    return value


def _signed(spec: str, text: str) -> float:
    """``text`` as a finite number of either sign."""
    return math.copysign(_number(spec, text.removeprefix("-").removeprefix("+")), -1.0 if text.startswith("-") else 1.0)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _drain(spec: str, args: list[str]) -> Fault:
    if len(args) != 1:
        raise FaultSpecError(f"fault {spec!r}: drain:fast, drain:slow or drain:<hours from full to empty>")
    return Drain(DRAIN_HOURS[args[0]] if args[0] in DRAIN_HOURS else _number(spec, args[0], above=0))


def _pack(spec: str, args: list[str]) -> Fault:
    if not args or args[0] not in _PACK_DEFAULTS or len(args) > 2:
        raise FaultSpecError(f"fault {spec!r}: pack:fade, pack:drop or pack:worn, each with an optional number")
    mode = cast(PackMode, args[0])
    if len(args) == 1:
        return Pack(mode, _PACK_DEFAULTS[mode])
    return Pack(mode, _number(spec, args[1]) if mode == "worn" else _number(spec, args[1], above=0, at_most=100))


def _heater(spec: str, args: list[str]) -> Fault:
    if args[:1] == ["drift"] and len(args) <= 2:
        return Heater(drift_c_per_h=_signed(spec, args[1]) if len(args) == 2 else 2.0)
    if len(args) > 1 or args[:1] == ["drift"]:
        raise FaultSpecError(f"fault {spec!r}: heater[:offset_c] or heater:drift[:c_per_h]")
    return Heater(offset_c=_signed(spec, args[0]) if args else 40.0)


def _latch(spec: str, args: list[str]) -> Fault:
    if len(args) > 1:
        raise FaultSpecError(f"fault {spec!r}: latch[:compartment]")
    return Latch(args[0] if args else None)


def _wear(spec: str, args: list[str]) -> Fault:
    numbers = [a for a in args if _is_number(a)]
    names = [a for a in args if not _is_number(a)]
    if len(numbers) > 1 or len(names) > 1 or (names and args[0] != names[0]):
        raise FaultSpecError(f"fault {spec!r}: wear[:compartment][:ms_per_open]")
    return Wear(names[0] if names else None, _number(spec, numbers[0], above=0) if numbers else 50.0)


def _intruder(spec: str, args: list[str]) -> Fault:
    if len(args) > 1:
        raise FaultSpecError(f"fault {spec!r}: intruder[:every_s]")
    return Intruder(_number(spec, args[0], above=0) if args else None)


def _swap(spec: str, args: list[str]) -> Fault:
    if len(args) > 1:
        raise FaultSpecError(f"fault {spec!r}: swap[:after_s]")
    return Swap(_number(spec, args[0]) if args else 0.0)


def _compartment_fault(mode: str, make: Callable[[str | None], Fault]) -> Callable[[str, list[str]], Fault]:
    def parse(spec: str, args: list[str]) -> Fault:
        if args[:1] != [mode] or len(args) > 2:
            raise FaultSpecError(f"fault {spec!r}: {make(None).kind}:{mode}[:compartment]")
        return make(args[1] if len(args) == 2 else None)

    return parse


def _plain(fault: Fault) -> Callable[[str, list[str]], Fault]:
    def parse(spec: str, args: list[str]) -> Fault:
        if args:
            raise FaultSpecError(f"fault {spec!r}: {fault.kind} takes no argument")
        return fault

    return parse


def _outbox(spec: str, args: list[str]) -> Fault:
    if args[:1] != ["drop"] or len(args) > 2:
        raise FaultSpecError(f"fault {spec!r}: outbox:drop[:seconds_offline]")
    return OutboxDrop(_number(spec, args[1], above=0) if len(args) == 2 else 10.0)


def _clock(spec: str, args: list[str]) -> Fault:
    if args[:1] != ["skew"] or len(args) > 2:
        raise FaultSpecError(f"fault {spec!r}: clock:skew[:seconds_ahead]")
    return ClockSkew(_signed(spec, args[1]) if len(args) == 2 else 600.0)


_PARSERS: Mapping[str, Callable[[str, list[str]], Fault]] = {
    "drain": _drain,
    "pack": _pack,
    "heater": _heater,
    "latch": _latch,
    "wear": _wear,
    "intruder": _intruder,
    "swap": _swap,
    "door": _compartment_fault("held", DoorHeld),
    "lock": _compartment_fault("fault", LockFault),
    "offline": _plain(Offline()),
    "uplink": _plain(Uplink()),
    "stale": _plain(Stale()),
    "outbox": _outbox,
    "clock": _clock,
}


def parse_fault(spec: str) -> Fault:
    """One fault from its written form, e.g. ``drain:fast``, ``pack:drop:10``, ``wear:A2:80``."""
    kind, *args = spec.strip().split(":")
    parser = _PARSERS.get(kind)
    if parser is None:
        raise FaultSpecError(f"fault {spec!r}: unknown kind {kind!r}; one of {', '.join(_PARSERS)}")
    if any(not a for a in args):
        raise FaultSpecError(f"fault {spec!r}: an empty argument")
    return parser(spec.strip(), args)


def parse_faults(text: str) -> dict[str, tuple[Fault, ...]]:
    """``node=fault,node=fault…`` to each node's (or ``@site``'s) faults, in the order written."""
    out: dict[str, tuple[Fault, ...]] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        node, sep, spec = item.partition("=")
        if not sep or not node.strip() or not spec.strip():
            raise FaultSpecError(f"faults: {item!r} is not node=fault (e.g. sim-0003=drain:fast)")
        out[node.strip()] = (*out.get(node.strip(), ()), parse_fault(spec))
    return out


def load_faults_file(path: Path) -> dict[str, tuple[Fault, ...]]:
    """The ``[faults]`` table of a TOML file: node id (or ``"@site"``) to a list of faults."""
    try:
        table = tomllib.loads(path.read_text()).get("faults", {})
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise FaultSpecError(f"faults file {path}: {exc}") from None
    if not isinstance(table, dict):
        raise FaultSpecError(f"faults file {path}: [faults] must be a table of node = [faults]")
    out: dict[str, tuple[Fault, ...]] = {}
    for node, specs in table.items():
        if not isinstance(specs, list) or not all(isinstance(s, str) for s in specs):
            raise FaultSpecError(f'faults file {path}: faults.{node} must be a list of strings, e.g. ["heater"]')
        try:
            out[node] = tuple(parse_fault(s) for s in specs)
        except FaultSpecError as exc:
            raise FaultSpecError(f"faults file {path}: faults.{node}: {exc}") from None
    return out


def fault_plan(text: str, path: Path | None) -> dict[str, tuple[Fault, ...]]:
    """Each node's (or ``@site``'s) faults from ``--faults`` and ``--faults-file`` (the file's first)."""
    out = load_faults_file(path) if path is not None else {}
    for node, faults in parse_faults(text).items():
        out[node] = (*out.get(node, ()), *faults)
    return out
