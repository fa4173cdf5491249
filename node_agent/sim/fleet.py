"""``lockerfleet sim``: many real agents in one process, each with its own simulated board and MQTT link.

Each node is a full :class:`~node_agent.agent.Agent` (journal, outbox, link) on a fresh gpiozero
``MockFactory`` whose pins are driven by simple physics: batteries drain and charge, temperature follows a
daily cycle, doors open when their relay fires and close after a dwell, and a share of doors is jammed.

Nodes install updates with the ``sim`` shim: each starts from a committed factory slot of ``--firmware-version`` and
restarts in-process (a new agent on a fresh board) when an update switches slots; ``--ota-fail`` makes chosen nodes'
trial starts fail. One process runs as many nodes as its file descriptor limit allows (:func:`check_capacity`).
``--faults`` / ``--faults-file`` give chosen nodes (or every node at a site, ``@site``) faults
(:mod:`node_agent.sim.faults`); :meth:`SimFleet.inject`, :meth:`SimFleet.clear_faults` and :meth:`SimFleet.swap_pack`
change them while the fleet runs.
"""

import asyncio
import contextlib
import logging
import random
import resource
import shutil
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Final

from node_agent.agent import Agent, run_restarting
from node_agent.board import BoardProfile, default_sim_profile
from node_agent.settings import AgentSettings, SimSettings
from node_agent.sim import SimulatedBoard
from node_agent.sim.faults import Fault, fault_plan, parse_fault
from node_agent.sim.injector import NodeFaults
from node_agent.sim.ota import INJECTED_FAILURE, factory_install, failing_nodes
from node_agent.updates import new_http_client, shim_for
from schemas.broker import redact_url
from schemas.logs import configure

log = logging.getLogger(__name__)

PHYSICS_STEP_S = 1.0
FDS_PER_NODE: Final = 12
"""Descriptors one node holds: its MQTT socket and three SQLite stores (journal, outbox, ledger), each with its
``-wal`` and ``-shm`` files (10, measured), and while it updates the artifact being written or unpacked and a
directory being synced (at 10 per node, a rollout wave of thousands ran sim processes out of descriptors)."""
FDS_RESERVED: Final = 300
"""Left to the process itself: Python, the event loop, the shared pool of 100 artifact download connections, logs."""


class SimCapacityError(ValueError):
    """More nodes were asked of one process than its file descriptor limit allows."""


