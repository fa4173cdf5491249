"""Line protocol of the ingest hot path: the exact telemetry point, and the node tag cache behind it."""

from controller.influx import lineproto
from controller.influx.lineproto import node_tag, ns, telemetry_line
from schemas import PowerSource
from tests import samples


def test_a_telemetry_sample_is_one_point_with_counts_of_open_doors_and_unlocked_locks() -> None:
    t = samples.telemetry("node-7", seq=5, soc=42.5)
    assert telemetry_line(t) == (
        'telemetry,node=node-7 soc_pct=42.5,voltage_v=12.6,charging=false,power_source="battery",cycle_count=41i,'
        f"temp_c=21.25,doors_open=1i,unlocked=1i,outbox_dropped=0i,boot_id=3i,seq=5i,replayed=false {ns(samples.T0)}"
    )
    shore = t.model_copy(update={"battery": t.battery.model_copy(update={"power_source": PowerSource.SHORE})})
    replayed = shore.model_copy(update={"replayed": True})
    assert 'power_source="shore"' in telemetry_line(replayed)
    assert telemetry_line(replayed).endswith(f"replayed=true {ns(samples.T0)}")


def test_node_tags_are_escaped_and_remembered_within_a_bound() -> None:
    assert node_tag("a b,c=d") == r"a\ b\,c\=d"
    assert node_tag("a b,c=d") is node_tag("a b,c=d")
    for i in range(lineproto._NODE_TAGS_MAX + 5):
        assert node_tag(f"n{i}") == f"n{i}"
    assert len(lineproto._NODE_TAGS) <= lineproto._NODE_TAGS_MAX
