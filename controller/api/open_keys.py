"""The ``Idempotency-Key`` of reservation opens: each key names one reservation step, for good.

The answer to a repeat comes from :meth:`controller.commands.opens.Opens.open_step` (every request for a step gets
its first answer that drove the door); this only refuses a key reused for another reservation or step. Kept in
memory, the newest :data:`KEPT` keys, like the answers themselves.
"""

from collections import OrderedDict

from schemas import ReservationStep

KEPT = 10_000

REUSED = "this Idempotency-Key was used for a different request; use a new key"


class OpenKeys:
    """Which reservation step each partner's ``Idempotency-Key`` was first sent for."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._steps: OrderedDict[tuple[str, str], tuple[str, ReservationStep]] = OrderedDict()

    def claim(self, partner: str, key: str, reservation_id: str, step: ReservationStep) -> bool:
        """Bind ``key`` to the step on first use; False if it was used for another reservation or step."""
        bound = self._steps.setdefault((partner, key), (reservation_id, step))
        if len(self._steps) > self._kept:
            self._steps.popitem(last=False)
        return bound == (reservation_id, step)
