"""The fleet simulator, writing down every message its agents queue: what the soak benchmark counts as generated.

The agents are the real ones; the only difference is that each message is written to the record file (one line:
``channel kind node boot seq wall-time``) as it enters the agent's outbox. Commands on stdin, one per line:
``stale`` stops every node's telemetry (the simulator's stale fault), ``outbox`` answers with the number of
messages in all outboxes not yet PUBACKed, and PUBACKed but not yet covered by a delivery receipt; ``quit`` or end
of input stops the fleet.

    python -m benchmarks._counting_sim --record generated.txt --nodes 500 --mqtt-url mqtt://127.0.0.1:PORT
"""

import argparse
import asyncio
import sys
import time
from pathlib import Path
from typing import Any, ClassVar, TextIO

from node_agent.agent import Agent
from node_agent.settings import SimSettings
from node_agent.sim import fleet as sim_fleet
from schemas import Channel, Message
from schemas.logs import configure


class RecordingAgent(Agent):
    """An agent that writes each message it queues to :attr:`record` first."""

    record: ClassVar[TextIO]

    def _emit(self, channel: Channel, message: Message) -> None:
        envelope: Any = message
        self.record.write(
            f"{channel.value} {type(message).__name__} {envelope.node_id} {envelope.boot_id} {envelope.seq} "
            f"{time.time():.3f}\n"
        )
        super()._emit(channel, message)


async def _held(fleet: sim_fleet.SimFleet) -> tuple[int, int]:
    """(not yet PUBACKed, PUBACKed but not yet covered by a receipt) over every outbox."""
    return sum(len(a.outbox) for a in fleet.agents), sum(a.outbox.unconfirmed for a in fleet.agents)


def main() -> None:
    """Run the fleet until ``quit`` or end of input on stdin."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--record", type=Path, required=True)
    parser.add_argument("--nodes", type=int, required=True)
    parser.add_argument("--mqtt-url", required=True)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--interval", type=float, default=5.0)
    parser.add_argument("--ramp", type=float, default=20.0)
    args = parser.parse_args()
    configure("WARNING")
    sim_fleet.raise_open_file_limit()
    settings = SimSettings(
        nodes=args.nodes,
        mqtt_url=args.mqtt_url,
        data_dir=args.data_dir,
        telemetry_interval_s=args.interval,
        ramp_s=args.ramp,
        jam_share=0.0,
    )
    with args.record.open("a", buffering=1) as record:
        RecordingAgent.record = record
        sim_fleet.Agent = RecordingAgent  # type: ignore[attr-defined] # the fleet builds its agents from this name
        with sim_fleet.background_fleet(settings) as fleet:
            print("ready", flush=True)
            for line in sys.stdin:
                command = line.strip()
                if command == "stale":
                    for node_id in fleet.faults:
                        fleet.inject(node_id, "stale")
                    print("ok", flush=True)
                elif command == "outbox":
                    assert fleet.loop is not None
                    queued, unconfirmed = asyncio.run_coroutine_threadsafe(_held(fleet), fleet.loop).result(60)
                    print(f"outbox {queued} {unconfirmed}", flush=True)
                elif command == "quit":
                    break


if __name__ == "__main__":
    main()
