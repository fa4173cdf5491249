"""The faults of one simulated node at work on its board and agent (what each does: :mod:`node_agent.sim.faults`).

:class:`NodeFaults` outlives the node's boards and agents: an in-process restart (an update) builds a fresh board,
and :meth:`NodeFaults.attach` applies the active faults to it; the agent's side (its link cut, its telemetry paused,
its outbox shrunk) is brought in line on every physics step, and its clock (:meth:`NodeFaults.now`) is this
object's. Everything runs on the simulator's event loop; timed effects (a heater's drift, a swap's delay, an
intruder's return, an outage's end) advance with the physics in :meth:`NodeFaults.step`.
"""

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from node_agent.sim.faults import (
    ClockSkew,
    DoorHeld,
    Drain,
    Fault,
    FaultSpecError,
    Heater,
    Intruder,
    Latch,
    LockFault,
    Offline,
    OutboxDrop,
    Pack,
    Stale,
    Swap,
    Uplink,
    Wear,
)
from schemas import PowerSource
from schemas.codes import CODE_DIGITS

if TYPE_CHECKING:
    from node_agent.agent import Agent
    from node_agent.sim import BatteryModel, SimulatedBoard

log = logging.getLogger(__name__)

WEAR_TIMEOUT_SHARE = 0.7
"""A worn switch is reached at most this share of the door timeout late: slow, not yet a jam."""


