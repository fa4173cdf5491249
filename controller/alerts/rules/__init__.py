"""The rule families; each module holds its per-node state, how inputs update it, and its verdicts."""
