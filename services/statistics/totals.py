"""The totals: each one a count and an amount, and the position up to which it has taken in each topic.

A total is stored per source partition (the faust table's changelog follows the partition of the record
that changed it, so a total written from several partitions would be restored from whichever came last).
Readers add the partitions up (``rows``). The position makes each stored total idempotent on its own: a
record's change is applied only if the total has not already taken in that record or a later one of the
same topic and partition, whatever else was written before a crash.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from services.statistics.domain import Cell, Dimension, Figure, Status

if TYPE_CHECKING:
    from collections.abc import Iterable

Total = dict[str, Any]  # {"applications": int, "amount_cents": int, "taken": {topic: offset}}


def add(total: Total | None, change: Figure, topic: str, offset: int) -> Total | None:
    """The total with ``change`` applied, or None if it has already taken in this record."""
    current = total or {"applications": 0, "amount_cents": 0, "taken": {}}
    if current["taken"].get(topic, -1) >= offset:
        return None
    return {
        "applications": current["applications"] + change.applications,
        "amount_cents": current["amount_cents"] + change.amount_cents,
        "taken": {**current["taken"], topic: offset},
    }


def table_key(partition: int, cell: Cell) -> str:
    """The stored key: the source partition, then the cell. Codes never contain the separator."""
    return "|".join((str(partition), cell.dimension, cell.period, cell.value, cell.status))


def cell_of(key: str) -> Cell:
    _partition, dimension, period, value, status = key.split("|")
    return Cell(Dimension(dimension), period, value, Status(status))


def window_key(partition: int, cell: Cell) -> str:
    """The daily windows keep the day in the window, so their key names only the status."""
    return f"{partition}|{cell.status}"


def rows(stored: Iterable[tuple[Cell, Total]]) -> dict[Cell, Figure]:
    """The totals over every partition, leaving out cells that add up to nothing."""
    summed: dict[Cell, Figure] = {}
    for cell, total in stored:
        old = summed.get(cell, Figure(0, 0))
        summed[cell] = Figure(old.applications + total["applications"], old.amount_cents + total["amount_cents"])
    return {cell: figure for cell, figure in sorted(summed.items()) if figure != Figure(0, 0)}
