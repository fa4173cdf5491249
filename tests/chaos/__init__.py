"""Chaos suite (issue 10, item 4): each test breaks one real part and checks exact counts by (node, boot, seq)."""
