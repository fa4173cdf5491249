"""A real agent and broker: what the broker acknowledged stays in the outbox and goes again after a reconnect, until
the controller's delivery receipt covers it (issue 10, item 2)."""

import pytest

from controller.devstack.services import Mosquitto
from schemas import Channel, StoredReceipt, decode, encode, topic
from tests.harness.agent_runner import AgentFactory, AgentThread
from tests.harness.mqtt import Capture, connect, disconnect, wait_until

pytestmark = pytest.mark.integration


def reconnect(thread: AgentThread) -> None:
    """Fail the connection (no DISCONNECT) and let the agent connect again."""
    connects = thread.agent.link.connects
    thread.call(thread.agent.link.cut)
    assert wait_until(lambda: not thread.agent.link.connected, 5)
    thread.call(thread.agent.link.mend)
    assert wait_until(lambda: thread.agent.link.connects > connects, 10)


def test_an_item_the_broker_took_is_sent_again_on_reconnect_until_a_receipt_covers_it(
    mosquitto: Mosquitto, start_agent: AgentFactory
) -> None:
    telemetry = Capture(mosquitto.url, topic("node-1", Channel.TELEMETRY))
    controller = connect(mosquitto.url)
    thread = start_agent(telemetry_interval_s=0.2)
    agent = thread.agent

    def receipt(ranges: list[tuple[int, int]]) -> None:
        message = StoredReceipt(node_id="node-1", boot_id=agent.boot_id, ranges=ranges)
        controller.publish(topic("node-1", Channel.STORED), encode(message), qos=1).wait_for_publish(5)

    def seqs() -> list[int]:
        return [decode(Channel.TELEMETRY, d.payload).seq for d in telemetry.snapshot()]

    try:
        receipt([(10**9, 10**9)])  # covers nothing, but says this controller sends receipts
        assert wait_until(lambda: agent.outbox.receipts, 5)
        assert wait_until(lambda: agent.outbox.unconfirmed >= 3, 10)  # acknowledged by the broker, kept
        thread.call(lambda: setattr(agent, "telemetry_paused", True))
        held = thread.call(lambda: [decode(Channel.TELEMETRY, i.payload).seq for i in agent.outbox.peek(1000)])
        assert wait_until(lambda: set(held) <= set(seqs()), 5)  # each was published once...
        first = len(seqs())

        reconnect(thread)
        assert wait_until(lambda: len(seqs()) >= first + len(held), 10)  # ...and again after the reconnect
        assert seqs()[first:] == held  # oldest first, in order

        receipt([(0, held[-1])])
        assert wait_until(lambda: agent.outbox.unconfirmed == 0, 5)
        reconnect(thread)
        assert (len(agent.outbox), agent.outbox.unconfirmed) == (0, 0)  # nothing left to send again
    finally:
        disconnect(controller)
        telemetry.close()