def node_capacity(fd_limit: int) -> int:
    """How many nodes fit in a process that may open ``fd_limit`` descriptors."""
    return max(0, (fd_limit - FDS_RESERVED) // FDS_PER_NODE)


def check_capacity(nodes: int) -> None:
    """Refuse, naming the limit and the ways around it, when ``nodes`` do not fit this process's descriptor limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    capacity = node_capacity(soft)
    if nodes <= capacity:
        return
    raise SimCapacityError(
        f"--nodes {nodes} needs about {nodes * FDS_PER_NODE + FDS_RESERVED:,} file descriptors ({FDS_PER_NODE} per "
        f"node: its MQTT socket, three SQLite stores with their WAL files, an update's files) but this process may "
        f"open {soft:,} (hard limit {hard:,}), enough for {capacity:,} nodes. action=spread the fleet over "
        "processes, e.g. "
        f"`lockerfleet-agent sim --nodes {capacity} --node-offset 0`, then `--node-offset {capacity}` and so on; "
        "or raise the hard limit (ulimit -Hn as root, LimitNOFILE= in a systemd unit, nofile in "
        "/etc/security/limits.conf); the simulator raises its soft limit to the hard one by itself"
    )


class SimFleet:
    """The simulated nodes of one process: their boards and agents (the current ones, after in-process restarts)."""

    def __init__(self, settings: SimSettings, schedule: Callable[[float, Callable[[], None]], object]) -> None:
        check_capacity(settings.nodes)
        self.profile: BoardProfile = (
            BoardProfile.from_toml(settings.board_profile) if settings.board_profile else default_sim_profile()
        )
        rng = random.Random(settings.seed)
        self.settings = settings
        self._schedule = schedule
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop the agents run on (set by :meth:`run`): where to call an agent from another thread."""
        self.http = new_http_client()
        """One connection pool for every node's artifact downloads."""
        node_ids = [f"{settings.node_prefix}-{settings.node_offset + i:04d}" for i in range(settings.nodes)]
        self.failing = failing_nodes(node_ids, settings.ota_fail, settings.ota_fail_share, random.Random(rng.random()))
        """Nodes whose trial starts fail (``--ota-fail``)."""
        self._rngs = [random.Random(rng.random()) for _ in node_ids]
        self._settings = [self._agent_settings(i, node_id) for i, node_id in enumerate(node_ids)]
        self.faults = {
            node_id: NodeFaults(node_id, self._compartments, self._door_timeout_s, self._rngs[i], self._agent_of(i))
            for i, node_id in enumerate(node_ids)
        }
        """Each node's faults, by node id."""
        planned = self._planned_faults(node_ids)
        self.boards: list[SimulatedBoard] = []
        self.agents: list[Agent] = []
        for i, agent_settings in enumerate(self._settings):
            factory_install(shim_for(agent_settings), settings.firmware_version)
            node_keys = agent_settings.data_dir / "trusted_keys.json"  # a node's own copy: a rotation replaces it
            if settings.trusted_keys_file is not None and not node_keys.exists():
                shutil.copyfile(settings.trusted_keys_file, node_keys)
            self.boards.append(self._board(i))
            self.agents.append(self._agent(i))
        for node_id, faults in planned.items():
            for fault in faults:
                self.faults[node_id].apply(fault)

    def _agent_settings(self, i: int, node_id: str) -> AgentSettings:
        settings = self.settings
        data_dir = settings.data_dir / node_id
        data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        return AgentSettings(
            node_id=node_id,
            mqtt_url=settings.mqtt_url,
            data_dir=data_dir,
            telemetry_interval_s=settings.telemetry_interval_s,
            site=settings.sites[(settings.node_offset + i) % len(settings.sites)] if settings.sites else None,
            ota_shim="sim",
            firmware_version=settings.firmware_version,
            ota_gate_poll_s=settings.ota_gate_poll_s,
        )

    @property
    def _compartments(self) -> list[str]:
        return [c.id for c in self.profile.compartments]

    @property
    def _door_timeout_s(self) -> float:
        return self.profile.door_timeout_ms / 1000

    def _agent_of(self, i: int) -> Callable[[], Agent | None]:
        return lambda: self.agents[i] if i < len(self.agents) else None

    def _planned_faults(self, node_ids: list[str]) -> dict[str, tuple[Fault, ...]]:
        """The faults of ``--faults``/``--faults-file`` for this process's nodes, checked against the profile."""
        mine: dict[str, tuple[Fault, ...]] = {}
        elsewhere: list[str] = []
        for target, faults in fault_plan(self.settings.faults, self.settings.faults_file).items():
            nodes = self._nodes_of(target)
            elsewhere += [] if nodes else [target]
            for node_id in nodes:
                mine[node_id] = (*mine.get(node_id, ()), *faults)
        if elsewhere:
            log.warning(
                "faults for nodes or sites this process does not run nodes=%s action=check the ids (%s…%s here) "
                "and sites; with --node-offset another process may run them",
                ",".join(sorted(elsewhere)),
                node_ids[0],
                node_ids[-1],
            )
        for node_id, faults in mine.items():
            for fault in faults:
                self.faults[node_id].check(fault)
        return mine

    def _nodes_of(self, target: str) -> list[str]:
        """The node ``target`` names, or every node of this process at site ``@site`` (none: not here)."""
        if target.startswith("@"):
            return [s.node_id for s in self._settings if s.site == target[1:]]
        return [target] if target in self.faults else []

    def _board(self, i: int) -> SimulatedBoard:
        board = SimulatedBoard(
            self.profile,
            rng=self._rngs[i],
            schedule=self._schedule,
            jam_share=self.settings.jam_share,
            door_dwell_s=self.settings.door_dwell_s,
            power_source=self.settings.power_source,
        )
        self.faults[self._settings[i].node_id].attach(board)
        return board

    def _agent(self, i: int) -> Agent:
        settings = self._settings[i]
        checks = (INJECTED_FAILURE,) if settings.node_id in self.failing else ()
        clock = self.faults[settings.node_id].now
        return Agent(settings, self.boards[i].hardware, now=clock, http=self.http, health_checks=checks)

    def _restarted(self, i: int) -> Agent:
        """Node ``i`` after an in-process restart: a fresh board (the old one was closed with its agent)."""
        self.boards[i] = self._board(i)
        return self._agent(i)

    @property
    def online(self) -> int:
        """Nodes whose link is connected right now."""
        return sum(1 for a in self.agents if a.link.connected)

    async def run(self) -> None:
        """Start every agent (spread over ``ramp_s``) and step the physics, until cancelled."""
        self.loop = asyncio.get_running_loop()
        try:
            async with asyncio.TaskGroup() as group:
                group.create_task(self._physics())
                gap = self.settings.ramp_s / max(1, len(self.agents))
                for i in range(len(self.agents)):
                    group.create_task(self._node(i))
                    await asyncio.sleep(gap)
        finally:
            await self.http.aclose()

    async def _node(self, i: int) -> None:
        """Run node ``i``, restarting it in-process whenever an update switches its slot."""
        first = [self.agents[i]]

        def build() -> Agent:
            return first.pop() if first else self._restarted(i)

        def started(agent: Agent) -> None:
            self.agents[i] = agent

        await run_restarting(build, started)

    async def _physics(self) -> None:
        while True:
            await asyncio.sleep(PHYSICS_STEP_S)
            for faults in self.faults.values():
                faults.step(PHYSICS_STEP_S)
            for board in self.boards:
                board.step(PHYSICS_STEP_S)

    def inject(self, target: str, fault: Fault | str) -> None:
        """Start a fault (e.g. ``"heater"``) on node ``target``, or at once on every node at site ``@site``;
        callable from any thread."""
        nodes = self._targets(target)
        parsed = parse_fault(fault) if isinstance(fault, str) else fault
        for faults in nodes:
            faults.check(parsed)

        def apply() -> None:
            for faults in nodes:
                faults.apply(parsed)

        self._on_loop(apply)

    def clear_faults(self, target: str, kind: str | None = None) -> None:
        """End the faults of ``kind`` (all when ``None``) of node ``target`` or of every node at ``@site``;
        callable from any thread."""
        nodes = self._targets(target)

        def clear() -> None:
            for faults in nodes:
                faults.clear(kind)

        self._on_loop(clear)

    def swap_pack(self, node_id: str) -> None:
        """A technician swaps ``node_id``'s pack (full, no cycles); callable from any thread."""
        faults = self._node_faults(node_id)
        self._on_loop(faults.swap_pack)

    def _targets(self, target: str) -> list[NodeFaults]:
        nodes = self._nodes_of(target)
        if not nodes:
            raise KeyError(f"no node {target!r} in this simulator" if target[:1] != "@" else f"no node at {target!r}")
        return [self.faults[node_id] for node_id in nodes]

    def _node_faults(self, node_id: str) -> NodeFaults:
        faults = self.faults.get(node_id)
        if faults is None:
            raise KeyError(f"no node {node_id!r} in this simulator")
        return faults

    def _on_loop(self, fn: Callable[[], None]) -> None:
        """Run ``fn`` on the fleet's loop (at once when not running yet, or when called on it)."""
        loop = self.loop
        if loop is None or not loop.is_running():
            fn()
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn()
        else:
            loop.call_soon_threadsafe(fn)

    def close(self) -> None:
        """Close every agent's stores and hardware."""
        for agent in self.agents:
            agent.close()


async def _serve(settings: SimSettings) -> None:
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    assert task is not None
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
    fleet = SimFleet(settings, loop.call_later)
    log.info(
        "simulator starting nodes=%d broker=%s data=%s",
        settings.nodes,
        redact_url(settings.mqtt_url),
        settings.data_dir,
    )
    try:
        async with asyncio.timeout(settings.duration_s):
            await fleet.run()
    except TimeoutError:
        log.info("simulator duration reached seconds=%s", settings.duration_s)
    finally:
        fleet.close()


START_TIMEOUT_S = 120.0
"""How long building a background fleet may take (hundreds of nodes on a loaded machine take a while)."""


@contextlib.contextmanager
def background_fleet(settings: SimSettings) -> Iterator[SimFleet]:
    """Run a fleet on its own event loop thread (physics schedules on that loop); stop and close it on exit."""
    loop = asyncio.new_event_loop()
    built: list[SimFleet] = []
    ready = threading.Event()

    async def main() -> None:
        fleet = SimFleet(settings, loop.call_later)
        built.append(fleet)
        ready.set()
        await fleet.run()

    task = loop.create_task(main())
    thread = threading.Thread(target=_run_until_cancelled, args=(loop, task), name="sim-fleet", daemon=True)
    thread.start()
    if not ready.wait(START_TIMEOUT_S):
        loop.call_soon_threadsafe(task.cancel)  # stop a fleet still being built, so nothing outlives the caller
        thread.join(START_TIMEOUT_S)
        for fleet in built:
            fleet.close()
        raise RuntimeError(f"the simulated fleet did not start within {START_TIMEOUT_S:g} s")
    try:
        yield built[0]
    finally:
        loop.call_soon_threadsafe(task.cancel)
        thread.join(15)
        built[0].close()


def _run_until_cancelled(loop: asyncio.AbstractEventLoop, task: "asyncio.Task[None]") -> None:
    with contextlib.suppress(asyncio.CancelledError):
        loop.run_until_complete(task)
    loop.close()


def raise_open_file_limit() -> int:
    """Lift the soft descriptor limit to the hard one (each node holds about :data:`FDS_PER_NODE`); the new limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def run_sim(settings: SimSettings) -> int:
    """Run the simulated fleet until Ctrl-C, SIGTERM or ``duration_s``; exit code 2 when the nodes do not fit."""
    configure()
    raise_open_file_limit()
    try:
        check_capacity(settings.nodes)
    except SimCapacityError as exc:
        log.error("cannot start the simulator: %s", exc)
        return 2
    with contextlib.suppress(asyncio.CancelledError):
        asyncio.run(_serve(settings))
    return 0
