"""String patterns checked as pydantic checks them, once per distinct value: for the generated frames."""

import re
from typing import Final

_REMEMBERED: Final = 4096
"""Distinct matching values remembered per pattern (node and compartment ids repeat); forgotten all at once."""


class Pattern:
    """A ``StringConstraints(pattern=...)`` check: ``re.search`` where ``$`` means the end of the text only.

    pydantic matches with Rust's regex, whose ``$`` never matches before a final newline as Python's does; a value
    is therefore accepted only when a match of a ``$``-terminated pattern ends at the end of the value.
    """

    def __init__(self, pattern: str) -> None:
        self.pattern = pattern
        self._search = re.compile(pattern).search
        self._to_end = pattern.endswith("$") and not pattern.endswith("\\$")
        self.matched: set[str] = set()
        """Values that matched (read by the generated frames to skip the call)."""

    def check(self, value: str) -> None:
        """Raise :class:`ValueError` unless ``value`` matches (a set lookup for a value matched before)."""
        if value in self.matched:
            return
        found = self._search(value)
        if found is None or (self._to_end and found.end() != len(value)):
            raise ValueError(f"{value!r} does not match {self.pattern!r}")
        if len(self.matched) >= _REMEMBERED:
            self.matched.clear()
        self.matched.add(value)