class NodeFaults:
    """The faults active on one node, in the order applied."""

    def __init__(
        self, node_id: str, compartments: list[str], door_timeout_s: float, rng: random.Random, agent: "AgentOf"
    ) -> None:
        self.node_id = node_id
        self.active: list[Fault] = []
        self._compartments = compartments
        self._door_timeout_s = door_timeout_s
        self._rng = rng
        self._agent = agent
        self._board: SimulatedBoard | None = None
        self._supply: tuple[PowerSource, float] = (PowerSource.SHORE, 0.0)
        self._jammed: dict[str, bool] = {}
        self._drift_c = 0.0
        self._swap_in_s: float | None = None
        self._intrude_in_s: float | None = None
        self._codes_due = False
        self._outage_s: float | None = None
        self._skew = timedelta()
        self._synced = True
        self._tasks: set[asyncio.Task[None]] = set()

    def now(self) -> datetime:
        """The node's clock: UTC, off by the active clock skew."""
        return datetime.now(UTC) + self._skew

    def check(self, fault: Fault) -> Fault:
        """``fault`` if this node can have it (its compartment exists), else :class:`FaultSpecError`."""
        compartment = fault.compartment if isinstance(fault, Latch | Wear | DoorHeld | LockFault) else None
        if compartment is not None and compartment not in self._compartments:
            known = ", ".join(self._compartments)
            raise FaultSpecError(
                f"node {self.node_id}: fault {fault.kind} on {compartment!r}: no such compartment; {known}"
            )
        return fault

    def attach(self, board: "SimulatedBoard") -> None:
        """A (new) board for this node: remember its own supply and doors, then apply the active faults to it."""
        self._board = board
        self._supply = (board.battery.power_source, board.battery.load_w)
        self._jammed = {c: door.jammed for c, door in board.doors.items()}
        for fault in self.active:
            self._effect(fault)

    def apply(self, fault: Fault) -> None:
        """Start ``fault`` now."""
        self.active.append(self.check(fault))
        log.info("simulated fault node=%s fault=%s", self.node_id, fault)
        self._effect(fault)
        if isinstance(fault, Swap):
            self._swap_in_s = fault.after_s
        elif isinstance(fault, Intruder):
            self._intrude_in_s = 0.0
        elif isinstance(fault, OutboxDrop):
            self._outage_s = fault.cut_s
        self._sync_agent()

    def clear(self, kind: str | None = None) -> None:
        """End the active faults of ``kind`` (every one when ``None``): the board is as it was; a pack is swapped."""
        ending = [f for f in self.active if kind is None or f.kind == kind]
        self.active = [f for f in self.active if f not in ending]
        kinds = {f.kind for f in ending}
        log.info("simulated faults cleared node=%s kinds=%s", self.node_id, ",".join(sorted(kinds)) or "-")
        board = self._board
        if board is not None:
            if "drain" in kinds:
                board.battery.power_source, board.battery.load_w = self._supply
            if "heater" in kinds:
                self._drift_c = 0.0
                board.thermal.offset_c = 0.0
            if "latch" in kinds:
                for compartment, door in board.doors.items():
                    door.jammed = self._jammed.get(compartment, False)
            if "wear" in kinds:
                for door in board.doors.values():
                    door.wear_s = door.extra_s = 0.0
            held = {self._compartment(f) for f in self.active if isinstance(f, DoorHeld)}
            welded = {self._compartment(f) for f in self.active if isinstance(f, LockFault)}
            for compartment, door in board.doors.items():
                if door.held and compartment not in held:
                    door.let_close()
                if door.relay_welded and compartment not in welded:
                    door.weld_relay(False)
            for fault in self.active:
                self._effect(fault)
        if "pack" in kinds:
            self.swap_pack()
        self._swap_in_s = None if "swap" in kinds else self._swap_in_s
        self._intrude_in_s = None if "intruder" in kinds else self._intrude_in_s
        self._codes_due = self._codes_due and "intruder" not in kinds
        self._outage_s = None if "outbox" in kinds else self._outage_s
        self._sync_agent()

    def swap_pack(self) -> None:
        """A technician puts in a fresh pack: full, no cycles; the pack faults go with the old one."""
        self.active = [f for f in self.active if not isinstance(f, Pack)]
        if self._board is not None:
            self._board.battery.swap()
        log.info("simulated pack swap node=%s soc_pct=100 cycle_count=0", self.node_id)

    def step(self, dt_s: float) -> None:
        """Advance the timed effects by ``dt_s`` seconds (before the board's physics)."""
        board = self._board
        if board is None:
            return
        heater = next((f for f in self.active if isinstance(f, Heater)), None)
        if heater is not None and heater.drift_c_per_h:
            self._drift_c += heater.drift_c_per_h * dt_s / 3600
            board.thermal.offset_c = heater.offset_c + self._drift_c
        if self._swap_in_s is not None:
            self._swap_in_s -= dt_s
            if self._swap_in_s <= 0:
                self._swap_in_s = None
                self.active = [f for f in self.active if not isinstance(f, Swap)]
                self.swap_pack()
        if self._intrude_in_s is not None:
            self._intrude_in_s -= dt_s
            if self._intrude_in_s <= 0:
                self._intrude(board)
        if self._codes_due:
            self._type_wrong_codes()
        if self._outage_s is not None:
            self._outage_s -= dt_s
            if self._outage_s <= 0:
                self._outage_s = None
                log.info("simulated outbox outage over node=%s", self.node_id)
        if self.active or not self._synced:
            self._sync_agent()

    def _sync_agent(self) -> None:
        """Bring the current agent in line with the faults: link, telemetry, outbox, clock."""
        self._skew = timedelta(seconds=sum(f.offset_s for f in self.active if isinstance(f, ClockSkew)))
        agent = self._agent()
        self._synced = agent is not None
        if agent is None:
            return
        if self._outage_s is not None or any(isinstance(f, Offline | Uplink) for f in self.active):
            agent.link.cut()
        else:
            agent.link.mend()
        agent.telemetry_paused = any(isinstance(f, Stale) for f in self.active)
        shrunk = any(isinstance(f, OutboxDrop) for f in self.active)
        agent.outbox.capacity = 1 if shrunk else agent.settings.outbox_capacity

    def _compartment(self, fault: DoorHeld | LockFault) -> str:
        return fault.compartment or self._compartments[0]

    def _effect(self, fault: Fault) -> None:
        board = self._board
        if board is None:
            return
        if isinstance(fault, Drain | Pack):
            _battery_effect(board.battery, fault)
        elif isinstance(fault, Heater):
            board.thermal.offset_c = fault.offset_c + self._drift_c
        elif isinstance(fault, Latch):
            board.doors[fault.compartment or self._compartments[0]].jammed = True
        elif isinstance(fault, Wear):
            for compartment, door in board.doors.items():
                if fault.compartment in (None, compartment):
                    door.wear_s = fault.ms_per_open / 1000
                    door.max_extra_s = WEAR_TIMEOUT_SHARE * self._door_timeout_s
        elif isinstance(fault, DoorHeld):
            board.doors[self._compartment(fault)].held = True
        elif isinstance(fault, LockFault):
            door = board.doors[self._compartment(fault)]
            if not door.relay_welded:
                door.weld_relay(True)

    def _intrude(self, board: "SimulatedBoard") -> None:
        intruder = next((f for f in self.active if isinstance(f, Intruder)), None)
        self._intrude_in_s = intruder.every_s if intruder is not None else None
        closed = [c for c, door in board.doors.items() if not door.is_open]
        if closed:
            compartment = self._rng.choice(closed)
            log.info("simulated intruder forces a door node=%s compartment=%s", self.node_id, compartment)
            board.doors[compartment].force_open()
        self._codes_due = True

    def _type_wrong_codes(self) -> None:
        """Wrong codes at the keypad until it locks (once the controller has provisioned it)."""
        agent = self._agent()
        if agent is None or agent.keypad is None:
            return
        self._codes_due = False
        task = asyncio.get_running_loop().create_task(self._wrong_codes(agent))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _wrong_codes(self, agent: "Agent") -> None:
        keypad = agent.keypad
        scope = str(self._rng.randrange(10))
        for _ in range((keypad.max_wrong if keypad else 0) + 1):
            code = scope + "".join(str(self._rng.randrange(10)) for _ in range(CODE_DIGITS - 1))
            result = await agent.enter_code(code)
            if result.locked_now or result.locked_until is not None:
                log.info("simulated intruder locked the keypad node=%s until=%s", self.node_id, result.locked_until)
                return


def _battery_effect(battery: "BatteryModel", fault: Drain | Pack) -> None:
    if isinstance(fault, Drain):
        battery.power_source = PowerSource.BATTERY
        battery.load_w = battery.nominal_capacity_wh / fault.hours
    elif fault.mode == "fade":
        battery.capacity_wh = battery.nominal_capacity_wh * fault.value / 100
    elif fault.mode == "drop":
        battery.soc_pct = min(battery.soc_pct, fault.value)
    else:
        battery.cycle_count = max(battery.cycle_count, int(fault.value))


AgentOf = Callable[[], "Agent | None"]
"""The node's current agent (a new one after each in-process restart)."""
