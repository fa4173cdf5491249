"""A seq jumping far ahead (a node may send any seq below 2**63) forgets the window instead of shifting a bitmask by
that many bits, which raised MemoryError in the writer thread and ended it."""

from controller.ingest.dedup import MessageKey, SeenWindow


def test_a_huge_seq_jump_starts_the_window_over() -> None:
    seen = SeenWindow(window=64)
    seen.add(MessageKey("n1", 1, 5))
    seen.add(MessageKey("n1", 1, 2**63 - 1))
    assert seen.contains(MessageKey("n1", 1, 2**63 - 1))
    assert not seen.contains(MessageKey("n1", 1, 5))  # out of the window: counts as new (storing it again is harmless)
    seen.add(MessageKey("n1", 1, 2**63 - 2))
    assert seen.contains(MessageKey("n1", 1, 2**63 - 2))


def test_a_jump_just_inside_the_window_keeps_what_it_can() -> None:
    seen = SeenWindow(window=64)
    seen.add(MessageKey("n1", 1, 0))
    seen.add(MessageKey("n1", 1, 63))
    assert seen.contains(MessageKey("n1", 1, 0)) and seen.contains(MessageKey("n1", 1, 63))
    seen.add(MessageKey("n1", 1, 127))
    assert not seen.contains(MessageKey("n1", 1, 63)) and seen.contains(MessageKey("n1", 1, 127))
