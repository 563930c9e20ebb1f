"""The comparison's leaderboard: a row a run (its badge, state, step, FIDs, throughput, the
settings that differ), sorted by a column, the others' figures as differences from a pinned run."""
from __future__ import annotations

import math
from typing import Any

from textual.widgets import DataTable

from gantui.run.compare import Entry, best, shown
from gantui.ui.compare.widgets import badge

SORTS = ("order", "best FID", "last FID", "step", "img/s")
COLUMNS = {"best FID": "best_fid", "last FID": "last_fid", "step": "step", "img/s": "images_per_s"}


class Leaderboard(DataTable):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.order: list[int] = []  # the rows, as the runs' indices

    def show(self, entries: list[Entry], baseline: int | None, sort: str) -> None:
        selected = self.selected()
        top = best(entries)
        keys = list(entries[0].diff) if entries else []
        self.clear(columns=True)
        self.add_columns("", "run", "state", "step", "best FID", "last FID", "img/s", *keys)
        self.order = sorted_indices(entries, sort)
        base = entries[baseline] if baseline is not None else None
        for i in self.order:
            e = entries[i]
            name = e.name + (" *" if e is top else "") + (" (base)" if i == baseline else "")
            other = None if i == baseline else base  # the baseline's own figures as they are
            self.add_row(badge(i), name, e.state, f"{e.step:,}", versus(e.best_fid, other and other.best_fid, ".2f"),
                         versus(e.last_fid, other and other.last_fid, ".2f"),
                         versus(e.images_per_s, other and other.images_per_s, ",.0f"),
                         *(shown(e.diff[k]) for k in keys), key=str(i))
        if selected is not None:
            self.move_cursor(row=self.order.index(selected))

    def selected(self) -> int | None:
        """The selected run's index."""
        if not self.row_count or not self.order:
            return None
        return self.order[min(self.cursor_row, len(self.order) - 1)]


def sorted_indices(entries: list[Entry], sort: str) -> list[int]:
    """The runs in the order given, or by a column: FIDs lowest first, the others highest first,
    runs without the figure last."""
    column = COLUMNS.get(sort)
    indices = list(range(len(entries)))
    if column is None:
        return indices
    lower = column in ("best_fid", "last_fid")

    def key(i: int) -> float:
        value = getattr(entries[i], column)
        return math.inf if value is None else value if lower else -value

    return sorted(indices, key=key)


def versus(value: float | None, base: float | None, digits: str) -> str:
    """A figure, or its difference from the baseline's."""
    if value is None or base is None:
        return shown(value, digits)
    return f"{value - base:+{digits}}"
